"""A pull, push or build whose Engine stream stays silent too long ends with
DEADLINE_EXCEEDED, and the daemon-side work is stopped."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

from devtools.sandbox import BuiltImage, Engine
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.builds import make_tar
from tests.integration.conftest import server_settings
from tests.integration.rpc_errors import error_info


@pytest.fixture
def impatient_stub(engine: Engine) -> Iterator[image_service_pb2_grpc.ImageServiceStub]:
    server = ThreadedServer(server_settings(engine.host, stream_idle_timeout_seconds=1.5))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield image_service_pb2_grpc.ImageServiceStub(channel)
    server.stop()


def test_silent_build_step_hits_the_idle_timeout(
    impatient_stub: image_service_pb2_grpc.ImageServiceStub,
    engine: Engine,
    busybox_image: BuiltImage,
) -> None:
    tag = f"imagesvc-test/idle-{uuid.uuid4().hex[:8]}:1"
    dockerfile = f"FROM {busybox_image.tag}\nRUN sleep 20\n"

    def requests() -> Iterator[pb.BuildImageRequest]:
        yield pb.BuildImageRequest(options=pb.BuildOptions(tags=[tag]))
        yield pb.BuildImageRequest(context_chunk=make_tar({"Dockerfile": dockerfile}))

    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as failure:
        for _ in impatient_stub.BuildImage(requests(), timeout=60):
            pass
    elapsed = time.monotonic() - started

    assert failure.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert error_info(failure.value).reason == "DAEMON_TIMEOUT"
    assert "sent nothing" in (failure.value.details() or "")
    assert elapsed < 15, f"the idle timeout did not end the build ({elapsed:.1f} s)"
    # Closing the Engine response cancels the build: its container goes away and the
    # tag never appears, although the step would have finished after 20 s.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        running = engine.docker("ps", "-q", "--filter", f"ancestor={busybox_image.id}").stdout
        if not running.strip():
            break
        time.sleep(0.2)
    assert not running.strip(), "the build container is still running"
    assert engine.docker("image", "inspect", tag, check=False).returncode != 0
