"""The ci/*-values.yaml scenarios: each renders, both modes are covered, and no two
scenarios render the same manifests (a duplicate scenario checks nothing more)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.unit.helm import chart
from tests.unit.helm.conftest import RenderedScenarios

pytestmark = pytest.mark.chart

# The workload each mode renders, and the one it must not.
WORKLOAD = {"dind": "Deployment", "hostSocket": "DaemonSet"}
# Enough to cover each mode with and without its options; few enough that lint, render,
# validation and checkov of all of them stay fast.
MIN_PER_MODE, MAX_SCENARIOS = 2, 12


def test_there_are_scenarios_for_each_mode() -> None:
    modes = Counter(chart.scenario_mode(scenario) for scenario in chart.scenario_files())
    assert set(modes) == set(WORKLOAD), modes
    assert all(count >= MIN_PER_MODE for count in modes.values()), modes
    assert sum(modes.values()) <= MAX_SCENARIOS, modes


@pytest.mark.parametrize("scenario", chart.scenario_files(), ids=chart.scenario_name)
def test_the_scenario_renders_its_mode(scenario: Path, rendered: RenderedScenarios) -> None:
    objs = rendered(scenario)
    mode = chart.scenario_mode(scenario)
    kinds = Counter(obj["kind"] for obj in chart.manifests(objs))
    assert kinds[WORKLOAD[mode]] == 1, kinds
    assert all(kinds[other] == 0 for other in WORKLOAD.values() if other != WORKLOAD[mode])
    assert kinds["Service"] >= 1, kinds


@pytest.mark.parametrize("scenario", chart.scenario_files(), ids=chart.scenario_name)
def test_the_scenario_renders_well_formed_objects(
    scenario: Path, rendered: RenderedScenarios
) -> None:
    objs = rendered(scenario)
    for obj in objs:
        assert obj.get("apiVersion"), obj
        assert obj.get("kind"), obj
        assert obj.get("metadata", {}).get("name"), obj
    names = Counter((obj["kind"], obj["metadata"]["name"]) for obj in objs)
    assert [name for name, count in names.items() if count > 1] == []


@pytest.mark.parametrize("scenario", chart.scenario_files(), ids=chart.scenario_name)
def test_the_scenario_ships_helm_tests(scenario: Path, rendered: RenderedScenarios) -> None:
    """templates/tests/: `helm test` has something to run in every scenario."""
    tests = [obj for obj in rendered(scenario) if chart.hook(obj) == "test"]
    assert tests, "no object with the helm.sh/hook: test annotation"


def test_the_scenarios_render_distinct_manifests(rendered: RenderedScenarios) -> None:
    by_output: dict[str, list[str]] = {}
    for scenario in chart.scenario_files():
        output = chart.to_yaml(rendered(scenario))
        by_output.setdefault(output, []).append(chart.scenario_name(scenario))
    assert [names for names in by_output.values() if len(names) > 1] == []


def test_render_lays_values_files_and_values_over_the_defaults() -> None:
    """chart.render's merge is Helm's: later files win key by key, lists are replaced,
    `values` come last."""
    base = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert chart.deep_merge(base, {"a": {"c": [3]}, "e": None}) == {
        "a": {"b": 1, "c": [3]},
        "d": "x",
        "e": None,
    }
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    hostsocket = chart.CHART_DIR / "ci" / "host-socket-values.yaml"
    assert chart.scenario_mode(hostsocket) == "hostSocket"
    objs = chart.render({"mode": "dind"}, values_files=[hostsocket])
    assert chart.objects_of_kind(objs, "Deployment")
    assert not chart.objects_of_kind(objs, "DaemonSet")
