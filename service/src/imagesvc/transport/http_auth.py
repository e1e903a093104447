"""The HTTP edge of authentication: an ASGI middleware that reads the Authorization
header and the verified client certificate (put in the scope by http_tls) and
establishes the caller for the request. It refuses nothing itself: the REST gateway
calls the guarded servicer, which decides (401/403 through the gateway's error
mapping), and the open endpoints (/healthz, /readyz, /metrics, /openapi.json) do not
ask."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from imagesvc.core.authentication import Authenticator
from imagesvc.core.credential_files import CertificateNames
from imagesvc.core.identity import CallOrigin, current_origin
from imagesvc.transport.http_tls import CLIENT_CERTIFICATE_EXTENSION
from imagesvc.transport.request_id import current_request_id


def _peer(scope: Scope) -> str:
    """The client address in gRPC's form, so that audit records of both transports
    read alike."""
    client = scope.get("client")
    if not client:
        return ""
    host, port = client[0], client[1]
    return f"ipv6:[{host}]:{port}" if ":" in str(host) else f"ipv4:{host}:{port}"


class HttpAuthentication:
    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            values = Headers(scope=scope).getlist("authorization")
            # Two Authorization headers are ambiguous: refuse rather than pick one.
            authorization = values[0] if len(values) == 1 else ("" if values else None)
            certificate = (scope.get("extensions") or {}).get(CLIENT_CERTIFICATE_EXTENSION)
            current_origin.set(CallOrigin("rest", current_request_id.get(), _peer(scope)))
            self.authenticator.establish(
                authorization, certificate if isinstance(certificate, CertificateNames) else None
            )
        await self.app(scope, receive, send)
