"""The header timeout times the request head only: a head sent in pieces within the
time is served, a complete head whose body comes slowly is not cut, a head that does
not complete in time closes the connection."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from imagesvc.config import Settings
from imagesvc.server import ThreadedServer
from tests.unit.fakes import FakeDockerPort

HEADER_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    settings = Settings(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        http_header_timeout_seconds=HEADER_TIMEOUT,
    )
    server = ThreadedServer(settings, FakeDockerPort())
    yield server.http_port
    server.stop()


def _answer(connection: socket.socket) -> bytes:
    """What the server sends until it closes (or 5 s of silence)."""
    connection.settimeout(5)
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except TimeoutError:
        pass
    return received


def test_a_head_sent_in_pieces_within_the_time_is_served(http_port: int) -> None:
    with socket.create_connection(("127.0.0.1", http_port)) as connection:
        for piece in (
            b"GET /healthz HTTP/1.1\r\n",
            b"Host: 127.0.0.1\r\n",
            b"Connection: close\r\n",
        ):
            connection.sendall(piece)
            time.sleep(HEADER_TIMEOUT / 5)
        connection.sendall(b"\r\n")
        assert _answer(connection).startswith(b"HTTP/1.1 200 ")


def test_a_slow_body_after_a_complete_head_is_not_cut(http_port: int) -> None:
    body = b'{"auth": {}}'
    head = (
        b"POST /v1/registries:checkAuth HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", http_port)) as connection:
        connection.sendall(head)
        time.sleep(HEADER_TIMEOUT * 3)
        connection.sendall(body)
        answer = _answer(connection)
    # Answered (the empty auth is refused): the connection was not closed under it.
    assert answer.startswith(b"HTTP/1.1 400 "), answer


def test_an_incomplete_head_is_closed_after_the_time(http_port: int) -> None:
    with socket.create_connection(("127.0.0.1", http_port)) as connection:
        started = time.monotonic()
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert _answer(connection) == b""
        took = time.monotonic() - started
    assert HEADER_TIMEOUT - 0.05 <= took < HEADER_TIMEOUT + 1, took
