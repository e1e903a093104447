"""The soak's CI version (bench/soak.py): 32 clients of mixed calls against one server
with default settings for 60 seconds (10 of them warm-up); any error fails it, since at
default settings none is designed.

A pytest test rather than a step of scripts/test: it runs in the normal suite with the
session's engine and registry (and their leftover checks), `-m "not integration"`
leaves it out with the other engine tests, and its report is in pytest's output.
"""

from __future__ import annotations

from bench.soak import soak_against
from devtools.sandbox import Engine, Registry

CLIENTS = 32
WARMUP_SECONDS = 10.0
SECONDS = 50.0


def test_soak_has_no_undesigned_errors(engine: Engine, open_registry: Registry) -> None:
    result = soak_against(
        engine,
        open_registry,
        clients=CLIENTS,
        seconds=SECONDS,
        warmup_seconds=WARMUP_SECONDS,
        max_calls=200_000,
    )
    print("\n" + result.report())
    assert not result.tally.errors, result.report()
    assert result.tally.calls > CLIENTS * 6, "each client should have made a few rounds"
