"""1,000 pull streams abandoned by their clients, and clients that stop reading: nothing
is left behind in the server or on the Engine.

The server runs as a child process (``imagesvc serve``, default settings) so that its
/proc figures are its own. Pulls go through a throttling proxy in front of the open
registry, so every one is still transferring when its client leaves: over gRPC
(cancelled after the first message, or at once, maybe while queued for a pull slot) and
over REST (the response closed after its first line). Then clients that stop reading:
gRPC calls never read until their deadline passes, and REST connections that send a pull
and read nothing until they hang up.

A warm-up round of the same shape comes first. After the run and a short settle, the
server's descriptors, RSS and threads outside its Engine thread pools must be within
10 % of the figures after the warm-up; the pools' threads (named in the kernel) grow in
bursts and never shrink, so they must stay within the pools' bounds. The server must
hold no more connections to the Engine than after the warm-up, the daemon must have
dropped every registry transfer, and its socket must hold no more connections than
before.
"""

from __future__ import annotations

import concurrent.futures
import random
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest

from devtools.sandbox import BuiltImage, Engine, Registry
from devtools.served import ProcessFigures, ServedProcess, accepted_connections
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import push_big_image, remove_local, unique

STREAMS = 1000
WARMUP_STREAMS = 150
# The server's defaults: --docker-workers 16, 64 stream workers, one ping thread.
POOL_THREADS_BOUND = 16 + 64 + 1
STOP_READING = 24  # of each transport, at once (within the 8 pull slots + 64 queued)
CONCURRENCY = 12
LAYER_MIB = 8
RATE = 64 * 1024  # bytes a second: no pull finishes during the test
TOLERANCE = 1.10
SETTLE_SECONDS = 3.0


@pytest.fixture(scope="module")
def slow_repository(engine: Engine, busybox_image: BuiltImage, open_registry: Registry) -> str:
    repository = unique("faults/leaks-")
    push_big_image(engine, f"{open_registry.address}/{repository}:1", mib=LAYER_MIB)
    return repository


@pytest.fixture
def proxy(open_registry: Registry) -> Iterator[ThrottleProxy]:
    with ThrottleProxy(open_registry.address, rate=RATE) as running:
        yield running


@pytest.fixture
def served(engine: Engine) -> Iterator[ServedProcess]:
    with ServedProcess(engine.host) as running:
        yield running


class Clients:
    """The ways a client abandons a pull stream."""

    def __init__(self, served: ServedProcess, reference: str) -> None:
        self._reference = reference
        self._channel = grpc.insecure_channel(served.grpc_address)
        self._stub = image_service_pb2_grpc.ImageServiceStub(self._channel)
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{served.http_port}", timeout=60)
        self._http_port = served.http_port
        self.outcomes: dict[str, int] = {}
        self._lock = threading.Lock()

    def _count(self, what: str) -> None:
        with self._lock:
            self.outcomes[what] = self.outcomes.get(what, 0) + 1

    def grpc_cancel_after_first(self) -> None:
        call = self._stub.PullImage(pb.PullImageRequest(reference=self._reference), timeout=60)
        first = next(call)
        assert first.WhichOneof("kind") == "progress"
        call.cancel()
        self._count("gRPC cancelled after a message")

    def grpc_cancel_at_once(self) -> None:
        call = self._stub.PullImage(pb.PullImageRequest(reference=self._reference), timeout=60)
        time.sleep(random.uniform(0, 0.05))
        call.cancel()
        self._count("gRPC cancelled at once")

    def rest_close_after_first(self) -> None:
        with self._http.stream(
            "POST", "/v1/images:pull", json={"reference": self._reference}
        ) as response:
            assert response.status_code == 200
            line = next(response.iter_lines())
            assert '"result"' in line, line
        self._count("REST closed after a line")

    def grpc_stop_reading(self) -> None:
        call = self._stub.PullImage(pb.PullImageRequest(reference=self._reference), timeout=3)
        time.sleep(4)
        assert call.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        self._count("gRPC never read")

    def rest_stop_reading(self) -> None:
        body = f'{{"reference": "{self._reference}"}}'.encode()
        request = (
            b"POST /v1/images:pull HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        with socket.create_connection(("127.0.0.1", self._http_port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(request)
            time.sleep(3)  # reads nothing, then hangs up
        self._count("REST never read")

    def run(self, streams: int) -> None:
        kinds = [self.grpc_cancel_after_first, self.grpc_cancel_at_once]
        kinds += [self.rest_close_after_first] * 2
        with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
            for future in [pool.submit(kinds[i % len(kinds)]) for i in range(streams)]:
                future.result()
        with concurrent.futures.ThreadPoolExecutor(2 * STOP_READING) as pool:
            stopped = [pool.submit(self.grpc_stop_reading) for _ in range(STOP_READING)]
            stopped += [pool.submit(self.rest_stop_reading) for _ in range(STOP_READING)]
            for future in stopped:
                future.result()

    def close(self) -> None:
        self._channel.close()
        self._http.close()


def _settled(served: ServedProcess, proxy: ThrottleProxy) -> ProcessFigures:
    assert proxy.wait_for(lambda: proxy.open_connections == 0, timeout=20), (
        f"the daemon still has {proxy.open_connections} registry transfers open"
    )
    time.sleep(SETTLE_SECONDS)
    return served.figures()


def test_abandoned_streams_leave_nothing_behind(
    engine: Engine, served: ServedProcess, proxy: ThrottleProxy, slow_repository: str
) -> None:
    reference = f"{proxy.address}/{slow_repository}:1"
    clients = Clients(served, reference)
    try:
        clients.run(WARMUP_STREAMS)
        before = _settled(served, proxy)
        engine_before = accepted_connections(engine.socket_path)
        started = time.monotonic()
        clients.outcomes.clear()
        clients.run(STREAMS)
        took = time.monotonic() - started
        after = _settled(served, proxy)
        engine_after = accepted_connections(engine.socket_path)
    finally:
        clients.close()
    print(
        f"\n{sum(clients.outcomes.values())} streams in {took:.0f}s: {clients.outcomes}"
        f"\nbefore: {before.describe()}; Engine socket {engine_before} connections"
        f"\nafter:  {after.describe()}; Engine socket {engine_after} connections"
    )
    assert sum(clients.outcomes.values()) == STREAMS + 2 * STOP_READING
    assert after.fds <= before.fds * TOLERANCE
    other_threads_before = before.threads - before.pool_threads
    assert after.threads - after.pool_threads <= other_threads_before * TOLERANCE
    assert after.pool_threads <= POOL_THREADS_BOUND
    assert after.rss_bytes <= before.rss_bytes * TOLERANCE
    assert after.unix_sockets <= before.unix_sockets, "connections to the Engine were left open"
    assert engine_after <= engine_before, "the daemon holds connections it did not before"
    remove_local(engine, reference)
