"""GET /metrics as scrapers ask for it: the Prometheus text format by default,
OpenMetrics when Prometheus negotiates it, gzipped when the scraper accepts it, HEAD."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from imagesvc.config import Settings
from imagesvc.server import ThreadedServer
from tests.scrape import parse
from tests.unit.fakes import FakeDockerPort

# What Prometheus 2.x and 3.x send when scraping.
PROMETHEUS_2_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = ThreadedServer(
        Settings(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0"), FakeDockerPort()
    )
    try:
        yield f"http://127.0.0.1:{server.http_port}/metrics"
    finally:
        server.stop()


def _get(url: str, **headers: str) -> httpx.Response:
    # No Accept-Encoding unless given: httpx would ask for gzip and undo it silently.
    response = httpx.get(url, headers={"accept-encoding": "identity", **headers}, timeout=10)
    assert response.status_code == 200
    return response


def test_text_format_by_default(url: str) -> None:
    response = _get(url)
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "content-encoding" not in response.headers
    scraped = parse(response.text)
    assert scraped.samples("grpc_server_handled_total")
    assert not [name for name in scraped.names() if name.endswith("_created")]


@pytest.mark.parametrize("accept", [PROMETHEUS_2_ACCEPT, PROMETHEUS_3_ACCEPT])
def test_openmetrics_when_prometheus_asks_for_it(url: str, accept: str) -> None:
    response = _get(url, accept=accept)
    content_type = response.headers["content-type"]
    assert content_type.startswith("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert response.text.endswith("# EOF\n")
    # The strict OpenMetrics parser accepts the whole exposition.
    parsed = text_string_to_metric_families(response.text)  # type: ignore[no-untyped-call]
    families = {f.name: f for f in parsed}
    handled = families["grpc_server_handled"]
    assert handled.type == "counter"
    assert {s.name for s in handled.samples} == {"grpc_server_handled_total"}  # no _created
    assert families["grpc_server_handling_seconds"].type == "histogram"
    assert families["imagesvc_docker_daemon_up"].type == "gauge"
    assert "Accept" in response.headers["vary"]


def test_gzipped_when_the_scraper_accepts_it(url: str) -> None:
    response = httpx.get(
        url, headers={"accept": PROMETHEUS_2_ACCEPT, "accept-encoding": "gzip"}, timeout=10
    )
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["vary"]
    # httpx undid the gzip; the wire carried much less.
    assert len(response.text) > 5 * int(response.headers["content-length"])
    assert response.text.endswith("# EOF\n")


def test_head_answers_like_get_without_a_body(url: str) -> None:
    response = httpx.head(url, headers={"accept-encoding": "identity"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.content == b""
