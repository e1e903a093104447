"""The Grafana dashboard and the Prometheus alert rules in monitoring/: they parse, they
are shaped as Grafana and Prometheus expect, Prometheus's own promtool accepts every
query and the alerts' unit tests (monitoring/imagesvc-alerts.test.yaml beside this file),
and every metric their queries use is one the service exposes on /metrics."""

from __future__ import annotations

import json
import re
import subprocess
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
ALERT_TESTS = Path(__file__).parent / "monitoring" / "imagesvc-alerts.test.yaml"
# Unpacked from Debian's prometheus package by scripts/bootstrap.
PROMTOOL = ROOT / "tools" / "promtool" / "promtool"
# gRPC codes that are the service's failures, not the caller's (NotFound, InvalidArgument,
# PermissionDenied, FailedPrecondition, Canceled, ...): what "error ratio" means in the
# alert and on the dashboard alike.
SERVER_ERROR_CODES = (
    'grpc_code=~"Unknown|Internal|Unavailable|DeadlineExceeded|DataLoss|ResourceExhausted"'
)

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


# promtool and query practice --------------------------------------------------------------


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL.is_file(), f"{PROMTOOL} is missing: run scripts/bootstrap"
    return subprocess.run(
        [str(PROMTOOL), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_alert_rules() -> None:
    checked = _promtool("check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in checked.stdout


def test_promtool_runs_the_alerts_unit_tests() -> None:
    """Each alert fires after its `for` on what it is about, with its labels and rendered
    annotations, and not on the callers' mistakes (see the test file)."""
    tested = _promtool("test", "rules", ALERT_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    assert tested_alerts == {rule["alert"] for rule in _alert_rules()}


def _as_prometheus_query(expr: str) -> str:
    """A dashboard query as Prometheus sees it once Grafana filled in its variables."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$job", ".*")
        .replace("$instance", ".*")
    )


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:panel_{panel['id']}:{target['refId']}", "expr": expr}
        for panel in _panels(_dashboard())
        for target in panel.get("targets", [])
        for expr in [_as_prometheus_query(target["expr"])]
    ]
    assert len(rules) > 20
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = _promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


_FUNCTION_RANGE = re.compile(r"\b(rate|irate|increase)\((?:[^()]|\([^()]*\))*?\[([^\]]*)\]")
_SELECTOR = re.compile(r"\b([a-z_:][a-z0-9_:]*)\{([^{}]*)\}")


def test_dashboard_queries_follow_grafana_practice() -> None:
    for panel in _panels(_dashboard()):
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        for target in panel["targets"]:
            expr = target["expr"]
            # Rates over Grafana's $__rate_interval (at least 4 scrape intervals).
            for function, window in _FUNCTION_RANGE.findall(expr):
                assert window == "$__rate_interval", f"{title}: {function}(...[{window}])"
            # Every selector follows the job and instance variables.
            selectors = _SELECTOR.findall(expr)
            assert selectors, f"{title}: {expr}"
            for name, matchers in selectors:
                assert 'job=~"$job"' in matchers, f"{title}: {name}"
                assert 'instance=~"$instance"' in matchers, f"{title}: {name}"
            # Quantiles over the rate of buckets summed by le.
            if "histogram_quantile" in expr:
                assert re.search(r"histogram_quantile\(0\.\d+, sum by \(le\b", expr), expr
                assert re.search(r"rate\(\w+_bucket\{", expr), expr


def test_error_ratios_count_the_services_failures_only() -> None:
    """The dashboard's error ratios and the alert count the same codes; a caller asking
    for an image that is not there (NotFound) is not an error of the service."""
    [alert] = [r for r in _alert_rules() if r["alert"] == "ImagesvcHighErrorRatio"]
    assert SERVER_ERROR_CODES in " ".join(alert["expr"].split())
    ratios = [p for p in _panels(_dashboard()) if "error ratio" in p.get("title", "").lower()]
    grpc_ratios = [p for p in ratios if "grpc_server_handled_total" in str(p["targets"])]
    assert len(grpc_ratios) >= 2
    for panel in grpc_ratios:
        for target in panel["targets"]:
            numerator = target["expr"].split(" / ")[0]
            assert SERVER_ERROR_CODES in numerator, panel["title"]
