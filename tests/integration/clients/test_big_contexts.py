"""A big build context streams from disk to the server: imagesvc-cli building a
directory, or a tar archive on stdin, never holds the context in memory (its peak
resident size stays near that of a plain `ls`), and every byte arrives (a file after the
big one in the archive is still there to COPY)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from devtools.sandbox import BuiltImage, Engine
from tests.integration.builds import dockerfile
from tests.integration.clients.test_cli import CLI
from tests.integration.local_images import unique_repo
from tests.integration.transfers import local_id, remove_local

BIG_BYTES = 200 * 1024 * 1024
# What streaming may add to the resident size of `imagesvc-cli ls` (buffers, chunks in
# flight); far below the size of the context.
STREAMING_ALLOWANCE = 48 * 1024 * 1024


def _peak(address: str, *args: str, stdin: Path | None = None) -> tuple[str, int]:
    """(stdout, peak resident bytes) of one imagesvc-cli run that must succeed."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_")}
    with open(stdin or os.devnull, "rb") as source, open(os.devnull, "wb") as sink:
        read_end, write_end = os.pipe()
        process = subprocess.Popen(
            [str(CLI), "--server", address, *args],
            stdin=source,
            stdout=write_end,
            stderr=sink,
            env=environment,
        )
        os.close(write_end)
        with os.fdopen(read_end, "rb") as output:
            out = output.read()
        # wait4 rather than wait: the rusage of this child alone (ru_maxrss in KiB).
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0
    return out.decode(), usage.ru_maxrss * 1024


def test_big_contexts_stream_from_disk(
    address: str, engine: Engine, busybox_image: BuiltImage, tmp_path: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        dockerfile(f"FROM {busybox_image.tag}", "COPY zz-marker /marker", "RUN cat /marker")
    )
    with open(context / "big.bin", "wb") as big:  # sparse: no disk space, read as zeros
        big.truncate(BIG_BYTES)
    (context / "zz-marker").write_text("all of it arrived\n")
    archive = tmp_path / "context.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("Dockerfile", "big.bin", "zz-marker"):
            tar.add(context / name, arcname=name)

    tags = [f"{unique_repo('big-context')}:{kind}" for kind in ("dir", "stdin")]
    try:
        _, baseline = _peak(address, "ls")
        from_directory, directory_peak = _peak(
            address, "build", "--no-cache", "-t", tags[0], str(context)
        )
        from_stdin, stdin_peak = _peak(
            address, "build", "--no-cache", "-t", tags[1], "-", stdin=archive
        )

        for output, tag in ((from_directory, tags[0]), (from_stdin, tags[1])):
            assert "all of it arrived" in output
            assert local_id(engine, tag) is not None
        assert directory_peak < baseline + STREAMING_ALLOWANCE, (baseline, directory_peak)
        assert stdin_peak < baseline + STREAMING_ALLOWANCE, (baseline, stdin_peak)
        print(
            f"\npeak RSS: ls {baseline >> 20} MiB, build of a {BIG_BYTES >> 20} MiB context"
            f" from a directory {directory_peak >> 20} MiB, from stdin {stdin_peak >> 20} MiB"
        )
    finally:
        remove_local(engine, *tags)
