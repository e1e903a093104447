"""A pull or push that stops moving ends TRANSFER_STALLED; one that moves, however
slowly, or repeats itself without moving, is judged by what moved, not by what was said."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from imagesvc.core.errors import DeadlineExceededError, Reason
from imagesvc.core.image_core import CoreSettings, ImageCore
from imagesvc.core.models import PullResult, PushResult
from imagesvc.core.progress import TransferTracker
from tests.unit.aio import run_collect
from tests.unit.core.test_image_core import L1, pull_script, push_script
from tests.unit.fakes import FakeDockerPort, FakeEngineStream, engine_image

STALL = 0.3


class PacedStream(FakeEngineStream):
    """Hands out each scripted message `pace` seconds after the previous one."""

    def __init__(self, messages: Iterable[Any], *, pace: float) -> None:
        super().__init__(messages)
        self._pace = pace

    def __next__(self) -> Any:
        self._closed.wait(self._pace)
        return super().__next__()


def downloading(current: int) -> dict[str, Any]:
    return {
        "status": "Downloading",
        "progressDetail": {"current": current, "total": 10_000},
        "id": L1,
    }


@pytest.fixture
def stalling_core(
    port: FakeDockerPort, executor: ThreadPoolExecutor, settings: CoreSettings
) -> ImageCore:
    return ImageCore(
        port, executor, dataclasses.replace(settings, transfer_stall_timeout_seconds=STALL)
    )


def test_a_pull_that_stops_moving_ends_stalled_and_closes_the_stream(
    stalling_core: ImageCore, port: FakeDockerPort
) -> None:
    stream = FakeEngineStream(pull_script(), block_at=4)
    port.pull_streams.append(stream)
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError) as caught:
        run_collect(stalling_core.pull_image("busybox", platform="", auth=None))
    took = time.monotonic() - started
    assert caught.value.reason == Reason.TRANSFER_STALLED
    assert "pull stalled" in caught.value.message
    assert f"for {STALL:g} seconds" in caught.value.message
    assert caught.value.metadata == {"stall_timeout_seconds": f"{STALL:g}"}
    assert STALL <= took < STALL + 1.0
    assert stream.closed
    assert port.calls_to("inspect_image") == []


def test_a_pull_repeating_the_same_progress_is_stalled(
    stalling_core: ImageCore, port: FakeDockerPort
) -> None:
    # The Engine keeps talking, but nothing moves.
    port.pull_streams.append(PacedStream([downloading(100)] * 40, pace=0.05))
    with pytest.raises(DeadlineExceededError) as caught:
        run_collect(stalling_core.pull_image("busybox", platform="", auth=None))
    assert caught.value.reason == Reason.TRANSFER_STALLED


def test_a_slow_pull_that_keeps_moving_is_never_cut(
    stalling_core: ImageCore, port: FakeDockerPort
) -> None:
    # Each message moves a few bytes; the whole pull takes several stall timeouts.
    port.add(engine_image(9, tags=["busybox:latest"]))
    slow = [downloading(n) for n in range(1, 9)] + pull_script()
    port.pull_streams.append(PacedStream(slow, pace=STALL / 2))
    started = time.monotonic()
    items = run_collect(stalling_core.pull_image("busybox", platform="", auth=None))
    assert time.monotonic() - started > 3 * STALL
    assert isinstance(items[-1], PullResult)


def test_a_push_that_stops_moving_ends_stalled(
    stalling_core: ImageCore, port: FakeDockerPort
) -> None:
    port.add(engine_image(3, tags=["127.0.0.1:5000/team/app:1.0"]))
    stream = FakeEngineStream(push_script("1.0"), block_at=5)
    port.push_streams.append(stream)
    with pytest.raises(DeadlineExceededError) as caught:
        run_collect(stalling_core.push_image("127.0.0.1:5000/team/app:1.0", auth=None))
    assert caught.value.reason == Reason.TRANSFER_STALLED
    assert "push stalled" in caught.value.message
    assert stream.closed


def test_a_slow_consumer_is_not_a_stall(stalling_core: ImageCore, port: FakeDockerPort) -> None:
    """Only the waits on the Engine count: a consumer slower than the stall timeout
    between two messages does not stall a transfer whose Engine answers at once."""
    port.add(engine_image(3, tags=["127.0.0.1:5000/team/app:1.0"]))
    port.push_streams.append(FakeEngineStream(push_script("1.0")))

    async def slow_reader() -> list[object]:
        items: list[object] = []
        async for item in stalling_core.push_image("127.0.0.1:5000/team/app:1.0", auth=None):
            items.append(item)
            await asyncio.sleep(STALL / 2)
        return items

    items = asyncio.run(slow_reader())
    assert isinstance(items[-1], PushResult)


def test_no_stall_timeout_waits_as_long_as_the_engine(
    port: FakeDockerPort, executor: ThreadPoolExecutor, settings: CoreSettings
) -> None:
    core = ImageCore(
        port, executor, dataclasses.replace(settings, transfer_stall_timeout_seconds=0)
    )
    port.add(engine_image(9, tags=["busybox:latest"]))
    port.pull_streams.append(PacedStream(pull_script()[:2] + pull_script(), pace=0.05))
    items = run_collect(core.pull_image("busybox", platform="", auth=None))
    assert isinstance(items[-1], PullResult)


def test_the_tracker_counts_only_messages_that_move() -> None:
    tracker = TransferTracker(pushing=False)
    moves = []
    for message in [
        {"status": "Pulling from library/busybox", "id": "latest"},
        downloading(10),
        downloading(10),
        downloading(20),
        {"status": "Verifying Checksum", "progressDetail": {}, "id": L1},
        {"status": "Verifying Checksum", "progressDetail": {}, "id": L1},
    ]:
        before = tracker.moves
        tracker.feed(message)
        moves.append(tracker.moves - before)
    assert moves == [1, 1, 0, 1, 1, 0]


def test_the_tracker_snapshot_holds_every_layer_as_last_reported() -> None:
    tracker = TransferTracker(pushing=False, min_interval=10.0)
    assert tracker.snapshot() is None
    for message in pull_script()[:6]:
        tracker.feed(message)
    snapshot = tracker.snapshot()
    assert snapshot is not None
    assert {(lp.layer_id, lp.state, lp.current) for lp in snapshot.layers} == {
        (L1, "Downloading", 3_000),
        ("0f1e2d3c4b5a", "Downloading", 500),
    }
    assert (snapshot.bytes_done, snapshot.bytes_total) == (3_500, 3_500)
    assert (snapshot.layers_done, snapshot.layers_total) == (0, 2)
