"""Ratios taken round by round: the service's time and the direct call's, measured in
the same round, divided before the median is taken.

These machines are shared and their load drifts over a benchmark's minutes. The ratio
of two columns' medians can pair a quiet round of one with a loaded round of the other;
the median of the per-round ratios compares calls that ran side by side. The benchmarks
print both.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TypeVar

_T = TypeVar("_T")


def median_round_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median over rounds of numerators[i] / denominators[i]."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError("one sample of each per round, at least one round")
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


def rotated(names: Sequence[_T], round_number: int) -> list[_T]:
    """`names` starting at a different one each round, so that none always runs first
    (or always after the same one)."""
    shift = round_number % len(names)
    return [*names[shift:], *names[:shift]]
