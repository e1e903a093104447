"""Who is calling, from what the transport edge saw: the `authorization` header or
metadata value and the names of a client certificate the TLS layer verified.

The edges (gRPC interceptor, REST middleware) call `Authenticator.establish(...)`, which sets
`current_identity` (or `credential_problem`) for the rest of the call; authorization
then happens once, for both transports, in the servicer guard. A bearer token, when
present, decides (an invalid one is refused even beside a valid certificate); otherwise
the certificate does. With authentication off every caller is `anonymous` with every
role (the server only allows that on loopback unless told otherwise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagesvc.core.access import ALL_ROLES
from imagesvc.core.credential_files import (
    MAX_TOKEN_LENGTH,
    TOKEN_PATTERN,
    CertificateNames,
    ClientTable,
    TokenTable,
)
from imagesvc.core.identity import Identity, credential_problem, current_identity
from imagesvc.core.reloading import ReloadingFile

ANONYMOUS = Identity(name="anonymous", roles=ALL_ROLES, via="anonymous")

_BEARER = re.compile(r"bearer +(\S+) *", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Authentication:
    """The outcome: an identity, or none (no credentials), or a problem (invalid ones)."""

    identity: Identity | None = None
    problem: str | None = None


class Authenticator:
    def __init__(
        self,
        tokens: ReloadingFile[TokenTable] | None = None,
        clients: ReloadingFile[ClientTable] | None = None,
        *,
        client_certificates: bool = False,
    ) -> None:
        """`client_certificates`: the TLS layer verifies client certificates against a
        CA (mTLS on); `clients` maps their names to roles (without it a verified
        certificate identifies a caller that has no roles)."""
        self._tokens = tokens
        self._clients = clients
        self._client_certificates = client_certificates

    @property
    def enabled(self) -> bool:
        return self._tokens is not None or self._client_certificates

    @property
    def client_certificates(self) -> bool:
        """Whether a verified client certificate can identify a caller (mTLS on)."""
        return self._client_certificates

    def authenticate(
        self, authorization: str | None, certificate: CertificateNames | None
    ) -> Authentication:
        if not self.enabled:
            return Authentication(ANONYMOUS)
        if authorization is not None:
            return self._bearer(authorization)
        if certificate is not None and self._client_certificates:
            return Authentication(self._certificate_identity(certificate))
        return Authentication()

    def _bearer(self, authorization: str) -> Authentication:
        match = _BEARER.fullmatch(authorization)
        token = match.group(1) if match else ""
        if len(token) > MAX_TOKEN_LENGTH or not TOKEN_PATTERN.fullmatch(token):
            return Authentication(
                problem="the authorization header must be 'Bearer <token>'"
                " (RFC 6750 token characters)"
            )
        if self._tokens is None:
            return Authentication(
                problem="this server accepts no bearer tokens (no tokens file is configured);"
                " use a client certificate"
            )
        entry = self._tokens.current().find(token)
        if entry is None:
            return Authentication(problem="the bearer token is not valid (unknown or revoked)")
        return Authentication(Identity(entry.identity, entry.roles, "token"))

    def _certificate_identity(self, certificate: CertificateNames) -> Identity:
        entry = self._clients.current().find(certificate) if self._clients else None
        if entry is not None:
            return Identity(entry.identity, entry.roles, "mtls")
        labels = certificate.labels()
        # Trusted but not mapped: known by its first name, allowed nothing.
        return Identity(labels[0] if labels else "unnamed certificate", frozenset(), "mtls")

    def establish(
        self, authorization: str | None, certificate: CertificateNames | None
    ) -> Authentication:
        """Authenticates and sets current_identity and credential_problem for the rest of
        the call. Edges call it inside the call's own task (grpc.aio and uvicorn run each
        call in a task with a copied context), so nothing leaks to other calls."""
        outcome = self.authenticate(authorization, certificate)
        current_identity.set(outcome.identity)
        credential_problem.set(outcome.problem)
        return outcome
