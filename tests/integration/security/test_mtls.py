"""TLS on both ports and mutual TLS: certificates made by the test (tests/integration/
certificates.py). A client certificate from the configured CA identifies the caller
(mapped to roles by CN or URI SAN); an untrusted one fails the handshake on both ports;
a missing one fails the gRPC handshake (gRPC can only require client certificates),
while on HTTP the open endpoints still answer."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.certificates import KeyPair
from tests.integration.security.conftest import Pki, Tokens
from tests.integration.security.probes import ABSENT_IMAGE, Stub, code_and_reason


def _credentials(pki: Pki, client: KeyPair | None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_pem,
        private_key=client.key_pem,
        certificate_chain=client.cert_pem,
    )


Connect = Callable[[KeyPair | None], Stub]
Call = Callable[[], object]


@pytest.fixture
def connect(tls_server: ThreadedServer, pki: Pki) -> Iterator[Connect]:
    channels: list[grpc.Channel] = []

    def open_stub(client: KeyPair | None) -> Stub:
        channel = grpc.secure_channel(f"127.0.0.1:{tls_server.port}", _credentials(pki, client))
        channels.append(channel)
        return image_service_pb2_grpc.ImageServiceStub(channel)

    yield open_stub
    for channel in channels:
        channel.close()


def _list(stub: Stub, metadata: tuple[tuple[str, str], ...] = ()) -> Call:
    return lambda: stub.ListImages(pb.ListImagesRequest(page_size=1), metadata=metadata, timeout=10)


def _remove(stub: Stub, metadata: tuple[tuple[str, str], ...] = ()) -> Call:
    return lambda: stub.RemoveImage(
        pb.RemoveImageRequest(image=ABSENT_IMAGE), metadata=metadata, timeout=10
    )


# gRPC ------------------------------------------------------------------------------


def test_grpc_a_certificate_mapped_by_cn_gets_its_roles(connect: Connect, pki: Pki) -> None:
    stub = connect(pki.viewer)
    assert code_and_reason(_list(stub)) == (grpc.StatusCode.OK, "")
    with pytest.raises(grpc.RpcError) as caught:
        _remove(stub)()
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "'cert-viewer'" in (caught.value.details() or "")


def test_grpc_a_certificate_mapped_by_uri_san_gets_its_roles(connect: Connect, pki: Pki) -> None:
    stub = connect(pki.builder)
    request = pb.TagImageRequest(source=ABSENT_IMAGE, target="imagesvc-test/mtls:1")
    assert code_and_reason(lambda: stub.TagImage(request, timeout=10)) == (
        grpc.StatusCode.NOT_FOUND,
        "IMAGE_NOT_FOUND",
    )
    assert code_and_reason(_remove(stub)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "CALLER_PERMISSION_DENIED",
    )


def test_grpc_a_trusted_but_unmapped_certificate_has_no_roles(connect: Connect, pki: Pki) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _list(connect(pki.unmapped))()
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "'CN=stranger'" in (caught.value.details() or "")


@pytest.mark.parametrize("client", ["untrusted", "missing"])
def test_grpc_an_untrusted_or_missing_certificate_fails_the_handshake(
    connect: Connect, pki: Pki, tokens: Tokens, client: str
) -> None:
    stub = connect(pki.rogue if client == "untrusted" else None)
    # Not even a valid admin token gets past the handshake.
    assert code_and_reason(_list(stub, tokens.metadata("admin")))[0] is grpc.StatusCode.UNAVAILABLE


def test_grpc_a_token_decides_over_the_certificate(
    connect: Connect, pki: Pki, tokens: Tokens
) -> None:
    stub = connect(pki.viewer)
    assert code_and_reason(_remove(stub, tokens.metadata("admin"))) == (
        grpc.StatusCode.NOT_FOUND,
        "IMAGE_NOT_FOUND",
    )
    invalid = (("authorization", "Bearer not-a-known-token-0123456789"),)
    assert code_and_reason(_list(stub, invalid)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "CALLER_UNAUTHENTICATED",
    )


def test_grpc_health_stays_open_to_any_trusted_client(tls_server: ThreadedServer, pki: Pki) -> None:
    credentials = _credentials(pki, pki.unmapped)
    with grpc.secure_channel(f"127.0.0.1:{tls_server.port}", credentials) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)  # the stub's types have no methods
        response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_plaintext_is_refused_on_a_tls_port(tls_server: ThreadedServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{tls_server.port}") as channel:
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        assert code_and_reason(_list(stub))[0] is grpc.StatusCode.UNAVAILABLE


# HTTP ------------------------------------------------------------------------------


def _https(pki: Pki, client: KeyPair | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return httpx.Client(verify=context, timeout=10, trust_env=False)


@pytest.mark.parametrize("client", ["valid", "missing", "unmapped"])
def test_http_open_endpoints_answer_over_tls(
    tls_server: ThreadedServer, pki: Pki, client: str
) -> None:
    pair = {"valid": pki.viewer, "missing": None, "unmapped": pki.unmapped}[client]
    with _https(pki, pair) as http:
        response = http.get(f"https://127.0.0.1:{tls_server.http_port}/healthz")
    assert response.status_code == 200


def test_http_an_untrusted_certificate_fails_the_handshake(
    tls_server: ThreadedServer, pki: Pki
) -> None:
    with _https(pki, pki.rogue) as http, pytest.raises(httpx.TransportError):
        http.get(f"https://127.0.0.1:{tls_server.http_port}/healthz")


def test_http_plaintext_gets_no_answer_on_a_tls_port(tls_server: ThreadedServer) -> None:
    with httpx.Client(timeout=10, trust_env=False) as http, pytest.raises(httpx.TransportError):
        http.get(f"http://127.0.0.1:{tls_server.http_port}/healthz")


def _images(pki: Pki, server: ThreadedServer, client: KeyPair | None, method: str = "GET") -> Any:
    path = "/v1/images" if method == "GET" else f"/v1/images/{quote(ABSENT_IMAGE, safe='')}"
    with _https(pki, client) as http:
        return http.request(method, f"https://127.0.0.1:{server.http_port}{path}")


def test_http_a_mapped_certificate_identifies_the_caller(
    tls_server: ThreadedServer, pki: Pki
) -> None:
    assert _images(pki, tls_server, pki.viewer).status_code == 200
    refused = _images(pki, tls_server, pki.viewer, "DELETE")
    assert refused.status_code == 403
    assert "'cert-viewer'" in refused.json()["message"]
    # Mapped by its URI SAN.
    assert _images(pki, tls_server, pki.builder).status_code == 200


def test_http_without_a_certificate_the_api_needs_a_token(
    tls_server: ThreadedServer, pki: Pki, tokens: Tokens
) -> None:
    missing = _images(pki, tls_server, None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"]
    with _https(pki, None) as http:
        response = http.get(
            f"https://127.0.0.1:{tls_server.http_port}/v1/images",
            headers={"authorization": f"Bearer {tokens.by_role['viewer']}"},
        )
    assert response.status_code == 200


def test_http_a_trusted_but_unmapped_certificate_has_no_roles(
    tls_server: ThreadedServer, pki: Pki
) -> None:
    refused = _images(pki, tls_server, pki.unmapped)
    assert refused.status_code == 403
    assert "'CN=stranger'" in refused.json()["message"]
