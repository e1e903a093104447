"""devtools.podman.PodmanEngine started for real, and what the service does differently
on Podman's Docker API: RUN steps off the host's network, Docker's familiar names, the
pulled image's id."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devtools.podman import PodmanEngine
from devtools.sandbox import Registry, _mounts_under, build_busybox_image
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.builds import dockerfile, make_tar, run_build, unique_repo
from tests.integration.conftest import server_settings
from tests.integration.rpc_errors import error_info
from tests.integration.transfers import read_pull

pytestmark = pytest.mark.engine_kinds("podman")

BASE = "acc/tiny:1"


def _built(engine: PodmanEngine, tag: str, **labels: str) -> str:
    return build_busybox_image(engine, tag, labels=labels)


@pytest.fixture(scope="module")
def podman() -> Iterator[PodmanEngine]:
    base = Path(tempfile.mkdtemp(prefix="isv-podman-", dir="/tmp"))
    engine = PodmanEngine(base / "engine")
    engine.start()
    try:
        _built(engine, BASE)
        yield engine
    finally:
        engine.stop()
        # Nothing of the engine is left: no podman, conmon or runtime, no mount.
        assert not engine.leftover_processes()
        assert not _mounts_under(base)
        shutil.rmtree(base)


@pytest.fixture(scope="module")
def stub(podman: PodmanEngine) -> Iterator[image_service_pb2_grpc.ImageServiceStub]:
    running = ThreadedServer(server_settings(podman.host))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield image_service_pb2_grpc.ImageServiceStub(channel)
    finally:
        running.stop()


def test_the_engine_is_podman_on_its_own_socket(podman: PodmanEngine) -> None:
    assert podman.ping()
    assert podman.host == f"unix://{podman.base_dir}/docker.sock"
    components = podman.docker("version", "--format", "{{json .Server.Components}}").stdout
    assert "Podman Engine" in components
    assert podman.pid is not None
    assert podman.is_running()


def test_containers_get_loopback_only(podman: PodmanEngine) -> None:
    # No --network: Podman's default network, here the loopback plugin alone.
    run = podman.docker("run", "--rm", BASE, "cat", "/proc/net/dev")
    interfaces = [line.split(":")[0].strip() for line in run.stdout.splitlines()[2:]]
    assert interfaces == ["lo"]


@pytest.mark.parametrize("network_mode", ["", "default", "none"])
def test_build_steps_never_see_the_hosts_interfaces(
    stub: image_service_pb2_grpc.ImageServiceStub, podman: PodmanEngine, network_mode: str
) -> None:
    # Without the adapter's nsoptions, Podman would list the host's eth0 here.
    tag = unique_repo("podman-net") + ":1"
    context = make_tar(
        {
            "Dockerfile": dockerfile(
                f"FROM {BASE}", "RUN cut -d: -f1 /proc/net/dev | tail -n +3 > /interfaces"
            )
        }
    )
    try:
        run_build(stub, pb.BuildOptions(tags=[tag], network_mode=network_mode), context).succeeded()
        seen = podman.docker("run", "--rm", tag, "cat", "/interfaces").stdout.split()
        assert seen == ["lo"]
    finally:
        podman.docker("image", "rm", "--force", tag, check=False)


def test_images_are_listed_and_filtered_by_dockers_familiar_names(
    stub: image_service_pb2_grpc.ImageServiceStub, podman: PodmanEngine
) -> None:
    # Podman itself says docker.io/acc/tiny:1.
    assert "docker.io/acc/tiny:1" in podman.docker("image", "inspect", BASE).stdout
    page = stub.ListImages(pb.ListImagesRequest(filter=pb.ImageFilter(references=["acc/tiny"])))
    assert [list(i.repo_tags) for i in page.images] == [[BASE]]
    # Podman's own filter matches "tiny" too; Docker's (and the service's) does not.
    page = stub.ListImages(pb.ListImagesRequest(filter=pb.ImageFilter(references=["tiny"])))
    assert list(page.images) == []
    assert list(stub.GetImage(pb.GetImageRequest(image=BASE)).image.repo_tags) == [BASE]


def test_pull_reports_the_pulled_images_id_and_digest(
    stub: image_service_pb2_grpc.ImageServiceStub, podman: PodmanEngine, open_registry: Registry
) -> None:
    reference = f"{open_registry.address}/{unique_repo('podman-pull')}:1"
    built = _built(podman, reference, run=reference)
    pushed = podman.docker("push", reference).stdout
    # Gone entirely, so the pulled image has the registry's digest only.
    podman.docker("image", "rm", "--force", built)
    try:
        _, result = read_pull(stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60))
        image_id = podman.docker("image", "inspect", "--format", "{{.Id}}", reference).stdout
        assert result.image_id == image_id.strip() == built
        assert result.digest
        assert result.digest in pushed
    finally:
        podman.docker("image", "rm", "--force", reference, check=False)


@pytest.mark.parametrize(
    ("request_fields", "refused"),
    [
        ({"all": True}, "all=true"),
        ({"labels": ["org.imagesvc-test.a"], "exclude_labels": ["x"]}, "exclude_labels"),
        ({"labels": ["org.imagesvc-test.a", "org.imagesvc-test.b"]}, "several labels"),
    ],
)
def test_prunes_podman_would_get_wrong_are_refused(
    stub: image_service_pb2_grpc.ImageServiceStub,
    podman: PodmanEngine,
    request_fields: dict[str, object],
    refused: str,
) -> None:
    before = podman.docker("image", "ls", "--all", "--quiet", "--no-trunc").stdout
    with pytest.raises(grpc.RpcError) as caught:
        stub.PruneImages(pb.PruneImagesRequest(**request_fields), timeout=30)  # type: ignore[arg-type]
    error = caught.value
    assert isinstance(error, grpc.Call)
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "Podman" in (error.details() or "")
    assert refused in (error.details() or "")
    assert podman.docker("image", "ls", "--all", "--quiet", "--no-trunc").stdout == before


def test_registry_inspect_is_refused_saying_why(
    stub: image_service_pb2_grpc.ImageServiceStub, podman: PodmanEngine, open_registry: Registry
) -> None:
    # Podman's Docker API answers 404 to GET /distribution/{name}/json for every name.
    reference = f"{open_registry.address}/{unique_repo('podman-inspect')}:1"
    built = _built(podman, reference, run=reference)
    podman.docker("push", reference)
    podman.docker("image", "rm", "--force", built)
    try:
        read_pull(stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60))
        with pytest.raises(grpc.RpcError) as caught:
            stub.InspectRegistryImage(pb.InspectRegistryImageRequest(reference=reference))
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(caught.value).reason == "ENGINE_ERROR"
        assert "Podman's Docker API has no registry inspect" in str(caught.value.details())

        [update] = stub.CheckImageUpdates(
            pb.CheckImageUpdatesRequest(references=[reference])
        ).updates
        assert (update.status, update.reason) == (pb.UPDATE_STATUS_UNKNOWN, "ENGINE_ERROR")
        assert update.local_digests
        assert "Podman's Docker API has no registry inspect" in update.message
    finally:
        podman.docker("image", "rm", "--force", reference, check=False)
