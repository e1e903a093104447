"""Fixtures of the chart checks: each ci/ scenario rendered once per session."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path

import pytest

from tests.unit.helm import chart


class RenderedScenarios:
    """The objects of each ci/ scenario, rendered on first use; callers get their own copy."""

    def __init__(self) -> None:
        self._objects: dict[Path, list[chart.Obj]] = {}

    def __call__(self, scenario: Path) -> list[chart.Obj]:
        if scenario not in self._objects:
            self._objects[scenario] = chart.render_scenario(scenario)
        return deepcopy(self._objects[scenario])


@pytest.fixture(scope="session")
def rendered() -> RenderedScenarios:
    return RenderedScenarios()
