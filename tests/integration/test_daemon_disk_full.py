"""A pull onto a daemon whose data root is full ends RESOURCE_EXHAUSTED / DAEMON_DISK_FULL
with a message saying the daemon's disk is full.

Each engine kind's dockerd gets its own base directory on a 64 MiB tmpfs (data root
included) and pulls an image with a 96 MiB layer from the open registry: the Engine
fails writing the blob with "no space left on device" (the classic store in its tmp
directory, the containerd store in its content ingest).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devtools.engine_kinds import kinds_named
from devtools.sandbox import BuiltImage, Engine, Registry, build_busybox_image
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.conftest import server_settings
from tests.integration.rpc_errors import error_info
from tests.integration.transfers import remove_local, unique

DATA_ROOT_MIB = 64
LAYER_MIB = 96
DOCKER_KINDS = ["docker-20.10", "docker-26", "docker-26-containerd"]


@pytest.fixture(scope="module")
def huge_reference(engine: Engine, busybox_image: BuiltImage, open_registry: Registry) -> str:
    """An image with a 96 MiB random layer, in the open registry only."""
    reference = f"{open_registry.address}/{unique('faults/huge-')}:1"
    build_busybox_image(
        engine, reference, extra_lines=[f"RUN dd if=/dev/urandom of=/blob bs=1M count={LAYER_MIB}"]
    )
    engine.docker("push", reference)
    remove_local(engine, reference)
    return reference


@pytest.fixture
def small_disk() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="isv-full-", dir="/tmp"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DATA_ROOT_MIB}m,mode=0700", "tmpfs", str(base)],
        check=True,
    )
    try:
        yield base
    finally:
        subprocess.run(["umount", str(base)], check=True)
        shutil.rmtree(base)


@pytest.mark.parametrize(
    "kind_name", [pytest.param(name, marks=pytest.mark.engine_kinds(name)) for name in DOCKER_KINDS]
)
def test_pull_onto_a_full_data_root(kind_name: str, small_disk: Path, huge_reference: str) -> None:
    (kind,) = kinds_named([kind_name])
    engine = kind.make(small_disk / "engine")
    engine.start()
    try:
        server = ThreadedServer(server_settings(engine.host))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = image_service_pb2_grpc.ImageServiceStub(channel)
                started = time.monotonic()
                with pytest.raises(grpc.RpcError) as caught:
                    for _ in stub.PullImage(
                        pb.PullImageRequest(reference=huge_reference), timeout=120
                    ):
                        pass
                took = time.monotonic() - started
                # The daemon is still there and answers.
                stub.ListImages(pb.ListImagesRequest(), timeout=10)
        finally:
            server.stop()
    finally:
        engine.stop()
        assert not engine.leftover_processes()
    error = caught.value
    print(f"\n{kind_name}: {error.code().name} after {took:.1f}s: {error.details()}")
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert error_info(error).reason == "DAEMON_DISK_FULL"
    assert "the Docker daemon's disk is full" in str(error.details())
    assert "no space left on device" in str(error.details())
