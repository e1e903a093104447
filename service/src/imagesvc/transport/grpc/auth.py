"""The gRPC edge of authentication: reads the `authorization` metadata and the client
certificate gRPC's TLS layer verified, and establishes the caller for the call (the
interceptor calls this once per ImageService RPC). Deciding what the caller may do is
not done here but in the servicer guard, for gRPC and REST alike."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc

from imagesvc.core.authentication import Authentication, Authenticator
from imagesvc.core.credential_files import CertificateNames
from imagesvc.core.identity import CallOrigin, current_origin

AUTHORIZATION_KEY = "authorization"

Context = grpc.aio.ServicerContext[Any, Any]


def _authorization(context: Context) -> str | None:
    values = [
        value
        for key, value in context.invocation_metadata() or ()
        if key == AUTHORIZATION_KEY and isinstance(value, str)
    ]
    # Two authorization values are ambiguous: refuse rather than pick one.
    return values[0] if len(values) == 1 else ("" if values else None)


def _texts(properties: Mapping[str, Iterable[bytes]], key: str) -> tuple[str, ...]:
    return tuple(value.decode("utf-8", "replace") for value in properties.get(key, ()))


def certificate_names(context: Context) -> CertificateNames | None:
    """The verified client certificate's names, or None without one. gRPC only presents
    a client certificate here after verifying it against the configured client CA."""
    properties = context.auth_context() or {}
    if b"ssl" not in properties.get("transport_security_type", ()):
        return None
    if not list(properties.get("x509_pem_cert", ())):
        return None
    return CertificateNames(
        common_names=_texts(properties, "x509_common_name"),
        dns=_texts(properties, "peer_dns"),
        uris=_texts(properties, "peer_uri"),
        emails=_texts(properties, "peer_email"),
    )


def establish_caller(
    context: Context, authenticator: Authenticator, request_id: str, peer: str
) -> Authentication:
    current_origin.set(CallOrigin("grpc", request_id, peer))
    authorization = _authorization(context)
    # A bearer token wins over a certificate; without mTLS there is none to read.
    wants_certificate = authorization is None and authenticator.client_certificates
    certificate = certificate_names(context) if wants_certificate else None
    return authenticator.establish(authorization, certificate)
