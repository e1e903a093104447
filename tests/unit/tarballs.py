"""Build contexts made in memory."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import IO, Any

DOCKERFILE = b"FROM busybox:1.36\nRUN true\n"


class CountingSource(io.BytesIO):
    """Records the furthest byte read, to show what a tar reader never looked at."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self.furthest = 0

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self.furthest = max(self.furthest, self.tell())
        return chunk


def make_tar(files: Mapping[str, bytes], *, compress: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def regular_files(data: bytes) -> dict[str, bytes]:
    """The regular files of a (plain or gzip) tar archive: path -> content."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for member in archive:
            extracted = archive.extractfile(member) if member.isreg() else None
            if extracted is not None:
                files[member.name.removeprefix("./")] = extracted.read()
    return files


def context_tar(*, compress: bool = False, extra: Mapping[str, bytes] | None = None) -> bytes:
    return make_tar({"Dockerfile": DOCKERFILE, **(extra or {})}, compress=compress)


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class ChunkSource:
    """An async iterator over chunks that records how many the consumer took."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = list(chunks)
        self.taken = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self.taken >= len(self._chunks):
            raise StopAsyncIteration
        chunk = self._chunks[self.taken]
        self.taken += 1
        return chunk

    @property
    def total(self) -> int:
        return len(self._chunks)


def file_of(context: Any) -> IO[bytes]:
    """The spool file of a checked context or archive (None only when sent to a pipe)."""
    file: IO[bytes] | None = context.file
    assert file is not None
    return file
