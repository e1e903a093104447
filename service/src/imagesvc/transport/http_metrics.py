"""GET /metrics: the server's registry in the Prometheus text format, or OpenMetrics when
the scraper asks for it (Prometheus does)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route


def metrics_routes(registry: CollectorRegistry) -> list[BaseRoute]:
    async def metrics(request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(registry), media_type=content_type)

    return [Route("/metrics", metrics, methods=["GET", "HEAD"])]
