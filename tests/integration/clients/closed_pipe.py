"""Runs imagesvc-cli as a subprocess whose output goes into a pipe the reader closes:
before the CLI writes anything, or after reading a few lines (`| head -3`). Shared by the
integration test (the real server) and the unit test (a scripted one)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

# 128 + SIGPIPE: what a shell reports when SIGPIPE ends a program (the docker CLI's way).
CLOSED_PIPE_EXIT_CODES = (0, 141)


@dataclass(frozen=True)
class Ended:
    returncode: int
    other_output: str  # of the stream that was not the pipe
    lines_read: list[bytes]


def run_into_closed_pipe(
    program: Sequence[str], address: str, *args: str, stream: str = "stdout", read_lines: int = 0
) -> Ended:
    """`program args` (imagesvc-cli) with `stream` (stdout or stderr) going into a pipe whose
    reader takes `read_lines` lines (0: none, the pipe is closed before the CLI starts)
    and closes it; the other stream is captured."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_")}
    environment.update({"IMAGESVC_SERVER": address, "NO_COLOR": "1"})
    environment.pop("TERM", None)
    read_end, write_end = os.pipe()
    reader = os.fdopen(read_end, "rb")
    if read_lines == 0:
        reader.close()
    into_stdout = stream == "stdout"
    with subprocess.Popen(
        [*program, *args],
        stdin=subprocess.DEVNULL,
        stdout=write_end if into_stdout else subprocess.PIPE,
        stderr=subprocess.PIPE if into_stdout else write_end,
        env=environment,
    ) as process:
        os.close(write_end)
        lines = [reader.readline() for _ in range(read_lines)]
        reader.close()
        captured = process.stderr if into_stdout else process.stdout
        assert captured is not None
        other_output = captured.read().decode(errors="replace")
        returncode = process.wait(timeout=120)
    return Ended(returncode, other_output, lines)


def assert_ended_quietly(ended: Ended) -> None:
    """Exit 0 or 141, and nothing on the other stream (no traceback, no "Exception
    ignored")."""
    assert ended.returncode in CLOSED_PIPE_EXIT_CODES, ended
    assert ended.other_output == "", ended.other_output
