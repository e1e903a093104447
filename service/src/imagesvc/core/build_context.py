"""Receiving a build context: spooled to disk past a memory threshold, capped in size,
then read once (plain or gzip tar) and written out again as a plain tar, which is what
the Engine receives.

Rewriting the archive is the defence against hostile contexts: the Engine never parses
anything but an archive this service wrote from what it understood, so no trick of the
tar or gzip format (a member hidden from one parser but not another) can reach it. The
archive is read by our own streaming reader (`core/tar_reader.py`), not `tarfile`, so
what is accepted does not depend on the interpreter's patch release. While rewriting,
the context is refused (INVALID_ARGUMENT) for corrupt or truncated headers and data (a
corrupt header in the middle is an error, not the end), pax or GNU long-name headers
over 1 MiB (judged from their header, before they are read) or more than 8 in a row,
members with absolute paths or `..` components, members below a symlink, symlinks
resolving outside the context, hard links to anything but an earlier member, devices,
FIFOs, GNU sparse files and unknown member types, and names longer than Linux allows;
and (RESOURCE_EXHAUSTED) when it unpacks to more than the context size cap, which stops
gzip bombs.
"""

from __future__ import annotations

import errno
import posixpath
import tarfile
import tempfile
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO

from imagesvc.core.errors import InvalidArgumentError, Reason, ResourceExhaustedError
from imagesvc.core.tar_reader import (
    BLOCK,
    ExtendedHeaderTooLargeError,
    Kind,
    Readable,
    TarFormatError,
    TarMember,
    TarReader,
    UnsupportedMemberError,
)

_GZIP_MAGIC = b"\x1f\x8b"
MAX_DOCKERFILE_BYTES = 1024 * 1024
# Go's archive/tar (the Engine's) refuses larger pax and GNU long-name records too.
_MAX_SPECIAL_HEADER_BYTES = 1024 * 1024
_MAX_SPECIAL_HEADERS_IN_A_ROW = 8
_MAX_PATH_BYTES = 4096
_MAX_NAME_BYTES = 255
_MAX_SYMLINK_HOPS = 40
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ContextLimits:
    max_bytes: int
    memory_bytes: int = 4 * 1024 * 1024
    spool_dir: str | None = None


def check_spool_dir(spool_dir: str | None) -> str:
    """The directory build contexts over `memory_bytes` are spooled to, checked by
    writing a file there; ValueError saying how to fix it otherwise. Run at start-up: a
    read-only root filesystem without a writable /tmp would otherwise fail every large
    build later, with an error that does not say why."""
    try:
        directory = spool_dir or tempfile.gettempdir()
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        where = repr(spool_dir) if spool_dir else "the temporary directory (TMPDIR, /tmp)"
        raise ValueError(
            f"build contexts are spooled to {where}, which is not writable"
            f" ({exc.strerror or exc}): mount a writable directory there (docker run"
            " --tmpfs /tmp; Kubernetes: an emptyDir) or set --build-spool-dir"
            " (IMAGESVC_BUILD_SPOOL_DIR)"
        ) from None
    return directory


@dataclass(slots=True)
class SpooledContext:
    file: IO[bytes]
    size: int

    def close(self) -> None:
        self.file.close()


@dataclass(slots=True)
class CheckedContext:
    """The rewritten context (a plain tar at offset 0) and the Dockerfile's bytes."""

    file: IO[bytes]
    size: int
    dockerfile: bytes

    def close(self) -> None:
        self.file.close()


def _too_large(limit: int, what: str) -> ResourceExhaustedError:
    return ResourceExhaustedError(
        f"the build context {what} than the limit of {limit} bytes;"
        " leave files out with .dockerignore or ask the operator to raise"
        " the build context limit",
        reason=Reason.BUILD_CONTEXT_TOO_LARGE,
        metadata={"limit_bytes": str(limit)},
    )


def _spool_full() -> ResourceExhaustedError:
    return ResourceExhaustedError(
        "the server has no disk space left to spool the build context; retry later, or ask"
        " the operator to give its spool directory (--build-spool-dir, /tmp) more space",
        reason=Reason.SPOOL_FULL,
    )


def _spool_write(file: IO[bytes], data: bytes) -> None:
    # Past memory_bytes the spool is a file on disk; a full disk is the server's capacity
    # running out, not an internal error.
    try:
        file.write(data)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _spool_full() from exc
        raise


async def spool_context(chunks: AsyncIterator[bytes], limits: ContextLimits) -> SpooledContext:
    """Writes the chunks to a spooled temporary file, stopping as soon as the cap is passed."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by the caller)
        max_size=limits.memory_bytes, dir=limits.spool_dir
    )
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limits.max_bytes:
                raise _too_large(limits.max_bytes, "is larger")
            _spool_write(spool, chunk)
    except BaseException:
        spool.close()
        raise
    if size == 0:
        spool.close()
        raise InvalidArgumentError(
            "the build context is empty: send a tar archive of the context in context_chunk"
            " messages after the options message",
            reason=Reason.INVALID_BUILD_CONTEXT,
        )
    spool.seek(0)
    return SpooledContext(spool, size)


def _bad_context(why: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"the build context is not a valid tar archive (plain or gzip): {why}",
        reason=Reason.INVALID_BUILD_CONTEXT,
    )


def _refused(name: str, why: str) -> InvalidArgumentError:
    shown = name if len(name) <= 200 else name[:197] + "..."
    return InvalidArgumentError(
        f"the build context is refused: member {shown!r} {why}",
        reason=Reason.INVALID_BUILD_CONTEXT,
    )


class _Gunzip:
    """A gzip stream (one or more members) decompressed as read, refusing to produce
    more than `limit` bytes: the cap counts what the archive unpacks to."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._produced = 0
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        want = size if size >= 0 else _CHUNK
        while len(self._pending) < want and not self._done:
            self._pump(want - len(self._pending))
        data, self._pending = self._pending[:want], self._pending[want:]
        return data

    def _pump(self, want: int) -> None:
        if self._inflate.eof:
            rest = self._inflate.unused_data or self._raw.read(_CHUNK)
            if not rest:
                self._done = True
                return
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = rest
        elif self._inflate.unconsumed_tail:
            data = self._inflate.unconsumed_tail
        else:
            data = self._raw.read(_CHUNK)
            if not data:
                raise _bad_context("the gzip stream ends early")
        try:
            out = self._inflate.decompress(data, max(want, 64 * 1024))
        except zlib.error as exc:
            raise _bad_context(f"gzip: {exc}") from exc
        self._produced += len(out)
        if self._produced > self._limit:
            raise _too_large(self._limit, "unpacks to more")
        self._pending += out


def _clean_path(name: str, member: str) -> str:
    """A member path relative to the context root; refuses absolute paths and `..`."""
    if name.startswith("/"):
        raise _refused(member, "has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _refused(member, "has a '..' component (path traversal)")
    if "\x00" in name:
        raise _refused(member, "has a NUL byte in its name")
    path = "/".join(parts) or "."
    if len(path.encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES:
        raise _refused(member, f"has a path longer than {_MAX_PATH_BYTES} bytes")
    if any(len(part.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES for part in parts):
        raise _refused(member, f"has a name component longer than {_MAX_NAME_BYTES} bytes")
    return path


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@dataclass(slots=True)
class _Tree:
    """What the archive has built so far, to judge links; a later member of the same
    name replaces an earlier one, as when the Engine unpacks it."""

    directories: set[str] = field(default_factory=set)
    linkable: set[str] = field(default_factory=set)
    symlinks: dict[str, str] = field(default_factory=dict)
    # Every symlink the rewritten archive holds, replaced ones too: each is unpacked
    # before what replaces it, so none may lead out either.
    written_symlinks: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, member: TarMember, shown: str) -> None:
        for ancestor in _ancestors(path):
            if ancestor in self.symlinks:
                raise _refused(shown, f"lies below the symlink {ancestor!r}")
            if ancestor in self.linkable:
                raise _refused(shown, f"lies below {ancestor!r}, which is not a directory")
            self.directories.add(ancestor)
        if member.kind is Kind.DIRECTORY:
            if path in self.symlinks or path in self.linkable:
                raise _refused(shown, "is both a directory and a file or link")
            self.directories.add(path)
            return
        if path in self.directories:
            raise _refused(shown, "is both a directory and a file or link")
        self.linkable.add(path)
        if member.kind is Kind.SYMLINK:
            self.symlinks[path] = member.linkname
            self.written_symlinks.append((path, member.linkname))
        else:
            self.symlinks.pop(path, None)

    def resolve(self, path: str, link_target: str) -> None:
        """Refuses the symlink at `path` to `link_target` if it resolves outside the
        context (the other links as the whole archive leaves them)."""
        hops = 0

        def walk(base: list[str], target: str) -> list[str]:
            nonlocal hops
            if target.startswith("/"):
                raise _refused(path, f"is a symlink to the absolute path {target[:200]!r}")
            stack = list(base)
            for part in target.split("/"):
                if part in ("", "."):
                    continue
                if part == "..":
                    if not stack:
                        raise _refused(
                            path, f"is a symlink leading outside the context ({target[:200]!r})"
                        )
                    stack.pop()
                    continue
                stack.append(part)
                joined = "/".join(stack)
                if joined in self.symlinks:
                    hops += 1
                    if hops > _MAX_SYMLINK_HOPS:
                        raise _refused(path, "is a symlink with too many levels of links (a loop?)")
                    stack = walk(stack[:-1], self.symlinks[joined])
            return stack

        walk(path.split("/")[:-1], link_target)


# The rewritten archive is written with tarfile's TarInfo.tobuf: public, documented and
# stable API, and not a security decision (everything in it was decided by our reader and
# the checks here); its pax output is what Go's archive/tar, the Engine's, reads best.
_WRITTEN_TYPES = {
    Kind.FILE: tarfile.REGTYPE,
    Kind.DIRECTORY: tarfile.DIRTYPE,
    Kind.SYMLINK: tarfile.SYMTYPE,
    Kind.HARD_LINK: tarfile.LNKTYPE,
}


def _header(member: TarMember, path: str, linkname: str) -> bytes:
    out = tarfile.TarInfo(path)
    out.type = _WRITTEN_TYPES[member.kind]
    out.size = member.size if member.kind is Kind.FILE else 0
    out.linkname = linkname
    out.mode = member.mode & 0o7777
    out.uid, out.gid = member.uid, member.gid
    out.uname, out.gname = member.uname, member.gname
    out.mtime = member.mtime
    # Extended attributes are the only pax records carried over; tobuf writes the rest.
    out.pax_headers = dict(member.xattrs)
    return out.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _kind(member: TarMember) -> str:
    if member.kind is Kind.OTHER:
        return f"of tar type {member.typeflag!r}"
    return f"a {member.kind.value}"


class _Writer:
    """The rewritten archive, counted against the cap."""

    def __init__(self, limits: ContextLimits) -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by the caller)
            max_size=limits.memory_bytes, dir=limits.spool_dir
        )
        self._limit = limits.max_bytes
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._limit:
            raise _too_large(self._limit, "unpacks to more")
        _spool_write(self.file, data)


def check_context(source: IO[bytes], dockerfile: str, limits: ContextLimits) -> CheckedContext:
    """Reads the spooled archive once and writes the plain tar the Engine will get.

    Blocking: run it in a worker thread. The caller closes both `source` and the result.
    """
    wanted = posixpath.normpath(dockerfile or "Dockerfile")
    gzipped = source.read(2) == _GZIP_MAGIC
    source.seek(0)
    stream: Readable = _Gunzip(source, limits.max_bytes) if gzipped else source
    reader = TarReader(
        stream,
        max_extended_bytes=_MAX_SPECIAL_HEADER_BYTES,
        max_extended_in_a_row=_MAX_SPECIAL_HEADERS_IN_A_ROW,
    )
    writer = _Writer(limits)
    tree = _Tree()
    found: bytes | None = None
    try:
        while (member := _next_member(reader)) is not None:
            path, content = _copy_member(reader, member, tree, writer, wanted)
            if path == wanted:
                # The last member of that name counts, as when the Engine unpacks it;
                # None when it is not a regular file.
                found = content
        for path, link_target in tree.written_symlinks:
            tree.resolve(path, link_target)
        writer.write(b"\0" * (2 * BLOCK))
        if found is None:
            if wanted in tree.linkable:
                raise _refused(wanted, "is the Dockerfile and must be a regular file, not a link")
            raise InvalidArgumentError(
                f"the build context has no {wanted!r}: add it to the archive or set"
                " options.dockerfile to its path inside the context",
                reason=Reason.INVALID_BUILD_OPTIONS,
                metadata={"dockerfile": wanted},
            )
    except BaseException:
        writer.file.close()
        raise
    writer.file.seek(0)
    return CheckedContext(writer.file, writer.size, found)


def _tar_error(exc: TarFormatError) -> InvalidArgumentError:
    if isinstance(exc, ExtendedHeaderTooLargeError):
        return _refused(exc.name, f"has an extended header of {exc.size} bytes (limit 1 MiB)")
    if isinstance(exc, UnsupportedMemberError):
        return _refused(exc.name, str(exc))
    return _bad_context(str(exc))


def _next_member(reader: TarReader) -> TarMember | None:
    try:
        return reader.next()
    except TarFormatError as exc:
        raise _tar_error(exc) from exc
    except OSError as exc:
        raise _bad_context(str(exc) or type(exc).__name__) from exc


def _copy_member(
    reader: TarReader,
    member: TarMember,
    tree: _Tree,
    writer: _Writer,
    wanted: str,
) -> tuple[str, bytes | None]:
    """Checks one member and writes it out; returns its path in the context, and its
    bytes if it is the Dockerfile."""
    shown = member.name
    path = _clean_path(member.name, shown)
    if path == "." and member.kind is not Kind.DIRECTORY:
        raise _refused(shown, "has an empty name")
    if member.kind is Kind.SYMLINK and (
        "\x00" in member.linkname
        or len(member.linkname.encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES
    ):
        raise _refused(shown, "is a symlink with an unusable target")
    if member.kind not in _WRITTEN_TYPES:
        raise _refused(
            shown, f"is {_kind(member)}: a build context holds only files, directories and links"
        )
    linkname = member.linkname if member.kind is Kind.SYMLINK else ""
    if member.kind is Kind.HARD_LINK:
        linkname = _clean_path(member.linkname, shown)
        if linkname not in tree.linkable or any(a in tree.symlinks for a in _ancestors(linkname)):
            raise _refused(
                shown,
                f"is a hard link to {member.linkname[:200]!r}, which is not"
                " an earlier file of the archive",
            )
    tree.add(path, member, shown)
    is_dockerfile = path == wanted and member.kind is Kind.FILE
    if is_dockerfile and member.size > MAX_DOCKERFILE_BYTES:
        raise _refused(shown, f"is the Dockerfile and larger than {MAX_DOCKERFILE_BYTES} bytes")
    writer.write(_header(member, path, linkname))
    if member.kind is not Kind.FILE:
        return path, None
    kept: list[bytes] = []
    try:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            if is_dockerfile:
                kept.append(chunk)
    except TarFormatError as exc:
        raise _tar_error(exc) from exc
    except OSError as exc:
        raise _bad_context(str(exc) or type(exc).__name__) from exc
    padding = -member.size % BLOCK
    if padding:
        writer.write(b"\0" * padding)
    return path, b"".join(kept) if is_dockerfile else None
