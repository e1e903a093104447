"""Operational HTTP endpoints for probes that cannot speak gRPC.

/healthz is liveness: the process answers. /readyz is readiness: the Docker daemon answers
its ping (the same state gRPC health reports), so a daemon outage takes the pod out of
the Service without restarting it.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Route


def ops_routes(daemon_up: Callable[[], bool]) -> list[BaseRoute]:
    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> PlainTextResponse:
        if daemon_up():
            return PlainTextResponse("ok\n")
        return PlainTextResponse("docker daemon is not answering\n", status_code=503)

    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
    ]
