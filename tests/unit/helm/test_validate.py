"""Every object of every ci/ scenario is one a Kubernetes API server accepts.

Built-in kinds: kubernetes-validate, strict (unknown fields are errors), for the newest
Kubernetes it knows and for the chart's minimum (Chart.yaml kubeVersion).

prometheus-operator's kinds (ServiceMonitor, PrometheusRule; kubernetes-validate has no
CRD schemas): validated against the operator's API types as published on npm
(@kubernetes-models/prometheus-operator, installed by scripts/bootstrap into
tools/crd-validate; run by tools/crd-validate/validate.mjs): types, required fields, enums
and duration patterns. Those schemas have no additionalProperties (an API server prunes
unknown fields of a CRD instead of refusing them), so an unknown field is not caught there;
the checks below cover what matters of them instead: the PrometheusRule's groups pass
`promtool check rules`, and the ServiceMonitor scrapes a named port of the chart's Service.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_versions

from tests.unit.helm import chart
from tests.unit.helm.conftest import RenderedScenarios

pytestmark = pytest.mark.chart

# Kinds validated by tools/crd-validate instead of kubernetes-validate.
CRD_KINDS = frozenset(
    {"monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"}
)
CRD_VALIDATOR = chart.ROOT / "tools" / "crd-validate" / "validate.mjs"
PROMTOOL = chart.ROOT / "tools" / "promtool" / "promtool"


def api_kind(obj: chart.Obj) -> str:
    return f"{obj['apiVersion']}/{obj['kind']}"


KUBE_VERSIONS = (chart.minimum_kube_version(), kubernetes_versions.latest_version())


def kube_errors(objs: list[chart.Obj], version: str) -> list[str]:
    errors = []
    for obj in objs:
        if api_kind(obj) in CRD_KINDS:
            continue
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(part) for part in error.path)
            errors.append(f"{name} at /{path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{name}: no {api_kind(obj)} in Kubernetes {version}")
    return errors


def crd_errors(objs: list[chart.Obj]) -> list[str]:
    """What tools/crd-validate says of each ServiceMonitor and PrometheusRule."""
    crds = [obj for obj in objs if api_kind(obj) in CRD_KINDS]
    if not crds:
        return []
    assert (CRD_VALIDATOR.parent / "node_modules").is_dir(), "run scripts/bootstrap"
    result = subprocess.run(
        ["node", str(CRD_VALIDATOR)],
        input=json.dumps(crds),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    verdicts: list[list[str] | None] = json.loads(result.stdout)
    return [
        f"{obj['kind']}/{obj['metadata']['name']}: {message}"
        for obj, messages in zip(crds, verdicts, strict=True)
        for message in messages or []
    ]


def test_the_versions_are_known_to_kubernetes_validate() -> None:
    assert kubernetes_versions.major_minor(KUBE_VERSIONS[0]) in {
        kubernetes_versions.major_minor(v) for v in kubernetes_versions.all_versions()
    }
    assert KUBE_VERSIONS[0] != KUBE_VERSIONS[1]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", chart.scenario_files(), ids=chart.scenario_name)
def test_every_object_validates_strictly(
    scenario: Path, version: str, rendered: RenderedScenarios
) -> None:
    assert kube_errors(rendered(scenario), version) == []


@pytest.mark.parametrize("scenario", chart.scenario_files(), ids=chart.scenario_name)
def test_every_prometheus_operator_object_validates(
    scenario: Path, rendered: RenderedScenarios
) -> None:
    assert crd_errors(rendered(scenario)) == []


def test_the_scenarios_render_every_crd_kind(rendered: RenderedScenarios) -> None:
    """The CRD checks run on something: some scenario turns each of them on."""
    kinds = {api_kind(obj) for s in chart.scenario_files() for obj in rendered(s)}
    assert kinds >= CRD_KINDS


def _a_scenario_with(kind: str, rendered: RenderedScenarios) -> list[chart.Obj]:
    for scenario in chart.scenario_files():
        objs = rendered(scenario)
        if chart.objects_of_kind(objs, kind):
            return objs
    raise AssertionError(f"no ci/ scenario renders a {kind}")


def test_the_validators_refuse_broken_objects(rendered: RenderedScenarios) -> None:
    """Neither validation is vacuous: an unknown field in a Deployment, a numeric port in
    a ServiceMonitor and a bad duration in a PrometheusRule are each reported."""
    [deployment] = chart.objects_of_kind(_a_scenario_with("Deployment", rendered), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert kube_errors([deployment], KUBE_VERSIONS[1]) != []

    objs = _a_scenario_with("ServiceMonitor", rendered)
    [monitor] = chart.objects_of_kind(objs, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["port"] = 8080
    objs = _a_scenario_with("PrometheusRule", rendered)
    [rule] = chart.objects_of_kind(objs, "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    errors = crd_errors([monitor, rule])
    assert any("ServiceMonitor" in e and "/spec/endpoints/0/port" in e for e in errors), errors
    assert any("PrometheusRule" in e and "/rules/0/for" in e for e in errors), errors


def promtool(*args: Any) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL.is_file(), f"{PROMTOOL} is missing: run scripts/bootstrap"
    return subprocess.run(
        [str(PROMTOOL), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("scenario", chart.scenario_files(), ids=chart.scenario_name)
def test_promtool_checks_the_rendered_rules(
    scenario: Path, rendered: RenderedScenarios, tmp_path: Path
) -> None:
    for rule in chart.objects_of_kind(rendered(scenario), "PrometheusRule"):
        groups = rule["spec"]["groups"]
        assert groups, "a PrometheusRule without rule groups"
        rules_file = tmp_path / f"{rule['metadata']['name']}.rules.yaml"
        rules_file.write_text(yaml.safe_dump({"groups": groups}))
        result = promtool("check", "rules", rules_file)
        assert result.returncode == 0, result.stdout + result.stderr


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"selector {selector}: only matchLabels is checked"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


@pytest.mark.parametrize("scenario", chart.scenario_files(), ids=chart.scenario_name)
def test_the_service_monitor_scrapes_a_port_of_the_service(
    scenario: Path, rendered: RenderedScenarios
) -> None:
    objs = rendered(scenario)
    for monitor in chart.objects_of_kind(objs, "ServiceMonitor"):
        spec = monitor["spec"]
        namespaces = (spec.get("namespaceSelector") or {}).get("matchNames") or [
            monitor["metadata"]["namespace"]
        ]
        services = [
            service
            for service in chart.objects_of_kind(objs, "Service")
            if service["metadata"].get("namespace", chart.NAMESPACE) in namespaces
            and _selects(spec["selector"], service["metadata"].get("labels") or {})
        ]
        assert len(services) == 1, f"the ServiceMonitor selects {len(services)} Services"
        port_names = {port.get("name") for port in services[0]["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            assert endpoint.get("port") in port_names, (endpoint, port_names)
