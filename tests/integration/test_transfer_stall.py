"""A pull that stops moving ends TRANSFER_STALLED after the stall timeout; a slow pull
that keeps moving runs on however long it takes.

The registry is behind a throttling proxy: trickling, or stalled mid-layer. The
server's stall timeout is short here (the default is 300 s, like containerd's), but
longer than an Engine takes to report bytes that trickle in: the containerd image store
reports a download's progress only per MiB.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from devtools.sandbox import BuiltImage, Registry, SandboxEngine, build_busybox_image
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.conftest import server_settings
from tests.integration.rpc_errors import error_info
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import local_id, read_pull, remove_local, unique

Stub = image_service_pb2_grpc.ImageServiceStub

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract

STALL_TIMEOUT = 2.5
LAYER_MIB = 8
LAYER_BYTES = LAYER_MIB * 1024 * 1024
RATE = 1024 * 1024  # bytes a second: the layer takes about 8 s, over 3 stall timeouts


@dataclass(frozen=True)
class RegistryImage:
    repository: str
    image_id: str


@pytest.fixture(scope="module")
def big_image(
    engine: SandboxEngine, open_registry: Registry, busybox_image: BuiltImage
) -> Iterator[RegistryImage]:
    """An image with an 8 MiB random layer in the open registry, not on the Engine."""
    repository = unique("team/stall-")
    direct = f"{open_registry.address}/{repository}:1"
    image_id = build_busybox_image(
        engine,
        direct,
        extra_lines=[f"RUN dd if=/dev/urandom of=/blob bs=1M count={LAYER_MIB}"],
    )
    engine.docker("push", direct)
    remove_local(engine, direct)
    yield RegistryImage(repository, image_id)
    remove_local(engine, direct)


@pytest.fixture(scope="module")
def stub(engine: SandboxEngine) -> Iterator[Stub]:
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
    stub: Stub, engine: SandboxEngine, proxy: ThrottleProxy, big_image: RegistryImage
) -> None:
    reference = f"{proxy.address}/{big_image.repository}:1"
    call = stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60)
    last_progress = time.monotonic()

    def read_until_it_ends() -> None:
        """Notes when a message last showed something move (the containerd store
        repeats a layer's unchanged progress every 100 ms)."""
        nonlocal last_progress
        seen: tuple[int, frozenset[tuple[str, str]]] | None = None
        for message in call:
            layers = frozenset((layer.layer_id, layer.state) for layer in message.progress.layers)
            now = (message.progress.bytes_done, layers | (seen[1] if seen else frozenset()))
            if now != seen:
                last_progress, seen = time.monotonic(), now
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


def test_a_slow_pull_that_keeps_moving_completes(
    stub: Stub, engine: SandboxEngine, proxy: ThrottleProxy, big_image: RegistryImage
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
