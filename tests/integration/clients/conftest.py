"""Fixtures of the client tests: a client of the live server, throwaway images, and an
image served by the open registry (pushed, then removed from the Engine) to pull."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devtools.sandbox import BuiltImage, Engine, Registry, build_busybox_image
from imagesvc.server import ThreadedServer
from imagesvc_client import ImageClient
from tests.integration.local_images import Throwaway, inspect
from tests.integration.transfers import local_id, registry_manifest, remove_local, unique


@pytest.fixture(scope="session")
def address(server: ThreadedServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def client(address: str) -> Iterator[ImageClient]:
    with ImageClient(address, timeout=30) as opened:
        yield opened


@pytest.fixture
def throwaway(engine: Engine, busybox_image: BuiltImage) -> Iterator[Throwaway]:
    """Images of one test, all removed afterwards; the session busybox image survives."""
    made = Throwaway(engine)
    try:
        yield made
    finally:
        made.cleanup()
    assert inspect(engine, busybox_image.tag)["Id"] == busybox_image.id


@dataclass(frozen=True)
class ServedImage:
    """An image in the open registry and not on the Engine (until a test pulls it)."""

    reference: str  # 127.0.0.1:PORT/team/...:1
    digest: str
    image_id: str
    layers: int


@pytest.fixture
def served_image(
    engine: Engine, open_registry: Registry, busybox_image: BuiltImage
) -> Iterator[ServedImage]:
    """A unique image (so a pull really downloads a layer), pushed with the docker CLI."""
    repository = unique("team/client-")
    reference = f"{open_registry.address}/{repository}:1"
    image_id = build_busybox_image(
        engine, reference, extra_lines=["RUN dd if=/dev/urandom of=/data bs=64k count=4"]
    )
    layers = len(inspect(engine, reference)["RootFS"]["Layers"])
    engine.docker("push", reference)
    manifest = registry_manifest(open_registry, repository, "1")
    remove_local(engine, reference)
    assert local_id(engine, image_id) is None
    yield ServedImage(reference, manifest.digest, image_id, layers)
    remove_local(engine, reference, f"{reference[:-2]}@{manifest.digest}")
