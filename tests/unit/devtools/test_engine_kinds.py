"""Which engine the sandbox and the matrix use, by the system dockerd's version: Engine
20.10 on Debian 12, Engine 26 on Debian 13, anything else by its own name."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import engine_kinds, sandbox


@pytest.fixture
def system_version(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str | None]]:
    version: list[str | None] = [None]
    for module in (sandbox, engine_kinds):
        monkeypatch.setattr(module, "system_dockerd_version", lambda: version[0])
    engine_kinds.default_kind.cache_clear()
    yield version
    engine_kinds.default_kind.cache_clear()


def test_debian_12s_engine_is_the_default_and_the_20_10_kind(
    system_version: list[str | None],
) -> None:
    system_version[0] = "20.10.24+dfsg1"
    assert engine_kinds.default_kind().name == "docker-20.10"
    assert sandbox.DOCKER_20_10.missing() is None


def test_debian_13s_engine_is_the_default_and_20_10_is_missing(
    system_version: list[str | None],
) -> None:
    system_version[0] = "26.1.5+dfsg1"
    assert engine_kinds.default_kind().name == "docker-26"
    why = sandbox.DOCKER_20_10.missing()
    assert why is not None
    assert "26.1.5+dfsg1" in why
    assert "20.10" in why
    # The sandbox's own engine (scripts/run, tests outside the matrix) takes any version.
    assert sandbox.DOCKER_SYSTEM.missing() is None


def test_another_system_engine_is_named_by_its_version(
    system_version: list[str | None], tmp_path: Path
) -> None:
    system_version[0] = "28.2.2"
    kind = engine_kinds.default_kind()
    assert kind.name == "docker-28.2.2"
    engine = kind.make(tmp_path / "e")
    assert isinstance(engine, sandbox.Engine)
    assert engine.kind is sandbox.DOCKER_SYSTEM


def test_no_dockerd_is_missing_with_the_install_command(
    system_version: list[str | None],
) -> None:
    why = sandbox.DOCKER_SYSTEM.missing()
    assert why is not None
    assert "apt-get install docker.io" in why


def test_the_version_is_read_from_dockerd() -> None:
    version = sandbox.system_dockerd_version()
    if (
        shutil.which("dockerd", path=os.pathsep.join([os.environ["PATH"], "/usr/sbin", "/sbin"]))
        is None
    ):
        assert version is None
    else:
        assert version is not None
        assert version[0].isdigit()
