"""A build context directory packed the way ``docker build`` sends it: a tar stream of
everything .dockerignore does not exclude, produced piece by piece (never whole in memory).

Like the docker CLI: the Dockerfile and .dockerignore are always sent; entries are in
lexical order, owned by root (uid/gid 0), symlinks are stored as links (never followed),
hard links as links to the first name, sockets and devices are left out; a Dockerfile
outside the directory is added under a name of its own.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imagesvc_client.dockerignore import IgnoreRules, InvalidPattern, read_patterns
from imagesvc_client.errors import InvalidArgument

__all__ = ["BuildContext", "ContextError", "chunked"]

_BLOCK = tarfile.BLOCKSIZE


class ContextError(InvalidArgument):
    """The build context or the Dockerfile cannot be used (found before anything is sent)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="INVALID_BUILD_CONTEXT")


@dataclass(frozen=True)
class BuildContext:
    """``directory`` to be sent, and the Dockerfile's path inside the stream."""

    directory: Path
    dockerfile: str
    rules: IgnoreRules
    # (name in the archive, content) of files sent that are not under directory.
    extra_files: tuple[tuple[str, bytes], ...] = field(default=())

    @classmethod
    def prepare(
        cls, directory: str | os.PathLike[str], dockerfile: str | os.PathLike[str] | None = None
    ) -> BuildContext:
        """``dockerfile``: a path inside the context ("Dockerfile" when None), or an
        absolute path (or a Path) anywhere: inside the context it is used in place, outside
        it is sent with the context under a generated name, as the docker CLI does."""
        root = Path(directory).resolve()
        if not root.is_dir():
            raise ContextError(f"build context {os.fspath(directory)!r} is not a directory")
        ignore_file = root / ".dockerignore"
        patterns = (
            read_patterns(ignore_file.read_text(encoding="utf-8", errors="surrogateescape"))
            if ignore_file.is_file()
            else []
        )
        name, extra = cls._locate_dockerfile(root, dockerfile)
        if not extra and not (root / name).is_file():
            raise ContextError(f"cannot find the Dockerfile {name!r} in {root}")
        try:
            rules = IgnoreRules(patterns)
            # The docker CLI re-includes both whatever .dockerignore says.
            for forced in (".dockerignore", name):
                if rules.excludes(forced):
                    patterns.append("!" + forced)
            return cls(root, name, IgnoreRules(patterns), extra)
        except InvalidPattern as error:
            raise ContextError(f"{ignore_file}: {error}") from None

    @staticmethod
    def _locate_dockerfile(
        root: Path, dockerfile: str | os.PathLike[str] | None
    ) -> tuple[str, tuple[tuple[str, bytes], ...]]:
        if dockerfile is None:
            return "Dockerfile", ()
        given = Path(dockerfile)
        if not isinstance(dockerfile, Path) and not given.is_absolute():
            # A plain string is a path inside the context, as in the API.
            inside = Path(os.path.normpath(given.as_posix()))
            if inside.is_absolute() or inside.parts[:1] == ("..",):
                raise ContextError(f"the Dockerfile {dockerfile!r} is outside the build context")
            return inside.as_posix(), ()
        resolved = given.resolve()
        if resolved.is_relative_to(root):
            return resolved.relative_to(root).as_posix(), ()
        try:
            content = resolved.read_bytes()
        except OSError as error:
            raise ContextError(f"cannot read the Dockerfile {given}: {error.strerror}") from None
        import secrets  # only a Dockerfile outside the context needs it

        name = f".dockerfile.{secrets.token_hex(10)}"
        return name, ((name, content),)

    def names(self) -> list[str]:
        """The archive names that will be sent, in order (directories end with "/")."""
        return [info.name + ("/" if info.isdir() else "") for info, _ in self._members()]

    def chunks(self, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """The tar stream, in pieces of ``chunk_size`` bytes (the last one shorter)."""
        return (bytes(view) for view in self.chunk_views(chunk_size))

    def chunk_views(self, chunk_size: int) -> Iterator[memoryview]:
        """The tar stream as ``chunks`` cuts it, each piece a view of one buffer that the
        next piece overwrites: use (copy) each before asking for the next. The files'
        data is read straight into that buffer, so each byte is copied once here."""
        buffer = _ChunkBuffer(chunk_size)
        for info, path in self._members():
            yield from buffer.add(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            if info.isreg() and info.size:
                yield from buffer.add_file(path, info.size)
                yield from buffer.add_zeros(_padding(info.size))
        for name, content in self.extra_files:
            info = _root_owned(tarfile.TarInfo(name))
            info.size = len(content)
            info.mode = 0o644
            yield from buffer.add(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            yield from buffer.add(content)
            yield from buffer.add_zeros(_padding(len(content)))
        yield from buffer.add_zeros(2 * _BLOCK)
        yield from buffer.rest()

    def _members(self) -> Iterator[tuple[tarfile.TarInfo, Path]]:
        # gettarinfo of one TarFile remembers inodes, so hard links become links.
        with tarfile.TarFile(fileobj=io.BytesIO(), mode="w") as namer:
            yield from self._walk(namer, self.directory, "")

    def _walk(
        self, namer: tarfile.TarFile, directory: Path, prefix: str
    ) -> Iterator[tuple[tarfile.TarInfo, Path]]:
        try:
            names = sorted(os.listdir(directory))
        except OSError as error:
            raise ContextError(f"cannot read {directory}: {error.strerror}") from None
        for name in names:
            path = directory / name
            relative = prefix + name
            is_dir = stat.S_ISDIR(path.lstat().st_mode)
            if self.rules.excludes(relative):
                # Descend only when an exception pattern may bring back something below.
                if is_dir and self.rules.may_include_below(relative):
                    yield from self._walk(namer, path, relative + "/")
                continue
            info = namer.gettarinfo(str(path), arcname=relative)
            if info is None:  # a socket: nothing to send
                continue
            if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
                continue  # devices and FIFOs have no place in a build context
            yield _root_owned(info), path
            if is_dir:
                yield from self._walk(namer, path, relative + "/")


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _padding(size: int) -> int:
    """The zeros that fill the last block of ``size`` bytes of data."""
    return -size % _BLOCK


class _ChunkBuffer:
    """Cuts a byte stream into chunks of exactly ``chunk_size`` bytes (the last one
    shorter), filled in place in one buffer: each method yields a view of that buffer
    whenever it is full, valid until the next is asked for."""

    def __init__(self, chunk_size: int) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self._view = memoryview(bytearray(chunk_size))
        self._size = chunk_size
        self._filled = 0

    def _advance(self, count: int) -> bool:
        """``count`` more bytes were written after the filled part; whether it is full."""
        self._filled += count
        if self._filled < self._size:
            return False
        self._filled = 0
        return True

    def add(self, data: bytes) -> Iterator[memoryview]:
        source = memoryview(data)
        while source:
            count = min(len(source), self._size - self._filled)
            self._view[self._filled : self._filled + count] = source[:count]
            source = source[count:]
            if self._advance(count):
                yield self._view

    def add_zeros(self, count: int) -> Iterator[memoryview]:
        while count:
            part = min(count, self._size - self._filled)
            self._view[self._filled : self._filled + part] = bytes(part)
            count -= part
            if self._advance(part):
                yield self._view

    def add_file(self, path: Path, size: int) -> Iterator[memoryview]:
        """Exactly ``size`` bytes of the file, read into the buffer: zeros for what it
        no longer has if it shrank meanwhile, and nothing past ``size`` if it grew."""
        left = size
        try:
            with open(path, "rb", buffering=0) as source:
                while left:
                    end = min(self._size, self._filled + left)
                    count = source.readinto(self._view[self._filled : end])
                    if not count:
                        break
                    left -= count
                    if self._advance(count):
                        yield self._view
        except OSError as error:
            raise ContextError(f"cannot read {path}: {error.strerror}") from None
        yield from self.add_zeros(left)

    def rest(self) -> Iterator[memoryview]:
        """The last chunk, if the stream did not end on a chunk's end."""
        if self._filled:
            yield self._view[: self._filled]
            self._filled = 0


def chunked(pieces: Iterator[bytes], chunk_size: int) -> Iterator[bytes]:
    """Regroups a byte stream into chunks of exactly ``chunk_size`` bytes (the last shorter)."""
    buffer = _ChunkBuffer(chunk_size)
    for piece in pieces:
        for view in buffer.add(piece):
            yield bytes(view)
    for view in buffer.rest():
        yield bytes(view)
