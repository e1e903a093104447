from __future__ import annotations

import itertools
from typing import Any

import pytest

from imagesvc.core.models import LayerProgress
from imagesvc.core.progress import TransferTracker

A = "a1b2c3d4e5f6"
B = "0f1e2d3c4b5a"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def layer(layer_id: str, status: str, current: int | None = None, total: int | None = None) -> Any:
    detail: dict[str, int] = {}
    if current is not None:
        detail["current"] = current
    if total is not None:
        detail["total"] = total
    return {"status": status, "progressDetail": detail, "id": layer_id}


def tracker(clock: FakeClock, *, pushing: bool = False) -> TransferTracker:
    return TransferTracker(pushing=pushing, min_interval=0.1, clock=clock)


def test_downloading_bursts_are_coalesced_to_one_update_per_interval() -> None:
    clock = FakeClock()
    t = tracker(clock)
    assert t.feed(layer(A, "Pulling fs layer")) is not None
    first = t.feed(layer(A, "Downloading", 100, 10_000))  # state change: reported
    assert first is not None
    assert first.layers == (LayerProgress(A, "Downloading", 100, 10_000),)
    held = []
    for i in range(1, 10):  # 90 ms of byte updates, 10 ms apart
        clock.advance(0.01)
        held.append(t.feed(layer(A, "Downloading", 100 + i * 100, 10_000)))
    assert held == [None] * 9
    clock.advance(0.011)  # 101 ms after the last emitted update
    due = t.feed(layer(A, "Downloading", 1_100, 10_000))
    assert due is not None
    assert due.layers == (LayerProgress(A, "Downloading", 1_100, 10_000),)
    assert due.bytes_done == 1_100


def test_at_most_one_byte_update_per_layer_per_interval_over_a_long_burst() -> None:
    clock = FakeClock()
    t = tracker(clock)
    t.feed(layer(A, "Downloading", 0, 1_000_000))
    emitted_at: list[float] = []
    for i in range(1, 1001):  # 1000 messages over one second
        clock.advance(0.001)
        update = t.feed(layer(A, "Downloading", i * 1000, 1_000_000))
        if update is not None and update.layers:
            emitted_at.append(clock.now)
    assert 5 <= len(emitted_at) <= 10
    gaps = [b - a for a, b in itertools.pairwise(emitted_at)]
    assert all(gap >= 0.1 - 1e-9 for gap in gaps)


def test_every_state_change_is_reported_even_within_the_interval() -> None:
    clock = FakeClock()
    t = tracker(clock)
    states = [
        "Pulling fs layer",
        "Waiting",
        "Downloading",
        "Verifying Checksum",
        "Download complete",
        "Extracting",
        "Pull complete",
    ]
    reported: list[str] = []
    for state in states:
        clock.advance(0.001)
        update = t.feed(layer(A, state, 10 if state == "Downloading" else None, 10))
        assert update is not None, state
        reported.extend(lp.state for lp in update.layers)
    assert reported == states


def test_layers_are_throttled_independently() -> None:
    clock = FakeClock()
    t = tracker(clock)
    t.feed(layer(A, "Downloading", 1, 100))
    clock.advance(0.05)
    b_first = t.feed(layer(B, "Downloading", 1, 100))  # B's first state: reported
    assert b_first is not None
    assert [lp.layer_id for lp in b_first.layers] == [B]  # A is not yet due
    clock.advance(0.06)  # A due (0.11 since its emit), B not (0.06)
    update = t.feed(layer(A, "Downloading", 50, 100))
    assert update is not None
    assert [lp.layer_id for lp in update.layers] == [A]
    assert t.feed(layer(B, "Downloading", 60, 100)) is None


def test_flush_returns_the_held_back_updates_then_nothing() -> None:
    clock = FakeClock()
    t = tracker(clock)
    t.feed(layer(A, "Downloading", 10, 100))
    t.feed(layer(B, "Downloading", 10, 100))
    clock.advance(0.01)
    assert t.feed(layer(A, "Downloading", 70, 100)) is None
    assert t.feed(layer(B, "Downloading", 80, 100)) is None
    final = t.flush()
    assert final is not None
    assert set(final.layers) == {
        LayerProgress(A, "Downloading", 70, 100),
        LayerProgress(B, "Downloading", 80, 100),
    }
    assert final.bytes_done == 150
    assert t.flush() is None


def test_flush_with_nothing_held_back_is_none() -> None:
    t = tracker(FakeClock())
    assert t.flush() is None
    assert t.feed(layer(A, "Pull complete")) is not None
    assert t.flush() is None


def test_pull_aggregates_bytes_and_layers() -> None:
    clock = FakeClock()
    t = tracker(clock)
    t.feed(layer(A, "Pulling fs layer"))
    t.feed(layer(B, "Pulling fs layer"))
    update = t.feed(layer(A, "Downloading", 300, 1_000))
    assert update is not None
    assert (update.bytes_done, update.bytes_total) == (300, 1_000)
    update = t.feed(layer(B, "Downloading", 50, 500))
    assert update is not None
    assert (update.bytes_done, update.bytes_total) == (350, 1_500)
    assert (update.layers_done, update.layers_total) == (0, 2)
    update = t.feed(layer(A, "Download complete"))
    assert update is not None
    assert update.bytes_done == 1_050  # A counts as fully downloaded
    update = t.feed(layer(A, "Extracting", 200, 1_000))
    assert update is not None
    assert update.bytes_done == 1_050  # extraction does not move the download back
    update = t.feed(layer(A, "Pull complete"))
    assert update is not None
    assert (update.layers_done, update.layers_total) == (1, 2)
    t.feed(layer(B, "Verifying Checksum"))
    t.feed(layer(B, "Download complete"))
    update = t.feed(layer(B, "Pull complete"))
    assert update is not None
    assert (update.bytes_done, update.bytes_total) == (1_500, 1_500)
    assert (update.layers_done, update.layers_total) == (2, 2)


def test_already_existing_layers_count_as_done_on_pull() -> None:
    t = tracker(FakeClock())
    update = t.feed(layer(A, "Already exists"))
    assert update is not None
    assert (update.layers_done, update.layers_total) == (1, 1)
    assert update.bytes_total == 0


def test_push_aggregates_with_push_states() -> None:
    clock = FakeClock()
    t = tracker(clock, pushing=True)
    t.feed(layer(A, "Preparing"))
    t.feed(layer(B, "Preparing"))
    t.feed(layer(A, "Waiting"))
    update = t.feed(layer(A, "Pushing", 512, 2_048))
    assert update is not None
    assert (update.bytes_done, update.bytes_total) == (512, 2_048)
    update = t.feed(layer(B, "Layer already exists"))
    assert update is not None
    assert (update.layers_done, update.layers_total) == (1, 2)
    update = t.feed(layer(A, "Pushed"))
    assert update is not None
    assert (update.bytes_done, update.bytes_total) == (2_048, 2_048)
    assert (update.layers_done, update.layers_total) == (2, 2)


def test_pull_states_do_not_finish_a_push_and_vice_versa() -> None:
    push = tracker(FakeClock(), pushing=True)
    update = push.feed(layer(A, "Pull complete"))
    assert update is not None
    assert update.layers_done == 0
    pull = tracker(FakeClock())
    update = pull.feed(layer(A, "Pushed"))
    assert update is not None
    assert update.layers_done == 0


@pytest.mark.parametrize("finished", ["Mounted from library/busybox", "Already exists"])
def test_push_counts_mounted_and_existing_blobs_as_done(finished: str) -> None:
    # moby's push reports a blob mounted from another repository of the same registry
    # as "Mounted from <repo>", and (containerd image store) an existing non-layer blob
    # as "Already exists"; neither needs an upload, both are done.
    t = tracker(FakeClock(), pushing=True)
    t.feed(layer(A, "Preparing"))
    t.feed(layer(B, "Preparing"))
    t.feed(layer(A, finished))
    update = t.feed(layer(B, "Pushed"))
    assert update is not None
    assert (update.layers_done, update.layers_total) == (2, 2)


@pytest.mark.parametrize("total", [-1, 0, None])
def test_unknown_totals_are_ignored(total: int | None) -> None:
    t = tracker(FakeClock())
    update = t.feed(layer(A, "Downloading", 700, total))
    assert update is not None
    assert update.bytes_total == 0
    assert update.bytes_done == 700
    assert update.layers == (LayerProgress(A, "Downloading", 700, 0),)


def test_known_total_survives_a_later_message_without_total() -> None:
    clock = FakeClock()
    t = tracker(clock)
    t.feed(layer(A, "Downloading", 10, 1_000))
    clock.advance(1)
    update = t.feed(layer(A, "Downloading", 20, -1))
    assert update is not None
    assert update.bytes_total == 1_000
    assert update.layers[0].total == 1_000


def test_current_beyond_total_is_clamped_in_the_aggregate() -> None:
    t = tracker(FakeClock())
    update = t.feed(layer(A, "Downloading", 1_500, 1_000))
    assert update is not None
    assert update.bytes_done == 1_000
    assert update.bytes_total == 1_000
    assert update.bytes_done <= update.bytes_total


def test_negative_current_is_treated_as_zero() -> None:
    t = tracker(FakeClock())
    update = t.feed(layer(A, "Downloading", -5, 1_000))
    assert update is not None
    assert update.bytes_done == 0
    assert update.layers[0].current == 0


def test_aux_is_captured_and_not_reported_as_progress() -> None:
    t = tracker(FakeClock(), pushing=True)
    assert t.feed({"progressDetail": {}, "aux": {"Tag": "1.0", "Digest": "sha256:ab"}}) is None
    assert t.feed({"aux": {"Size": 527}}) is None
    assert t.aux == {"Tag": "1.0", "Digest": "sha256:ab", "Size": 527}
    assert t.feed({"aux": "not a dict", "status": "x"}) is not None


def test_non_layer_status_lines_are_reported_and_kept() -> None:
    t = tracker(FakeClock())
    update = t.feed({"status": "Pulling from library/busybox", "id": "latest"})
    assert update is not None
    assert update.status == "latest: Pulling from library/busybox"
    assert update.layers == ()
    assert update.layers_total == 0
    digest = "sha256:" + "ab" * 32
    update = t.feed({"status": f"Digest: {digest}"})
    assert update is not None
    assert update.status == f"Digest: {digest}"
    t.feed({"status": "Status: Downloaded newer image for busybox:latest"})
    assert t.status_lines == [
        "Pulling from library/busybox",
        f"Digest: {digest}",
        "Status: Downloaded newer image for busybox:latest",
    ]


def test_messages_without_status_or_layer_are_ignored() -> None:
    t = tracker(FakeClock())
    assert t.feed({}) is None
    assert t.feed({"id": "latest"}) is None
    assert t.feed({"progressDetail": {}}) is None
    assert t.status_lines == []


def test_status_line_carries_due_layer_updates() -> None:
    clock = FakeClock()
    t = tracker(clock)
    t.feed(layer(A, "Downloading", 10, 100))
    clock.advance(0.01)
    assert t.feed(layer(A, "Downloading", 20, 100)) is None
    clock.advance(0.2)
    update = t.feed({"status": "Digest: sha256:" + "0" * 64})
    assert update is not None
    assert update.layers == (LayerProgress(A, "Downloading", 20, 100),)


def test_default_clock_and_interval_work() -> None:
    t = TransferTracker(pushing=False)
    update = t.feed(layer(A, "Downloading", 1, 2))
    assert update is not None
    assert update.bytes_done == 1


def test_finish_counts_every_layer_done_after_a_containerd_store_pull() -> None:
    # The containerd image store ends a pulled layer at "Download complete", without
    # byte counts, and never says "Pull complete".
    t = tracker(FakeClock())
    t.feed(layer(A, "Pulling fs layer"))
    update = t.feed(
        {"status": "Download complete", "progressDetail": {"hidecounts": True}, "id": A}
    )
    assert update is not None
    assert (update.layers_done, update.layers_total) == (0, 1)
    final = t.finish()
    assert final is not None
    assert (final.layers_done, final.layers_total) == (1, 1)
    assert final.layers == ()  # nothing new to say about the layer itself


def test_finish_completes_the_bytes_of_unfinished_layers() -> None:
    clock = FakeClock()
    t = tracker(clock)
    t.feed(layer(A, "Pushing", 400, 1_000))
    t.feed(layer(B, "Pushed"))
    final = t.finish()
    assert final is not None
    assert (final.bytes_done, final.bytes_total) == (1_000, 1_000)
    assert (final.layers_done, final.layers_total) == (2, 2)


def test_finish_after_every_layer_finished_is_flush() -> None:
    clock = FakeClock()
    t = tracker(clock)
    t.feed(layer(A, "Downloading", 10, 100))
    clock.advance(0.01)
    assert t.feed(layer(A, "Downloading", 70, 100)) is None
    t.feed(layer(A, "Pull complete"))
    assert t.finish() is None
    t2 = tracker(clock)
    t2.feed(layer(A, "Pull complete"))
    assert t2.finish() is None
