"""Around every HTTP request (REST gateway and operational endpoints): a request id, the
request metrics, and one JSON access line on logger imagesvc.access.

Metrics and logs name the route TEMPLATE, never the raw path (it holds image names):
the REST gateway puts the template it matched in `scope["imagesvc.route"]`
(ROUTE_SCOPE_KEY); a fixed route such as /metrics or /healthz is its own template; any
other request is "unmatched". A pure ASGI middleware, so streamed responses pass
through untouched and are timed to their last byte.
"""

from __future__ import annotations

import logging
import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagesvc.core.identity import current_identity
from imagesvc.transport.http.metrics import HttpMetrics
from imagesvc.transport.request_id import (
    GATEWAY_REQUEST_ID_HEADER,
    REQUEST_ID_KEY,
    current_request_id,
    request_id_from,
)

log = logging.getLogger("imagesvc.access")

ROUTE_SCOPE_KEY = "imagesvc.route"
UNMATCHED = "unmatched"
# Any other method (clients can send anything) is labelled "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(scope: Scope) -> str:
    """The route template of a handled request, never its raw path."""
    template = scope.get(ROUTE_SCOPE_KEY)
    if isinstance(template, str) and template:
        return template
    route = scope.get("route")
    # A fixed route of our own (no path parameters) names itself.
    if isinstance(route, Route) and "{" not in route.path:
        return route.path
    return UNMATCHED


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return ""
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class HttpObservability:
    """ASGI middleware; the outermost one, so that every answer is counted and logged."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        # A client written for grpc-gateway sends the id as gRPC metadata (Grpc-Metadata-).
        request_id = request_id_from(
            headers.get(REQUEST_ID_KEY) or headers.get(GATEWAY_REQUEST_ID_HEADER)
        )
        # What the server answers when the app fails before responding; otherwise the
        # status the caller got (even when the body was then broken off).
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_KEY] = request_id
            await send(message)

        token = current_request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)
            self._record(scope, status, time.perf_counter() - started, request_id)

    def _record(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        method = str(scope.get("method", ""))
        method = method if method in _METHODS else "other"
        route = route_label(scope)
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.duration.labels(method, route).observe(seconds)
        fields: dict[str, object] = {
            "http_method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "request_id": request_id,
            "peer": _peer(scope),
        }
        # Who called, as on the rpc line (set by the authentication middleware inside,
        # in this request's context).
        identity = current_identity.get()
        if identity is not None:
            fields["identity"] = identity.name
        log.info("http", extra=fields)
