"""The HTTP request metrics (REST gateway and operational endpoints), by method, route
template and status code; recorded by the observability middleware."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from imagesvc.metrics import ENGINE_CALL_BUCKETS


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "imagesvc_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ("method", "route", "code"),
            registry=registry,
        )
        # REST pulls and builds stream for minutes: the same long buckets as Engine calls.
        self.duration = Histogram(
            "imagesvc_http_request_duration_seconds",
            "Duration of HTTP requests until the last byte of the response, by method and"
            " route template.",
            ("method", "route"),
            buckets=ENGINE_CALL_BUCKETS,
            registry=registry,
        )
