"""Fixtures of the authentication/authorization tests: one bearer token per role (a
tokens file), a test PKI, servers with authentication on, and a log capture that fails
the package if any token, token hash, private key or registry password was logged."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from devtools.sandbox import Engine, Registry
from imagesvc.core.access import Role
from imagesvc.core.credential_files import hash_token
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.certificates import CertificateAuthority, KeyPair, new_ca
from tests.integration.conftest import server_settings
from tests.integration.log_capture import CapturedLogs, capture_logs

ROLES = [role.label for role in Role]


@dataclass(frozen=True)
class Tokens:
    """A token per role (and one spare identity used to test revocation); the file."""

    by_role: dict[str, str]
    path: Path

    def metadata(self, role: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.by_role[role]}"),)


def token_entry(identity: str, role: str, token: str, *, plain: bool = False) -> dict[str, object]:
    secret = {"token": token} if plain else {"sha256": hash_token(token)}
    return {"identity": identity, "roles": [role], **secret}


def write_json(path: Path, document: object) -> None:
    """Written to a new file and renamed over the old one, as a Secret update is."""
    staging = path.with_suffix(".new")
    staging.write_text(json.dumps(document))
    staging.replace(path)


@pytest.fixture(scope="package")
def logs() -> Iterator[CapturedLogs]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture(scope="package")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Tokens:
    by_role = {role: secrets.token_urlsafe(32) for role in ROLES}
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    # The viewer's entry in the plain form (hashed on load), the others hashed.
    entries = [
        token_entry(f"{role}-bot", role, token, plain=role == "viewer")
        for role, token in by_role.items()
    ]
    write_json(path, {"tokens": entries})
    return Tokens(by_role, path)


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    server: KeyPair
    viewer: KeyPair  # mapped by its CN
    builder: KeyPair  # mapped by its URI SAN
    unmapped: KeyPair  # trusted, not in the roles file
    rogue: KeyPair  # same CN as viewer, from a CA the server does not trust
    roles_file: Path


@pytest.fixture(scope="package")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = new_ca(directory, "imagesvc-test-client-ca")
    rogue_ca = new_ca(directory, "rogue-ca")
    roles_file = directory / "client-roles.json"
    write_json(
        roles_file,
        {
            "clients": [
                {"identity": "cert-viewer", "roles": ["viewer"], "match": ["CN=ci-viewer"]},
                {
                    "identity": "cert-builder",
                    "roles": ["builder"],
                    "match": ["URI:spiffe://imagesvc.test/builder"],
                },
            ]
        },
    )
    return Pki(
        ca=ca,
        server=ca.issue(
            directory,
            "server",
            common_name="imagesvc",
            dns=("localhost",),
            ips=("127.0.0.1",),
            server=True,
        ),
        viewer=ca.issue(directory, "viewer", common_name="ci-viewer"),
        builder=ca.issue(
            directory, "builder", common_name="ci-builder", uris=("spiffe://imagesvc.test/builder",)
        ),
        unmapped=ca.issue(directory, "unmapped", common_name="stranger"),
        rogue=rogue_ca.issue(directory, "rogue", common_name="ci-viewer"),
        roles_file=roles_file,
    )


@pytest.fixture(scope="package", autouse=True)
def package_secrets(
    logs: CapturedLogs, tokens: Tokens, pki: Pki, auth_registry: Registry
) -> Iterator[list[str]]:
    """Everything that must never be logged; checked when the package's tests are done."""
    assert auth_registry.password is not None
    forbidden = [
        *tokens.by_role.values(),
        *(hash_token(token) for token in tokens.by_role.values()),
        auth_registry.password,
        *(
            pair.key_pem.decode().splitlines()[1]
            for pair in (pki.server, pki.viewer, pki.builder, pki.unmapped, pki.rogue)
        ),
    ]
    yield forbidden
    logs.assert_free_of(forbidden)


@pytest.fixture(scope="package")
def token_server(
    default_engine: Engine, tokens: Tokens, package_secrets: list[str]
) -> Iterator[ThreadedServer]:
    """Bearer tokens on, no TLS, on loopback."""
    running = ThreadedServer(server_settings(default_engine.host, tokens_file=str(tokens.path)))
    yield running
    running.stop()


@pytest.fixture(scope="package")
def token_stub(token_server: ThreadedServer) -> Iterator[image_service_pb2_grpc.ImageServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{token_server.port}") as channel:
        yield image_service_pb2_grpc.ImageServiceStub(channel)


@pytest.fixture(scope="package")
def tls_server(
    default_engine: Engine, tokens: Tokens, pki: Pki, package_secrets: list[str]
) -> Iterator[ThreadedServer]:
    """TLS on both ports, mutual TLS with the test CA, client roles file and tokens."""
    running = ThreadedServer(
        server_settings(
            default_engine.host,
            tls_cert_file=str(pki.server.cert),
            tls_key_file=str(pki.server.key),
            tls_client_ca_file=str(pki.ca.cert),
            client_cert_roles_file=str(pki.roles_file),
            tokens_file=str(tokens.path),
        )
    )
    yield running
    running.stop()
