"""Kept images (`--keep-images-file`) on a real engine and a real registry: pulled at
start, back within seconds after `docker rmi`, never pruned, the file followed as it
changes, and a reference that cannot be pulled reported without stopping the server.

One server node of its own per test (the keep file is its setting); images are pushed to
the open registry with the docker CLI and removed locally, so only the service's own
pulls can bring them back."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.engine_kinds import EngineKind
from devtools.sandbox import Registry, SandboxEngine, build_busybox_image
from imagesvc.server import ThreadedServer
from imagesvc.v1 import fleet_service_pb2 as fleet_pb
from imagesvc.v1 import fleet_service_pb2_grpc, image_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.conftest import server_settings
from tests.integration.rpc_errors import error_info
from tests.integration.test_registry_inspect import _get_manifest, _put_manifest
from tests.integration.transfers import local_id, pushed_manifest_type, remove_local, unique
from tests.scrape import scrape

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract

KEPT_IMAGES = "imagesvc.v1.KeptImages"
PRESENT = fleet_pb.KeptImage.STATE_PRESENT
FAILED = fleet_pb.KeptImage.STATE_FAILED


class KeptNode:
    """A server with a keep file, and clients of it."""

    def __init__(self, server: ThreadedServer, channel: grpc.Channel, keep_file: Path) -> None:
        self.server = server
        self.keep_file = keep_file
        self.images = image_service_pb2_grpc.ImageServiceStub(channel)
        self.fleet = fleet_service_pb2_grpc.FleetServiceStub(channel)
        # Typed Any: the types-grpcio-health-checking stub has no methods.
        self.health: Any = health_pb2_grpc.HealthStub(channel)

    def kept(self) -> list[fleet_pb.KeptImage]:
        nodes = self.fleet.ListNodes(fleet_pb.ListNodesRequest(local_only=True), timeout=10)
        return list(nodes.nodes[0].kept_images)

    def warm(self) -> bool:
        answer = self.health.Check(health_pb2.HealthCheckRequest(service=KEPT_IMAGES), timeout=5)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    def write(self, text: str) -> None:
        write_keep_file(self.keep_file, text)


def write_keep_file(path: Path, text: str) -> None:
    """Replaced by a rename, as a ConfigMap's files are (a new inode)."""
    staged = path.with_suffix(".new")
    staged.write_text(text)
    os.replace(staged, path)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Seconds until `condition()` held; fails after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"not within {seconds} s: {what}"
        time.sleep(0.05)
    return time.monotonic() - started


@contextlib.contextmanager
def kept_node(
    engine: SandboxEngine, tmp_path: Path, text: str, **settings: object
) -> Iterator[KeptNode]:
    keep_file = tmp_path / "keep-images"
    write_keep_file(keep_file, text)
    server = ThreadedServer(
        server_settings(engine.host, keep_images_file=str(keep_file), **settings)
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield KeptNode(server, channel, keep_file)
    finally:
        server.stop()


@pytest.fixture
def pushed(engine: SandboxEngine, open_registry: Registry) -> Iterator[Callable[[str], str]]:
    """Pushes a distinct image to the open registry and removes it locally: the
    reference. Everything pushed is removed locally at the end."""
    references: list[str] = []

    def push(name: str) -> str:
        reference = f"{open_registry.address}/{unique(f'kept/{name}-')}:1"
        build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
        engine.docker("push", reference)
        remove_local(engine, reference)
        references.append(reference)
        return reference

    yield push
    remove_local(engine, *references)


def test_kept_images_are_pulled_at_start_and_make_the_node_warm(
    engine: SandboxEngine, tmp_path: Path, pushed: Callable[[str], str]
) -> None:
    reference = pushed("app")
    text = f"# kept on every node\n\n{reference}   # the app\n"
    with kept_node(engine, tmp_path, text) as node:
        wait_for(node.warm, 60, "health imagesvc.v1.KeptImages SERVING")
        image_id = local_id(engine, reference)
        assert image_id is not None
        [kept] = node.kept()
        assert (kept.reference, kept.state, kept.image_id) == (reference, PRESENT, image_id)
        assert not kept.HasField("error")
        metrics = scrape(node.server.http_port)
        assert metrics.value("imagesvc_kept_images", {"state": "present"}) == 1
        assert metrics.value("imagesvc_kept_images", {"state": "failed"}) == 0


def test_a_kept_image_removed_with_the_cli_is_back_within_seconds(
    engine: SandboxEngine, tmp_path: Path, pushed: Callable[[str], str]
) -> None:
    reference = pushed("back")
    with kept_node(engine, tmp_path, f"{reference}\n") as node:
        wait_for(node.warm, 60, "the kept image present")

        def pulls() -> float:
            return scrape(node.server.http_port).value(
                "imagesvc_pulls_total", {"outcome": "success"}
            )

        assert pulls() == 1
        removed = engine.docker("image", "rm", reference).stdout
        assert f"Untagged: {reference}" in removed
        # The service may have it back before this line runs (its pull follows the event):
        # what proves it is the second pull, and the image there again.
        back_in = wait_for(
            lambda: pulls() == 2 and local_id(engine, reference) is not None,
            10,
            "the kept image pulled again",
        )
        assert back_in < 10
        wait_for(node.warm, 10, "the node warm again")
        [kept] = node.kept()
        assert (kept.state, kept.image_id) == (PRESENT, local_id(engine, reference))


def test_prune_never_removes_a_kept_image(
    engine: SandboxEngine, tmp_path: Path, pushed: Callable[[str], str]
) -> None:
    reference = pushed("prune")
    with kept_node(engine, tmp_path, f"{reference}\n") as node:
        wait_for(node.warm, 60, "the kept image present")
        image_id = local_id(engine, reference)
        with pytest.raises(grpc.RpcError) as refused:
            node.images.PruneImages(pb.PruneImagesRequest(all=True), timeout=30)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(refused.value).reason == "IMAGE_KEPT"
        assert reference in str(refused.value.details())
        # A dangling-only prune cannot pick it (it is tagged): it runs.
        node.images.PruneImages(pb.PruneImagesRequest(), timeout=60)
        assert local_id(engine, reference) == image_id
        assert node.warm()


def test_a_prune_of_all_narrowed_to_spare_the_kept_images_runs(
    engine: SandboxEngine, tmp_path: Path, pushed: Callable[[str], str]
) -> None:
    reference = pushed("narrowed")
    with kept_node(engine, tmp_path, f"{reference}\n") as node:
        wait_for(node.warm, 60, "the kept image present")
        image_id = local_id(engine, reference)
        node.images.PruneImages(
            pb.PruneImagesRequest(all=True, labels=["imagesvc-test.kept-none=1"]), timeout=60
        )
        assert local_id(engine, reference) == image_id


def test_a_reference_added_to_the_file_is_pulled(
    engine: SandboxEngine, tmp_path: Path, pushed: Callable[[str], str]
) -> None:
    first, added = pushed("first"), pushed("added")
    with kept_node(engine, tmp_path, f"{first}\n") as node:
        wait_for(node.warm, 60, "the first kept image present")
        node.write(f"{first}\n# added later\n{added}\n")
        wait_for(lambda: local_id(engine, added) is not None, 30, "the added image pulled")
        wait_for(
            lambda: (
                [(k.reference, k.state) for k in node.kept()]
                == [(first, PRESENT), (added, PRESENT)]
            ),
            10,
            "both reported present",
        )
        assert node.warm()


def test_a_reference_that_cannot_be_pulled_is_failed_and_the_server_serves(
    engine: SandboxEngine,
    tmp_path: Path,
    open_registry: Registry,
    pushed: Callable[[str], str],
) -> None:
    present = pushed("fine")
    missing = f"{open_registry.address}/{unique('kept/never-pushed-')}:1"
    with kept_node(engine, tmp_path, f"{present}\n{missing}\n") as node:

        def failed() -> bool:
            return any(k.reference == missing and k.state == FAILED for k in node.kept())

        def other_present() -> bool:
            return any(k.reference == present and k.state == PRESENT for k in node.kept())

        wait_for(failed, 60, "the missing reference reported failed")
        wait_for(other_present, 60, "the other one pulled")
        assert local_id(engine, present) is not None
        states = {k.reference: k for k in node.kept()}
        assert states[missing].error.reason == "IMAGE_NOT_FOUND"
        assert states[missing].error.message
        assert not node.warm()
        assert scrape(node.server.http_port).value("imagesvc_kept_images", {"state": "failed"}) == 1
        # The node serves everything else, and its readiness follows the daemon only.
        assert node.images.ListImages(pb.ListImagesRequest(), timeout=10).images
        readiness = node.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert readiness.status == health_pb2.HealthCheckResponse.SERVING
        # Fixed in the file: the node becomes warm.
        node.write(f"{present}\n")
        wait_for(node.warm, 10, "warm once the missing reference is gone from the file")


def test_a_tag_that_moved_at_the_registry_is_pulled_again(
    engine: SandboxEngine,
    engine_kind: EngineKind,
    tmp_path: Path,
    open_registry: Registry,
    pushed: Callable[[str], str],
) -> None:
    reference = pushed("moving")
    repository = reference.removeprefix(f"{open_registry.address}/").rpartition(":")[0]
    newer = f"{open_registry.address}/{repository}:2"
    with kept_node(
        engine, tmp_path, f"{reference}\n", keep_images_check_interval_seconds=0.5
    ) as node:
        wait_for(node.warm, 60, "the kept image present")
        first = local_id(engine, reference)
        try:
            # The tag is pushed again: another image's manifest (tag 2's) put under it.
            build_busybox_image(engine, newer, extra_lines=[f"RUN echo {unique('')} > /id"])
            engine.docker("push", newer)
            media_type = pushed_manifest_type(engine_kind)
            body = _get_manifest(open_registry, repository, "2", media_type)
            _put_manifest(open_registry, repository, "1", media_type, body)
            wait_for(
                lambda: local_id(engine, reference) not in (None, first),
                30,
                "the moved tag pulled again",
            )
            assert local_id(engine, reference) == local_id(engine, newer)
            wait_for(
                lambda: [k.image_id for k in node.kept()] == [local_id(engine, reference)],
                10,
                "ListNodes shows the new image",
            )
            assert node.warm()
        finally:
            remove_local(engine, newer)
