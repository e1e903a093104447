"""`imagesvc-cli build -`: what stdin holds, decided as the docker CLI does
(GetContextFromReader): a tar archive (plain or compressed) is the context as is;
anything else is a Dockerfile, sent in a context of its own."""

from __future__ import annotations

import io
import tarfile
from typing import IO

__all__ = ["HEADER_SIZE", "is_archive", "stdin_context"]

HEADER_SIZE = tarfile.BLOCKSIZE
# gzip, bzip2, xz, zstd: the compressions the docker CLI recognises.
_COMPRESSED = (b"\x1f\x8b\x08", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def is_archive(header: bytes) -> bool:
    """Whether the first bytes of a stream start a (possibly compressed) tar archive."""
    if header.startswith(_COMPRESSED):
        return True
    try:
        tarfile.TarInfo.frombuf(header[:HEADER_SIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


class _Rejoined(io.RawIOBase):
    """The bytes already read from a stream, then the rest of it."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_head(stream: IO[bytes]) -> bytes:
    """Up to HEADER_SIZE bytes (a pipe may hand them over in several reads)."""
    head = b""
    while len(head) < HEADER_SIZE:
        piece = stream.read(HEADER_SIZE - len(head))
        if not piece:
            break
        head += piece
    return head


def stdin_context(
    stream: IO[bytes], dockerfile: str | None
) -> tuple[IO[bytes] | bytes, str | None]:
    """(the context to send, the Dockerfile's name in it) for a build reading ``stream``.
    ``dockerfile`` (-f) names the Dockerfile inside an archive; with a Dockerfile on
    stdin there is nothing else to name, so it is ignored, as by the docker CLI."""
    head = _read_head(stream)
    if is_archive(head):
        return io.BufferedReader(_Rejoined(head, stream)), dockerfile
    content = head + stream.read()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mode = len(content), 0o644
        tar.addfile(info, io.BytesIO(content))
    return archive.getvalue(), "Dockerfile"
