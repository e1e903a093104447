"""Checking an uploaded tar archive (a build context, an image archive) and rewriting
it as a plain tar for the Engine, in one pass while it arrives.

Rewriting the archive is the defence against hostile uploads: the Engine never parses
anything but an archive this service wrote from what it understood, so no trick of the
tar or gzip format (a member hidden from one parser but not another) can reach it. The
archive is read by our own streaming reader (`core/tar_reader.py`), not `tarfile`, so
what is accepted does not depend on the interpreter's patch release. The archive is
refused (INVALID_ARGUMENT) for corrupt or truncated headers and data (a corrupt header
in the middle is an error, not the end), pax or GNU long-name headers over 1 MiB (judged
from their header, before they are read) or more than 8 in a row, members with absolute
paths or `..` components, members below a symlink, symlinks resolving outside the
archive, hard links to anything but an earlier member, devices, FIFOs, GNU sparse files
and unknown member types, and names longer than Linux allows; and (RESOURCE_EXHAUSTED)
when it is sent as, or unpacks to, more than the size cap, which stops gzip bombs.

`receive_archive` runs the check in a worker thread that reads the chunks as the event
loop receives them (`ChunkFeed`, a few MiB at most in between), so the upload is
written to disk once, already rewritten, instead of spooled and then rewritten.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import posixpath
import tarfile
import tempfile
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import IO, Protocol, TypeAlias

from imagesvc.core.errors import (
    ImageServiceError,
    InvalidArgumentError,
    Reason,
    ResourceExhaustedError,
)
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
# Go's archive/tar (the Engine's) refuses larger pax and GNU long-name records too.
_MAX_SPECIAL_HEADER_BYTES = 1024 * 1024
_MAX_SPECIAL_HEADERS_IN_A_ROW = 8
_MAX_PATH_BYTES = 4096
_MAX_NAME_BYTES = 255
_MAX_SYMLINK_HOPS = 40
_CHUNK = 1024 * 1024
# Received but not yet checked: what the event loop may run ahead of the worker.
_MAX_PENDING_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_bytes: int
    memory_bytes: int = 4 * 1024 * 1024
    spool_dir: str | None = None


@dataclass(frozen=True, slots=True)
class ArchiveSubject:
    """What the archive is, for the errors that refuse it."""

    noun: str  # "the build context"
    root: str  # what a symlink may not lead outside of: "the context"
    invalid: Reason
    too_large: Reason
    too_large_hint: str  # what the caller can do about the cap
    holds: str  # what it may hold, e.g. "a build context holds only files, ..."
    empty_hint: str

    def refused(self, name: str, why: str) -> InvalidArgumentError:
        shown = name if len(name) <= 200 else name[:197] + "..."
        return InvalidArgumentError(
            f"{self.noun} is refused: member {shown!r} {why}", reason=self.invalid
        )

    def bad(self, why: str) -> InvalidArgumentError:
        return InvalidArgumentError(
            f"{self.noun} is not a valid tar archive (plain or gzip): {why}", reason=self.invalid
        )

    def too_large_error(self, limit: int, what: str) -> ResourceExhaustedError:
        return ResourceExhaustedError(
            f"{self.noun} {what} than the limit of {limit} bytes; {self.too_large_hint}",
            reason=self.too_large,
            metadata={"limit_bytes": str(limit)},
        )

    def empty(self) -> InvalidArgumentError:
        return InvalidArgumentError(f"{self.noun} is empty: {self.empty_hint}", reason=self.invalid)

    def spool_full(self) -> ResourceExhaustedError:
        return ResourceExhaustedError(
            f"the server has no disk space left to spool {self.noun}; retry later, or ask the"
            " operator to give its spool directory (--build-spool-dir, /tmp) more space",
            reason=Reason.SPOOL_FULL,
        )


def spool_write(file: IO[bytes], data: bytes | memoryview, subject: ArchiveSubject) -> None:
    # Past memory_bytes the spool is a file on disk; a full disk is the server's capacity
    # running out, not an internal error.
    try:
        file.write(data)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise subject.spool_full() from exc
        raise


class Gunzip:
    """A gzip stream (one or more members) decompressed as read, refusing to produce
    more than `limit` bytes: the cap counts what the archive unpacks to."""

    def __init__(self, raw: Readable, limit: int, subject: ArchiveSubject) -> None:
        self._raw = raw
        self._limit = limit
        self._subject = subject
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
                raise self._subject.bad("the gzip stream ends early")
        try:
            out = self._inflate.decompress(data, max(want, 64 * 1024))
        except zlib.error as exc:
            raise self._subject.bad(f"gzip: {exc}") from exc
        self._produced += len(out)
        if self._produced > self._limit:
            raise self._subject.too_large_error(self._limit, "unpacks to more")
        self._pending += out


class _Prefixed:
    """`head`, then the rest of `source`: what was read to tell gzip from tar."""

    def __init__(self, head: bytes, source: Readable) -> None:
        self._head = head
        self._source = source

    def read(self, size: int = -1, /) -> bytes | memoryview:
        if self._head:
            data = self._head[:size] if size >= 0 else self._head
            self._head = self._head[len(data) :]
            return data
        return self._source.read(size)


def _read_exactly(source: Readable, size: int) -> bytes:
    data = b""
    while len(data) < size and (chunk := source.read(size - len(data))):
        data += chunk
    return data


def unpacked(source: Readable, limit: int, subject: ArchiveSubject) -> Readable:
    """The plain tar stream of `source`, gunzipped if it starts with gzip's magic."""
    head = _read_exactly(source, len(_GZIP_MAGIC))
    prefixed = _Prefixed(head, source)
    return Gunzip(prefixed, limit, subject) if head == _GZIP_MAGIC else prefixed


def clean_path(name: str, member: str, subject: ArchiveSubject) -> str:
    """A member path relative to the archive root; refuses absolute paths and `..`."""
    if name.startswith("/"):
        raise subject.refused(member, "has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise subject.refused(member, "has a '..' component (path traversal)")
    if "\x00" in name:
        raise subject.refused(member, "has a NUL byte in its name")
    path = "/".join(parts) or "."
    if len(path.encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES:
        raise subject.refused(member, f"has a path longer than {_MAX_PATH_BYTES} bytes")
    if any(len(part.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES for part in parts):
        raise subject.refused(member, f"has a name component longer than {_MAX_NAME_BYTES} bytes")
    return path


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@dataclass(slots=True)
class ArchiveTree:
    """What the archive has built so far, to judge links; a later member of the same
    name replaces an earlier one, as when the Engine unpacks it."""

    subject: ArchiveSubject
    directories: set[str] = field(default_factory=set)
    linkable: set[str] = field(default_factory=set)
    symlinks: dict[str, str] = field(default_factory=dict)
    # Every symlink the rewritten archive holds, replaced ones too: each is unpacked
    # before what replaces it, so none may lead out either.
    written_symlinks: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, member: TarMember, shown: str) -> None:
        for ancestor in _ancestors(path):
            if ancestor in self.symlinks:
                raise self.subject.refused(shown, f"lies below the symlink {ancestor!r}")
            if ancestor in self.linkable:
                raise self.subject.refused(
                    shown, f"lies below {ancestor!r}, which is not a directory"
                )
            self.directories.add(ancestor)
        if member.kind is Kind.DIRECTORY:
            if path in self.symlinks or path in self.linkable:
                raise self.subject.refused(shown, "is both a directory and a file or link")
            self.directories.add(path)
            return
        if path in self.directories:
            raise self.subject.refused(shown, "is both a directory and a file or link")
        self.linkable.add(path)
        if member.kind is Kind.SYMLINK:
            self.symlinks[path] = member.linkname
            self.written_symlinks.append((path, member.linkname))
        else:
            self.symlinks.pop(path, None)

    def resolve(self, path: str, link_target: str) -> None:
        """Refuses the symlink at `path` to `link_target` if it resolves outside the
        archive (the other links as the whole archive leaves them)."""
        hops = 0
        refused = self.subject.refused

        def walk(base: list[str], target: str) -> list[str]:
            nonlocal hops
            if target.startswith("/"):
                raise refused(path, f"is a symlink to the absolute path {target[:200]!r}")
            stack = list(base)
            for part in target.split("/"):
                if part in ("", "."):
                    continue
                if part == "..":
                    if not stack:
                        raise refused(
                            path,
                            f"is a symlink leading outside {self.subject.root} ({target[:200]!r})",
                        )
                    stack.pop()
                    continue
                stack.append(part)
                joined = "/".join(stack)
                if joined in self.symlinks:
                    hops += 1
                    if hops > _MAX_SYMLINK_HOPS:
                        raise refused(path, "is a symlink with too many levels of links (a loop?)")
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


class _Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


class _Writer:
    """The rewritten archive, counted against the cap, into a spool file or a pipe."""

    def __init__(
        self, limits: ArchiveLimits, subject: ArchiveSubject, pipe: ArchivePipe | None
    ) -> None:
        self.file: IO[bytes] | None = None
        self._sink: _Sink
        if pipe is None:
            self.file = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by the caller)
                max_size=limits.memory_bytes, dir=limits.spool_dir
            )
            self._sink = self.file
        else:
            self._sink = pipe
        self._limit = limits.max_bytes
        self._subject = subject
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self.size > self._limit:
            raise self._subject.too_large_error(self._limit, "unpacks to more")
        if self.file is None:
            self._sink.write(data)
        else:
            spool_write(self.file, data, self._subject)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class PipeClosedError(Exception):
    """The other end of an ArchivePipe stopped (the Engine request failed, or the upload
    was refused)."""


class ArchivePipe:
    """The rewritten archive streamed to the Engine while it is received: the checking
    worker writes, the Engine request's body reads (in another thread), with at most a
    few MiB between them.

    The end of the archive (its two zero blocks) is sent only by `release()`, once every
    check passed; `abort()` makes the body fail instead, which cuts the request: the
    Engine sees a truncated upload and discards it. Safe because the Engine acts on an
    uploaded archive only once it has read all of it: the classic builder and Podman
    unpack the whole context (Docker's load the whole archive) before they build or
    load anything, and containerd's import names images only at the archive's end.
    Until then every member reached the Engine only after passing its own checks.
    """

    END = bytes(2 * BLOCK)

    def __init__(self, max_pending_bytes: int = _MAX_PENDING_BYTES) -> None:
        self._max_pending = max_pending_bytes
        self._condition = threading.Condition()
        self._chunks: collections.deque[bytes | memoryview] = collections.deque()
        self._pending = 0
        self._released = False
        self._aborted = False
        self._reader_gone = False

    def write(self, data: bytes | memoryview, /) -> None:
        with self._condition:
            while self._pending >= self._max_pending and not (self._aborted or self._reader_gone):
                self._condition.wait()
            if self._aborted or self._reader_gone:
                raise PipeClosedError("the Engine request ended before the archive was sent")
            self._chunks.append(data)
            self._pending += len(data)
            self._condition.notify_all()

    def release(self) -> None:
        """Every check passed: send the end of the archive, then end the body."""
        with self._condition:
            self._chunks.append(self.END)
            self._released = True
            self._condition.notify_all()

    def abort(self) -> None:
        with self._condition:
            self._aborted = True
            self._chunks.clear()
            self._pending = 0
            self._condition.notify_all()

    def body(self) -> Iterator[bytes | memoryview]:
        """The request body: what was written, in pieces of up to 1 MiB."""
        try:
            while True:
                with self._condition:
                    while not self._chunks and not (self._released or self._aborted):
                        self._condition.wait()
                    if self._aborted:
                        raise PipeClosedError("the upload was refused or abandoned")
                    if not self._chunks:
                        return
                    pieces = [self._chunks.popleft()]
                    size = len(pieces[0])
                    while self._chunks and size + len(self._chunks[0]) <= _CHUNK:
                        size += len(self._chunks[0])
                        pieces.append(self._chunks.popleft())
                    self._pending -= size
                    self._condition.notify_all()
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
        finally:
            with self._condition:
                self._reader_gone = True
                self._condition.notify_all()


@dataclass(slots=True)
class Kept:
    """A member whose bytes the caller asked for: `limit` is the most it may hold."""

    limit: int
    too_large: str  # why it is refused over the limit, after "member 'x' "


@dataclass(slots=True)
class RewrittenArchive:
    """The rewritten archive (a plain tar at offset 0; None when it went to a pipe), the
    bytes of each member kept (every occurrence, in order; None for an occurrence that
    is not a regular file), and the tree it describes."""

    file: IO[bytes] | None
    size: int
    kept: dict[str, list[bytes | None]]
    tree: ArchiveTree

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def rewrite_archive(
    source: Readable,
    subject: ArchiveSubject,
    limits: ArchiveLimits,
    keep: Mapping[str, Kept],
    pipe: ArchivePipe | None = None,
) -> RewrittenArchive:
    """Reads the archive (plain or gzip) once and writes the plain tar the Engine will get:
    to a spool file, or to `pipe` without its end (`ArchivePipe.release` sends that).

    Blocking: run it in a worker thread. The caller closes the result.
    """
    reader = TarReader(
        unpacked(source, limits.max_bytes, subject),
        max_extended_bytes=_MAX_SPECIAL_HEADER_BYTES,
        max_extended_in_a_row=_MAX_SPECIAL_HEADERS_IN_A_ROW,
    )
    writer = _Writer(limits, subject, pipe)
    tree = ArchiveTree(subject)
    kept: dict[str, list[bytes | None]] = {}
    try:
        while (member := _next_member(reader, subject)) is not None:
            path, content = _copy_member(reader, member, tree, writer, keep)
            if path in keep:
                kept.setdefault(path, []).append(content)
        for path, link_target in tree.written_symlinks:
            tree.resolve(path, link_target)
        if pipe is None:
            writer.write(ArchivePipe.END)
    except BaseException:
        writer.close()
        raise
    if writer.file is not None:
        writer.file.seek(0)
    return RewrittenArchive(writer.file, writer.size, kept, tree)


def _tar_error(exc: TarFormatError, subject: ArchiveSubject) -> InvalidArgumentError:
    if isinstance(exc, ExtendedHeaderTooLargeError):
        return subject.refused(
            exc.name, f"has an extended header of {exc.size} bytes (limit 1 MiB)"
        )
    if isinstance(exc, UnsupportedMemberError):
        return subject.refused(exc.name, str(exc))
    return subject.bad(str(exc))


def _next_member(reader: TarReader, subject: ArchiveSubject) -> TarMember | None:
    try:
        return reader.next()
    except TarFormatError as exc:
        raise _tar_error(exc, subject) from exc
    except OSError as exc:
        raise subject.bad(str(exc) or type(exc).__name__) from exc


def _copy_member(
    reader: TarReader,
    member: TarMember,
    tree: ArchiveTree,
    writer: _Writer,
    keep: Mapping[str, Kept],
) -> tuple[str, bytes | None]:
    """Checks one member and writes it out; returns its path in the archive, and its
    bytes if it is a regular file the caller keeps."""
    subject = tree.subject
    shown = member.name
    path = clean_path(member.name, shown, subject)
    if path == "." and member.kind is not Kind.DIRECTORY:
        raise subject.refused(shown, "has an empty name")
    if member.kind is Kind.SYMLINK and (
        "\x00" in member.linkname
        or len(member.linkname.encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES
    ):
        raise subject.refused(shown, "is a symlink with an unusable target")
    if member.kind not in _WRITTEN_TYPES:
        raise subject.refused(shown, f"is {_kind(member)}: {subject.holds}")
    linkname = member.linkname if member.kind is Kind.SYMLINK else ""
    if member.kind is Kind.HARD_LINK:
        linkname = clean_path(member.linkname, shown, subject)
        if linkname not in tree.linkable or any(a in tree.symlinks for a in _ancestors(linkname)):
            raise subject.refused(
                shown,
                f"is a hard link to {member.linkname[:200]!r}, which is not"
                " an earlier file of the archive",
            )
    tree.add(path, member, shown)
    wanted = keep.get(path) if member.kind is Kind.FILE else None
    if wanted is not None and member.size > wanted.limit:
        raise subject.refused(shown, wanted.too_large)
    writer.write(_header(member, path, linkname))
    if member.kind is not Kind.FILE:
        return path, None
    kept: list[bytes | memoryview] = []
    try:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            if wanted is not None:
                kept.append(chunk)
    except TarFormatError as exc:
        raise _tar_error(exc, subject) from exc
    except OSError as exc:
        raise subject.bad(str(exc) or type(exc).__name__) from exc
    padding = -member.size % BLOCK
    if padding:
        writer.write(b"\0" * padding)
    return path, b"".join(kept) if wanted is not None else None


# A chunk of an upload as the transport received it: bytes, or a view of the message it
# came in (the gRPC transport's, which reads chunk messages without copying them).
UploadChunk: TypeAlias = bytes | memoryview


class FeedClosedError(Exception):
    """The receiving side stopped before the end of the upload (it failed or left)."""


class ChunkFeed:
    """Chunks handed from the event loop to a worker thread that reads them as a file.

    `put` waits (without blocking the loop) while more than a few MiB are waiting, so a
    slow check slows the upload instead of filling memory. The loop calls `end` after the
    last chunk, or `close` when it gives up; the worker's read then fails.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, max_pending_bytes: int = _MAX_PENDING_BYTES
    ) -> None:
        self._loop = loop
        self._max_pending = max_pending_bytes
        self._condition = threading.Condition()
        self._chunks: collections.deque[UploadChunk] = collections.deque()
        self._offset = 0  # read from the first chunk
        self._pending = 0
        self._ended = False
        self._closed = False
        self._space = asyncio.Event()
        # The loop waits for space: only then is it worth a wake-up (a syscall and a
        # context switch, per chunk otherwise).
        self._loop_waits = False

    async def put(self, chunk: UploadChunk) -> bool:
        """False once the worker stopped reading (its outcome says why)."""
        while True:
            with self._condition:
                if self._closed:
                    return False
                if self._pending < self._max_pending:
                    self._chunks.append(chunk)
                    self._pending += len(chunk)
                    self._condition.notify()
                    return True
                self._space.clear()
                self._loop_waits = True
            await self._space.wait()

    def end(self) -> None:
        with self._condition:
            self._ended = True
            self._condition.notify()

    def close(self) -> None:
        """Either side: no more reading or writing; pending chunks are dropped."""
        with self._condition:
            self._closed = True
            self._chunks.clear()
            self._pending = 0
            self._condition.notify()
        self._wake_loop()

    def _wake_loop(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._space.set)

    def read(self, size: int = -1, /) -> bytes | memoryview:
        """Blocking (the worker's): up to `size` bytes, b"" at the end of the upload; a
        whole chunk as it came, or a view of part of it (no copy)."""
        with self._condition:
            while not self._chunks:
                if self._closed:
                    raise FeedClosedError
                if self._ended:
                    return b""
                self._condition.wait()
            chunk = self._chunks[0]
            start = self._offset
            end = len(chunk) if size < 0 else min(len(chunk), start + size)
            data = chunk if start == 0 and end == len(chunk) else memoryview(chunk)[start:end]
            self._offset = end
            if end < len(chunk):
                return data
            self._chunks.popleft()
            self._pending -= len(chunk)
            self._offset = 0
            wake = self._loop_waits
            self._loop_waits = False
        if wake:
            self._wake_loop()
        return data


async def receive_archive(
    chunks: AsyncIterator[UploadChunk],
    *,
    subject: ArchiveSubject,
    limits: ArchiveLimits,
    keep: Mapping[str, Kept],
    executor: Executor,
    finish: Callable[[RewrittenArchive], None] = lambda archive: None,
    pipe: ArchivePipe | None = None,
) -> RewrittenArchive:
    """Checks and rewrites the upload while it arrives (`rewrite_archive` in `executor`),
    stopping as soon as the cap is passed; `finish` runs in the worker on the result
    (more checks; it raises to refuse). A caller that goes away does not wait for the
    worker: what it produces is closed when it ends."""
    loop = asyncio.get_running_loop()
    feed = ChunkFeed(loop)

    def work() -> RewrittenArchive:
        try:
            archive = rewrite_archive(feed, subject, limits, keep, pipe)
        finally:
            feed.close()
        try:
            finish(archive)
        except BaseException:
            archive.close()
            raise
        return archive

    def close_abandoned(done: asyncio.Future[RewrittenArchive]) -> None:
        if not done.cancelled() and done.exception() is None:
            done.result().close()

    worker = loop.run_in_executor(executor, work)
    try:
        sent = 0
        feeding = True
        async for chunk in chunks:
            sent += len(chunk)
            if sent > limits.max_bytes:
                raise subject.too_large_error(limits.max_bytes, "is larger")
            if feeding and chunk and not await feed.put(chunk):
                # The worker stopped. After a refusal, reading on is pointless; after the
                # archive's end, what follows (tar padding) is read to the end and dropped.
                feeding = False
                await asyncio.wait([worker])
                if worker.cancelled() or worker.exception() is not None:
                    break
        else:
            if sent == 0:
                raise subject.empty()
        feed.end()
        return await asyncio.shield(worker)
    except BaseException as error:
        feed.close()
        worker.add_done_callback(close_abandoned)
        # A refusal by the worker explains a stopped upload better than what followed.
        failure = worker.exception() if worker.done() and not worker.cancelled() else None
        if isinstance(failure, ImageServiceError) and not isinstance(error, asyncio.CancelledError):
            raise failure from None
        raise


def normalized(path: str) -> str:
    """A member path as `rewrite_archive` names it (`./a//b` is `a/b`)."""
    return posixpath.normpath(path).lstrip("/")
