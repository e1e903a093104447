"""A pull the client abandons (cancel or deadline) stops on the Docker daemon too.

The pull goes through a throttling proxy in front of the open registry, so it is slow
and the proxy sees the daemon's registry connections: when the service closes the
Engine response, the daemon cancels the download and closes them. Then the throttle
is lifted: a daemon still pulling would now finish within a second or two, so the
image must still be missing after a longer wait.

Each test runs twice: with the layer trickling in ("throttled"), and with the registry
stalled mid-layer ("stalled"). While stalled the Engine sends no progress, so nothing
but the service actively closing the Engine response can end the daemon's pull (when
bytes flow, a response dropped without close() is also closed by garbage collection
at the next progress line).
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
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import (
    local_id,
    local_image,
    read_pull,
    read_push,
    registry_manifest,
    remove_local,
    unique,
)

Stub = image_service_pb2_grpc.ImageServiceStub

LAYER_MIB = 16
LAYER_BYTES = LAYER_MIB * 1024 * 1024
RATE = 200 * 1024  # bytes a second: the layer would take ~80 s
# How long the daemon may take to drop its registry connections after the cancel.
STOP_WITHIN = 5.0
# After lifting the throttle, how long a pull that kept going would have to finish.
# The unthrottled pull at the end of each test must take less than this.
AFTER_CANCEL_WAIT = 3.0
MODES = ["throttled", "stalled"]
# Bytes a stopped daemon may still take from a resumed registry (a chunk or two).
RESUME_ALLOWANCE = 64 * 1024


@dataclass(frozen=True)
class BigImage:
    repository: str
    image_id: str
    digest: str


@pytest.fixture(scope="module")
def big_image(
    engine: Engine, open_registry: Registry, busybox_image: BuiltImage
) -> Iterator[BigImage]:
    """An image with a 16 MiB random layer in the open registry, not on the Engine."""
    repository = unique("team/big-")
    direct = f"{open_registry.address}/{repository}:1"
    image_id = build_busybox_image(
        engine,
        direct,
        extra_lines=[f"RUN dd if=/dev/urandom of=/blob bs=1M count={LAYER_MIB}"],
    )
    engine.docker("push", direct)
    digest = registry_manifest(open_registry, repository, "1").digest
    remove_local(engine, direct)
    assert local_id(engine, image_id) is None
    yield BigImage(repository, image_id, digest)
    remove_local(engine, direct)


@pytest.fixture
def proxy(open_registry: Registry) -> Iterator[ThrottleProxy]:
    with ThrottleProxy(open_registry.address, rate=RATE) as running:
        yield running


def _read_until_downloading(call: Iterator[pb.PullImageResponse]) -> list[pb.PullImageResponse]:
    """Reads the stream until a layer reports "Downloading"."""
    received: list[pb.PullImageResponse] = []
    for message in call:
        received.append(message)
        assert message.WhichOneof("kind") == "progress", "the pull finished before cancel"
        if any(layer.state == "Downloading" for layer in message.progress.layers):
            return received
    raise AssertionError(f"the stream ended without a Downloading layer: {received}")


def _stall(proxy: ThrottleProxy) -> None:
    """Stops the registry's bytes and waits until none are in flight."""
    proxy.set_rate(0)
    last = -1
    while proxy.bytes_to_client != last:
        last = proxy.bytes_to_client
        time.sleep(0.2)


def _assert_daemon_stopped(
    engine: Engine, proxy: ThrottleProxy, reference: str, since: float, mode: str
) -> float:
    """The daemon dropped its registry connections and stopped reading; returns how long
    after `since` (the cancel, or the resume of a stalled registry) they closed."""
    if mode == "stalled":
        # dockerd 20.10 cancels a download by closing a pipe in front of the blob's body,
        # so a read blocked on a stalled registry only returns when more bytes come:
        # the connection stays open until then. Resume at the throttled rate: a daemon
        # told to stop closes it at the first chunk, one still pulling reads on (and
        # reports progress only after 1% of the layer, ~170 KB).
        time.sleep(1.0)
        stalled_connections = proxy.open_connections
        before_resume = proxy.bytes_to_client
        since = time.monotonic()
        proxy.set_rate(RATE)
    assert proxy.wait_for(lambda: proxy.open_connections == 0, timeout=STOP_WITHIN), (
        f"{proxy.open_connections} registry connection(s) still open {STOP_WITHIN}s after"
        " the client went away"
    )
    closed = proxy.last_close()
    assert closed is not None
    stopped_after = max(0.0, closed - since)
    forwarded = proxy.bytes_to_client
    assert forwarded < LAYER_BYTES // 2, "most of the layer went through before the stop"
    if mode == "stalled":
        after_resume = forwarded - before_resume
        assert after_resume < RESUME_ALLOWANCE, (
            f"the daemon read {after_resume} more bytes after the registry resumed: it was"
            " still pulling"
        )
        print(
            f"\n{stalled_connections} connection(s) still open while stalled;"
            f" {after_resume} bytes taken after the resume"
        )
    time.sleep(1.0)
    assert proxy.bytes_to_client == forwarded, "bytes still flow after the connections closed"

    # Lift the throttle: a pull still going on would be done well within the wait.
    opened = proxy.connections_opened
    proxy.set_rate(None)
    time.sleep(AFTER_CANCEL_WAIT)
    assert proxy.connections_opened == opened, "the daemon came back to the registry"
    assert proxy.bytes_to_client == forwarded
    assert local_image(engine, reference) is None
    return stopped_after


def _stop_origin(mode: str, event: str) -> str:
    return "the registry resumed" if mode == "stalled" else event


def _assert_still_serves(stub: Stub, engine: Engine, reference: str, big: BigImage) -> float:
    """A full pull through the (now unthrottled) proxy works; returns how long it took."""
    started = time.monotonic()
    progress, result = read_pull(
        stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60)
    )
    took = time.monotonic() - started
    assert result.image_id == big.image_id == local_id(engine, reference)
    assert result.digest == big.digest
    assert progress[-1].bytes_done == progress[-1].bytes_total >= LAYER_BYTES
    # The wait after the cancel was long enough for an abandoned pull to have finished.
    assert took < AFTER_CANCEL_WAIT, f"an unthrottled pull took {took:.1f}s"
    return took


@pytest.mark.parametrize("mode", MODES)
def test_cancelled_pull_stops_on_the_daemon(
    stub: Stub, engine: Engine, proxy: ThrottleProxy, big_image: BigImage, mode: str
) -> None:
    reference = f"{proxy.address}/{big_image.repository}:1"
    assert local_image(engine, reference) is None
    try:
        started = time.monotonic()
        call = stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60)
        _read_until_downloading(call)
        downloading_after = time.monotonic() - started
        assert proxy.open_connections >= 1
        assert 0 < proxy.bytes_to_client < LAYER_BYTES // 2
        if mode == "stalled":
            _stall(proxy)

        cancelled = time.monotonic()
        assert call.cancel()
        with pytest.raises(grpc.RpcError) as caught:
            next(call)
        assert caught.value.code() is grpc.StatusCode.CANCELLED

        stopped_after = _assert_daemon_stopped(engine, proxy, reference, cancelled, mode)
        took = _assert_still_serves(stub, engine, reference, big_image)
        print(
            f"\ncancel ({mode}): Downloading after {downloading_after:.2f}s; daemon closed its"
            f" registry connections {stopped_after:.3f}s after {_stop_origin(mode, 'the cancel')};"
            f" unthrottled pull {took:.2f}s"
        )
    finally:
        remove_local(engine, reference)


@pytest.mark.parametrize("mode", MODES)
def test_pull_past_its_deadline_stops_on_the_daemon(
    stub: Stub, engine: Engine, proxy: ThrottleProxy, big_image: BigImage, mode: str
) -> None:
    reference = f"{proxy.address}/{big_image.repository}:1"
    assert local_image(engine, reference) is None
    deadline = 3.0
    try:
        received: list[pb.PullImageResponse] = []
        started = time.monotonic()
        call = stub.PullImage(pb.PullImageRequest(reference=reference), timeout=deadline)

        def read_all() -> None:
            for message in call:
                received.append(message)
                states = {layer.state for layer in message.progress.layers}
                if mode == "stalled" and "Downloading" in states:
                    proxy.set_rate(0)

        with pytest.raises(grpc.RpcError) as caught:
            read_all()
        expired = time.monotonic()
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert expired - started >= deadline - 0.1
        # The deadline struck mid-download, not before the pull began.
        states = {layer.state for m in received for layer in m.progress.layers}
        assert "Downloading" in states
        assert all(m.WhichOneof("kind") == "progress" for m in received)
        assert proxy.bytes_to_client > 0

        stopped_after = _assert_daemon_stopped(engine, proxy, reference, expired, mode)
        took = _assert_still_serves(stub, engine, reference, big_image)
        print(
            f"\ndeadline ({mode}): daemon closed its registry connections {stopped_after:.3f}s"
            f" after {_stop_origin(mode, 'the deadline')}; unthrottled pull {took:.2f}s"
        )
    finally:
        remove_local(engine, reference)


@pytest.fixture
def one_thread_stub(engine: Engine) -> Iterator[Stub]:
    """A server with one thread for quick Engine calls and one for streams."""
    server = ThreadedServer(server_settings(engine.host, docker_workers=1, stream_workers=1))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield image_service_pb2_grpc.ImageServiceStub(channel)
    finally:
        server.stop()


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_pull_abandoned_before_the_engine_answers_is_aborted(
    one_thread_stub: Stub,
    engine: Engine,
    open_registry: Registry,
    proxy: ThrottleProxy,
    big_image: BigImage,
    how: str,
) -> None:
    """The registry answers nothing, so neither does the Engine (it sends its response
    headers with the first progress line): the service must abort the request it is
    still waiting on, not leave a thread blocked and the daemon pulling."""
    proxy.set_rate(0)
    reference = f"{proxy.address}/{big_image.repository}:1"
    try:
        if how == "cancel":
            call = one_thread_stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60)
            assert proxy.wait_for(lambda: proxy.connections_opened >= 1, timeout=10)
            time.sleep(0.5)
            assert call.cancel()
            code = grpc.StatusCode.CANCELLED
        else:
            call = one_thread_stub.PullImage(pb.PullImageRequest(reference=reference), timeout=2)
            code = grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.RpcError) as caught:
            next(call)
        assert caught.value.code() is code
        assert proxy.connections_opened >= 1, "the daemon never reached the registry"

        # The registry is still stalled, yet the service's one stream thread is free.
        other = f"{open_registry.address}/{unique('team/after-')}:1"
        build_busybox_image(engine, other, extra_lines=[f"RUN echo {unique('')} > /id"])
        try:
            _, pushed = read_push(
                one_thread_stub.PushImage(pb.PushImageRequest(reference=other), timeout=15)
            )
            assert (
                pushed.digest
                == registry_manifest(
                    open_registry, other.split("/", 1)[1].rsplit(":", 1)[0], "1"
                ).digest
            )
        finally:
            remove_local(engine, other)

        # Once the registry answers, the daemon (whose client is gone) stops too.
        opened = proxy.connections_opened
        proxy.set_rate(None)
        assert proxy.wait_for(lambda: proxy.open_connections == 0, timeout=STOP_WITHIN)
        time.sleep(AFTER_CANCEL_WAIT)
        # It goes no further than the request it was waiting on (no manifest, no blob).
        assert proxy.connections_opened == opened, "the daemon went on pulling"
        assert local_image(engine, reference) is None
    finally:
        remove_local(engine, reference)
