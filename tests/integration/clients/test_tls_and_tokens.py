"""The clients' TLS and token options against a real server with TLS, a client CA and a
tokens file (docs/security.md): ImageClient, AsyncImageClient and imagesvc-cli reach it only
with the right CA, server name, client certificate and token, and report each refusal
with its reason."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from devtools.sandbox import BuiltImage
from imagesvc_client import (
    AsyncImageClient,
    ImageClient,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from tests.integration.clients.conftest import SecureServer
from tests.integration.clients.test_cli import cli, error_of


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
