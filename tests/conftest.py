"""Options of the whole suite (pytest reads them only from the tests' root conftest)."""

from __future__ import annotations

import os

import pytest

ENGINE_KINDS_VARIABLE = "IMAGESVC_ENGINE_KINDS"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engine-kinds",
        default=os.environ.get(ENGINE_KINDS_VARIABLE, ""),
        help=(
            "comma-separated engine kinds the contract tests run on (devtools/engine_kinds.py), "
            f"e.g. docker-20.10,docker-26; default ${ENGINE_KINDS_VARIABLE}, else every kind "
            "available on this machine"
        ),
    )
