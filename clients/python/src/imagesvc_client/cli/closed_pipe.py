"""What imagesvc-cli does when the reader of its output goes away (`imagesvc-cli ls |
head -3`): it stops quietly, like the docker CLI and coreutils, instead of printing a
BrokenPipeError traceback.

Python ignores SIGPIPE, so a write into a closed pipe raises BrokenPipeError; the entry
point catches it, points the broken stream at /dev/null (else the interpreter's last
flush at exit fails again and prints "Exception ignored") and exits with 141, the
status a shell reports for a program that SIGPIPE ended. The rich console of the
progress views has its own handling (progress.PipeAwareConsole).
"""

from __future__ import annotations

import io
import os
import signal
import sys
from typing import TextIO

EXIT_CLOSED_PIPE = 128 + signal.SIGPIPE


def silence_closed_streams() -> None:
    """Sends the rest of the output of each standard stream whose reader is gone to
    /dev/null; a stream that still has a reader keeps its pending output."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            _to_devnull(stream)


def _to_devnull(stream: TextIO) -> None:
    try:
        fd = stream.fileno()
    except (io.UnsupportedOperation, ValueError):
        return  # not a file descriptor (a test's capture): nothing flushes it at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
