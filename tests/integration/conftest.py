"""Session fixtures for the integration tests: a sandboxed Docker engine, an open and
an htpasswd registry on loopback, and a tiny busybox image (see devtools/sandbox.py).

Everything is started once per test session and torn down at its end; teardown fails
the session if a dockerd, containerd, registry or mount is left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.sandbox import BuiltImage, Engine, Registry, Sandbox, build_busybox_image

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
