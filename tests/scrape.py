"""Scraping a server's /metrics over HTTP and reading it with prometheus-client's own
parser, for the metric tests (unit and integration)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

# The sample suffixes of each metric type in the text format.
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "untyped": ("",),
}


@dataclass(frozen=True)
class Scrape:
    text: str
    families: dict[str, Metric]

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every sample called `name` (e.g. "x_total", "x_bucket"): (labels, value)."""
        family = self.families.get(_family_name(name, self.families))
        if family is None:
            return []
        return [(dict(s.labels), s.value) for s in family.samples if s.name == name]

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The value of the one sample with exactly these labels; fails if absent."""
        wanted = dict(labels or {})
        found = [value for got, value in self.samples(name) if got == wanted]
        assert len(found) == 1, f"{name}{wanted}: {len(found)} samples on /metrics"
        return found[0]

    def value_or_zero(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """For series created on first use (e.g. an error reason): absent means 0."""
        wanted = dict(labels or {})
        found = [value for got, value in self.samples(name) if got == wanted]
        assert len(found) <= 1
        return found[0] if found else 0.0

    def names(self) -> set[str]:
        """Every sample name the exposition defines, whether or not it has samples yet
        (a labelled family without children still has its HELP and TYPE)."""
        names: set[str] = set()
        for family in self.families.values():
            names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
            names.update(sample.name for sample in family.samples)
        return names


def _family_name(sample_name: str, families: Mapping[str, Metric]) -> str:
    if sample_name in families:
        return sample_name
    for suffix in ("_total", "_bucket", "_sum", "_count", "_info"):
        if sample_name.endswith(suffix) and sample_name.removesuffix(suffix) in families:
            return sample_name.removesuffix(suffix)
    return sample_name


def parse(text: str) -> Scrape:
    return Scrape(text, {f.name: f for f in text_string_to_metric_families(text)})


def scrape(http_port: int) -> Scrape:
    """GET /metrics in the Prometheus text format, parsed."""
    response = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def delta(
    before: Scrape, after: Scrape, name: str, labels: Mapping[str, str] | None = None
) -> float:
    """How much one series moved between two scrapes (a series first seen after counts
    from 0)."""
    return after.value_or_zero(name, labels) - before.value_or_zero(name, labels)
