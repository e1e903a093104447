"""The HTTP middleware: request id, request metrics by route template, one access line."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from imagesvc.transport.http.metrics import HttpMetrics
from imagesvc.transport.http.observability import ROUTE_SCOPE_KEY, HttpObservability
from imagesvc.transport.request_id import current_request_id

SEEN_IDS: list[str] = []


async def gateway(request: Request) -> PlainTextResponse:
    """Stands in for the REST gateway, which names the template it matched."""
    request.scope[ROUTE_SCOPE_KEY] = "/v1/images/{image}"
    SEEN_IDS.append(current_request_id.get())
    if request.path_params["rest"].endswith("missing"):
        return PlainTextResponse("no such image", status_code=404)
    return PlainTextResponse("image")


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def broken(request: Request) -> PlainTextResponse:
    raise RuntimeError("a bug")


async def stream(request: Request) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        for n in range(3):
            yield f"{n}\n".encode()

    request.scope[ROUTE_SCOPE_KEY] = "/v1/images:pull"
    return StreamingResponse(lines(), media_type="application/x-ndjson")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


class Client:
    """Requests straight into the ASGI app, from a peer at 192.0.2.7:40000."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(
                app=self._app, raise_app_exceptions=False, client=("192.0.2.7", 40000)
            )
            async with httpx.AsyncClient(transport=transport, base_url="http://imagesvc") as c:
                return await c.request(method, path, headers=headers)

        return asyncio.run(send())

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        return self.request("GET", path, headers)

    def post(self, path: str) -> httpx.Response:
        return self.request("POST", path)


@pytest.fixture
def client(registry: CollectorRegistry) -> Client:
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/broken", broken),
            Route("/v1/images:pull", stream, methods=["POST"]),
            Route("/v1/images/{rest:path}", gateway),
        ],
        middleware=[Middleware(HttpObservability, metrics=HttpMetrics(registry))],
    )
    return Client(app)


def requests(registry: CollectorRegistry, method: str, route: str, code: str) -> float:
    labels = {"method": method, "route": route, "code": code}
    return registry.get_sample_value("imagesvc_http_requests_total", labels) or 0.0


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "imagesvc.access" and r.message == "http"]


def test_requests_are_labelled_by_template_never_by_path(
    client: Client, registry: CollectorRegistry
) -> None:
    assert client.get("/v1/images/team/app:1").status_code == 200
    assert client.get("/v1/images/team/other:2").status_code == 200
    assert client.get("/v1/images/team/missing").status_code == 404
    assert client.get("/healthz").status_code == 200
    assert client.get("/nowhere/team/app").status_code == 404
    assert client.request("BREW", "/healthz").status_code == 405
    assert client.post("/healthz").status_code == 405
    assert client.get("/broken").status_code == 500

    assert requests(registry, "GET", "/v1/images/{image}", "200") == 2
    assert requests(registry, "GET", "/v1/images/{image}", "404") == 1
    assert requests(registry, "GET", "/healthz", "200") == 1
    assert requests(registry, "GET", "unmatched", "404") == 1
    assert requests(registry, "other", "/healthz", "405") == 1
    assert requests(registry, "POST", "/healthz", "405") == 1
    assert requests(registry, "GET", "/broken", "500") == 1
    duration = {"method": "GET", "route": "/v1/images/{image}"}
    assert registry.get_sample_value("imagesvc_http_request_duration_seconds_count", duration) == 3
    routes = {
        s.labels["route"]
        for family in registry.collect()
        for s in family.samples
        if "route" in s.labels
    }
    assert routes == {"/v1/images/{image}", "/healthz", "unmatched", "/broken"}


def test_a_streamed_response_is_counted_once_it_ends(
    client: Client, registry: CollectorRegistry
) -> None:
    response = client.post("/v1/images:pull")
    assert response.text == "0\n1\n2\n"
    assert requests(registry, "POST", "/v1/images:pull", "200") == 1


def test_the_request_id_is_taken_or_made_and_returned(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imagesvc.access")
    SEEN_IDS.clear()
    given = client.get("/v1/images/a:1", headers={"x-request-id": "trace-42.a_b:c"})
    assert given.headers["x-request-id"] == "trace-42.a_b:c"
    made = client.get("/v1/images/a:1")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    for bad in ("has space", "x" * 129, 'quo"te', "semi;colon", ""):
        refused = client.get("/v1/images/a:1", headers={"x-request-id": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["x-request-id"]), bad
    # The handler saw the same id (for its own log lines) as the caller got back.
    assert SEEN_IDS[:2] == ["trace-42.a_b:c", made.headers["x-request-id"]]

    lines = access_lines(caplog)
    assert len(lines) == 7
    first = vars(lines[0])
    assert first["http_method"] == "GET"
    assert first["route"] == "/v1/images/{image}"
    assert first["status"] == 200
    assert first["request_id"] == "trace-42.a_b:c"
    assert first["peer"] == "192.0.2.7:40000"
    assert isinstance(first["duration_ms"], float)
    # The raw path (an image name) is not logged as a label either.
    assert "a:1" not in caplog.text
