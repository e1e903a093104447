"""A bandwidth-limiting TCP proxy on 127.0.0.1 that records what passes through it.

Put it in front of a loopback registry to make a pull slow and observable: the proxy
counts connections (open and ever opened) and the bytes it forwards from the registry
to the client, so a test can see when the Docker daemon stops a transfer.

Threads, one listener plus two pumps per connection; loopback only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from devtools.closing import ClosedOnExit

_CHUNK = 4096


@dataclass
class ConnectionRecord:
    """One client connection through the proxy."""

    closed_at: float | None = None
    bytes_to_client: int = 0
    sockets: list[socket.socket] = field(default_factory=list)


class ThrottleProxy(ClosedOnExit):
    """Forwards 127.0.0.1:<port> to ``upstream`` (a loopback host:port).

    ``rate`` limits the bytes a second sent from upstream to the client, for each
    connection; ``None`` forwards at full speed and ``0`` stalls (holds everything
    back, as a registry that stopped answering). ``set_rate`` changes it at any time.
    ``upload_rate`` limits the other way (client to upstream, e.g. a push's layers).
    """

    def __init__(
        self, upstream: str, *, rate: float | None, upload_rate: float | None = None
    ) -> None:
        host, _, port = upstream.rpartition(":")
        if host != "127.0.0.1":
            raise ValueError(f"the proxy only forwards to 127.0.0.1, not {host!r}")
        self._upstream = (host, int(port))
        self._rate = rate
        self._upload_rate = upload_rate
        self._lock = threading.Lock()
        self._connections: list[ConnectionRecord] = []
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="proxy-accept")
        self._acceptor.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_rate(self, rate: float | None) -> None:
        with self._lock:
            self._rate = rate

    def set_upload_rate(self, rate: float | None) -> None:
        with self._lock:
            self._upload_rate = rate

    # Observations ---------------------------------------------------------------

    @property
    def connections_opened(self) -> int:
        with self._lock:
            return len(self._connections)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for c in self._connections if c.closed_at is None)

    @property
    def bytes_to_client(self) -> int:
        with self._lock:
            return sum(c.bytes_to_client for c in self._connections)

    def last_close(self) -> float | None:
        """When the last connection closed (monotonic), None while any is open."""
        with self._lock:
            if any(c.closed_at is None for c in self._connections):
                return None
            return max((c.closed_at or 0.0 for c in self._connections), default=None)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # Plumbing ---------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            record = ConnectionRecord(sockets=[client, upstream])
            with self._lock:
                self._connections.append(record)
            for target, name in (
                (self._downstream, "proxy-down"),
                (self._upstream_pump, "proxy-up"),
            ):
                thread = threading.Thread(target=target, args=(record,), name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _finish(self, record: ConnectionRecord) -> None:
        with self._lock:
            if record.closed_at is None:
                record.closed_at = time.monotonic()
        for sock in record.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _stalled(self) -> bool:
        with self._lock:
            return self._rate == 0

    def _upstream_pump(self, record: ConnectionRecord) -> None:
        """Client -> upstream (the requests), paced to the upload rate."""
        client, upstream = record.sockets
        try:
            while True:
                with self._lock:
                    upload_rate = self._upload_rate
                data = client.recv(_CHUNK if upload_rate else 65536)
                if not data:
                    break
                upstream.sendall(data)
                if upload_rate:
                    time.sleep(len(data) / upload_rate)
        except OSError:
            pass
        finally:
            self._finish(record)

    def _downstream(self, record: ConnectionRecord) -> None:
        """Upstream -> client (the responses), paced to the rate."""
        client, upstream = record.sockets
        try:
            while True:
                data = upstream.recv(_CHUNK)
                if not data:
                    break
                while self._stalled() and record.closed_at is None:
                    time.sleep(0.01)
                if record.closed_at is not None:
                    break
                client.sendall(data)
                with self._lock:
                    # The other pump may have seen the client close while this chunk was
                    # being sent: it went into a dead socket, so the client never took it.
                    # Counting it would make bytes_to_client move after the close.
                    if record.closed_at is not None:
                        break
                    record.bytes_to_client += len(data)
                    rate = self._rate
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            self._finish(record)

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(timeout=5)
        with self._lock:
            records = list(self._connections)
        for record in records:
            self._finish(record)
        for thread in self._threads:
            thread.join(timeout=5)
        for record in records:
            for sock in record.sockets:
                sock.close()
