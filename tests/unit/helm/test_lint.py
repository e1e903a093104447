"""`helm lint --strict` (warnings fail too) through the Helm v4 SDK, on the chart's defaults
and on every ci/ scenario; and values.schema.json refuses what the chart does not know."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import helm_python
import pytest

from tests.unit.helm import chart

pytestmark = pytest.mark.chart


def test_the_default_values_lint_clean() -> None:
    assert chart.lint_failures() == []


@pytest.mark.parametrize("kube_version", [chart.minimum_kube_version(), None])
@pytest.mark.parametrize("scenario", chart.scenario_files(), ids=chart.scenario_name)
def test_every_scenario_lints_clean(scenario: Path, kube_version: str | None) -> None:
    """For the chart's minimum Kubernetes and for the SDK's own (deprecations differ)."""
    assert chart.lint_failures(values_files=[scenario], kube_version=kube_version) == []


def test_a_lint_warning_is_a_failure(tmp_path: Path) -> None:
    """Strict, as `helm lint --strict`: a warning (here a removed API version in a copy of
    the chart) fails the lint; infos such as "icon is recommended" do not."""
    copy = tmp_path / "imagesvc"
    shutil.copytree(chart.CHART_DIR, copy, symlinks=False)
    (copy / "templates" / "old-pdb.yaml").write_text(
        "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: old\n"
        "spec:\n  maxUnavailable: 1\n"
    )
    failures = chart.lint_failures(chart_dir=copy)
    assert len(failures) == 1, failures
    assert failures[0].startswith("[WARNING] templates/old-pdb.yaml: policy/v1beta1")


def test_the_values_have_a_schema() -> None:
    with helm_python.Chart.load(chart.CHART_DIR) as loaded:
        schema = loaded.schema
    assert schema is not None, "helm/imagesvc/values.schema.json is missing"
    assert schema.get("additionalProperties") is False


def _objects_without_closed_properties(schema: Any, at: str = "") -> list[str]:
    """Where the schema describes an object by its properties but accepts any other key."""
    found: list[str] = []
    if isinstance(schema, dict):
        if "properties" in schema and schema.get("additionalProperties") is not False:
            found.append(at or "/")
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                for name, sub in value.items():
                    found += _objects_without_closed_properties(sub, f"{at}/{name}")
            elif key not in ("properties", "enum", "const", "default", "examples"):
                found += _objects_without_closed_properties(value, f"{at}/{key}")
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            found += _objects_without_closed_properties(item, f"{at}[{index}]")
    return found


def test_every_object_the_schema_describes_refuses_unknown_keys() -> None:
    """additionalProperties false on each object with named properties: a typo in a nested
    key (tls.existingSecert) is an error, not a silently ignored value."""
    with helm_python.Chart.load(chart.CHART_DIR) as loaded:
        schema = loaded.schema
    assert _objects_without_closed_properties(schema) == []


@pytest.mark.parametrize(
    ("values", "says"),
    [
        pytest.param(
            {"replicaCount": 1, "nope": True},
            "additional properties 'nope' not allowed",
            id="unknown-top-level-key",
        ),
        pytest.param(
            {"server": {"grpcPrt": 50051}},
            "additional properties 'grpcPrt' not allowed",
            id="unknown-nested-key",
        ),
        pytest.param({"server": {"grpcPort": "50051"}}, "/server/grpcPort", id="port-as-a-string"),
        pytest.param({"mode": "sidecar"}, "/mode", id="unknown-mode"),
    ],
)
def test_the_schema_refuses_bad_values(values: dict[str, Any], says: str) -> None:
    failures = chart.lint_failures(values)
    assert any(says in failure for failure in failures), failures
    # helm template / install refuse them as well, saying what is wrong.
    with pytest.raises(helm_python.HelmValuesError, match=r"(?s)schema.*" + re.escape(says)):
        chart.render(values)
