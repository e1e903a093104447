"""A renewed server certificate is served on both ports to the connections that follow,
without a restart; a renewal that does not work (key not matching) is ignored with an
error and the last good certificate stays."""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devtools.sandbox import Engine
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.certificates import KeyPair
from tests.integration.conftest import server_settings
from tests.integration.log_capture import CapturedLogs
from tests.integration.security.conftest import Pki, Tokens


def _served_certificate(port: int, pki: Pki, *, alpn: str) -> bytes:
    """The DER certificate the port presents to a new connection (with a trusted client
    certificate, which the gRPC port demands)."""
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(pki.viewer.cert, pki.viewer.key)
    context.set_alpn_protocols([alpn])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _der(pair: KeyPair) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pair.cert_pem.decode())


def _install(pair: KeyPair, cert: Path, key: Path) -> None:
    """Replaces both files, each atomically (key first: a check in between sees a pair
    that does not match and keeps the old one)."""
    for source, target in ((pair.key, key), (pair.cert, cert)):
        staging = target.with_suffix(".new")
        shutil.copyfile(source, staging)
        staging.replace(target)


@pytest.fixture
def renewing(
    engine: Engine, pki: Pki, tokens: Tokens, tmp_path: Path
) -> Iterator[tuple[ThreadedServer, Path, Path]]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    _install(pki.server, cert, key)
    running = ThreadedServer(
        server_settings(
            engine.host,
            tls_cert_file=str(cert),
            tls_key_file=str(key),
            tls_client_ca_file=str(pki.ca.cert),
            client_cert_roles_file=str(pki.roles_file),
            tokens_file=str(tokens.path),
        )
    )
    yield running, cert, key
    running.stop()


def _wait_until_served(running: ThreadedServer, pki: Pki, expected: bytes) -> None:
    deadline = time.monotonic() + 5
    for port, alpn in ((running.port, "h2"), (running.http_port, "http/1.1")):
        # The files are looked at on a handshake, at most once a second.
        while _served_certificate(port, pki, alpn=alpn) != expected:
            assert time.monotonic() < deadline, f"port {port} still serves the old certificate"
            time.sleep(0.2)


def test_a_renewed_certificate_is_served_without_a_restart(
    renewing: tuple[ThreadedServer, Path, Path],
    pki: Pki,
    tmp_path: Path,
    logs: CapturedLogs,
) -> None:
    running, cert, key = renewing
    assert _served_certificate(running.port, pki, alpn="h2") == _der(pki.server)
    assert _served_certificate(running.http_port, pki, alpn="http/1.1") == _der(pki.server)

    renewed = pki.ca.issue(
        tmp_path, "renewed", common_name="imagesvc", ips=("127.0.0.1",), server=True
    )
    _install(renewed, cert, key)
    _wait_until_served(running, pki, _der(renewed))

    # Calls work on the renewed certificate, on both ports.
    credentials = grpc.ssl_channel_credentials(
        pki.ca.cert_pem, pki.viewer.key_pem, pki.viewer.cert_pem
    )
    with grpc.secure_channel(f"127.0.0.1:{running.port}", credentials) as channel:
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        stub.ListImages(pb.ListImagesRequest(page_size=1), timeout=30)

    # A broken renewal (the key of another certificate) keeps the renewed one.
    mark = logs.mark()
    other = pki.ca.issue(tmp_path, "other", common_name="x", ips=("127.0.0.1",), server=True)
    shutil.copyfile(other.key, key)
    time.sleep(1.1)
    for port, alpn in ((running.port, "h2"), (running.http_port, "http/1.1")):
        assert _served_certificate(port, pki, alpn=alpn) == _der(renewed)
    errors = [
        r
        for r in logs.since(mark)
        if r["logger"] == "imagesvc.transport.server_certificate" and r["level"] == "error"
    ]
    assert len(errors) == 1
    assert "keeping the last good ones" in errors[0]["message"]
