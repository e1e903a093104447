import statistics

import pytest

from bench.pairing import median_round_ratio, rotated


def test_the_median_of_the_rounds_ratios_cancels_a_drift_the_medians_keep() -> None:
    # The machine slows down round by round; the service is 1.05x the direct call in
    # every round.
    direct = [2.0, 4.0, 6.0, 8.0]
    service = [2.1, 4.2, 6.3, 8.4]
    assert median_round_ratio(service, direct) == pytest.approx(1.05)
    # One round loaded on the service's side: the columns' medians now come from
    # different rounds and their ratio moves; the per-round median does not.
    service[0] = 20.0
    assert statistics.median(service) / statistics.median(direct) == pytest.approx(1.47)
    assert median_round_ratio(service, direct) == pytest.approx(1.05)


def test_rounds_must_pair_up() -> None:
    with pytest.raises(ValueError, match="one sample of each per round"):
        median_round_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="one sample of each per round"):
        median_round_ratio([], [])


def test_each_round_starts_at_another_call_and_runs_them_all() -> None:
    names = ["docker", "grpc", "rest", "cli"]
    orders = [rotated(names, r) for r in range(4)]
    assert [order[0] for order in orders] == names
    assert all(sorted(order) == sorted(names) for order in orders)
    assert rotated(names, 4) == names
