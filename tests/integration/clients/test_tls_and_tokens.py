"""The clients' TLS and token options against a real server with TLS, a client CA and a
tokens file (SECURITY.md): ImageClient, AsyncImageClient and imagesvc-cli reach it only
with the right CA, server name, client certificate and token, and report each refusal
with its reason."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.sandbox import BuiltImage, Engine
from imagesvc.core.credential_files import hash_token
from imagesvc.server import ThreadedServer
from imagesvc_client import (
    AsyncImageClient,
    ImageClient,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from tests.integration.certificates import KeyPair, new_ca
from tests.integration.clients.test_cli import cli, error_of
from tests.integration.conftest import server_settings


@dataclass(frozen=True)
class SecureServer:
    address: str  # 127.0.0.1:PORT
    ca: Path  # signs the server's certificate (for 127.0.0.1 and imagesvc.test)
    client: KeyPair  # a client certificate the server trusts
    admin_token: str
    viewer_token: str


@pytest.fixture(scope="module")
def secure(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
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
            engine.host,
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


def _client(secure: SecureServer, **options: object) -> ImageClient:
    settings: dict[str, object] = {
        "root_certificates": secure.ca,
        "client_certificate": secure.client.cert,
        "client_key": secure.client.key,
        "token": secure.admin_token,
        "timeout": 10,
    }
    settings.update(options)
    return ImageClient(secure.address, **settings)  # type: ignore[arg-type]


def test_python_client_with_ca_client_certificate_and_token(
    secure: SecureServer, busybox_image: BuiltImage
) -> None:
    # Paths and PEM bytes both work.
    with _client(secure) as client:
        assert client.get(busybox_image.tag).id == busybox_image.id
    pem = {
        "root_certificates": secure.ca.read_bytes(),
        "client_certificate": secure.client.cert_pem,
        "client_key": secure.client.key_pem,
    }
    with _client(secure, **pem) as client:
        assert busybox_image.id in {image.id for image in client.list()}


def test_python_client_refusals_say_why(secure: SecureServer, busybox_image: BuiltImage) -> None:
    with _client(secure, token="not-a-token") as client, pytest.raises(Unauthenticated) as bad:
        client.get(busybox_image.tag)
    assert bad.value.reason == "CALLER_UNAUTHENTICATED"
    assert "not-a-token" not in str(bad.value)

    with _client(secure, token=secure.viewer_token) as client:
        assert client.get(busybox_image.tag).id == busybox_image.id
        with pytest.raises(PermissionDenied) as denied:
            client.remove(busybox_image.tag)
    assert denied.value.reason == "CALLER_PERMISSION_DENIED"

    # Without the server's CA, without TLS, or without a client certificate (which this
    # server demands in the handshake), the connection itself fails.
    for options in (
        {"root_certificates": None, "tls": True},
        {"root_certificates": None, "client_certificate": None, "client_key": None},
        {"client_certificate": None, "client_key": None},
    ):
        with _client(secure, **options) as client, pytest.raises(Unavailable):
            client.get(busybox_image.tag)


def test_server_name_checks_the_certificate(
    secure: SecureServer, busybox_image: BuiltImage
) -> None:
    port = secure.address.rsplit(":", 1)[1]
    with (
        ImageClient(
            f"localhost:{port}",
            root_certificates=secure.ca,
            client_certificate=secure.client.cert,
            client_key=secure.client.key,
            token=secure.admin_token,
            timeout=10,
        ) as client,
        pytest.raises(Unavailable),
    ):
        client.get(busybox_image.tag)  # "localhost" is not in the certificate
    with _client(secure, server_name="imagesvc.test") as client:
        assert client.get(busybox_image.tag).id == busybox_image.id
    with _client(secure, server_name="elsewhere.test") as client, pytest.raises(Unavailable):
        client.get(busybox_image.tag)


def test_async_client_with_tls_and_token(secure: SecureServer, busybox_image: BuiltImage) -> None:
    async def scenario() -> None:
        async with AsyncImageClient(
            secure.address,
            root_certificates=secure.ca,
            client_certificate=secure.client.cert,
            client_key=secure.client.key,
            token=secure.viewer_token,
            timeout=10,
        ) as client:
            assert (await client.get(busybox_image.tag)).id == busybox_image.id
            with pytest.raises(PermissionDenied):
                await client.tag(busybox_image.tag, "client-tests/denied:1")

    asyncio.run(scenario())


def test_cli_with_tls_options_and_a_token_file(
    secure: SecureServer, busybox_image: BuiltImage, tmp_path: Path
) -> None:
    tls = [
        "--tls-ca", str(secure.ca),
        "--tls-cert", str(secure.client.cert),
        "--tls-key", str(secure.client.key),
    ]  # fmt: skip
    token_file = tmp_path / "token"
    token_file.write_text(secure.admin_token + "\n")

    listed = json.loads(
        cli(secure.address, "-o", "json", *tls, "--token-file", str(token_file), "ls").stdout
    )
    assert busybox_image.id in {image["id"] for image in listed}
    # The token from the environment; the options after the verb work as well.
    env = {"IMAGESVC_TOKEN": secure.viewer_token}
    quiet = cli(secure.address, "ls", "-q", "--no-trunc", *tls, env=env).stdout.split()
    assert busybox_image.id in quiet

    wrong = cli(secure.address, "-o", "json", *tls, "ls", env={"IMAGESVC_TOKEN": "nope"}, code=1)
    assert error_of(wrong)["reason"] == "CALLER_UNAUTHENTICATED"
    denied = cli(secure.address, *tls, "rm", busybox_image.tag, env=env, code=1)
    assert "CALLER_PERMISSION_DENIED" in denied.stderr
    assert secure.viewer_token not in denied.stderr + denied.stdout

    plain = cli(secure.address, "ls", env=env, code=1)
    assert f"cannot reach the imagesvc server at {secure.address}" in plain.stderr
