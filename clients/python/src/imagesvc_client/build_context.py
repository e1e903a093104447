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
_READ_SIZE = 256 * 1024


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
        return chunked(self._tar_stream(), chunk_size)

    def _tar_stream(self) -> Iterator[bytes]:
        for info, path in self._members():
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            if info.isreg() and info.size:
                yield from _file_data(path, info.size)
        for name, content in self.extra_files:
            info = _root_owned(tarfile.TarInfo(name))
            info.size = len(content)
            info.mode = 0o644
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            yield content + _padding(len(content))
        yield bytes(2 * _BLOCK)

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


def _padding(size: int) -> bytes:
    return bytes(-size % _BLOCK)


def _file_data(path: Path, size: int) -> Iterator[bytes]:
    """Exactly ``size`` bytes of the file and the padding (zeros if it shrank meanwhile)."""
    left = size
    try:
        with path.open("rb") as source:
            while left:
                piece = source.read(min(left, _READ_SIZE))
                if not piece:
                    break
                left -= len(piece)
                yield piece
    except OSError as error:
        raise ContextError(f"cannot read {path}: {error.strerror}") from None
    yield bytes(left) + _padding(size)


def chunked(pieces: Iterator[bytes], chunk_size: int) -> Iterator[bytes]:
    """Regroups a byte stream into chunks of exactly ``chunk_size`` bytes (the last shorter)."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= chunk_size:
            yield bytes(buffer[:chunk_size])
            del buffer[:chunk_size]
    if buffer:
        yield bytes(buffer)
