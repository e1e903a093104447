"""A pull that stops moving ends TRANSFER_STALLED after the stall timeout; a slow pull
that keeps moving runs on however long it takes.

The registry is behind a throttling proxy: trickling (every message of the Engine
moves bytes) or stalled mid-layer (the Engine sends nothing more). The server's stall
timeout is short here; the default is 300 s, like containerd's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from devtools.sandbox import BuiltImage, Engine, Registry, build_busybox_image
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.conftest import server_settings
from tests.integration.rpc_errors import error_info
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import local_id, read_pull, registry_manifest, remove_local, unique

Stub = image_service_pb2_grpc.ImageServiceStub

STALL_TIMEOUT = 1.5
LAYER_MIB = 3
LAYER_BYTES = LAYER_MIB * 1024 * 1024
RATE = 640 * 1024  # bytes a second: the layer takes about 5 s, over 3 stall timeouts


@dataclass(frozen=True)
class RegistryImage:
    repository: str
    image_id: str


@pytest.fixture(scope="module")
def big_image(
    engine: Engine, open_registry: Registry, busybox_image: BuiltImage
) -> Iterator[RegistryImage]:
    """An image with a 3 MiB random layer in the open registry, not on the Engine."""
    repository = unique("team/stall-")
    direct = f"{open_registry.address}/{repository}:1"
    image_id = build_busybox_image(
        engine,
        direct,
        extra_lines=[f"RUN dd if=/dev/urandom of=/blob bs=1M count={LAYER_MIB}"],
    )
    engine.docker("push", direct)
    registry_manifest(open_registry, repository, "1")
    remove_local(engine, direct)
    yield RegistryImage(repository, image_id)
    remove_local(engine, direct)


@pytest.fixture(scope="module")
def stub(engine: Engine) -> Iterator[Stub]:
    server = ThreadedServer(
        server_settings(engine.host, transfer_stall_timeout_seconds=STALL_TIMEOUT)
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield image_service_pb2_grpc.ImageServiceStub(channel)
    finally:
        server.stop()


@pytest.fixture
def proxy(open_registry: Registry) -> Iterator[ThrottleProxy]:
    with ThrottleProxy(open_registry.address, rate=RATE) as running:
        yield running


def test_a_stalled_pull_ends_after_the_stall_timeout(
    stub: Stub, engine: Engine, proxy: ThrottleProxy, big_image: RegistryImage
) -> None:
    reference = f"{proxy.address}/{big_image.repository}:1"
    call = stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60)
    last_progress = time.monotonic()

    def read_until_it_ends() -> None:
        nonlocal last_progress
        for message in call:
            last_progress = time.monotonic()
            if any(layer.state == "Downloading" for layer in message.progress.layers):
                proxy.set_rate(0)

    try:
        with pytest.raises(grpc.RpcError) as caught:
            read_until_it_ends()
        quiet_for = time.monotonic() - last_progress
    finally:
        remove_local(engine, reference)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED, caught.value.details()
    assert error_info(caught.value).reason == "TRANSFER_STALLED"
    assert f"stalled: no bytes moved and no layer changed for {STALL_TIMEOUT:g} seconds" in (
        caught.value.details() or ""
    )
    # The server's clock starts at the last message that moved, a moment before the
    # client got it.
    assert STALL_TIMEOUT - 0.5 <= quiet_for <= STALL_TIMEOUT + 1.0, quiet_for
    # The service closed the Engine's response: the daemon drops the registry.
    proxy.set_rate(None)
    assert proxy.wait_for(lambda: proxy.open_connections == 0, timeout=5)


def test_a_slow_pull_that_keeps_moving_completes(
    stub: Stub, engine: Engine, proxy: ThrottleProxy, big_image: RegistryImage
) -> None:
    reference = f"{proxy.address}/{big_image.repository}:1"
    try:
        started = time.monotonic()
        progress, result = read_pull(
            stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60)
        )
        took = time.monotonic() - started
        assert result.image_id == big_image.image_id == local_id(engine, reference)
    finally:
        remove_local(engine, reference)
    assert took > 2 * STALL_TIMEOUT, f"the pull took only {took:.1f}s: it was not slow"
    assert progress[-1].bytes_done >= LAYER_BYTES
