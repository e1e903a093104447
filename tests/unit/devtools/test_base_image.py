"""The base-image maker's choice of Debian release (the one whose python3 the wheels fit)
and mirror (the one apt uses here), and the key of its cached rootfs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import base_image
from devtools.base_image import FALLBACK_MIRROR, apt_mirror, rootfs_key, suite_for_python
from devtools.sandbox import SandboxError
from tests.unit.file_trees import write_tree

ROOT = Path(__file__).parents[3]


def test_deb822_sources_skip_security_and_other_suites(tmp_path: Path) -> None:
    apt = write_tree(
        tmp_path,
        {
            "sources.list.d/a-security.sources": "Types: deb\nURIs: http://security.example/"
            "debian-security\nSuites: bookworm-security\nComponents: main\n",
            "sources.list.d/debian.sources": "Types: deb\n# a comment\nURIs: "
            "http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
            "Components: main contrib\nSigned-By: /usr/share/keyrings/k.gpg\n\n"
            "Types: deb\nURIs: http://other.example/debian\nSuites: trixie\n"
            "Components: main\n",
            "sources.list.d/node.sources.disabled-by-farm": "Types: deb\nURIs: "
            "http://wrong.example/\nSuites: bookworm\nComponents: main\n",
        },
    )
    assert apt_mirror(apt, "bookworm") == "http://mirror.example/debian"


def test_disabled_stanzas_and_source_lines_are_ignored(tmp_path: Path) -> None:
    ignored = {
        "sources.list": "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n",
        "sources.list.d/off.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example/"
        "\nSuites: bookworm\nComponents: main\n",
    }
    assert apt_mirror(write_tree(tmp_path, ignored), "bookworm") == FALLBACK_MIRROR
    one_line = "deb [arch=amd64 signed-by=/k.gpg] http://list.example/debian/ bookworm main\n"
    write_tree(tmp_path, {"sources.list.d/list.list": one_line})
    assert apt_mirror(tmp_path, "bookworm") == "http://list.example/debian"


def test_without_a_bookworm_source_deb_debian_org_is_used(tmp_path: Path) -> None:
    apt = write_tree(tmp_path, {"sources.list": "deb http://x.example/debian trixie main\n"})
    assert apt_mirror(apt, "bookworm") == FALLBACK_MIRROR == "http://deb.debian.org/debian"


def test_the_cache_key_is_stable() -> None:
    """The same recipe gives the same key in another process (no per-run salt, no
    clock), so a cached tarball is found again."""
    key = rootfs_key()
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    program = "from devtools.base_image import rootfs_key; print(rootfs_key())"
    elsewhere = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert elsewhere.stdout.strip() == key


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # Another release than this Python's own (trixie under Python 3.13).
        ("SUITE", "trixie" if base_image.SUITE != "trixie" else "bookworm"),
        ("VARIANT", "buildd"),
        ("PACKAGES", (*base_image.PACKAGES, "procps")),
        ("_RECIPE_VERSION", -1),
    ],
)
def test_another_recipe_gets_another_cache_key(
    monkeypatch: pytest.MonkeyPatch, name: str, value: object
) -> None:
    before = rootfs_key()
    monkeypatch.setattr(base_image, name, value)
    assert rootfs_key() != before


def test_a_trixie_source_serves_the_trixie_base(tmp_path: Path) -> None:
    apt = write_tree(tmp_path, {"sources.list": "deb http://x.example/debian trixie main\n"})
    assert apt_mirror(apt, "trixie") == "http://x.example/debian"


def test_the_release_is_the_one_whose_python3_the_wheels_were_built_for() -> None:
    assert suite_for_python((3, 11)) == "bookworm"
    assert suite_for_python((3, 13)) == "trixie"
    with pytest.raises(SandboxError, match=r"no Debian release has Python 3\.12"):
        suite_for_python((3, 12))
