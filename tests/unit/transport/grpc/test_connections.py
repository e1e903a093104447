"""The gRPC port's connection bounds, on a real grpc.aio server: an idle connection and
an old one are sent away (GOAWAY) and closed by the server at the configured time."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from imagesvc.config import Settings
from imagesvc.server import ThreadedServer
from imagesvc.transport.grpc.connections import ConnectionBounds
from tests.unit.fakes import FakeDockerPort

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_EMPTY_SETTINGS = bytes(3) + bytes([4, 0]) + bytes(4)  # length 0, SETTINGS, stream 0
_GOAWAY = 7


@contextmanager
def _server(**overrides: float) -> Iterator[ThreadedServer]:
    settings = Settings(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", **overrides)  # type: ignore[arg-type]
    server = ThreadedServer(settings, FakeDockerPort())
    try:
        yield server
    finally:
        server.stop()


def _frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        yield data[3], data[9 : 9 + length]
        data = data[9 + length :]


def _open_http2(port: int) -> socket.socket:
    """A client connection that sends the HTTP/2 preface and nothing more: no call."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(_PREFACE + _EMPTY_SETTINGS)
    return connection


def _until_closed(connection: socket.socket, within: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and everything it sent."""
    started = time.monotonic()
    received = b""
    connection.settimeout(within)
    while chunk := connection.recv(65536):
        received += chunk
    return time.monotonic() - started, received


def _goaway_debug(received: bytes) -> list[bytes]:
    """The debug text of each GOAWAY, after its last stream id and error code."""
    return [payload[8:] for kind, payload in _frames(received) if kind == _GOAWAY]


def test_an_idle_connection_is_closed_after_the_idle_time() -> None:
    with _server(grpc_max_connection_idle_seconds=1.0) as server:
        connection = _open_http2(server.port)
        try:
            took, received = _until_closed(connection, within=10)
        finally:
            connection.close()
    assert 0.9 <= took < 3, took
    assert _goaway_debug(received) == [b"connection idle"]


def test_an_old_connection_is_sent_away_after_its_age() -> None:
    with _server(
        grpc_max_connection_idle_seconds=0,
        grpc_max_connection_age_seconds=1.0,
        grpc_max_connection_age_grace_seconds=0.5,
    ) as server:
        connection = _open_http2(server.port)
        try:
            took, received = _until_closed(connection, within=10)
        finally:
            connection.close()
    # grpc core adds up to 10 % of jitter to the age; then the grace (this client does
    # not close on GOAWAY by itself).
    assert 1.3 <= took < 4, took
    # The first GOAWAY announces it, the second ends the connection after the grace.
    assert _goaway_debug(received) == [b"max_age", b"max connection age"]


def test_defaults_keep_an_idle_connection_open_a_while() -> None:
    with _server() as server:
        connection = _open_http2(server.port)
        try:
            connection.settimeout(2)
            received = b""
            try:
                while chunk := connection.recv(65536):
                    received += chunk
                closed = True
            except TimeoutError:
                closed = False
        finally:
            connection.close()
    assert not closed
    assert _GOAWAY not in [kind for kind, _ in _frames(received)]


def test_channel_options() -> None:
    bounds = ConnectionBounds(max_idle=300, max_age=0, max_age_grace=1.5, min_ping_interval=30)
    assert dict(bounds.channel_options()) == {
        "grpc.max_connection_idle_ms": 300_000,
        "grpc.max_connection_age_ms": 2**31 - 1,  # no limit
        "grpc.max_connection_age_grace_ms": 1500,
        "grpc.http2.min_ping_interval_without_data_ms": 30_000,
        "grpc.keepalive_permit_without_calls": 0,
    }
