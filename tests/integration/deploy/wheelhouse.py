"""A wheelhouse on loopback for building the Dockerfile without leaving the machine.

The wheels are repacked from the distributions installed in this test's own virtualenv
(their RECORD lists the files, their WHEEL file the tags), so no index is contacted:
the runtime dependencies of imagesvc, followed through their requirements, plus the
setuptools its pyproject builds with. The directory is served by http.server on
127.0.0.1, and pip in the build finds it with --no-index --find-links.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

# What pip writes into an installed .dist-info that a wheel does not carry.
_INSTALL_ONLY = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
# The service's build backend (pyproject's build-system.requires).
BUILD_REQUIREMENT = Requirement("setuptools>=69")


def runtime_distributions(project: str = "imagesvc") -> list[metadata.Distribution]:
    """``project``'s requirements (no extras) and theirs, as installed here."""
    found: dict[str, metadata.Distribution] = {}
    pending = [Requirement(r) for r in metadata.requires(project) or ()]
    while pending:
        requirement = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        dist = metadata.distribution(name)
        if not requirement.specifier.contains(dist.version, prereleases=True):
            raise LookupError(f"installed {name} {dist.version} does not satisfy {requirement}")
        found[name] = dist
        pending += [Requirement(r) for r in dist.requires or ()]
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def build_distribution() -> metadata.Distribution:
    dist = metadata.distribution(BUILD_REQUIREMENT.name)
    if Version(dist.version) not in BUILD_REQUIREMENT.specifier:
        raise LookupError(
            f"the image build needs {BUILD_REQUIREMENT} (the service's build backend) in"
            f" this virtualenv; found {dist.version}"
        )
    return dist


def repack(dist: metadata.Distribution, directory: Path) -> Path:
    """An installed distribution back as a wheel file in ``directory``."""
    wheel_text = dist.read_text("WHEEL")
    if not wheel_text:
        raise LookupError(f"{dist.metadata['Name']} has no WHEEL file (not installed by pip?)")
    tags = [
        line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")
    ]
    name = dist.metadata["Name"].replace("-", "_")
    target = directory / f"{name}-{dist.version}-{_compressed(tags)}.whl"
    root = Path(str(dist.locate_file("")))
    records: list[tuple[str, str, str]] = []
    info_dir = ""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as wheel:
        for entry in dist.files or ():
            path = str(entry)
            parts = entry.parts
            # Scripts outside site-packages are made again from entry_points.txt.
            if parts[0] == ".." or "__pycache__" in parts or path.endswith(".pyc"):
                continue
            if parts[0].endswith(".dist-info"):
                info_dir = parts[0]
                if parts[-1] in _INSTALL_ONLY:
                    continue
            data = (root / path).read_bytes()
            wheel.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append((path, f"sha256={digest.decode()}", str(len(data))))
        if not info_dir:
            raise LookupError(f"{dist.metadata['Name']}: no .dist-info in its RECORD")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(records)
        writer.writerow((f"{info_dir}/RECORD", "", ""))
        wheel.writestr(f"{info_dir}/RECORD", out.getvalue())
    return target


def _compressed(tags: list[str]) -> str:
    """Tag lines as a wheel file name's compressed tag set (py.py-abi-plat.plat)."""
    split = [tag.split("-") for tag in tags]
    return "-".join(".".join(dict.fromkeys(part[i] for part in split)) for i in range(3))


def make_wheelhouse(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return [repack(d, directory) for d in (*runtime_distributions(), build_distribution())]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on 127.0.0.1; yields its URL."""
    handler = partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
