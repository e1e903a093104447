"""The adapter's export read on the event loop (engine/loop_http.py) against a scripted
Engine on a unix socket: chunked and Content-Length bodies decoded whole, the request it
sends, HTTP errors and lost connections as the same core errors as docker-py's path, and
a close that ends the connection at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from imagesvc.core.errors import (
    DeadlineExceededError,
    EngineError,
    NotFoundError,
    Reason,
    UnavailableError,
)
from imagesvc.core.port import EngineBytes
from imagesvc.engine.docker_adapter import DockerAdapter
from imagesvc.engine.loop_http import LoopEndpoint, loop_endpoint
from tests.unit.aio import run

VERSION = json.dumps({"ApiVersion": "1.41", "Components": [{"Name": "Engine"}]}).encode()


def chunked(*pieces: bytes) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return body + b"0\r\n\r\n"


def answer(status: str, headers: dict[str, str], body: bytes) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


class ScriptedEngine:
    """Answers GET /version, and GET /images/get with `export(send)`, which writes raw
    bytes with `send` (then the connection closes); records the export request heads."""

    def __init__(self, path: Path, export: Callable[[Callable[[bytes], None]], None]) -> None:
        self.path = path
        self.export = export
        self.requests: list[str] = []
        self.export_closed = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            head = b""
            while b"\r\n\r\n" not in head:
                piece = connection.recv(4096)
                if not piece:
                    return
                head += piece
            request = head.decode()
            if " /version" in request.split("\r\n", 1)[0] or "/version " in request:
                headers = {"Content-Type": "application/json", "Content-Length": str(len(VERSION))}
                connection.sendall(answer("200 OK", headers, VERSION))
                return
            self.requests.append(request)
            try:
                self.export(connection.sendall)
                # Waits for the client to close (recv b"") or for a reset.
                connection.settimeout(10)
                while connection.recv(65536):
                    pass
            except OSError:
                pass
            self.export_closed.set()

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def socket_dir(tmp_path: Path) -> Iterator[Path]:
    # AF_UNIX paths are short: pytest's tmp_path may be too long.
    short = Path(f"/tmp/le-{os.getpid()}-{id(tmp_path)}")
    short.mkdir()
    try:
        yield short
    finally:
        for child in short.iterdir():
            child.unlink()
        short.rmdir()


@contextlib.contextmanager
def engine_with(
    socket_dir: Path, export: Callable[[Callable[[bytes], None]], None]
) -> Iterator[tuple[ScriptedEngine, DockerAdapter]]:
    engine = ScriptedEngine(socket_dir / "docker.sock", export)
    adapter = DockerAdapter(f"unix://{engine.path}", stream_idle_timeout=0.5)
    try:
        yield engine, adapter
    finally:
        adapter.close()
        engine.close()


async def read_all(archive: EngineBytes) -> bytes:
    data = bytearray()
    try:
        while chunk := await archive.read():
            assert len(chunk) <= 1000
            data += chunk
    finally:
        archive.close()
    return bytes(data)


def test_a_chunked_archive_is_read_whole_in_chunks_of_at_most_chunk_size(
    socket_dir: Path,
) -> None:
    pieces = [bytes([n % 256]) * (n * 37 % 2500 + 1) for n in range(60)]

    def export(send: Callable[[bytes], None]) -> None:
        send(answer("200 OK", {"Transfer-Encoding": "chunked"}, b""))
        wire = chunked(*pieces)
        for start in range(0, len(wire), 777):  # chunk lines split across reads
            send(wire[start : start + 777])

    with engine_with(socket_dir, export) as (engine, adapter):
        archive = adapter.export_images(["team/app:1.0", "other:2"], chunk_size=1000)
        assert run(read_all(archive)) == b"".join(pieces)
        request_line = engine.requests[0].split("\r\n", 1)[0]
        assert request_line == (
            "GET /v1.41/images/get?names=team%2Fapp%3A1.0&names=other%3A2 HTTP/1.1"
        )


def test_one_byte_chunks_whose_size_lines_outgrow_the_buffer_are_read_whole(
    socket_dir: Path,
) -> None:
    # A chunk is assembled from views of the receive buffer; size lines five times the
    # data fill its spare room, so the views held are copied out before it is compacted.
    data = os.urandom(64 * 1024)
    pieces = [data[n : n + 1] for n in range(len(data))]

    def export(send: Callable[[bytes], None]) -> None:
        send(answer("200 OK", {"Transfer-Encoding": "chunked"}, b""))
        wire = chunked(*pieces)
        for start in range(0, len(wire), 50_000):
            send(wire[start : start + 50_000])

    async def read_chunks(archive: EngineBytes) -> list[bytes]:
        try:
            return [chunk async for chunk in _chunks_of(archive)]
        finally:
            archive.close()

    with engine_with(socket_dir, export) as (_, adapter):
        chunks = run(read_chunks(adapter.export_images(["a:1"], chunk_size=32 * 1024)))
    assert b"".join(chunks) == data
    assert max(map(len, chunks)) <= 32 * 1024
    assert all(isinstance(chunk, bytes) for chunk in chunks)


async def _chunks_of(archive: EngineBytes) -> AsyncIterator[bytes]:
    while chunk := await archive.read():
        yield chunk


def test_a_content_length_archive_is_read_to_its_length(socket_dir: Path) -> None:
    body = os.urandom(5000)

    def export(send: Callable[[bytes], None]) -> None:
        send(answer("200 OK", {"Content-Length": str(len(body))}, body))

    with engine_with(socket_dir, export) as (_, adapter):
        assert run(read_all(adapter.export_images(["a:1"], chunk_size=1000))) == body


def test_an_unknown_image_is_not_found_as_through_docker_py(socket_dir: Path) -> None:
    message = json.dumps({"message": "reference does not exist"}).encode()

    def export(send: Callable[[bytes], None]) -> None:
        headers = {"Content-Type": "application/json", "Content-Length": str(len(message))}
        send(answer("404 Not Found", headers, message))

    with engine_with(socket_dir, export) as (_, adapter):
        with pytest.raises(NotFoundError) as caught:
            run(read_all(adapter.export_images(["gone:1"], chunk_size=1000)))
        assert caught.value.reason is Reason.IMAGE_NOT_FOUND
        assert "reference does not exist" in caught.value.message


def test_a_server_error_is_an_engine_error(socket_dir: Path) -> None:
    message = chunked(json.dumps({"message": "something broke"}).encode())

    def export(send: Callable[[bytes], None]) -> None:
        headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        send(answer("500 Internal Server Error", headers, message))

    with engine_with(socket_dir, export) as (_, adapter):
        with pytest.raises(EngineError) as caught:
            run(read_all(adapter.export_images(["a:1"], chunk_size=1000)))
        assert caught.value.message == "something broke"


def test_a_connection_lost_mid_archive_is_unavailable(socket_dir: Path) -> None:
    def export(send: Callable[[bytes], None]) -> None:
        send(answer("200 OK", {"Transfer-Encoding": "chunked"}, b"1000\r\n" + b"x" * 100))
        raise OSError("the Engine goes away")

    with engine_with(socket_dir, export) as (_, adapter):
        with pytest.raises(UnavailableError) as caught:
            run(read_all(adapter.export_images(["a:1"], chunk_size=1000)))
        assert caught.value.reason is Reason.DAEMON_UNAVAILABLE


def test_an_engine_that_sends_nothing_is_a_timeout(socket_dir: Path) -> None:
    def export(send: Callable[[bytes], None]) -> None:
        send(answer("200 OK", {"Transfer-Encoding": "chunked"}, b""))

    with engine_with(socket_dir, export) as (_, adapter):
        with pytest.raises(DeadlineExceededError) as caught:
            run(read_all(adapter.export_images(["a:1"], chunk_size=1000)))
        assert caught.value.reason is Reason.DAEMON_TIMEOUT


def test_a_missing_socket_is_daemon_unavailable(socket_dir: Path) -> None:
    adapter = DockerAdapter(f"unix://{socket_dir}/none.sock")
    adapter._negotiated = True  # no daemon to ask which kind it is
    try:
        with pytest.raises(UnavailableError) as caught:
            run(read_all(adapter.export_images(["a:1"], chunk_size=1000)))
        assert caught.value.reason is Reason.DAEMON_UNAVAILABLE
    finally:
        adapter.close()


def test_closing_after_a_cancelled_read_closes_the_connection_at_once(socket_dir: Path) -> None:
    def export(send: Callable[[bytes], None]) -> None:
        send(answer("200 OK", {"Transfer-Encoding": "chunked"}, chunked(b"first")[:-5]))

    with engine_with(socket_dir, export) as (engine, adapter):
        archive = adapter.export_images(["a:1"], chunk_size=5)

        async def scenario(archive: EngineBytes) -> bytes:
            first = await archive.read()
            reading = asyncio.create_task(archive.read())
            await asyncio.sleep(0.05)
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
            archive.close()
            return first

        assert run(scenario(archive)) == b"first"
        assert engine.export_closed.wait(2)
        assert run(archive.read()) == b""


@pytest.mark.parametrize(
    ("base_url", "tls", "expected"),
    [
        ("unix:///var/run/docker.sock", False, LoopEndpoint(unix_path="/var/run/docker.sock")),
        ("tcp://127.0.0.1:2375", False, LoopEndpoint(host="127.0.0.1", port=2375)),
        ("tcp://127.0.0.1:2376", True, None),
        ("ssh://user@host", False, None),
    ],
)
def test_only_unix_and_plain_tcp_engines_are_read_on_the_loop(
    base_url: str, tls: bool, expected: LoopEndpoint | None
) -> None:
    assert loop_endpoint(base_url, tls=tls) == expected


def test_closing_under_a_pending_read_ends_the_connection_at_once(socket_dir: Path) -> None:
    def export(send: Callable[[bytes], None]) -> None:
        send(answer("200 OK", {"Transfer-Encoding": "chunked"}, chunked(b"first")[:-5]))

    with engine_with(socket_dir, export) as (engine, adapter):
        archive = adapter.export_images(["a:1"], chunk_size=5)

        async def scenario(archive: EngineBytes) -> tuple[bytes, bytes]:
            first = await archive.read()
            reading = asyncio.create_task(archive.read())
            await asyncio.sleep(0.05)
            archive.close()  # the read is still pending: the Engine sees the end now
            assert await asyncio.to_thread(engine.export_closed.wait, 2)
            return first, await reading

        assert run(scenario(archive)) == (b"first", b"")
