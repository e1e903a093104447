"""ExportImages from an Engine reached over plain TCP (read on the event loop by
engine/loop_http.py) and over TLS (DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, read through
docker-py): the same archive as over the unix socket, and a cancelled export closes the
Engine's connection on both; a CA bundle variable meant for other HTTPS calls
(REQUESTS_CA_BUNDLE) does not replace the Engine's CA. The Engine is the real one,
behind a loopback proxy (tests/integration/engine_proxy.py) that listens on TCP, with
TLS and client certificates required as a `dockerd --tlsverify` does."""

from __future__ import annotations

import io
import json
import ssl
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import certifi
import grpc
import pytest

from devtools.sandbox import BuiltImage, SandboxEngine
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.certificates import new_ca
from tests.integration.conftest import server_settings
from tests.integration.engine_proxy import EngineRequestCounter
from tests.integration.exports import threads_reading_exports, wait_for
from tests.integration.local_images import Stub, Throwaway, unique_repo

LAYER_MIB = 32


@pytest.fixture(scope="module")
def big_image(engine: SandboxEngine, stub: Stub) -> Iterator[BuiltImage]:
    made = Throwaway(engine, stub)
    try:
        yield made.build(
            f"{unique_repo('transport')}:1",
            extra_lines=[f"RUN head -c {LAYER_MIB * 1024 * 1024} /dev/urandom > /big"],
        )
    finally:
        made.cleanup()


@pytest.fixture
def tls_engine_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """The docker CLI's TLS environment for a client certificate of a test CA, and the
    server side's context (server certificate for 127.0.0.1, client certificate required)."""
    ca = new_ca(tmp_path / "pki", "engine-ca")
    server = ca.issue(
        tmp_path / "pki", "engine", common_name="engine", ips=("127.0.0.1",), server=True
    )
    client = ca.issue(tmp_path / "pki", "client", common_name="imagesvc")
    cert_path = tmp_path / "docker-certs"
    cert_path.mkdir()
    (cert_path / "ca.pem").write_bytes(ca.cert_pem)
    (cert_path / "cert.pem").write_bytes(client.cert_pem)
    (cert_path / "key.pem").write_bytes(client.key_pem)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(cert_path))
    # Set in many images for other HTTPS calls; it must not replace the Engine's CA
    # (docker/docker-py#2433).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.cert))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(server.cert, server.key)
    return context


def _manifest(archive: bytes) -> list[dict[str, object]]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        manifest: list[dict[str, object]] = json.loads(member.read())
    return manifest


def _export_then_cancel(counter: EngineRequestCounter, image: BuiltImage) -> None:
    """A whole export names the image; a second one cancelled after its first message
    leaves no Engine connection and no reading thread behind."""
    server = ThreadedServer(server_settings(counter.host))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = image_service_pb2_grpc.ImageServiceStub(channel)
            archive = b"".join(
                m.data
                for m in stub.ExportImages(pb.ExportImagesRequest(images=[image.tag]), timeout=120)
            )
            assert counter.count == 1, "the export did not go through the proxy"
            assert len(archive) > LAYER_MIB * 1024 * 1024
            (entry,) = _manifest(archive)
            assert entry["RepoTags"] == [image.tag]
            assert image.id.removeprefix("sha256:") in str(entry["Config"])

            call = stub.ExportImages(pb.ExportImagesRequest(images=[image.tag]), timeout=120)
            assert next(call).data
            assert counter.open_connections == 1
            time.sleep(0.3)
            call.cancel()
            assert wait_for(lambda: counter.open_connections == 0, 5), (
                "the Engine's export connection is still open after the cancel"
            )
            assert wait_for(lambda: not threads_reading_exports(), 5), (
                "a thread still reads the cancelled export"
            )
    finally:
        server.stop()


def test_export_from_an_engine_over_plain_tcp(engine: SandboxEngine, big_image: BuiltImage) -> None:
    with EngineRequestCounter(engine.host, request="GET /images/get", tcp=True) as counter:
        assert counter.host.startswith("tcp://127.0.0.1:")
        _export_then_cancel(counter, big_image)


def test_export_from_an_engine_over_tls(
    engine: SandboxEngine, big_image: BuiltImage, tls_engine_files: ssl.SSLContext
) -> None:
    with EngineRequestCounter(
        engine.host, request="GET /images/get", tls=tls_engine_files
    ) as counter:
        _export_then_cancel(counter, big_image)
