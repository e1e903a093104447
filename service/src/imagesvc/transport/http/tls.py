"""TLS on the HTTP port, and the verified client certificate in the ASGI scope.

uvicorn does not put the TLS connection in the scope, so this HTTP/1.1 protocol (uvicorn's
h11 one) adds, on TLS connections, the ASGI "tls" extension (asgiref's TLS extension
spec: the client certificate as PEM, its subject, the TLS version) and, under
CLIENT_CERTIFICATE_EXTENSION, the certificate's names for authentication. The
certificate is only there after the TLS layer verified it against the client CA: the
context requests it (CERT_OPTIONAL) and fails the handshake on an untrusted one.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from imagesvc.core.credential_files import CertificateNames

CLIENT_CERTIFICATE_EXTENSION = "imagesvc.client_certificate"

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_SUBJECT_KEYS = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU"}


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the server's certificate (chain) and key, and the CA client
    certificates must chain to (None: client certificates are not requested)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None


def certificate_names(peer: dict[str, Any]) -> CertificateNames:
    """Names of a certificate as `SSLObject.getpeercert()` decodes a verified one."""
    common_names = tuple(
        value for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName"
    )
    sans: tuple[tuple[str, str], ...] = tuple(peer.get("subjectAltName", ()))
    return CertificateNames(
        common_names=common_names,
        dns=tuple(value for kind, value in sans if kind == "DNS"),
        uris=tuple(value for kind, value in sans if kind == "URI"),
        emails=tuple(value for kind, value in sans if kind == "email"),
    )


def _subject(peer: dict[str, Any]) -> str:
    parts = [
        f"{_SUBJECT_KEYS.get(key, key)}={value}"
        for rdn in reversed(peer.get("subject", ()))
        for key, value in rdn
    ]
    return ",".join(parts)


def tls_extensions(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    peer = ssl_object.getpeercert()
    der = ssl_object.getpeercert(binary_form=True) if peer else None
    extensions: dict[str, Any] = {
        "tls": {
            "server_cert": None,
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": _subject(peer) if peer else None,
            "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
            "cipher_suite": None,
        }
    }
    if peer:
        extensions[CLIENT_CERTIFICATE_EXTENSION] = certificate_names(peer)
    return extensions


def _with_extensions(app: ASGIApp, extensions: dict[str, Any]) -> ASGIApp:
    async def app_with_tls(scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), **extensions}
        await app(scope, receive, send)

    return app_with_tls


class TlsScopeH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, adding the connection's TLS facts to every scope."""

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            self.app = _with_extensions(self.app, tls_extensions(ssl_object))


def server_ssl_options(tls: TlsFiles) -> dict[str, Any]:
    """uvicorn.Config options for TLS on the HTTP port. A client CA makes the server ask
    for a certificate without demanding one (CERT_OPTIONAL): probes and scrapers reach
    the open endpoints, API calls without one need a token."""
    options: dict[str, Any] = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
    if tls.client_ca_file:
        options |= {"ssl_ca_certs": tls.client_ca_file, "ssl_cert_reqs": ssl.CERT_OPTIONAL}
    return options
