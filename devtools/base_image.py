"""A Python base image made on this machine, for building the Dockerfile without a
public registry (none is reachable from the tests).

``debootstrap --variant=minbase`` of the Debian release whose python3 is the same
minor version as the Python running this (bookworm for 3.11, trixie for 3.13: the image
test's wheelhouse is repacked from its own virtualenv, and wheels such as grpcio's are
built for one minor version), with python3 and python3-venv, from the Debian mirror apt
already uses here (so the same network path and keyring), cleaned of apt lists, caches,
logs and docs, tarred and loaded with ``docker import`` as
``imagesvc-test/python-base:<suite>``. Its python is ``/usr/bin/python3``; the
Dockerfile only calls ``python3``, so it works on this and on ``python:3.12-slim``.

The rootfs tarball is cached in ``.build/base-image/`` under a key made of the recipe
(suite, variant, packages, architecture), so reruns only import it (a few seconds);
a fresh checkout (CI) bootstraps once (about a minute, needs root and debootstrap).

Command line::

    python -m devtools.base_image --docker-host unix:///path/docker.sock [--tag T]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from devtools.sandbox import SandboxError, _env, _safe_rmtree, _unmount_under, _which

__all__ = [
    "DEFAULT_TAG",
    "PACKAGES",
    "SUITE",
    "apt_mirror",
    "make_base_image",
    "rootfs_tarball",
    "suite_for_python",
]

log = logging.getLogger("devtools.base_image")

# Debian releases by the minor version of their python3.
_SUITES_BY_PYTHON = {(3, 11): "bookworm", (3, 13): "trixie"}


def suite_for_python(version: tuple[int, int]) -> str:
    """The Debian release whose python3 is ``version`` (major, minor)."""
    try:
        return _SUITES_BY_PYTHON[version]
    except KeyError:
        known = ", ".join(f"{v[0]}.{v[1]} ({s})" for v, s in _SUITES_BY_PYTHON.items())
        raise SandboxError(
            f"no Debian release has Python {version[0]}.{version[1]} as its python3"
            f" (known: {known}): the image test's wheels would not install on the base image;"
            " run it from a virtualenv on one of those"
        ) from None


SUITE = _SUITES_BY_PYTHON.get(sys.version_info[:2], "bookworm")
VARIANT = "minbase"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEFAULT_TAG = f"imagesvc-test/python-base:{SUITE}"
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent.parent / ".build" / "base-image"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
# Bump when the cleaning below changes what the tarball holds.
_RECIPE_VERSION = 1
# What `docker import` cannot take from a tarball: the image config python:slim has.
_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
_KEY_LABEL = "org.imagesvc.test.rootfs-key"


def apt_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = SUITE) -> str:
    """The Debian archive apt uses on this machine for ``suite`` (one-line ``.list`` or
    deb822 ``.sources`` files), else deb.debian.org."""
    for path in _source_files(apt_dir):
        try:
            text = path.read_text()
        except OSError:
            continue
        uris = (
            _deb822_uris(text, suite) if path.suffix == ".sources" else _one_line_uris(text, suite)
        )
        for uri in uris:
            return uri
    return FALLBACK_MIRROR


def _source_files(apt_dir: Path) -> list[Path]:
    files = [apt_dir / "sources.list"]
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    return [f for f in files if f.is_file()]


def _one_line_uris(text: str, suite: str) -> Iterable[str]:
    for line in text.splitlines():
        line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0])
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "deb" and fields[2] == suite and "main" in fields[3:]:
            yield fields[1].rstrip("/")


def _deb822_uris(text: str, suite: str) -> Iterable[str]:
    for stanza in re.split(r"\n\s*\n", text):
        keys: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            keys[name.strip().lower()] = value.strip()
        if keys.get("enabled", "yes").lower() == "no" or "deb" not in keys.get("types", ""):
            continue
        if suite in keys.get("suites", "").split() and "main" in keys.get("components", ""):
            yield from (uri.rstrip("/") for uri in keys.get("uris", "").split())


def _architecture() -> str:
    if _which("dpkg"):
        return subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        ).stdout.strip()
    return os.uname().machine


def rootfs_key() -> str:
    """What the cached tarball was made from; another recipe makes another tarball."""
    recipe = {
        "suite": SUITE,
        "variant": VARIANT,
        "packages": sorted(PACKAGES),
        "arch": _architecture(),
        "version": _RECIPE_VERSION,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def rootfs_tarball(cache_dir: Path = DEFAULT_CACHE_DIR, mirror: str | None = None) -> Path:
    """The cached rootfs tarball, made with debootstrap when missing."""
    key = rootfs_key()
    tarball = cache_dir / f"debian-{SUITE}-python-{key}.tar"
    if tarball.is_file():
        return tarball
    if os.geteuid() != 0:
        raise SandboxError("making the base image's rootfs needs root (debootstrap)")
    if not _which("debootstrap"):
        raise SandboxError(
            "debootstrap is missing: python3 -m devtools.sandbox ensure-packages installs it"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    source = mirror or apt_mirror()
    log.warning("bootstrapping Debian %s from %s (once; cached in %s)", SUITE, source, cache_dir)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache_dir))
    root = work / "rootfs"
    try:
        try:
            _debootstrap(root, source, work)
        finally:
            # debootstrap mounts /proc and /sys inside; never delete through a mount.
            _unmount_under(root)
        _clean(root)
        partial = work / "rootfs.tar"
        _run(
            "tar", "--numeric-owner", "--one-file-system", "-C", str(root), "-cf", str(partial), "."
        )
        partial.rename(tarball)
    finally:
        _safe_rmtree(work)
    for old in cache_dir.glob(f"debian-{SUITE}-python-*.tar"):
        if old != tarball:
            old.unlink()
    return tarball


def _clean(root: Path) -> None:
    """What an image needs no copy of: package lists and caches, logs, docs (the
    copyright files stay), and the host's names debootstrap copied in."""
    for pattern in (
        "var/lib/apt/lists/*",
        "var/cache/apt/*",
        "var/cache/debconf/*-old",
        "var/log/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "tmp/*",
    ):
        for path in root.glob(pattern):
            _remove(path)
    for doc in root.glob("usr/share/doc/*/*"):
        if doc.name != "copyright":
            _remove(doc)
    # Docker mounts its own /etc/hostname, /etc/hosts and /etc/resolv.conf at run time.
    for name in ("etc/hostname", "etc/resolv.conf"):
        path = root / name
        if path.is_file() and not path.is_symlink():
            path.write_text("")
    machine_id = root / "etc/machine-id"
    if machine_id.is_file():
        machine_id.write_text("")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def make_base_image(
    docker_host: str,
    tag: str = DEFAULT_TAG,
    *,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    mirror: str | None = None,
) -> str:
    """Import the base image into the daemon at ``docker_host`` as ``tag`` unless it is
    there already from the same recipe; returns its image id."""
    suite_for_python(sys.version_info[:2])  # refuses a Python no Debian release has
    key = rootfs_key()
    inspected = _docker(
        docker_host,
        "image",
        "inspect",
        "--format",
        f'{{{{.Id}}}} {{{{index .Config.Labels "{_KEY_LABEL}"}}}}',
        tag,
        check=False,
    )
    if inspected.returncode == 0:
        image_id, _, found_key = inspected.stdout.strip().partition(" ")
        if found_key == key:
            return image_id
    tarball = rootfs_tarball(cache_dir, mirror)
    changes: list[str] = []
    for change in (*_CHANGES, f"LABEL {_KEY_LABEL}={key}"):
        changes += ["--change", change]
    imported = _docker(
        docker_host,
        "import",
        *changes,
        "--message",
        f"debootstrap --variant={VARIANT} {SUITE} + {' '.join(PACKAGES)} (devtools/base_image.py)",
        str(tarball),
        tag,
    )
    return imported.stdout.strip().splitlines()[-1]


def _docker(host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["docker", "-H", host, *args]
    result = subprocess.run(
        cmd, capture_output=True, text=True, env=_env(), timeout=600, check=False
    )
    if check and result.returncode != 0:
        raise SandboxError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return result


# debootstrap fetches with wget, whose defaults (a 900 s read timeout, 20 tries) would
# sit silent for hours on a mirror that accepts connections and never answers.
_WGETRC = "timeout = 30\ntries = 3\nwaitretry = 2\n"
DEBOOTSTRAP_TIMEOUT_SECONDS = 900.0


def _debootstrap(root: Path, mirror: str, work: Path) -> None:
    wgetrc = work / "wgetrc"
    wgetrc.write_text(_WGETRC)
    cmd = [
        "debootstrap",
        f"--variant={VARIANT}",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(root),
        mirror,
    ]
    process = subprocess.Popen(
        cmd,
        env={**_env(), "WGETRC": str(wgetrc)},
        stdin=subprocess.DEVNULL,
        stdout=2,
        start_new_session=True,  # its own process group: a timeout stops wget and dpkg too
    )
    try:
        code = process.wait(timeout=DEBOOTSTRAP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise SandboxError(
            f"debootstrap from {mirror} took over {DEBOOTSTRAP_TIMEOUT_SECONDS:.0f} s and was"
            f" stopped{_log_tail(root)}"
        ) from None
    if code != 0:
        raise SandboxError(
            f"debootstrap from {mirror} failed with exit code {code} (is the mirror"
            f" reachable? apt's sources decide it){_log_tail(root)}"
        )


def _log_tail(root: Path, lines: int = 5) -> str:
    try:
        text = (root / "debootstrap" / "debootstrap.log").read_text(errors="replace")
    except OSError:
        return ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "; debootstrap.log ends: " + " | ".join(tail) if tail else ""


def _run(*cmd: str) -> None:
    # Output to stderr: a caller may capture stdout (the image id).
    result = subprocess.run(cmd, env=_env(), stdin=subprocess.DEVNULL, stdout=2, check=False)
    if result.returncode != 0:
        raise SandboxError(f"{cmd[0]} failed with exit code {result.returncode}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.base_image", description=__doc__)
    parser.add_argument(
        "--docker-host",
        default=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
        help="the daemon to import into (default: DOCKER_HOST)",
    )
    parser.add_argument("--tag", default=DEFAULT_TAG, help=f"image name (default {DEFAULT_TAG})")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--mirror", help="Debian archive URL (default: the one apt uses here)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="base_image: %(message)s")
    try:
        image_id = make_base_image(
            args.docker_host, args.tag, cache_dir=args.cache_dir, mirror=args.mirror
        )
    except SandboxError as exc:
        print(f"base_image: {exc}", file=sys.stderr)
        return 1
    print(f"{args.tag} {image_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
