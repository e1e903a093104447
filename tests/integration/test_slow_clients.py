"""Slow and idle clients of the HTTP port are bounded: a few hundred connections that
each send half a request head are closed once the header timeout passes, while /healthz
and a REST ListImages keep answering; an idle keep-alive connection is closed; and over
the port's connection limit, new connections are closed at once."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from devtools.sandbox import Engine
from imagesvc.server import ThreadedServer
from tests.integration.conftest import server_settings

SLOW_CONNECTIONS = 300  # a few hundred: the machine is shared
HEADER_TIMEOUT = 1.5
KEEPALIVE_TIMEOUT = 3.0
HALF_A_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
FULL_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture(scope="module")
def bounded_server(engine: Engine) -> Iterator[ThreadedServer]:
    server = ThreadedServer(
        server_settings(
            engine.host,
            http_header_timeout_seconds=HEADER_TIMEOUT,
            http_keepalive_timeout_seconds=KEEPALIVE_TIMEOUT,
            http_max_connections=SLOW_CONNECTIONS + 50,
        )
    )
    yield server
    server.stop()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _closed_after(connections: dict[socket.socket, float], within: float) -> dict[int, float]:
    """For each connection, seconds from its start (the value) until the server closed it."""
    closed: dict[int, float] = {}
    with selectors.DefaultSelector() as selector:
        for connection in connections:
            connection.setblocking(False)
            selector.register(connection, selectors.EVENT_READ)
        deadline = time.monotonic() + within
        while len(closed) < len(connections) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                try:
                    data = ready.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed[ready.fileno()] = time.monotonic() - connections[ready]
                    selector.unregister(ready)
    return closed


class _Prober:
    """Calls /healthz and a REST ListImages in a loop on a thread, recording each answer."""

    def __init__(self, port: int) -> None:
        self._base = f"http://127.0.0.1:{port}"
        self._stop = threading.Event()
        self.answers: list[tuple[str, int, float]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self._base, timeout=5) as client:
            while not self._stop.is_set():
                for path in ("/healthz", "/v1/images?pageSize=5"):
                    started = time.monotonic()
                    status = client.get(path).status_code
                    self.answers.append((path, status, time.monotonic() - started))
                time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_half_sent_heads_are_closed_on_time_while_others_are_served(
    bounded_server: ThreadedServer,
) -> None:
    prober = _Prober(bounded_server.http_port)
    slow: dict[socket.socket, float] = {}
    try:
        for _ in range(SLOW_CONNECTIONS):
            connection = _connect(bounded_server.http_port)
            slow[connection] = time.monotonic()
            connection.sendall(HALF_A_HEAD)
        closed = _closed_after(slow, within=HEADER_TIMEOUT + 10)
    finally:
        prober.stop()
        for connection in slow:
            connection.close()
    assert len(closed) == SLOW_CONNECTIONS, f"{SLOW_CONNECTIONS - len(closed)} still open"
    took = sorted(closed.values())
    print(f"closed after {took[0]:.2f} .. {took[-1]:.2f} s (header timeout {HEADER_TIMEOUT} s)")
    assert took[0] >= HEADER_TIMEOUT - 0.05
    assert took[-1] < HEADER_TIMEOUT + 3
    # Health and the API answered all along, promptly.
    paths = {path for path, _, _ in prober.answers}
    assert paths == {"/healthz", "/v1/images?pageSize=5"}, prober.answers
    assert all(status == 200 for _, status, _ in prober.answers), prober.answers
    slowest = max(seconds for _, _, seconds in prober.answers)
    print(f"{len(prober.answers)} answers meanwhile, the slowest in {slowest:.3f} s")
    assert slowest < 1.0


def test_a_request_then_silence_closes_after_the_keepalive_timeout(
    bounded_server: ThreadedServer,
) -> None:
    with _connect(bounded_server.http_port) as connection:
        connection.sendall(FULL_REQUEST)
        answered = connection.recv(65536)
        assert answered.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        closed = _closed_after({connection: started}, within=KEEPALIVE_TIMEOUT + 5)
    [took] = closed.values()
    # Idle after a response is the keep-alive timeout's, not the (shorter) header timeout's.
    assert KEEPALIVE_TIMEOUT - 0.1 <= took < KEEPALIVE_TIMEOUT + 2, took


def test_a_slow_head_on_a_kept_alive_connection_is_closed(
    bounded_server: ThreadedServer,
) -> None:
    with _connect(bounded_server.http_port) as connection:
        connection.sendall(FULL_REQUEST)
        assert connection.recv(65536).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.5)
        started = time.monotonic()
        connection.sendall(HALF_A_HEAD)
        closed = _closed_after({connection: started}, within=KEEPALIVE_TIMEOUT + 5)
    [took] = closed.values()
    assert HEADER_TIMEOUT - 0.05 <= took < HEADER_TIMEOUT + 1, took


def test_over_the_connection_limit_new_connections_are_closed_at_once(engine: Engine) -> None:
    limit = 20
    server = ThreadedServer(
        server_settings(engine.host, http_max_connections=limit, http_header_timeout_seconds=30)
    )
    held: list[socket.socket] = []
    try:
        for _ in range(limit):
            held.append(_connect(server.http_port))
        time.sleep(0.2)  # accepted by the server
        started = time.monotonic()
        surplus = {_connect(server.http_port): started for _ in range(5)}
        closed = _closed_after(surplus, within=5)
        for connection in surplus:
            connection.close()
        assert len(closed) == 5
        assert max(closed.values()) < 0.5, closed
        # Those within the limit are still open, and work.
        held[0].sendall(FULL_REQUEST)
        held[0].settimeout(5)
        assert held[0].recv(65536).startswith(b"HTTP/1.1 200 ")
        # A freed place is taken by the next client.
        held.pop().close()
        time.sleep(0.2)
        assert (
            httpx.get(f"http://127.0.0.1:{server.http_port}/healthz", timeout=5).status_code == 200
        )
    finally:
        for connection in held:
            connection.close()
        server.stop()
