"""PushImage and PullImage through the real channel, against the sandboxed Engine and
the open loopback registry; results are checked against the registry's own answer and
what the docker CLI reports."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from devtools.engine_kinds import EngineKind
from devtools.sandbox import BuiltImage, Registry, SandboxEngine, build_busybox_image
from imagesvc.v1 import image_pb2, image_service_pb2_grpc
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.rpc_errors import error_info
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import (
    local_id,
    local_image,
    pushed_manifest_type,
    read_pull,
    read_push,
    registry_manifest,
    remove_local,
    repo_digests,
    unique,
)

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract

Stub = image_service_pb2_grpc.ImageServiceStub

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
PUSH_STATES = frozenset({"Preparing", "Waiting", "Pushing", "Pushed", "Layer already exists"})
PUSH_DONE = frozenset({"Pushed", "Layer already exists"})
PULL_STATES = frozenset(
    {
        "Pulling fs layer",
        "Waiting",
        "Downloading",
        "Verifying Checksum",
        "Download complete",
        "Extracting",
        "Pull complete",
        "Already exists",
    }
)
PULL_DONE = frozenset({"Pull complete", "Already exists"})
# Random data does not compress: the pulled layer is at least this big.
RANDOM_BYTES = 1024 * 1024
# Bytes a second the served image's registry sends to the Engine (see served_image).
PULL_RATE = 2 * RANDOM_BYTES
RANDOM_LAYER = "RUN dd if=/dev/urandom of=/data bs=64k count=16"


def _layer_count(engine: SandboxEngine, reference: str) -> int:
    document = local_image(engine, reference)
    assert document is not None
    root_fs = document["RootFS"]
    assert isinstance(root_fs, dict)
    return len(root_fs["Layers"])


def _push_state_ok(state: str) -> bool:
    # "Mounted from <repo>": the registry copied the blob from another repository.
    return state in PUSH_STATES or state.startswith("Mounted from ")


def _check_aggregates(progress: list[image_pb2.TransferProgress]) -> None:
    """Counters only grow, and bytes done never exceed the bytes known."""
    for before, after in itertools.pairwise(progress):
        assert after.layers_total >= before.layers_total
        assert after.layers_done >= before.layers_done
        assert after.bytes_total >= before.bytes_total
        assert after.bytes_done >= before.bytes_done, (before, after)
    for message in progress:
        assert 0 <= message.bytes_done <= message.bytes_total or message.bytes_total == 0
        assert 0 <= message.layers_done <= message.layers_total


def _last_states(progress: list[image_pb2.TransferProgress]) -> dict[str, str]:
    last: dict[str, str] = {}
    for message in progress:
        for layer in message.layers:
            last[layer.layer_id] = layer.state
    return last


def _all_states(progress: list[image_pb2.TransferProgress]) -> set[str]:
    return {layer.state for message in progress for layer in message.layers}


@dataclass(frozen=True)
class ServedImage:
    """An image in the open registry, not on the Engine (tests remove what they pull)."""

    name: str  # 127.0.0.1:PORT/team/...
    repository: str  # team/...
    tag: str
    digest: str
    image_id: str
    layers: int
    layer_digests: tuple[str, ...]  # the pushed manifest's, the random layer last


@pytest.fixture(scope="module")
def served_image(
    engine: SandboxEngine,
    engine_kind: EngineKind,
    open_registry: Registry,
    busybox_image: BuiltImage,
) -> Iterator[ServedImage]:
    """Built with a 1 MiB random layer, pushed with the CLI, removed from the Engine.

    Served through a throttling proxy (about 0.5 s per pull): the Engine reports a
    layer's progress to a pull only as its latest state, so on a fast loopback a busy
    machine could see a layer go straight to "Download complete" and tests of the
    "Downloading" updates would depend on timing."""
    repository = unique("team/pull-")
    with ThrottleProxy(open_registry.address, rate=PULL_RATE) as proxy:
        name = f"{proxy.address}/{repository}"
        image_id = build_busybox_image(engine, f"{name}:1", extra_lines=[RANDOM_LAYER])
        layers = _layer_count(engine, f"{name}:1")
        engine.docker("push", f"{name}:1")
        manifest = registry_manifest(
            open_registry, repository, "1", pushed_manifest_type(engine_kind)
        )
        remove_local(engine, f"{name}:1")
        assert local_id(engine, image_id) is None
        yield ServedImage(name, repository, "1", manifest.digest, image_id, layers, manifest.layers)
        remove_local(engine, f"{name}:1", f"{name}@{manifest.digest}")


# Push -------------------------------------------------------------------------------


def test_push_streams_progress_then_the_digest_the_registry_serves(
    stub: Stub,
    engine: SandboxEngine,
    engine_kind: EngineKind,
    open_registry: Registry,
    busybox_image: BuiltImage,
) -> None:
    source = unique("imagesvc-test/push-src-") + ":1"
    repository = unique("team/x-")
    target = f"{open_registry.address}/{repository}:1"
    build_busybox_image(engine, source, extra_lines=[f"RUN echo {unique('')} > /id"])
    try:
        tagged = stub.TagImage(pb.TagImageRequest(source=source, target=target), timeout=30)
        assert tagged.id == local_id(engine, source)
        assert tagged.target == target
        layers = _layer_count(engine, target)

        progress, result = read_push(stub.PushImage(pb.PushImageRequest(reference=target)))

        states = _all_states(progress)
        assert all(_push_state_ok(s) for s in states), states
        last = _last_states(progress)
        assert len(last) == layers
        # The unique top layer is new to this registry: it was really pushed. The classic
        # store reports its upload as it goes; the containerd store reports a blob of a
        # few bytes only once it is up.
        if not engine_kind.containerd_store:
            assert "Pushing" in states
        assert "Pushed" in last.values()
        assert all(s in PUSH_DONE or s.startswith("Mounted from ") for s in last.values()), last
        _check_aggregates(progress)
        assert progress[-1].layers_done == progress[-1].layers_total == layers
        assert progress[-1].bytes_done == progress[-1].bytes_total
        if "Pushing" in states:
            assert progress[-1].bytes_total > 0
        assert progress[0].status == f"The push refers to repository [{target[:-2]}]"

        assert DIGEST.fullmatch(result.digest)
        assert result.size > 0
        assert result.tag == "1"
        assert result.reference == target
        served = registry_manifest(
            open_registry, repository, "1", pushed_manifest_type(engine_kind)
        )
        assert result.digest == served.digest
        assert result.size == served.size
        assert f"{target[:-2]}@{result.digest}" in repo_digests(engine, target)

        # Everything is in the registry now: a second push uploads nothing.
        again, second = read_push(stub.PushImage(pb.PushImageRequest(reference=target)))
        again_last = _last_states(again)
        assert set(again_last.values()) == {"Layer already exists"}, again_last
        assert len(again_last) == layers
        assert "Pushing" not in _all_states(again)
        assert again[-1].layers_done == again[-1].layers_total == layers
        assert second.digest == result.digest
        assert second.size == result.size

        # The CLI pulls back the same manifest.
        remove_local(engine, target)
        engine.docker("pull", target)
        assert f"{target[:-2]}@{result.digest}" in repo_digests(engine, target)
        assert local_id(engine, target) == local_id(engine, source)
    finally:
        remove_local(engine, target, source)


def test_push_of_layers_from_another_repository_counts_them_done(
    stub: Stub, engine: SandboxEngine, open_registry: Registry, busybox_image: BuiltImage
) -> None:
    first = f"{open_registry.address}/{unique('team/a-')}:1"
    second = f"{open_registry.address}/{unique('team/b-')}:1"
    build_busybox_image(engine, first, extra_lines=[f"RUN echo {unique('')} > /id"])
    try:
        _, pushed = read_push(stub.PushImage(pb.PushImageRequest(reference=first)))
        engine.docker("tag", first, second)
        progress, result = read_push(stub.PushImage(pb.PushImageRequest(reference=second)))
        last = _last_states(progress)
        # Every blob is in the registry already, under the first repository.
        assert last, "no layer progress"
        assert all(
            s.startswith("Mounted from ") or s == "Layer already exists" for s in last.values()
        )
        assert progress[-1].layers_done == progress[-1].layers_total == len(last)
        assert result.digest == pushed.digest
    finally:
        remove_local(engine, first, second)


def test_push_by_digest_is_invalid(stub: Stub, served_image: ServedImage) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        read_push(
            stub.PushImage(
                pb.PushImageRequest(reference=f"{served_image.name}@{served_image.digest}"),
                timeout=30,
            )
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_REFERENCE"


def test_push_of_an_image_the_engine_lacks_is_not_found(
    stub: Stub, engine: SandboxEngine, open_registry: Registry
) -> None:
    reference = f"{open_registry.address}/{unique('team/missing-')}:1"
    assert local_image(engine, reference) is None
    with pytest.raises(grpc.RpcError) as caught:
        read_push(stub.PushImage(pb.PushImageRequest(reference=reference), timeout=30))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "IMAGE_NOT_FOUND"


def test_push_to_a_closed_port_is_unavailable(
    stub: Stub, engine: SandboxEngine, busybox_image: BuiltImage
) -> None:
    reference = f"127.0.0.1:1/{unique('team/closed-')}:1"
    build_busybox_image(engine, reference, extra_lines=[f"RUN echo {unique('')} > /id"])
    try:
        with pytest.raises(grpc.RpcError) as caught:
            read_push(stub.PushImage(pb.PushImageRequest(reference=reference), timeout=60))
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert error_info(caught.value).reason == "REGISTRY_UNAVAILABLE"
    finally:
        remove_local(engine, reference)


# Pull -------------------------------------------------------------------------------


def test_pull_by_tag_streams_layer_progress_then_the_image(
    stub: Stub, engine: SandboxEngine, engine_kind: EngineKind, served_image: ServedImage
) -> None:
    reference = f"{served_image.name}:{served_image.tag}"
    assert local_image(engine, reference) is None
    try:
        progress, result = read_pull(
            stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60)
        )
        states = _all_states(progress)
        assert states <= PULL_STATES, states
        last = _last_states(progress)
        if engine_kind.containerd_store:
            # The containerd store reports only the layers it fetches, from "Pulling fs
            # layer" to "Download complete", and extracts nothing it would report. The
            # random layer is always fetched; whether the session image's layers are too
            # depends on whether its content store still holds their compressed blobs
            # (left by an earlier push, gone after its garbage collection): at most all.
            assert {"Pulling fs layer", "Download complete"} <= states, states
            assert {"Extracting", "Pull complete", "Already exists"}.isdisjoint(states)
            short_ids = [d.removeprefix("sha256:")[:12] for d in served_image.layer_digests]
            assert len(short_ids) == served_image.layers
            assert short_ids[-1] in last, (short_ids, last)
            assert set(last) <= set(short_ids), (short_ids, last)
            assert set(last.values()) == {"Download complete"}, last
        else:
            # The random layer is not on the Engine: it is downloaded and extracted.
            assert {"Downloading", "Extracting", "Pull complete"} <= states
            assert len(last) == served_image.layers
            assert set(last.values()) <= PULL_DONE, last
        downloaded = [
            layer
            for message in progress
            for layer in message.layers
            if layer.state == "Downloading"
        ]
        assert all(0 <= layer.current <= layer.total for layer in downloaded)
        _check_aggregates(progress)
        final = progress[-1]
        assert final.layers_done == final.layers_total == len(last)
        assert final.bytes_done == final.bytes_total
        if not engine_kind.containerd_store:
            assert final.bytes_done == final.bytes_total >= RANDOM_BYTES
        assert progress[0].status == f"{served_image.tag}: Pulling from {served_image.repository}"

        assert result.image_id == local_id(engine, reference) == served_image.image_id
        assert result.digest == served_image.digest
        assert result.reference == reference
        assert result.status == f"Downloaded newer image for {reference}"
        assert f"{served_image.name}@{served_image.digest}" in repo_digests(engine, reference)

        # A second pull finds the image up to date and transfers nothing.
        again, second = read_pull(
            stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60)
        )
        assert {"Downloading", "Extracting"}.isdisjoint(_all_states(again))
        assert second.image_id == result.image_id
        assert second.digest == served_image.digest
        assert second.status == f"Image is up to date for {reference}"
    finally:
        remove_local(engine, reference)


def test_pull_by_digest(
    stub: Stub, engine: SandboxEngine, engine_kind: EngineKind, served_image: ServedImage
) -> None:
    by_digest = f"{served_image.name}@{served_image.digest}"
    tagged = f"{served_image.name}:{served_image.tag}"
    assert local_image(engine, by_digest) is None
    try:
        progress, result = read_pull(
            stub.PullImage(pb.PullImageRequest(reference=by_digest), timeout=60)
        )
        # The containerd store names only the layers it fetches, never "Downloading".
        fetched = "Download complete" if engine_kind.containerd_store else "Downloading"
        assert fetched in _all_states(progress)
        reported = len(_last_states(progress))
        if not engine_kind.containerd_store:
            assert reported == served_image.layers
        assert progress[-1].layers_done == progress[-1].layers_total == reported
        assert result.digest == served_image.digest
        assert result.image_id == local_id(engine, by_digest) == served_image.image_id
        assert result.reference == by_digest
        # Like `docker pull repo@digest`: no tag is created.
        assert local_image(engine, tagged) is None
        document = local_image(engine, by_digest)
        assert document is not None
        assert document["RepoTags"] == []
        assert document["RepoDigests"] == [by_digest]
    finally:
        remove_local(engine, by_digest)


def test_pull_by_tag_and_digest_pulls_the_digest(
    stub: Stub, engine: SandboxEngine, served_image: ServedImage
) -> None:
    reference = f"{served_image.name}:{served_image.tag}@{served_image.digest}"
    by_digest = f"{served_image.name}@{served_image.digest}"
    try:
        _, result = read_pull(stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60))
        assert result.digest == served_image.digest
        assert result.image_id == local_id(engine, by_digest) == served_image.image_id
        assert result.reference == reference
    finally:
        remove_local(engine, by_digest, f"{served_image.name}:{served_image.tag}")


def test_pull_without_tag_pulls_latest_only(
    stub: Stub,
    engine: SandboxEngine,
    engine_kind: EngineKind,
    open_registry: Registry,
    busybox_image: BuiltImage,
) -> None:
    name = f"{open_registry.address}/{unique('team/latest-')}"
    latest_id = build_busybox_image(engine, f"{name}:latest", extra_lines=["RUN echo L > /id"])
    other_id = build_busybox_image(engine, f"{name}:other", extra_lines=["RUN echo O > /id"])
    assert latest_id != other_id
    try:
        for tag in ("latest", "other"):
            read_push(stub.PushImage(pb.PushImageRequest(reference=f"{name}:{tag}"), timeout=60))
        remove_local(engine, f"{name}:latest", f"{name}:other")
        assert local_id(engine, other_id) is None

        _, result = read_pull(stub.PullImage(pb.PullImageRequest(reference=name), timeout=60))

        assert result.reference == f"{name}:latest"
        assert result.image_id == latest_id == local_id(engine, f"{name}:latest")
        repository = name.split("/", 1)[1]
        served = registry_manifest(
            open_registry, repository, "latest", pushed_manifest_type(engine_kind)
        )
        assert result.digest == served.digest
        listed = engine.docker(
            "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", name
        ).stdout.split()
        assert listed == [f"{name}:latest"]
        assert local_image(engine, f"{name}:other") is None
        assert local_id(engine, other_id) is None
    finally:
        remove_local(engine, f"{name}:latest", f"{name}:other")


@pytest.mark.parametrize("what", ["tag", "repository"])
def test_pull_of_something_the_registry_lacks_is_not_found(
    stub: Stub, engine: SandboxEngine, open_registry: Registry, served_image: ServedImage, what: str
) -> None:
    reference = (
        f"{served_image.name}:no-such-tag"
        if what == "tag"
        else f"{open_registry.address}/{unique('team/nothing-')}:1"
    )
    with pytest.raises(grpc.RpcError) as caught:
        read_pull(stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "IMAGE_NOT_FOUND"
    assert local_image(engine, reference) is None


def test_pull_from_a_closed_port_is_unavailable(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        read_pull(stub.PullImage(pb.PullImageRequest(reference="127.0.0.1:1/team/x:1"), timeout=60))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).reason == "REGISTRY_UNAVAILABLE"


@pytest.mark.parametrize(
    "reference",
    [
        "127.0.0.1:5000/Team/x:1",
        "team//x:1",
        "team/x:",
        "team/x:-dash",
        "team/x@sha256:123",
        "team/x y:1",
        "-team/x",
        ":1",
        "127.0.0.1:port/team/x",
    ],
)
def test_pull_of_a_malformed_reference_is_invalid(stub: Stub, reference: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        read_pull(stub.PullImage(pb.PullImageRequest(reference=reference), timeout=30))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_REFERENCE"


def test_pull_without_a_reference_is_invalid(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        read_pull(stub.PullImage(pb.PullImageRequest(), timeout=30))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info.reason == "INVALID_ARGUMENT"
    assert info.metadata["field"] == "reference"


@pytest.mark.parametrize(
    "platform",
    [
        "Linux/AMD64",
        "linux//amd64",
        "linux/amd64/v8/extra",
        "linux amd64",
        "/amd64",
        # Well-formed, but neither an operating system nor an architecture: the Engine says no.
        "nonsense",
    ],
)
def test_pull_with_a_bad_platform_is_invalid(
    stub: Stub, engine: SandboxEngine, served_image: ServedImage, platform: str
) -> None:
    reference = f"{served_image.name}:{served_image.tag}"
    try:
        with pytest.raises(grpc.RpcError) as caught:
            read_pull(
                stub.PullImage(
                    pb.PullImageRequest(reference=reference, platform=platform), timeout=60
                )
            )
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(caught.value).reason in {"INVALID_ARGUMENT", "INVALID_REFERENCE"}
        assert local_image(engine, reference) is None
    finally:
        remove_local(engine, reference)
