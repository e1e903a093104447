"""A pull, push or build stream's connection never serves another call: closing the
stream shuts its socket down, which must not cut a call that took the connection from
docker-py's pool after the stream's body was read (issue 15's spurious UNAVAILABLE, and
the daemon's "context canceled" for a pull nobody cancelled).

docker-py keeps a pool per URL, so the call that could get a stream's connection is the
next identical one: a pull of the same image. The Engine is a keep-alive HTTP/1.1
stand-in on a unix socket: it answers the first pull with an HTTP error (whose body
docker-py reads, releasing the connection) and the next ones slowly, so that the failed
stream is closed while the next pull waits on its connection.
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from imagesvc.core.errors import EngineError, ImageServiceError
from imagesvc.engine.docker_adapter import DockerAdapter

ANSWERED_AFTER = 0.5
LINES = [{"status": "Pulling from team/app"}, {"status": "Status: Image is up to date"}]


class _Engine(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.pulls += 1  # type: ignore[attr-defined]
        if self.server.pulls == 1:  # type: ignore[attr-defined]
            self._answer(500, json.dumps({"message": "something broke"}).encode())
            return
        time.sleep(ANSWERED_AFTER)
        self._answer(200, b"".join(json.dumps(line).encode() + b"\r\n" for line in LINES))

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    connections = 0
    pulls = 0


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[tuple[str, _Server]]:
    path = tmp_path / "engine.sock"
    server = _Server(str(path), _Engine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"unix://{path}", server
    server.shutdown()
    server.server_close()


def test_closing_a_failed_stream_does_not_cut_the_next_call(
    engine_socket: tuple[str, _Server],
) -> None:
    host, server = engine_socket
    adapter = DockerAdapter(host, max_pool_size=1)
    adapter._negotiated = True  # the stand-in has no /version
    try:
        failed = adapter.pull("team/app", "1", platform="", auth=None)
        with pytest.raises(EngineError):
            next(failed)
        received: list[object] = []

        def pull_again() -> None:
            try:
                received.extend(adapter.pull("team/app", "1", platform="", auth=None))
            except ImageServiceError as error:
                received.append(error)

        waiting = threading.Thread(target=pull_again)
        waiting.start()
        time.sleep(ANSWERED_AFTER / 2)  # the second pull now waits on the Engine's answer
        failed.close()  # what the core does when it is done with a stream
        waiting.join(timeout=10)
        assert received == LINES
        assert server.connections == 2, "the second pull was sent on the first one's connection"
    finally:
        adapter.close()
