"""Session fixtures for the integration tests: a sandboxed Docker engine, an open and
an htpasswd registry on loopback, and a tiny busybox image (see devtools/sandbox.py).

Everything is started once per test session and torn down at its end; teardown fails
the session if a dockerd, containerd, registry or mount is left behind.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devtools.sandbox import BuiltImage, Engine, Registry, Sandbox, build_busybox_image
from imagesvc.config import Settings
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2_grpc

BUSYBOX_TAG = "imagesvc-test/busybox:1.0"

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item, not only this directory's.
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The engine and both registries, running for the whole session."""
    with Sandbox() as sb:
        yield sb


@pytest.fixture(scope="session")
def engine(sandbox: Sandbox) -> Engine:
    """The sandboxed dockerd; ``engine.host`` is its DOCKER_HOST (unix://...)."""
    return sandbox.engine


@pytest.fixture(scope="session")
def open_registry(sandbox: Sandbox) -> Registry:
    """A registry without auth at ``open_registry.address`` (127.0.0.1:PORT)."""
    return sandbox.open_registry


@pytest.fixture(scope="session")
def auth_registry(sandbox: Sandbox) -> Registry:
    """A registry demanding ``auth_registry.username`` / ``auth_registry.password``."""
    return sandbox.auth_registry


@pytest.fixture(scope="session")
def busybox_image(engine: Engine) -> BuiltImage:
    """``imagesvc-test/busybox:1.0`` (FROM scratch + static busybox), built once.

    Shared by the whole session: don't remove or retag it in a test; build a throwaway
    image with ``devtools.sandbox.build_busybox_image`` for tests that delete images.
    """
    return BuiltImage(tag=BUSYBOX_TAG, id=build_busybox_image(engine, BUSYBOX_TAG))


@pytest.fixture(scope="module")
def own_engine(engine: Engine) -> Iterator[Engine]:
    """A second sandboxed dockerd of the requesting module, which it may fill, empty and
    stop (never the session's engine)."""
    base = Path(tempfile.mkdtemp(prefix="isv-own-", dir="/tmp"))
    own = Engine(base / "engine")
    assert own.host != engine.host
    own.start()
    try:
        yield own
    finally:
        own.stop()
        assert not own.leftover_processes()
        shutil.rmtree(base)


@pytest.fixture
def cleanup(engine: Engine) -> Iterator[list[str]]:
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


@pytest.fixture(scope="session")
def server(engine: Engine) -> Iterator[ThreadedServer]:
    """The service on 127.0.0.1:<port 0>, talking to the sandboxed engine."""
    running = ThreadedServer(server_settings(engine.host))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def channel(server: ThreadedServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> image_service_pb2_grpc.ImageServiceStub:
    """An ImageService client over a real gRPC channel."""
    return image_service_pb2_grpc.ImageServiceStub(channel)
