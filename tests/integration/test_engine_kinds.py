"""Each engine of the matrix is the engine its kind names: product, version and image store."""

from __future__ import annotations

import json

import pytest

from devtools.engine_kinds import EngineKind
from devtools.sandbox import BuiltImage, SandboxEngine

pytestmark = pytest.mark.contract


def test_the_engine_is_its_kind(engine: SandboxEngine, engine_kind: EngineKind) -> None:
    version = json.loads(engine.docker("version", "--format", "{{json .Server}}").stdout)
    components = {component["Name"]: component for component in version["Components"]}
    assert components[engine_kind.component]["Version"].startswith(engine_kind.version_prefix)
    driver_status = json.loads(engine.docker("info", "--format", "{{json .DriverStatus}}").stdout)
    on_containerd = ["driver-type", "io.containerd.snapshotter.v1"] in (driver_status or [])
    assert on_containerd == engine_kind.containerd_store


def test_the_session_image_runs(engine: SandboxEngine, busybox_image: BuiltImage) -> None:
    run = engine.docker("run", "--rm", "--network", "none", busybox_image.tag, "echo", "hi")
    assert run.stdout == "hi\n"
