"""A socket in front of an Engine's unix socket that forwards everything and counts the
Engine API requests of one kind (e.g. the pulls: ``POST /v1.41/images/create``).

Give the service ``engine_proxy.host`` as its DOCKER_HOST to see how many requests it
sends the Engine. It listens on a unix socket, or on loopback TCP (``tcp=True``), with
TLS given an ``ssl.SSLContext``: the Engine as a ``tcp://`` or TLS DOCKER_HOST shows it.
Threads, one listener plus two pumps per connection.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import ssl
import tempfile
import threading
from pathlib import Path

from devtools.closing import ClosedOnExit

_CHUNK = 65536
# Longer than any request line counted: a line split between two reads is still seen.
_TAIL = 512


class EngineRequestCounter(ClosedOnExit):
    """Forwards unix://<path> to the Engine at ``engine_host`` (unix://...) and counts
    the requests whose method and path (without the API version) match ``request``,
    e.g. ``POST /images/create``."""

    def __init__(
        self,
        engine_host: str,
        *,
        request: str,
        tcp: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not engine_host.startswith("unix://"):
            raise ValueError(f"not a unix socket: {engine_host!r}")
        self._upstream = engine_host.removeprefix("unix://")
        method, _, path = request.partition(" ")
        self._pattern = re.compile(
            re.escape(method).encode() + rb" (?:/v[0-9.]+)?" + re.escape(path).encode() + rb"[? ]"
        )
        self._lock = threading.Lock()
        self._count = 0
        # Connections that carried a counted request and are still open (both ways).
        self._open_counted: set[int] = set()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        # Unix socket paths are short (108 bytes): a directory of its own under /tmp.
        self._directory = Path(tempfile.mkdtemp(prefix="isv-ep-", dir="/tmp"))
        self.path = self._directory / "engine.sock"
        self._tls = tls
        if tcp or tls is not None:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.bind(("127.0.0.1", 0))
            self._tcp_port: int = self._listener.getsockname()[1]
        else:
            self._tcp_port = 0
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(str(self.path))
        self._listener.listen(128)
        self._acceptor = threading.Thread(target=self._accept_loop, name="engine-proxy")
        self._acceptor.start()

    @property
    def host(self) -> str:
        if self._tcp_port:
            return f"tcp://127.0.0.1:{self._tcp_port}"
        return f"unix://{self.path}"

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def open_connections(self) -> int:
        """Connections that sent a counted request and neither end has closed yet."""
        with self._lock:
            return len(self._open_counted)

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._tls is not None:
                try:
                    client.settimeout(10)
                    client = self._tls.wrap_socket(client, server_side=True)
                    client.settimeout(None)
                except (OSError, ssl.SSLError):
                    client.close()  # a client that could not complete the handshake
                    continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self._upstream)
            except OSError:
                client.close()
                upstream.close()
                continue
            pair = (client, upstream)
            with self._lock:
                self._sockets += pair
            for source, target, counted in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(
                    target=self._pump, args=(source, target, counted), daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, target: socket.socket, counted: bool) -> None:
        tail = b""
        try:
            while data := source.recv(_CHUNK):
                if counted:
                    seen = tail + data
                    found = sum(1 for m in self._pattern.finditer(seen) if m.end() > len(tail))
                    tail = seen[-_TAIL:]
                    if found:
                        with self._lock:
                            self._count += found
                            self._open_counted.add(id(source))
                target.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open_counted.discard(id(source) if counted else id(target))
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        # shutdown() wakes the accept() blocked in the acceptor thread; close() would not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(5)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        for sock in sockets:
            sock.close()
        shutil.rmtree(self._directory, ignore_errors=True)
