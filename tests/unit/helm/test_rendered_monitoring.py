"""The monitoring objects behind their flags: ServiceMonitor, PrometheusRule (the rules of
monitoring/prometheus/imagesvc-alerts.yaml) and the Grafana dashboard ConfigMap (the
dashboard of monitoring/grafana/imagesvc-dashboard.json), single-sourced through symlinks
in the chart's files/."""

from __future__ import annotations

import json
import os
from typing import Any

import helm_python
import pytest
import yaml

from tests.unit.helm.chart import CHART_DIR, ROOT, objects_of_kind, one_of_kind, render

pytestmark = pytest.mark.chart

ALERTS = ROOT / "monitoring" / "prometheus" / "imagesvc-alerts.yaml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "imagesvc-dashboard.json"
MONITORING_KINDS = ("ServiceMonitor", "PrometheusRule", "ConfigMap")


def test_no_monitoring_objects_by_default() -> None:
    objs = render()
    for kind in MONITORING_KINDS:
        assert objects_of_kind(objs, kind) == [], kind


@pytest.mark.parametrize(
    ("flag", "kind"),
    [
        ("serviceMonitor", "ServiceMonitor"),
        ("prometheusRule", "PrometheusRule"),
        ("grafanaDashboard", "ConfigMap"),
    ],
)
def test_each_flag_makes_its_object_alone(flag: str, kind: str) -> None:
    objs = render({flag: {"enabled": True}})
    assert len(objects_of_kind(objs, kind)) == 1
    for other in MONITORING_KINDS:
        if other != kind:
            assert objects_of_kind(objs, other) == [], other


def test_service_monitor_scrapes_the_metrics_port() -> None:
    objs = render(
        {
            "serviceMonitor": {
                "enabled": True,
                "additionalLabels": {"release": "kube-prometheus-stack"},
                "interval": "15s",
            }
        }
    )
    monitor = one_of_kind(objs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "http"
    assert endpoint["interval"] == "15s"
    service = one_of_kind(objs, "Service")
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["imagesvc"]}


def test_service_monitor_scrapes_https_with_tls() -> None:
    tls: dict[str, Any] = {"enabled": True, "existingSecret": "t"}
    [endpoint] = one_of_kind(
        render({"tls": tls, "serviceMonitor": {"enabled": True}}), "ServiceMonitor"
    )["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    given = {
        "serverName": "imagesvc.example.org",
        "ca": {"secret": {"name": "ca", "key": "ca.crt"}},
    }
    [endpoint] = one_of_kind(
        render({"tls": tls, "serviceMonitor": {"enabled": True, "tlsConfig": given}}),
        "ServiceMonitor",
    )["spec"]["endpoints"]
    assert endpoint["tlsConfig"] == given


def test_prometheus_rule_is_the_monitoring_rule_file() -> None:
    rule = one_of_kind(
        render({"prometheusRule": {"enabled": True, "additionalLabels": {"role": "alerts"}}}),
        "PrometheusRule",
    )
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["role"] == "alerts"
    # The same rules, templates such as {{ $labels.instance }} left for Prometheus.
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    alerts = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert "ImagesvcDockerDaemonDown" in alerts


def test_dashboard_config_map_is_the_monitoring_dashboard() -> None:
    objs = render(
        {
            "grafanaDashboard": {
                "enabled": True,
                "annotations": {"grafana_folder": "Platform"},
                "namespace": "monitoring",
            }
        }
    )
    config_map = one_of_kind(objs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Platform"}
    assert config_map["metadata"]["namespace"] == "monitoring"
    [(name, text)] = config_map["data"].items()
    assert name.endswith(".json")
    assert json.loads(text) == json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_dashboard_label_is_configurable() -> None:
    values = {"grafanaDashboard": {"enabled": True, "labelKey": "dash", "labelValue": "yes"}}
    labels = one_of_kind(render(values), "ConfigMap")["metadata"]["labels"]
    assert labels["dash"] == "yes"
    assert "grafana_dashboard" not in labels


def test_chart_files_are_symlinks_to_the_monitoring_files() -> None:
    """One source: the chart's files/ link to monitoring/, and Helm's loader follows them."""
    for link, target in (
        (CHART_DIR / "files" / "imagesvc-alerts.yaml", ALERTS),
        (CHART_DIR / "files" / "imagesvc-dashboard.json", DASHBOARD),
    ):
        assert link.is_symlink()
        assert not os.path.isabs(os.readlink(link)), "relative, so it works in any checkout"
        assert link.resolve() == target.resolve()
    with helm_python.Chart.load(CHART_DIR) as chart:
        files = {f["name"]: f["data"] for f in chart.files}
    assert files["files/imagesvc-alerts.yaml"] == ALERTS.read_text(encoding="utf-8")
    assert files["files/imagesvc-dashboard.json"] == DASHBOARD.read_text(encoding="utf-8")
