"""The HTTP port (REST gateway, /metrics, /healthz, /readyz, /openapi.json): an ASGI app
served by uvicorn in the same event loop as the grpc.aio server.

uvicorn is embedded rather than run as a program: the socket is bound here (so tests can
ask for port 0 and read the port back), and signals stay with `imagesvc.server.serve`,
which stops gRPC and HTTP together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from imagesvc.transport.http.bounds import bounded_protocol
from imagesvc.transport.http.tls import server_ssl_options
from imagesvc.transport.rest.gateway import BodyCutShort
from imagesvc.transport.server_certificate import ServerCertificate

log = logging.getLogger(__name__)
# uvicorn's own logger, which reports what an ASGI app raised.
UVICORN_ERROR_LOGGER = "uvicorn.error"


class CutShortFilter(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" record for a body the gateway
    cut short on purpose: raising is how an ASGI app makes uvicorn drop the connection
    without the last chunk, and the gateway has already logged the cause (with the
    request id), so uvicorn's traceback would only look like a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        raised = record.exc_info[1] if record.exc_info else None
        return not isinstance(raised, BodyCutShort)


def _filter_cut_short_bodies() -> None:
    uvicorn_log = logging.getLogger(UVICORN_ERROR_LOGGER)
    if not any(isinstance(f, CutShortFilter) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(CutShortFilter())


def split_address(address: str) -> tuple[str, int]:
    """Splits "host:port" or "[v6]:port"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"HTTP address {address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 (":8080" means every interface)


def bind(address: str) -> socket.socket:
    host, port = split_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP. Without it, a keep-alive response written as headers then body
    # waits ~40 ms for the client's delayed ACK (Nagle), on every request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process's signal handling belongs to imagesvc.server.serve.
        yield


class HttpServer:
    """uvicorn serving `app` on `address` (over TLS with `tls`, following its renewals);
    `start()`, read `.port`, then `stop()`."""

    def __init__(
        self,
        app: ASGIApp,
        address: str,
        *,
        shutdown_grace_seconds: float,
        header_timeout_seconds: float = 10.0,
        keepalive_timeout_seconds: float = 65.0,
        max_connections: int = 1000,
        tls: ServerCertificate | None = None,
    ) -> None:
        """`header_timeout_seconds`, `max_connections` (0: no limit): see
        `transport/http/bounds.py`; `keepalive_timeout_seconds`: idle keep-alive
        connections are closed after it."""
        self._socket = bind(address)
        self.port: int = self._socket.getsockname()[1]
        _filter_cut_short_bodies()
        config = uvicorn.Config(
            app,
            # h11 with the TLS connection's client certificate in the scope, closing
            # connections whose headers are late or that are over the limit.
            http=bounded_protocol(
                header_timeout_seconds=header_timeout_seconds, max_connections=max_connections
            ),
            timeout_keep_alive=keepalive_timeout_seconds,  # type: ignore[arg-type]
            **(server_ssl_options(tls.files) if tls else {}),
            lifespan="off",
            log_config=None,  # our JSON logging, configured by imagesvc.logs
            access_log=False,  # the gateway writes its own access line per request
            server_header=False,
            # The peer is the TCP peer, as on the gRPC port: uvicorn would otherwise
            # take X-Forwarded-For from any loopback client (a sidecar, any local user)
            # into the audit records and the anonymous rate limit's key.
            proxy_headers=False,
            timeout_graceful_shutdown=max(math.ceil(shutdown_grace_seconds), 1),
        )
        if tls is not None:
            try:
                config.load()  # builds the SSL context now, so that renewals can follow it
            except BaseException:
                self._socket.close()
                raise
            if config.ssl is not None:
                tls.follow(config.ssl)
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        self._task = asyncio.create_task(self._server.serve([self._socket]), name="http-server")
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise OSError("HTTP server stopped while starting")
            await asyncio.sleep(0.005)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let running requests finish within the grace period, close."""
        if self._task is not None:
            if grace is not None:
                self._server.config.timeout_graceful_shutdown = max(math.ceil(grace), 1)
            self._server.should_exit = True
            await self._task
            self._task = None
        self._socket.close()
