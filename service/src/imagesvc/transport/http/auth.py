"""The HTTP edge of authentication: an ASGI middleware that reads the Authorization
header and the verified client certificate (put in the scope by http/tls.py) and
establishes the caller for the request. It refuses nothing itself: the REST gateway
calls the guarded servicer, which decides (401/403 through the gateway's error
mapping), and the open endpoints (/healthz, /readyz, /metrics, /openapi.json) do not
ask."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from imagesvc.core.authentication import Authenticator
from imagesvc.core.credential_files import CertificateNames
from imagesvc.core.identity import CallOrigin, credential_problem, current_identity, current_origin
from imagesvc.transport.http.tls import CLIENT_CERTIFICATE_EXTENSION
from imagesvc.transport.loopback import is_loopback_ip
from imagesvc.transport.request_id import current_request_id


def _peer(scope: Scope) -> str:
    """The client address in gRPC's form, so that audit records of both transports
    read alike."""
    client = scope.get("client")
    if not client:
        return ""
    host, port = client[0], client[1]
    return f"ipv6:[{host}]:{port}" if ":" in str(host) else f"ipv4:{host}:{port}"


_CROSS_SITE = frozenset({"cross-site", "same-site"})


def _browser_forgery(headers: Headers) -> str | None:
    """Why the request looks like a web page's, made through a visitor's browser. The
    API has no browser clients and sends no CORS headers, yet a page may POST a form or
    a text/plain body cross-site without a preflight; browsers mark such requests with
    Origin (every cross-origin and every non-GET request) or Sec-Fetch-Site. Opening a
    URL by hand (Sec-Fetch-Site: none, no Origin) is not refused."""
    if "origin" in headers or headers.get("sec-fetch-site", "").lower() in _CROSS_SITE:
        return (
            "requests made by web pages through a browser are not accepted (Origin or"
            " Sec-Fetch-Site header): call this API from a program"
        )
    return None


def _is_loopback_host(host: str) -> bool:
    """Whether a Host header names this machine: localhost, 127.0.0.0/8 or ::1."""
    name = host.rsplit("]", 1)[0].lstrip("[") if host.startswith("[") else host.split(":")[0]
    return name.lower().rstrip(".") == "localhost" or is_loopback_ip(name)


class HttpAuthentication:
    def __init__(
        self, app: ASGIApp, authenticator: Authenticator, *, loopback_hosts_only: bool = False
    ) -> None:
        """`loopback_hosts_only`: serve only requests whose Host names this machine (set
        when authentication is off and the server listens on loopback only): a web site
        whose name is re-bound to 127.0.0.1 (DNS rebinding) sends its own name."""
        self.app = app
        self.authenticator = authenticator
        self.loopback_hosts_only = loopback_hosts_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            values = headers.getlist("authorization")
            # Two Authorization headers are ambiguous: refuse rather than pick one.
            authorization = values[0] if len(values) == 1 else ("" if values else None)
            certificate = (scope.get("extensions") or {}).get(CLIENT_CERTIFICATE_EXTENSION)
            current_origin.set(CallOrigin("rest", current_request_id.get(), _peer(scope)))
            self.authenticator.establish(
                authorization, certificate if isinstance(certificate, CertificateNames) else None
            )
            problem = _browser_forgery(headers)
            host = headers.get("host")
            if (
                problem is None
                and self.loopback_hosts_only
                and host
                and not _is_loopback_host(host)
            ):
                problem = (
                    f"Host {host[:100]!r} is not a name of this machine: without authentication"
                    " this service answers requests to localhost, 127.0.0.1 or [::1] only"
                )
            if problem is not None:
                # Nobody is established: the servicer guard answers 401 for API calls,
                # while the open endpoints (probes, metrics) do not ask.
                current_identity.set(None)
                credential_problem.set(problem)
        await self.app(scope, receive, send)
