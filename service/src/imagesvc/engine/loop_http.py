"""A streamed Engine GET read on the event loop: no thread between the Engine and the caller.

docker-py reads a response in a pool thread; for an image export that thread and the
event loop sending gRPC messages fight over the GIL, and the two together reach a third
of what either does alone (docs/development.md, issue 16). Here the request is written
and the response read on the loop itself, through a non-blocking socket (unix, or plain
TCP), with a small HTTP/1.1 client: one request per connection (`Connection: close`),
chunked or Content-Length bodies, reads of up to 1 MiB at a time.

TLS (and ssh://) Engines are not spoken to here: `loop_endpoint` returns None for them
and the adapter keeps docker-py's path.

Failures are raised as `EngineHTTPError` (an HTTP error status and the Engine's message),
`EngineIdleError` (nothing arrived within the idle timeout), `EngineConnectionLost` or
OSError (connect refused, socket missing, reset): the adapter's `_translate_errors` maps
them, with engine/errors.py's table, to core errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# An error body (or a header block) larger than this is not an Engine answer.
_MAX_HEADER_BYTES = 64 * 1024
_MAX_ERROR_BODY_BYTES = 1024 * 1024
# The receive buffer holds a whole chunk and this much more: the chunk-size lines
# between its pieces (the Engine writes 32 KiB pieces) and what one read brings beyond.
_SPARE_BYTES = 2 * _MAX_HEADER_BYTES
# A read asks for the rest of the chunk being assembled and this much more (the next
# size line, and the start of the next chunk).
_READ_SLACK = 16 * 1024


class EngineHTTPError(Exception):
    """The Engine answered with an HTTP error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class EngineIdleError(Exception):
    """The Engine sent nothing for longer than the idle timeout."""


class EngineConnectionLost(Exception):
    """The Engine's connection ended before the response did (or the answer was not HTTP)."""


@dataclass(frozen=True, slots=True)
class LoopEndpoint:
    """Where the Engine listens: a unix socket path, or a plain TCP host and port."""

    unix_path: str = ""
    host: str = ""
    port: int = 0

    @property
    def host_header(self) -> str:
        return f"{self.host}:{self.port}" if self.host else "localhost"


def loop_endpoint(base_url: str, *, tls: bool) -> LoopEndpoint | None:
    """The endpoint of DOCKER_HOST when it is a unix socket or plain TCP; None otherwise
    (TLS, ssh://, npipe): those keep docker-py's path."""
    if base_url.startswith(("unix://", "http+unix://")):
        path = base_url.split("://", 1)[1]
        return LoopEndpoint(unix_path=path if path.startswith("/") else f"/{path}")
    if tls or not base_url.startswith(("tcp://", "http://")):
        return None
    parts = urlsplit(base_url)
    if not parts.hostname:
        return None
    return LoopEndpoint(host=parts.hostname, port=parts.port or 2375)


class LoopEngineBytes:
    """The raw body of an Engine GET, read on the event loop in chunks of about
    `chunk_size` bytes; `read()` sends the request on its first call and returns b"" at
    the end. `close()` closes the connection at once (the Engine then stops the work);
    later reads return b"".

    One reader at a time: `read()` is not called again before the previous one returned.
    """

    def __init__(
        self,
        endpoint: LoopEndpoint,
        target: str,
        *,
        chunk_size: int,
        connect_timeout: float,
        idle_timeout: float | None,
    ) -> None:
        self._endpoint = endpoint
        self._target = target
        self._chunk_size = chunk_size
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._sock: socket.socket | None = None
        self._closed = False
        self._reading = False
        self._started = False
        self._buffer = bytearray(chunk_size + _SPARE_BYTES)
        self._view = memoryview(self._buffer)
        self._start = 0  # unread bytes are _buffer[_start:_end]
        self._end = 0
        self._eof = False
        # The chunk being assembled: views of _buffer (or bytes, once copied out), and
        # how much the next socket read may ask for.
        self._pieces: list[bytes | memoryview] = []
        self._read_limit = len(self._buffer)
        # Body framing: chunked (bytes left in the current chunk), a length, or to EOF.
        self._chunked = False
        self._left: int | None = 0  # None: until the connection ends
        self._done = False

    def close(self) -> None:
        """Shuts the connection down at once (the Engine sees it end and stops the work);
        the descriptor itself is closed here, or by a read still pending once it ends:
        closing it under that read would leave it in the loop's selector, where a reused
        descriptor number would then be watched (or unwatched) for the wrong socket."""
        self._closed = True
        sock = self._sock
        if sock is None:
            return
        with contextlib.suppress(OSError):  # already closed by the peer
            sock.shutdown(socket.SHUT_RDWR)
        if not self._reading:
            self._sock = None
            sock.close()

    async def read(self) -> bytes:
        if self._closed or self._done:
            return b""
        self._reading = True
        try:
            if not self._started:
                self._started = True
                await self._open()
            chunk = await self._read_body()
        except BaseException as exc:
            self._reading = False
            closed_meanwhile = self._closed
            self.close()
            if closed_meanwhile and isinstance(exc, Exception):
                return b""  # the read failed because the connection was closed under it
            raise
        self._reading = False
        if not chunk or self._closed:
            self.close()
        return chunk

    # The connection and the response head ---------------------------------------------

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        endpoint = self._endpoint
        if endpoint.unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[Any, ...] = endpoint.unix_path
        else:
            infos = await loop.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
        self._sock = sock
        sock.setblocking(False)
        async with asyncio.timeout(self._connect_timeout):
            await loop.sock_connect(sock, address)
        request = (
            f"GET {self._target} HTTP/1.1\r\n"
            f"Host: {endpoint.host_header}\r\n"
            "User-Agent: imagesvc\r\n"
            "Accept: */*\r\n"
            "Connection: close\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode("ascii"))
        status, headers = await self._read_head()
        encoding = headers.get("transfer-encoding", "").lower()
        if "chunked" in encoding:
            self._chunked = True
            self._left = 0
        elif "content-length" in headers:
            self._left = int(headers["content-length"])
        else:
            self._left = None
        if status >= 400:
            raise EngineHTTPError(status, await self._error_message(headers))

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        while (end := self._buffer.find(b"\r\n\r\n", self._start, self._end)) < 0:
            if self._end - self._start > _MAX_HEADER_BYTES or not await self._fill():
                raise EngineConnectionLost("the Engine closed the connection before answering")
        head = bytes(self._view[self._start : end]).decode("latin-1")
        self._start = end + 4
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise EngineConnectionLost(f"not an HTTP answer: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def _error_message(self, headers: dict[str, str]) -> str:
        body = bytearray()
        while len(body) < _MAX_ERROR_BODY_BYTES and (piece := await self._read_body()):
            body += piece
        text = body.decode(errors="replace")
        if "json" in headers.get("content-type", ""):
            with contextlib.suppress(ValueError, AttributeError):
                return str(json.loads(text).get("message") or text)
        return text

    # The body ---------------------------------------------------------------------------

    async def _fill(self) -> bool:
        """Reads up to `_read_limit` more bytes into the buffer; False at the end of the
        connection. A full buffer is compacted first (unread bytes to its front), once
        the pieces of the chunk being assembled are copied out of it: they are views of
        the bytes that would move. That only happens when size lines or a head fill the
        spare room, not for the Engine's archives."""
        if self._eof:
            return False
        if self._start == self._end and not self._pieces:
            self._start = self._end = 0
        elif self._end == len(self._buffer):
            if self._pieces:
                self._pieces[:] = [b"".join(self._pieces)]
            self._compact()
        sock = self._sock
        if sock is None:
            return False
        target = self._view[self._end : self._end + self._read_limit]
        try:
            # Data is nearly always waiting (the Engine writes faster than a chunk is
            # sent on): read it at once, without the loop's waiting read and its timer.
            received = sock.recv_into(target)
        except (BlockingIOError, InterruptedError):
            received = await self._receive_when_ready(sock, target)
        if received == 0:
            self._eof = True
            return False
        self._end += received
        return True

    async def _receive_when_ready(self, sock: socket.socket, target: memoryview) -> int:
        loop = asyncio.get_running_loop()
        if self._idle_timeout is None:
            return await loop.sock_recv_into(sock, target)
        try:
            async with asyncio.timeout(self._idle_timeout):
                return await loop.sock_recv_into(sock, target)
        except TimeoutError as exc:
            raise EngineIdleError("the Engine sent nothing for too long") from exc

    def _compact(self) -> None:
        unread = self._end - self._start
        self._buffer[:unread] = self._view[self._start : self._end]
        self._start, self._end = 0, unread

    async def _read_body(self) -> bytes:
        """Up to `chunk_size` bytes of the body, assembled from views of the receive
        buffer and joined once (the only copy). Unread bytes move to the buffer's front
        first, so that the chunk and the size lines between its pieces fit behind them."""
        if self._start:
            self._compact()
        pieces = self._pieces = []
        wanted = self._chunk_size
        try:
            while wanted and not self._done:
                if self._left == 0:
                    if not self._chunked:
                        self._done = True
                        break
                    if not self._next_chunk_in_buffer():
                        self._read_limit = _READ_SLACK
                        await self._next_chunk()
                    continue
                if self._start == self._end:
                    self._read_limit = wanted + _READ_SLACK
                    if not await self._fill():
                        if self._left is None:  # the body runs to the end of the connection
                            self._done = True
                            break
                        raise EngineConnectionLost("the Engine's response ended early")
                    continue
                take = min(self._end - self._start, wanted)
                if self._left is not None:
                    take = min(take, self._left)
                    self._left -= take
                pieces.append(self._view[self._start : self._start + take])
                self._start += take
                wanted -= take
            if len(pieces) == 1 and isinstance(pieces[0], bytes):
                return pieces[0]
            return b"".join(pieces)
        finally:
            self._pieces = []
            self._read_limit = len(self._buffer)

    def _next_chunk_in_buffer(self) -> bool:
        """Reads the next chunk's size line from the buffer when it is there whole, as
        it is for nearly every chunk (no await); False leaves it to `_next_chunk`, and
        the last chunk (size 0, then trailers) always."""
        buffer, start, end = self._buffer, self._start, self._end
        line_end = buffer.find(b"\r\n", start, end)
        if line_end == start:  # the CRLF that ends the previous chunk's data
            start += 2
            line_end = buffer.find(b"\r\n", start, end)
        if line_end < 0:
            return False
        size = _chunk_size_of(buffer[start:line_end])
        if size == 0:
            return False
        self._start = line_end + 2
        self._left = size
        return True

    async def _next_chunk(self) -> None:
        """Reads the next chunk's size line (after the previous chunk's CRLF); at the last
        chunk, reads the trailers and marks the body done."""
        line = await self._line()
        if not line:  # the CRLF that ends the previous chunk's data
            line = await self._line()
        size = _chunk_size_of(line)
        if size == 0:
            while await self._line():  # trailers, up to the empty line
                pass
            self._done = True
        self._left = size

    async def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n", self._start, self._end)) < 0:
            if self._end - self._start > _MAX_HEADER_BYTES or not await self._fill():
                raise EngineConnectionLost("the Engine's response ended early")
        line = bytes(self._view[self._start : end])
        self._start = end + 2
        return line


def _chunk_size_of(line: bytes | bytearray) -> int:
    try:
        return int(line.split(b";", 1)[0].strip(), 16)
    except ValueError as exc:
        raise EngineConnectionLost(f"bad chunk size line: {bytes(line[:40])!r}") from exc
