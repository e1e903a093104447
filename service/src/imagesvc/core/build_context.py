"""Receiving a build context: checked and rewritten as a plain tar while it arrives
(`core/tar_check.py`, shared with image archives), capped in size, spooled to disk past
a memory threshold; what the Engine receives is that rewritten archive. The Dockerfile's
bytes are kept for the build policy; a context whose Dockerfile is missing, not a
regular file, or over 1 MiB is refused.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import IO

from imagesvc.core.errors import InvalidArgumentError, Reason
from imagesvc.core.tar_check import (
    ArchiveLimits,
    ArchivePipe,
    ArchiveSubject,
    Kept,
    RewrittenArchive,
    UploadChunk,
    receive_archive,
    rewrite_archive,
)
from imagesvc.core.tar_reader import Readable

MAX_DOCKERFILE_BYTES = 1024 * 1024

ContextLimits = ArchiveLimits

BUILD_CONTEXT = ArchiveSubject(
    noun="the build context",
    root="the context",
    invalid=Reason.INVALID_BUILD_CONTEXT,
    too_large=Reason.BUILD_CONTEXT_TOO_LARGE,
    too_large_hint="leave files out with .dockerignore or ask the operator to raise"
    " the build context limit",
    holds="a build context holds only files, directories and links",
    empty_hint="send a tar archive of the context in context_chunk messages after the"
    " options message",
)


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
class CheckedContext:
    """The rewritten context (a plain tar at offset 0) and the Dockerfile's bytes."""

    file: IO[bytes] | None
    size: int
    dockerfile: bytes

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _wanted(dockerfile: str) -> str:
    return posixpath.normpath(dockerfile or "Dockerfile")


def _keep(wanted: str) -> dict[str, Kept]:
    return {
        wanted: Kept(
            MAX_DOCKERFILE_BYTES,
            f"is the Dockerfile and larger than {MAX_DOCKERFILE_BYTES} bytes",
        )
    }


def _dockerfile_of(archive: RewrittenArchive, wanted: str) -> bytes:
    # The last member of that name counts, as when the Engine unpacks it; None when it
    # is not a regular file.
    found = archive.kept.get(wanted, [None])[-1]
    if found is None or wanted not in archive.tree.linkable:
        if wanted in archive.tree.linkable:
            raise BUILD_CONTEXT.refused(
                wanted, "is the Dockerfile and must be a regular file, not a link"
            )
        raise InvalidArgumentError(
            f"the build context has no {wanted!r}: add it to the archive or set"
            " options.dockerfile to its path inside the context",
            reason=Reason.INVALID_BUILD_OPTIONS,
            metadata={"dockerfile": wanted},
        )
    return found


def _checked(archive: RewrittenArchive, wanted: str) -> CheckedContext:
    try:
        dockerfile = _dockerfile_of(archive, wanted)
    except BaseException:
        archive.close()
        raise
    return CheckedContext(archive.file, archive.size, dockerfile)


def check_context(source: Readable, dockerfile: str, limits: ContextLimits) -> CheckedContext:
    """Reads the archive once and writes the plain tar the Engine will get.

    Blocking: run it in a worker thread. The caller closes the result.
    """
    wanted = _wanted(dockerfile)
    return _checked(rewrite_archive(source, BUILD_CONTEXT, limits, _keep(wanted)), wanted)


async def receive_context(
    chunks: AsyncIterator[UploadChunk],
    dockerfile: str,
    limits: ContextLimits,
    executor: Executor,
    pipe: ArchivePipe | None = None,
) -> CheckedContext:
    """`check_context` of the chunks while they arrive (in `executor`), into a spool
    file or `pipe` (then `file` is None)."""
    wanted = _wanted(dockerfile)
    archive = await receive_archive(
        chunks,
        subject=BUILD_CONTEXT,
        limits=limits,
        keep=_keep(wanted),
        executor=executor,
        pipe=pipe,
    )
    return _checked(archive, wanted)
