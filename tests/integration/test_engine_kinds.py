"""Each engine of the matrix is the engine its kind names: version and image store."""

from __future__ import annotations

import json

import pytest

from devtools.engine_kinds import EngineKind
from devtools.sandbox import DOCKER_KINDS, BuiltImage, Engine

pytestmark = pytest.mark.contract

_DOCKER_KIND = {kind.name: kind for kind in DOCKER_KINDS}


def test_the_engine_is_its_kind(engine: Engine, engine_kind: EngineKind) -> None:
    version = json.loads(engine.docker("version", "--format", "{{json .Server}}").stdout)
    assert version["Version"].startswith(_DOCKER_KIND[engine_kind.name].version_prefix)
    driver_status = json.loads(engine.docker("info", "--format", "{{json .DriverStatus}}").stdout)
    on_containerd = ["driver-type", "io.containerd.snapshotter.v1"] in driver_status
    assert on_containerd == engine_kind.containerd_store


def test_the_session_image_runs(engine: Engine, busybox_image: BuiltImage) -> None:
    run = engine.docker("run", "--rm", "--network", "none", busybox_image.tag, "echo", "hi")
    assert run.stdout == "hi\n"
