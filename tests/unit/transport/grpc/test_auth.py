"""The gRPC edge reads the client certificate only when it can identify the caller:
mTLS on and no bearer token (a token wins); otherwise the auth context is not read."""

from __future__ import annotations

from typing import Any

from imagesvc.core.authentication import ANONYMOUS, Authenticator
from imagesvc.core.identity import current_identity
from imagesvc.transport.grpc.auth import establish_caller


class _Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._metadata = metadata
        self.auth_context_reads = 0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        self.auth_context_reads += 1
        return {
            "transport_security_type": [b"ssl"],
            "x509_pem_cert": [b"-----BEGIN CERTIFICATE-----"],
            "x509_common_name": [b"builder-7"],
        }


def _establish(authenticator: Authenticator, context: _Context) -> Any:
    return establish_caller(context, authenticator, "id-1", "ipv4:127.0.0.1:1")  # type: ignore[arg-type]


def test_without_authentication_the_certificate_is_not_read() -> None:
    context = _Context()
    assert _establish(Authenticator(), context).identity == ANONYMOUS
    assert context.auth_context_reads == 0


def test_with_mtls_the_certificate_identifies_a_caller_without_a_token() -> None:
    context = _Context()
    outcome = _establish(Authenticator(client_certificates=True), context)
    assert context.auth_context_reads == 1
    assert outcome.identity is not None
    assert outcome.identity.name == "CN=builder-7"
    assert current_identity.get() == outcome.identity


def test_a_bearer_token_wins_and_the_certificate_is_not_read() -> None:
    context = _Context((("authorization", "Bearer not-configured"),))
    outcome = _establish(Authenticator(client_certificates=True), context)
    assert context.auth_context_reads == 0
    assert outcome.identity is None
    assert outcome.problem is not None
