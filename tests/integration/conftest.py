"""Fixtures for the integration tests: sandboxed Docker engines, an open and an htpasswd
registry on loopback, and a tiny busybox image (see devtools/sandbox.py).

The modules marked ``contract`` run once per engine kind (devtools/engine_kinds.py), the
kind being a module-scoped parameter: a failure names its engine
(``test_x[docker-26-containerd]``), and pytest groups each module's tests by kind, so
module fixtures are made once per kind. Every other test runs on the default kind.
Each kind's engine, busybox image and server are started on first use and kept for the
whole session (``EnginePool``), so switching kinds between modules starts nothing again;
teardown fails the session if a dockerd, containerd, registry or mount is left behind.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from devtools.engine_kinds import EngineKind, available_kinds, default_kind, kinds_named
from devtools.sandbox import (
    BuiltImage,
    Engine,
    Registry,
    Sandbox,
    SandboxEngine,
    build_busybox_image,
)
from imagesvc.config import Settings
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.engine_differences import difference_for

BUSYBOX_TAG = "imagesvc-test/busybox:1.0"

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item, not only this directory's.
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)
            _mark_engine_difference(item)
    # Tests of one engine's own behaviour run when that engine is in the matrix; the
    # report header says why a kind is not (CI names every kind, so none is left out).
    selected = {kind.name for kind in selected_kinds(config)}
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("engine_kinds")
        (dropped if marker and not selected.intersection(marker.args) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _mark_engine_difference(item: pytest.Item) -> None:
    """A strict xfail where engine_differences.py declares that the test fails on its
    engine: the run fails when the difference disappears."""
    if not isinstance(item, pytest.Function) or not hasattr(item, "callspec"):
        return
    callspec = item.callspec
    kind = callspec.params.get("engine_kind")
    if not isinstance(kind, EngineKind):
        return
    params = callspec.id.replace(kind.name, "", 1).strip("-")
    test = f"{item.path.name}::{item.originalname}"
    difference = difference_for(kind.name, test, params)
    if difference is not None:
        item.add_marker(pytest.mark.xfail(reason=f"{kind}: {difference.what}", strict=True))


def selected_kinds(config: pytest.Config) -> list[EngineKind]:
    """--engine-kinds (or $IMAGESVC_ENGINE_KINDS), else every kind this machine can run."""
    names = [name.strip() for name in str(config.getoption("engine_kinds")).split(",")]
    names = [name for name in names if name]
    if not names:
        return available_kinds()[0]
    try:
        return kinds_named(names)
    except ValueError as e:
        raise pytest.UsageError(f"--engine-kinds: {e}") from e


def pytest_report_header(config: pytest.Config) -> list[str]:
    unavailable = available_kinds()[1]
    lines = [f"contract tests on engines: {', '.join(map(str, selected_kinds(config)))}"]
    lines += [f"  not available: {name}: {why}" for name, why in unavailable.items()]
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Only tests that reach an engine (engine_kind in their fixture closure) multiply.
    if metafunc.definition.get_closest_marker("contract") and (
        "engine_kind" in metafunc.fixturenames
    ):
        kinds = selected_kinds(metafunc.config)
        metafunc.parametrize(
            "engine_kind", kinds, ids=[kind.name for kind in kinds], indirect=True, scope="module"
        )


class EnginePool:
    """Per engine kind, started on first use and kept until ``close()``: the engine,
    the session busybox image on it, and a service talking to it."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._images: dict[str, BuiltImage] = {}
        self._servers: dict[str, ThreadedServer] = {}
        self._channels: dict[str, grpc.Channel] = {}

    def engine(self, kind: EngineKind) -> SandboxEngine:
        if kind.name == default_kind().name:
            return self.sandbox.engine
        return self.sandbox.engine_of(kind.name, kind.make)

    def busybox_image(self, kind: EngineKind) -> BuiltImage:
        if kind.name not in self._images:
            image_id = build_busybox_image(self.engine(kind), BUSYBOX_TAG)
            self._images[kind.name] = BuiltImage(tag=BUSYBOX_TAG, id=image_id)
        return self._images[kind.name]

    def server(self, kind: EngineKind) -> ThreadedServer:
        if kind.name not in self._servers:
            self._servers[kind.name] = ThreadedServer(server_settings(self.engine(kind).host))
        return self._servers[kind.name]

    def channel(self, kind: EngineKind) -> grpc.Channel:
        if kind.name not in self._channels:
            port = self.server(kind).port
            self._channels[kind.name] = grpc.insecure_channel(f"127.0.0.1:{port}")
        return self._channels[kind.name]

    def close(self) -> None:
        """Closes the channels and stops the servers; the sandbox stops the engines."""
        for channel in self._channels.values():
            channel.close()
        for server in self._servers.values():
            server.stop()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The default engine and both registries, running for the whole session."""
    with Sandbox() as sb:
        yield sb


@pytest.fixture(scope="session")
def engine_pool(sandbox: Sandbox) -> Iterator[EnginePool]:
    pool = EnginePool(sandbox)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def default_engine(sandbox: Sandbox) -> Engine:
    """The default kind's engine, for package- and session-scoped fixtures outside the
    matrix (module-scoped ``engine`` is the kind's engine)."""
    return sandbox.engine


@pytest.fixture(scope="session")
def default_busybox_image(engine_pool: EnginePool) -> BuiltImage:
    """``busybox_image`` on the default engine, for package- and session-scoped fixtures."""
    return engine_pool.busybox_image(default_kind())


@pytest.fixture(scope="module")
def engine_kind(request: pytest.FixtureRequest) -> EngineKind:
    """The kind of engine this module's tests run on: a parameter in ``contract`` modules,
    the default kind elsewhere."""
    kind: EngineKind = getattr(request, "param", None) or default_kind()
    return kind


@pytest.fixture(scope="module")
def engine(engine_pool: EnginePool, engine_kind: EngineKind) -> SandboxEngine:
    """The sandboxed engine of this kind (a dockerd, or Podman); ``engine.host`` is its DOCKER_HOST (unix://...)."""
    return engine_pool.engine(engine_kind)


@pytest.fixture(scope="session")
def open_registry(sandbox: Sandbox) -> Registry:
    """A registry without auth at ``open_registry.address`` (127.0.0.1:PORT)."""
    return sandbox.open_registry


@pytest.fixture(scope="session")
def auth_registry(sandbox: Sandbox) -> Registry:
    """A registry demanding ``auth_registry.username`` / ``auth_registry.password``."""
    return sandbox.auth_registry


@pytest.fixture(scope="module")
def busybox_image(engine_pool: EnginePool, engine_kind: EngineKind) -> BuiltImage:
    """``imagesvc-test/busybox:1.0`` (FROM scratch + static busybox), built once per engine.

    Shared by the whole session: don't remove or retag it in a test; build a throwaway
    image with ``devtools.sandbox.build_busybox_image`` for tests that delete images.
    """
    return engine_pool.busybox_image(engine_kind)


@contextlib.contextmanager
def engine_of_its_own(
    make: Callable[[Path], Engine] = Engine, *, prefix: str = "isv-own-"
) -> Iterator[Engine]:
    """A sandboxed dockerd made by ``make(its base dir)`` in a fresh /tmp directory, for a
    module that kills, stops, fills or empties it (never the session's engines); stopped
    and removed at the end, which fails if any of its processes is left running."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    own = make(base / "engine")
    own.start()
    try:
        yield own
    finally:
        own.stop()
        assert not own.leftover_processes()
        shutil.rmtree(base)


@pytest.fixture(scope="module")
def own_engine(engine: SandboxEngine) -> Iterator[Engine]:
    """A second sandboxed dockerd of the requesting module, which it may fill, empty and
    stop (never the session's engine)."""
    with engine_of_its_own() as own:
        assert own.host != engine.host
        yield own


@pytest.fixture
def cleanup(engine: SandboxEngine) -> Iterator[list[str]]:
    """Tags to remove after the test (never the session busybox image)."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        assert not tag.startswith(BUSYBOX_TAG.split(":")[0] + ":")
        engine.docker("image", "rm", "--force", tag, check=False)


def server_settings(docker_host: str, **overrides: object) -> Settings:
    """Settings for a test server on a loopback port chosen by the kernel."""
    values: dict[str, object] = {
        "grpc_address": "127.0.0.1:0",
        "http_address": "127.0.0.1:0",
        "docker_host": docker_host,
        "health_interval_seconds": 0.2,
        "shutdown_grace_seconds": 2.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server(engine_pool: EnginePool, engine_kind: EngineKind) -> ThreadedServer:
    """The service on 127.0.0.1:<port 0>, talking to the sandboxed engine of this kind."""
    return engine_pool.server(engine_kind)


@pytest.fixture(scope="module")
def channel(engine_pool: EnginePool, engine_kind: EngineKind) -> grpc.Channel:
    return engine_pool.channel(engine_kind)


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> image_service_pb2_grpc.ImageServiceStub:
    """An ImageService client over a real gRPC channel."""
    return image_service_pb2_grpc.ImageServiceStub(channel)
