"""Receiving a build context: spooled to disk past a memory threshold, capped in size,
and checked to be a readable tar (plain or gzip) holding the Dockerfile before the
Engine sees it."""

from __future__ import annotations

import posixpath
import tarfile
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

from imagesvc.core.errors import InvalidArgumentError, Reason, ResourceExhaustedError

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class ContextLimits:
    max_bytes: int
    memory_bytes: int = 4 * 1024 * 1024
    spool_dir: str | None = None


@dataclass(slots=True)
class SpooledContext:
    file: IO[bytes]
    size: int

    def close(self) -> None:
        self.file.close()


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
                raise ResourceExhaustedError(
                    f"the build context is larger than the limit of {limits.max_bytes} bytes;"
                    " leave files out with .dockerignore or ask the operator to raise"
                    " the build context limit",
                    reason=Reason.BUILD_CONTEXT_TOO_LARGE,
                    metadata={"limit_bytes": str(limits.max_bytes)},
                )
            spool.write(chunk)
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


def check_context(file: IO[bytes], dockerfile: str) -> bool:
    """Reads the whole archive once; returns whether it is gzip-compressed.

    Blocking: run it in a worker thread. Leaves the file at offset 0.
    """
    magic = file.read(2)
    file.seek(0)
    gzipped = magic == _GZIP_MAGIC
    wanted = posixpath.normpath(dockerfile or "Dockerfile")
    found = False
    try:
        with tarfile.open(fileobj=file, mode="r|gz" if gzipped else "r|") as archive:
            for member in archive:
                if posixpath.normpath(member.name) == wanted:
                    found = True
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise _bad_context(str(exc) or type(exc).__name__) from exc
    finally:
        file.seek(0)
    if not found:
        raise InvalidArgumentError(
            f"the build context has no {wanted!r}: add it to the archive or set"
            " options.dockerfile to its path inside the context",
            reason=Reason.INVALID_BUILD_OPTIONS,
            metadata={"dockerfile": wanted},
        )
    return gzipped
