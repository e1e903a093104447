"""Fixtures of the client tests: a client of the live server, throwaway images, an
image served by the open registry (pushed, then removed from the Engine) to pull, and a
server with TLS, mutual TLS and tokens; a slow image (behind a throttling proxy) to
cancel pulls of."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.sandbox import BuiltImage, Engine, Registry, build_busybox_image
from imagesvc.core.credential_files import hash_token
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2_grpc
from imagesvc_client import ImageClient
from tests.integration.certificates import KeyPair, new_ca
from tests.integration.conftest import server_settings
from tests.integration.local_images import Throwaway, inspect
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import (
    local_id,
    local_image,
    registry_manifest,
    remove_local,
    unique,
)


@pytest.fixture(scope="module")
def address(server: ThreadedServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def client(address: str) -> Iterator[ImageClient]:
    with ImageClient(address, timeout=30) as opened:
        yield opened


@pytest.fixture
def throwaway(
    engine: Engine, busybox_image: BuiltImage, stub: image_service_pb2_grpc.ImageServiceStub
) -> Iterator[Throwaway]:
    """Images of one test, all removed afterwards; the session busybox image survives.
    Each build returns once the live server lists it (built beside it, on the Engine)."""
    made = Throwaway(engine, stub)
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


# Bytes a second the served image's registry sends to the Engine (its layer is 256 KiB).
SERVED_RATE = 512 * 1024


@pytest.fixture
def served_image(
    engine: Engine, open_registry: Registry, busybox_image: BuiltImage
) -> Iterator[ServedImage]:
    """A unique image (so a pull really downloads a layer), pushed with the docker CLI.

    Served through a throttling proxy (about 0.5 s per pull): the Engine reports a
    layer's progress to a pull only as its latest state, so on a fast loopback a busy
    machine could see a layer skip "Downloading" and progress tests would depend on
    timing."""
    repository = unique("team/client-")
    with ThrottleProxy(open_registry.address, rate=SERVED_RATE) as proxy:
        reference = f"{proxy.address}/{repository}:1"
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


@dataclass(frozen=True)
class SecureServer:
    address: str  # 127.0.0.1:PORT
    ca: Path  # signs the server's certificate (for 127.0.0.1 and imagesvc.test)
    client: KeyPair  # a client certificate the server trusts
    admin_token: str
    viewer_token: str


@pytest.fixture(scope="package")
def secure(
    default_engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureServer]:
    """A server with TLS, a client CA (mutual TLS) and a tokens file: an admin and a
    viewer token."""
    directory = tmp_path_factory.mktemp("client-tls")
    server_ca = new_ca(directory, "client-tests-server-ca")
    client_ca = new_ca(directory, "client-tests-client-ca")
    server_pair = server_ca.issue(
        directory,
        "server",
        common_name="imagesvc",
        dns=("imagesvc.test",),
        ips=("127.0.0.1",),
        server=True,
    )
    admin, viewer = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    tokens = directory / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                "tokens": [
                    {"identity": "client-admin", "roles": ["admin"], "sha256": hash_token(admin)},
                    {"identity": "client-viewer", "roles": ["viewer"], "token": viewer},
                ]
            }
        )
    )
    running = ThreadedServer(
        server_settings(
            default_engine.host,
            tls_cert_file=str(server_pair.cert),
            tls_key_file=str(server_pair.key),
            tls_client_ca_file=str(client_ca.cert),
            tokens_file=str(tokens),
        )
    )
    try:
        yield SecureServer(
            address=f"127.0.0.1:{running.port}",
            ca=server_ca.cert,
            client=client_ca.issue(directory, "client", common_name="client-tests"),
            admin_token=admin,
            viewer_token=viewer,
        )
    finally:
        running.stop()


# A slow pull: a layer of 8 MiB through a proxy passing 200 kB/s takes ~40 s.
LAYER_MIB = 8
RATE = 200 * 1024
STOP_WITHIN = 5.0
AFTER_CANCEL_WAIT = 3.0


@dataclass(frozen=True)
class SlowImage:
    reference: str  # through the proxy
    image_id: str
    proxy: ThrottleProxy


@pytest.fixture(scope="package")
def big_repository(
    default_engine: Engine, open_registry: Registry, default_busybox_image: BuiltImage
) -> Iterator[tuple[str, str]]:
    """(repository, image id) of an image with an 8 MiB random layer, in the open
    registry and not on the Engine."""
    repository = unique("team/client-cancel-")
    direct = f"{open_registry.address}/{repository}:1"
    image_id = build_busybox_image(
        default_engine,
        direct,
        extra_lines=[f"RUN dd if=/dev/urandom of=/blob bs=1M count={LAYER_MIB}"],
    )
    default_engine.docker("push", direct)
    remove_local(default_engine, direct)
    yield repository, image_id
    remove_local(default_engine, direct)


@pytest.fixture
def slow_image(
    engine: Engine, open_registry: Registry, big_repository: tuple[str, str]
) -> Iterator[SlowImage]:
    repository, image_id = big_repository
    with ThrottleProxy(open_registry.address, rate=RATE) as proxy:
        reference = f"{proxy.address}/{repository}:1"
        assert local_id(engine, image_id) is None
        try:
            yield SlowImage(reference, image_id, proxy)
        finally:
            remove_local(engine, reference)


def assert_pull_stopped(engine: Engine, slow: SlowImage) -> None:
    """The daemon dropped its registry connections soon after a cancel, and did not come
    back for the image once the throttle is lifted."""
    proxy = slow.proxy
    assert proxy.wait_for(lambda: proxy.open_connections == 0, timeout=STOP_WITHIN), (
        f"{proxy.open_connections} registry connection(s) open {STOP_WITHIN}s after the cancel"
    )
    opened = proxy.connections_opened
    proxy.set_rate(None)
    time.sleep(AFTER_CANCEL_WAIT)
    assert proxy.connections_opened == opened, "the daemon came back to the registry"
    assert local_image(engine, slow.reference) is None
