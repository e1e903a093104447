"""GET /metrics: the server's registry in the Prometheus text format, or OpenMetrics when
the scraper asks for it (Prometheus does), gzipped when the scraper accepts it (Prometheus
does; Go's promhttp answers so too: the pre-created gRPC series make ~100 KB of text)."""

from __future__ import annotations

import gzip

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route


def metrics_routes(registry: CollectorRegistry) -> list[BaseRoute]:
    async def metrics(request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        body = encode(registry)
        headers = {"Vary": "Accept, Accept-Encoding"}
        if gzip_accepted(request.headers.get("accept-encoding", "")):
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=content_type, headers=headers)

    return [Route("/metrics", metrics, methods=["GET", "HEAD"])]
