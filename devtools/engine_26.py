"""Docker Engine 26 for the tests' engine matrix, unpacked (not installed) into tools/engine-26.

Debian 13's ``docker.io`` 26.1.5 (API 1.45) and its ``containerd`` 1.7.24 run on Debian 12
with the system's ``runc``: their ``.deb`` files are downloaded from Debian's archive,
checked against the SHA-256 pinned here (the values in trixie's Packages index) and
unpacked with ``dpkg-deb -x`` into a temporary directory that is renamed into place only
when everything succeeded, so a failed download or unpack never leaves a half-made tree.

Stdlib only (bootstrap calls it before tests need it)::

    python3 -m devtools.engine_26 fetch     # idempotent; exit 1 with the reason on failure
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENGINE_26_DIR", "PACKAGES", "Engine26Error", "fetch", "is_fetched"]

ROOT = Path(__file__).resolve().parent.parent
ENGINE_26_DIR = ROOT / "tools" / "engine-26"
# Debian's archive, the mirror this machine's apt uses.
ARCHIVE = "http://deb.debian.org/debian/"
# Written last: its presence means the tree is complete and which packages made it.
_STAMP = ".fetched"


@dataclass(frozen=True)
class DebPackage:
    pool_path: str
    sha256: str

    @property
    def file_name(self) -> str:
        return self.pool_path.rsplit("/", 1)[1]


PACKAGES = (
    DebPackage(
        "pool/main/d/docker.io/docker.io_26.1.5+dfsg1-9+deb13u1+b1_amd64.deb",
        "53ae1a99f15113f0a0d2226808ec0d24ee31b3b87b87ab8ec35be09a1a2ee13b",
    ),
    DebPackage(
        "pool/main/c/containerd/containerd_1.7.24~ds1-6+deb13u1_amd64.deb",
        "ed708deb96fe476a3bce4efa5c0538dfbcf717ab9a7c7944ba7260342c25899c",
    ),
)
# What the engine kinds run from the tree (devtools.sandbox puts usr/bin, usr/sbin first).
# The docker CLI is not among them: Debian 13 ships it in docker-cli; the tests drive
# every engine with the system's CLI, which negotiates the API version down.
_EXPECTED = (
    "usr/sbin/dockerd",
    "usr/bin/containerd",
    "usr/bin/containerd-shim-runc-v2",
)


class Engine26Error(RuntimeError):
    """Engine 26 could not be downloaded, verified or unpacked."""


def _stamp_text() -> str:
    return "".join(f"{p.sha256}  {p.file_name}\n" for p in PACKAGES)


def is_fetched(target: Path = ENGINE_26_DIR) -> bool:
    """Whether ``target`` holds a complete tree unpacked from exactly the pinned packages."""
    try:
        stamp = (target / _STAMP).read_text()
    except OSError:
        return False
    return stamp == _stamp_text() and all((target / p).is_file() for p in _EXPECTED)


def _download(package: DebPackage, into: Path) -> Path:
    url = ARCHIVE + package.pool_path
    path = into / package.file_name
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, path.open("wb") as out:  # noqa: S310 - fixed http(s) URL
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except OSError as e:
        raise Engine26Error(f"downloading {url} failed: {e}") from e
    if digest.hexdigest() != package.sha256:
        raise Engine26Error(
            f"{url}: SHA-256 {digest.hexdigest()}, expected {package.sha256} (pinned in "
            "devtools/engine_26.py); not unpacking it"
        )
    return path


def fetch(target: Path = ENGINE_26_DIR) -> Path:
    """Download, verify and unpack both packages into ``target`` unless already there."""
    if is_fetched(target):
        return target
    if shutil.which("dpkg-deb") is None:
        raise Engine26Error("dpkg-deb not found (Debian's dpkg package unpacks the .deb files)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".engine-26-", dir=target.parent) as work_dir:
        work = Path(work_dir)
        tree = work / "tree"
        tree.mkdir()
        for package in PACKAGES:
            deb = _download(package, work)
            unpacked = subprocess.run(
                ["dpkg-deb", "-x", str(deb), str(tree)], capture_output=True, text=True
            )
            if unpacked.returncode != 0:
                raise Engine26Error(
                    f"dpkg-deb -x {deb.name} failed ({unpacked.returncode}): "
                    f"{unpacked.stderr.strip()}"
                )
            deb.unlink()
        missing = [p for p in _EXPECTED if not (tree / p).is_file()]
        if missing:
            raise Engine26Error(f"the unpacked packages lack {', '.join(missing)}")
        (tree / _STAMP).write_text(_stamp_text())
        # Replace an incomplete or outdated tree only now that the new one is whole.
        if target.exists():
            shutil.rmtree(target)
        tree.rename(target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m devtools.engine_26",
        description="Docker Engine 26 from Debian 13, unpacked into tools/engine-26.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download, verify and unpack (idempotent)")
    sub.add_parser("status", help="exit 0 when the tree is complete")
    args = parser.parse_args(argv)
    if args.command == "status":
        return 0 if is_fetched() else 1
    try:
        if is_fetched():
            return 0
        print(f"engine-26: fetching {', '.join(p.file_name for p in PACKAGES)}", file=sys.stderr)
        fetch()
    except Engine26Error as e:
        print(f"engine-26: error: {e}", file=sys.stderr)
        return 1
    print(f"engine-26: unpacked into {ENGINE_26_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
