"""Where ExportImages writes its archive: a path or a binary file the caller opened.

A path is written through a temporary file beside it and renamed into place once the
whole archive has arrived, so a failed or cancelled export never leaves a truncated
archive under the name (which `docker load` would reject half-way)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

# A file path, or a binary file object open for writing (sys.stdout.buffer, a socket file).
ArchiveDestination = str | os.PathLike[str] | IO[bytes]


@contextlib.contextmanager
def archive_writer(destination: ArchiveDestination) -> Iterator[IO[bytes]]:
    """The file to write the archive to; a path is only created once the block succeeds."""
    if not isinstance(destination, (str, os.PathLike)):
        yield destination
        return
    import tempfile  # only an export to a path needs it

    target = Path(destination)
    descriptor, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
