"""The base-image maker fails fast and says why when its Debian mirror does not serve:
a mirror that refuses connections, and one that accepts them and never answers (wget's
defaults would wait for hours; CI has 90 minutes)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from devtools import base_image
from devtools.sandbox import SandboxError, free_port

pytestmark = [pytest.mark.integration, pytest.mark.image]

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="debootstrap runs as root (CI and scripts/test run as root)"
)


def _wget_processes() -> list[str]:
    """Command lines of running wget processes fetching from loopback (read from /proc:
    a fresh minbase machine has no ps)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if "wget" in args and "127.0.0.1" in args:
            found.append(args)
    return found


@needs_root
def test_a_refused_mirror_fails_at_once_naming_it(tmp_path: Path) -> None:
    mirror = f"http://127.0.0.1:{free_port()}/debian"
    started = time.monotonic()
    with pytest.raises(SandboxError) as caught:
        base_image.rootfs_tarball(tmp_path, mirror=mirror)
    assert time.monotonic() - started < 60
    assert f"debootstrap from {mirror} failed" in str(caught.value)
    assert not list(tmp_path.glob("*.tar"))


@needs_root
def test_a_silent_mirror_is_stopped_at_the_time_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base_image, "DEBOOTSTRAP_TIMEOUT_SECONDS", 3.0)
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        mirror = f"http://127.0.0.1:{silent.getsockname()[1]}/debian"
        started = time.monotonic()
        with pytest.raises(SandboxError) as caught:
            base_image.rootfs_tarball(tmp_path, mirror=mirror)
        took = time.monotonic() - started
    assert f"debootstrap from {mirror} took over 3 s and was stopped" in str(caught.value)
    assert took < 15
    # The whole process group went: no wget left waiting on the silent port. SIGKILL is
    # delivered at once but a process takes a moment to exit: allow it that moment.
    deadline = time.monotonic() + 5
    while (left := [line for line in _wget_processes() if mirror.split("/")[2] in line]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not left
