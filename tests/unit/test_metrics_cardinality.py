"""Hostile traffic cannot grow /metrics: random REST paths and methods, random gRPC
services and methods, image names, tokens and request ids never become label values.
A real server (both ports, every interceptor and middleware) on a fake Engine."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagesvc.config import Settings
from imagesvc.server import ThreadedServer
from imagesvc.transport.rest.paths import bindings_of
from imagesvc.v1 import image_service_pb2
from tests.scrape import Scrape, scrape
from tests.unit.fakes import FakeDockerPort

SERVICE = image_service_pb2.DESCRIPTOR.services_by_name["ImageService"]
ROUTES = {binding.path.template for binding in bindings_of(SERVICE)} | {
    "/metrics",
    "/healthz",
    "/readyz",
    "/openapi.json",
    "unmatched",
}
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
# Marks every random string sent, so that the scrape can be searched for any of them.
MARK = "zq9"
_settings = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Target:
    def __init__(self, server: ThreadedServer) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        self.http_port = server.http_port


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    server = ThreadedServer(
        Settings(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0"), FakeDockerPort()
    )
    target = Target(server)
    try:
        yield target
    finally:
        target.http.close()
        target.channel.close()
        server.stop()


def _series(scraped: Scrape, prefix: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in scraped.families.values()
        if family.name.startswith(prefix)
        for sample in family.samples
    }


segments = st.text(min_size=1, max_size=30).map(lambda s: MARK + s)
paths = st.one_of(
    st.lists(segments, min_size=1, max_size=4).map(
        lambda parts: "/" + "/".join(quote(p, safe="") for p in parts)
    ),
    segments.map(lambda name: f"/v1/images/{quote(name, safe='')}"),
    segments.map(lambda name: f"/v1/images/{quote(name, safe='')}/history"),
    segments.map(lambda name: f"/v1/images/{quote(name, safe='/:')}/{MARK}"),
    segments.map(lambda name: f"/v1/images:{quote(name, safe='')}"),
    segments.map(lambda name: f"/metrics/{quote(name, safe='')}"),
)
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "BREW", "PROPFIND"])
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.]{0,40}", fullmatch=True).map(lambda s: MARK + s)
services = st.one_of(st.sampled_from(["imagesvc.v1.ImageService", "grpc.health.v1.Health"]), names)


@_settings
@given(path=paths, method=methods, query=segments)
def test_random_rest_requests_add_no_series(
    target: Target, path: str, method: str, query: str
) -> None:
    response = target.http.request(
        method,
        path,
        params={"filter.references": query},
        headers={
            "authorization": f"Bearer {MARK}token{query[:8].encode().hex()}",
            "x-request-id": f"{MARK}id",
        },
    )
    assert 200 <= response.status_code < 600


@_settings
@given(service=services, method=names)
def test_random_grpc_methods_add_no_series(target: Target, service: str, method: str) -> None:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = target.channel.unary_unary(
        f"/{service}/{method}"
    )
    with pytest.raises(grpc.RpcError) as refused:
        call(b"", timeout=10, metadata=(("authorization", f"Bearer {MARK}token"),))
    assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_hostile_traffic_leaves_every_label_bounded(target: Target) -> None:
    """Runs the two property tests above against one scrape before and one after."""
    before = scrape(target.http_port)
    test_random_rest_requests_add_no_series(target)
    test_random_grpc_methods_add_no_series(target)
    after = scrape(target.http_port)

    # gRPC: exactly the series created at start-up, nothing for unknown methods.
    assert _series(after, "grpc_") == _series(before, "grpc_")
    # HTTP: route templates, known methods and status codes only.
    for name, labels in _series(after, "imagesvc_http_"):
        values = dict(labels)
        assert values["route"] in ROUTES, (name, values)
        assert values["method"] in HTTP_METHODS, (name, values)
        assert re.fullmatch(r"[1-5]\d\d", values.get("code", "200")), (name, values)
    # No random string, token or request id anywhere on /metrics.
    assert MARK not in after.text
