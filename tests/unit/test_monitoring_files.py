"""The Grafana dashboard and the Prometheus alert rules in monitoring/: they parse, they
are shaped as Grafana and Prometheus expect, and every metric their queries use is one
the service exposes on /metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagesvc.config import Settings
from imagesvc.server import ThreadedServer
from tests.scrape import scrape
from tests.unit.fakes import FakeDockerPort

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana" / "imagesvc-dashboard.json"
ALERTS = ROOT / "monitoring" / "prometheus" / "imagesvc-alerts.yaml"

# PromQL words that look like metric names: keywords, and names inside grouping clauses.
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan", "atan2"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()")
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    return {name for name in _IDENTIFIER.findall(text) if name not in _KEYWORDS}


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, grpc_method) (rate(a_bucket{job=~"$job",x="y(z)"}'
        "[$__rate_interval]))) / on (job) group_left b_total > bool 3 and c"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def _balanced(expr: str) -> bool:
    text = _STRING.sub('""', expr)
    depth: list[str] = []
    pairs = {")": "(", "}": "{", "]": "["}
    for char in text:
        if char in "({[":
            depth.append(char)
        elif char in pairs and (not depth or depth.pop() != pairs[char]):
            return False
    return not depth and '"' not in _STRING.sub("", text)


@pytest.fixture(scope="module")
def exposed() -> Iterator[set[str]]:
    """Every sample name the service's /metrics defines (a server on a fake Engine)."""
    server = ThreadedServer(
        Settings(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0"), FakeDockerPort()
    )
    try:
        yield scrape(server.http_port).names()
    finally:
        server.stop()


def _dashboard() -> dict[str, Any]:
    document = json.loads(DASHBOARD.read_text())
    assert isinstance(document, dict)
    return document


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # inside collapsed rows
    return panels


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    rules: list[dict[str, Any]] = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        assert group["name"]
        rules.extend(group["rules"])
    return rules


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "imagesvc"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = _panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    titles: set[str] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        titles.add(panel["title"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert _balanced(target["expr"]), target["expr"]
    # What the issue asks the dashboard to show.
    for wanted in (
        "Request rate by method",
        "Error ratio by method",
        "Latency by method (p50, p90, p99)",
        "Pulls, pushes and builds per minute",
        "Registry bytes",
        "Docker daemon up",
    ):
        assert wanted in titles


def test_the_alerts_are_prometheus_rules() -> None:
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert {"ImagesvcDockerDaemonDown", "ImagesvcHighErrorRatio", "ImagesvcSlowPulls"} <= set(names)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert _balanced(rule["expr"]), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_every_metric_the_files_use_is_exposed(exposed: set[str]) -> None:
    used: dict[str, set[str]] = {}
    for panel in _panels(_dashboard()):
        for target in panel.get("targets", []):
            for name in metric_names(target["expr"]):
                used.setdefault(name, set()).add(f"dashboard panel {panel['title']!r}")
    for variable in _dashboard()["templating"]["list"]:
        for name in _LABEL_VALUES.findall(str(variable.get("definition", ""))):
            used.setdefault(name, set()).add(f"dashboard variable {variable['name']}")
    for rule in _alert_rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")

    missing = {name: where for name, where in used.items() if name not in exposed}
    assert not missing, f"not on /metrics: {missing}"
    # The extraction really found the queries' metrics.
    assert {
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "imagesvc_http_requests_total",
        "imagesvc_docker_daemon_up",
        "imagesvc_engine_call_duration_seconds_bucket",
        "imagesvc_pulled_bytes_total",
        "imagesvc_pulls_total",
        "imagesvc_builds_total",
        "process_cpu_seconds_total",
    } <= set(used)
