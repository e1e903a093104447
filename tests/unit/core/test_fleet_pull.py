"""PullImageOnNodes' scheduling with fake nodes: parallelism, retries (which, how often,
with what backoff), the per-node timeout over every retry, stalls, the completion policy,
precise reasons and progress that moves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import pytest

from imagesvc.core.errors import InvalidArgumentError, Reason
from imagesvc.core.fleet import NODE_TIMEOUT, NODE_UNREACHABLE, NodeFailure
from imagesvc.core.fleet_pull import (
    Attempt,
    FleetPullOptions,
    FleetPullSummary,
    LayerSizes,
    NodeProgress,
    NodePulled,
    NodePullUpdate,
    Probe,
    PullFailure,
    PullFailureReason,
    PullPhase,
    PullTarget,
    check_retries,
    check_seconds,
    failure_from,
    fleet_pull,
    parallelism_of,
)

Item = NodeProgress | NodePulled


@dataclass
class FakeNode:
    """Each attempt plays the next script: items (a float: sleep that long), then a
    NodeFailure to raise, or the end."""

    scripts: list[list[Item | float | NodeFailure]]
    attempts: int = 0
    running: list[int] = field(default_factory=list)

    def attempt(self, concurrency: list[int]) -> Attempt:
        async def pull() -> AsyncGenerator[Item, None]:
            script = self.scripts[min(self.attempts, len(self.scripts) - 1)]
            self.attempts += 1
            concurrency.append(concurrency[-1] + 1 if concurrency else 1)
            try:
                for step in script:
                    if isinstance(step, float):
                        await asyncio.sleep(step)
                    elif isinstance(step, NodeFailure):
                        raise step
                    else:
                        yield step
            finally:
                concurrency.append(concurrency[-1] - 1)

        return pull


PULLED = NodePulled(skipped=False, image_id="sha256:img", digest="sha256:dig")


def run(
    nodes: dict[str, FakeNode],
    options: FleetPullOptions,
    sleeps: list[float] | None = None,
    probes: dict[str, Probe] | None = None,
) -> tuple[list[NodePullUpdate], FleetPullSummary, int]:
    concurrency: list[int] = []

    async def fake_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    targets = [
        PullTarget(
            f"{name}:1", name, attempt=node.attempt(concurrency), probe=(probes or {}).get(name)
        )
        for name, node in nodes.items()
    ]

    async def collect() -> tuple[list[NodePullUpdate], FleetPullSummary]:
        updates: list[NodePullUpdate] = []
        async for item in fleet_pull(targets, options, sleep=fake_sleep):
            if isinstance(item, FleetPullSummary):
                return updates, item
            updates.append(item)
        raise AssertionError("no summary")

    updates, summary = asyncio.run(collect())
    return updates, summary, max(concurrency, default=0)


def options(**overrides: object) -> FleetPullOptions:
    values: dict[str, object] = {
        "parallelism": 4,
        "node_timeout_seconds": 5.0,
        "stall_timeout_seconds": 1.0,
        "retries": 2,
        "backoff_seconds": 0.5,
    }
    values.update(overrides)
    return FleetPullOptions(**values)  # type: ignore[arg-type]


def test_every_node_pulls_and_progress_moves_to_100_percent() -> None:
    script: list[Item | float | NodeFailure] = [
        NodeProgress(0, 1000),
        NodeProgress(250, 1000, 25.0),
        NodeProgress(1000, 1000, 100.0),
        PULLED,
    ]
    updates, summary, _ = run({"a": FakeNode([script]), "b": FakeNode([script])}, options())
    assert [u.name for u in summary.succeeded] == ["a", "b"]
    assert summary.complete
    assert summary.desired == 2
    percents = [u.percent for u in updates if u.name == "a" and u.phase is PullPhase.PULLING]
    assert percents == [0.0, 0.0, 25.0, 100.0]
    final = summary.succeeded[0]
    assert (final.percent, final.attempt, final.image_id, final.digest) == (
        100.0,
        1,
        "sha256:img",
        "sha256:dig",
    )
    assert [u.phase for u in updates[:2]] == [PullPhase.WAITING, PullPhase.WAITING]


def test_parallelism_bounds_the_nodes_pulling_at_once() -> None:
    script: list[Item | float | NodeFailure] = [0.05, PULLED]
    nodes = {name: FakeNode([script]) for name in "abcdef"}
    _, summary, most = run(nodes, options(parallelism=2))
    assert most == 2
    assert len(summary.succeeded) == 6


def test_retryable_failures_are_retried_with_exponential_backoff() -> None:
    unavailable = NodeFailure(str(Reason.REGISTRY_UNAVAILABLE), "registry down")
    node = FakeNode([[unavailable], [unavailable], [PULLED]])
    sleeps: list[float] = []
    updates, summary, _ = run({"a": node}, options(retries=2, backoff_seconds=0.5), sleeps)
    assert node.attempts == 3
    assert sleeps == [0.5, 1.0]
    assert summary.succeeded[0].attempt == 3
    waiting = [u for u in updates if u.phase is PullPhase.WAITING and u.failure]
    assert [w.failure.reason for w in waiting if w.failure] == [
        PullFailureReason.REGISTRY_UNAVAILABLE
    ] * 2
    assert [w.retry_in_seconds for w in waiting] == [0.5, 1.0]


def test_retries_run_out_and_the_last_reason_is_reported() -> None:
    limited = NodeFailure(str(Reason.TOO_MANY_REQUESTS), "toomanyrequests: slow down")
    node = FakeNode([[limited]])
    _, summary, _ = run({"a": node}, options(retries=1))
    assert node.attempts == 2
    failed = summary.failed[0]
    assert failed.failure == PullFailure(
        PullFailureReason.RATE_LIMITED, "toomanyrequests: slow down", "TOO_MANY_REQUESTS"
    )


@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        (Reason.REGISTRY_UNAUTHENTICATED, PullFailureReason.AUTH_FAILED),
        (Reason.REGISTRY_DENIED, PullFailureReason.AUTH_FAILED),
        (Reason.IMAGE_NOT_FOUND, PullFailureReason.NOT_FOUND),
        (Reason.DAEMON_DISK_FULL, PullFailureReason.DISK_FULL),
        (Reason.DAEMON_UNAVAILABLE, PullFailureReason.DAEMON_UNAVAILABLE),
        (Reason.REGISTRY_NOT_ALLOWED, PullFailureReason.NOT_ALLOWED),
    ],
)
def test_final_failures_are_never_retried_and_keep_a_precise_reason(
    cause: Reason, reason: PullFailureReason
) -> None:
    node = FakeNode([[NodeFailure(str(cause), f"the node says {cause}")]])
    sleeps: list[float] = []
    _, summary, _ = run({"a": node}, options(retries=5), sleeps)
    assert node.attempts == 1
    assert sleeps == []
    failure = summary.failed[0].failure
    assert failure == PullFailure(reason, f"the node says {cause}", str(cause))


def test_an_unknown_cause_is_error_with_the_cause_kept() -> None:
    assert failure_from(NodeFailure("ENGINE_ERROR", "boom")) == PullFailure(
        PullFailureReason.ERROR, "boom", "ENGINE_ERROR"
    )
    assert failure_from(NodeFailure(NODE_UNREACHABLE, "gone")).reason is (
        PullFailureReason.NODE_UNREACHABLE
    )


def test_a_pull_without_progress_for_the_stall_timeout_is_stalled_and_retried() -> None:
    stuck: list[Item | float | NodeFailure] = [NodeProgress(10, 100), 5.0, PULLED]
    node = FakeNode([stuck, [NodeProgress(100, 100), PULLED]])
    updates, summary, _ = run({"a": node}, options(stall_timeout_seconds=0.2, retries=1))
    assert node.attempts == 2
    retried = [u for u in updates if u.phase is PullPhase.WAITING and u.failure]
    assert retried[0].failure is not None
    assert retried[0].failure.reason is PullFailureReason.STALLED
    assert "no progress for 0.2 s at 10 of 100 bytes" in retried[0].failure.message
    assert summary.succeeded[0].attempt == 2


def _probe(failure: NodeFailure | None) -> tuple[Probe, list[int]]:
    asked: list[int] = []

    async def probe() -> None:
        asked.append(1)
        if failure is not None:
            raise failure

    return probe, asked


def test_a_peer_that_stops_answering_mid_pull_is_unreachable_not_stalled() -> None:
    """Its link cut: the pull's stream goes silent, and so does the peer. STALLED would
    blame the registry and retry on the dead connection."""
    stuck: list[Item | float | NodeFailure] = [NodeProgress(10, 100), 5.0, PULLED]
    node = FakeNode([stuck])
    silent, asked = _probe(NodeFailure(NODE_TIMEOUT, "node a:1 did not answer within 5 s"))
    updates, summary, _ = run(
        {"a": node}, options(stall_timeout_seconds=0.2, retries=2), probes={"a": silent}
    )
    assert (node.attempts, len(asked)) == (1, 1)  # asked once, never retried
    (failed,) = summary.failed
    assert failed.failure is not None
    assert failed.failure.reason is PullFailureReason.NODE_UNREACHABLE
    assert "stopped answering during its pull" in failed.failure.message
    assert "at 10 of 100 bytes" in failed.failure.message
    assert not [u for u in updates if u.phase is PullPhase.WAITING and u.failure]


@pytest.mark.parametrize(
    "answer", [None, NodeFailure("NODE_DENIED", "node a:1 refused this server's credentials")]
)
def test_a_stalled_pull_on_a_peer_that_answers_stays_stalled(answer: NodeFailure | None) -> None:
    stuck: list[Item | float | NodeFailure] = [NodeProgress(10, 100), 5.0, PULLED]
    node = FakeNode([stuck, [NodeProgress(100, 100), PULLED]])
    answering, asked = _probe(answer)
    updates, summary, _ = run(
        {"a": node}, options(stall_timeout_seconds=0.2, retries=1), probes={"a": answering}
    )
    assert (node.attempts, len(asked)) == (2, 1)
    retried = [u for u in updates if u.phase is PullPhase.WAITING and u.failure]
    assert retried[0].failure is not None
    assert retried[0].failure.reason is PullFailureReason.STALLED
    assert summary.complete


def test_progress_that_keeps_moving_never_stalls() -> None:
    moving: list[Item | float | NodeFailure] = []
    for done in range(1, 8):
        moving += [0.05, NodeProgress(done, 10)]
    node = FakeNode([[*moving, PULLED]])
    _, summary, _ = run({"a": node}, options(stall_timeout_seconds=0.15, retries=0))
    assert summary.complete


def test_the_node_timeout_covers_every_retry() -> None:
    unavailable = NodeFailure(str(Reason.REGISTRY_UNAVAILABLE), "registry down")
    node = FakeNode([[0.15, unavailable]])

    async def real_sleep_run() -> FleetPullSummary:
        target = PullTarget("a:1", "a", attempt=node.attempt([]))
        pull_options = options(node_timeout_seconds=0.5, retries=10, backoff_seconds=0.05)
        async for item in fleet_pull([target], pull_options):
            if isinstance(item, FleetPullSummary):
                return item
        raise AssertionError

    started = asyncio.run(asyncio.wait_for(real_sleep_run(), 5))
    failure = started.failed[0].failure
    assert failure is not None
    assert failure.reason is PullFailureReason.TIMED_OUT
    assert "within 0.5 s" in failure.message
    assert "the last attempt failed: REGISTRY_UNAVAILABLE: registry down" in failure.message
    assert 2 <= node.attempts < 10


def test_stop_on_first_failure_cancels_the_nodes_not_started() -> None:
    denied = NodeFailure(str(Reason.REGISTRY_UNAUTHENTICATED), "unauthorized")
    nodes = {
        "a": FakeNode([[0.05, denied]]),
        "b": FakeNode([[0.2, PULLED]]),
        "c": FakeNode([[PULLED]]),
        "d": FakeNode([[PULLED]]),
    }
    _, summary, _ = run(nodes, options(parallelism=2, stop_on_first_failure=True))
    assert summary.stopped_early
    assert not summary.complete
    assert [u.name for u in summary.failed] == ["a"]
    # b was pulling already and finishes; c and d never start.
    assert [u.name for u in summary.succeeded] == ["b"]
    assert [u.name for u in summary.cancelled] == ["c", "d"]
    assert nodes["c"].attempts == nodes["d"].attempts == 0
    cancelled = summary.cancelled[0].failure
    assert cancelled is not None
    assert cancelled.reason is PullFailureReason.CANCELLED
    assert "(a failed)" in cancelled.message


def test_best_effort_pulls_everywhere_despite_a_failure() -> None:
    denied = NodeFailure(str(Reason.IMAGE_NOT_FOUND), "manifest unknown")
    nodes = {"a": FakeNode([[denied]]), "b": FakeNode([[PULLED]]), "c": FakeNode([[PULLED]])}
    _, summary, _ = run(nodes, options(parallelism=1))
    assert not summary.stopped_early
    assert [u.name for u in summary.succeeded] == ["b", "c"]
    assert [u.name for u in summary.failed] == ["a"]


def test_skipped_nodes_and_failed_targets_are_summarized_in_node_order() -> None:
    skipped = NodePulled(skipped=True, digest="sha256:dig", name="b-named")
    unreachable = PullFailure(PullFailureReason.NODE_UNREACHABLE, "connection refused")

    async def collect() -> FleetPullSummary:
        targets = [
            PullTarget("a:1", "a", attempt=FakeNode([[PULLED]]).attempt([])),
            PullTarget("b:1", "", attempt=FakeNode([[skipped]]).attempt([])),
            PullTarget("c:1", "", failure=unreachable),
        ]
        async for item in fleet_pull(targets, options()):
            if isinstance(item, FleetPullSummary):
                return item
        raise AssertionError

    summary = asyncio.run(collect())
    assert [u.name for u in summary.succeeded] == ["a"]
    assert [(u.name, u.percent) for u in summary.skipped] == [("b-named", 100.0)]
    assert [(u.address, u.failure) for u in summary.failed] == [("c:1", unreachable)]
    assert summary.desired == 3


def test_closing_the_stream_cancels_every_nodes_pull() -> None:
    node = FakeNode([[NodeProgress(1, 10), 30.0, PULLED]])
    concurrency: list[int] = []

    async def close_early() -> None:
        target = PullTarget("a:1", "a", attempt=node.attempt(concurrency))
        items = fleet_pull([target], options(stall_timeout_seconds=60))
        async for item in items:
            if isinstance(item, NodePullUpdate) and item.bytes_done == 1:
                break
        await items.aclose()

    asyncio.run(asyncio.wait_for(close_early(), 5))
    assert concurrency[-1] == 0  # the attempt's generator was closed


@pytest.mark.parametrize(
    ("text", "nodes", "expected"),
    [("", 4, 16), ("3", 4, 3), ("25%", 4, 1), ("50%", 5, 3), ("100%", 4, 4), ("1%", 4, 1)],
)
def test_parallelism_is_a_count_or_a_share_of_the_nodes(
    text: str, nodes: int, expected: int
) -> None:
    assert parallelism_of(text, nodes, 16) == expected


@pytest.mark.parametrize("text", ["0", "0%", "150%", "-1", "a", "2.5", "%"])
def test_bad_parallelism_is_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        parallelism_of(text, 4, 16)
    assert refused.value.reason is Reason.INVALID_ARGUMENT
    assert f"parallelism {text!r} is neither a count of at least 1" in str(refused.value)


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_bad_durations_and_retries_are_refused(value: float) -> None:
    with pytest.raises(InvalidArgumentError, match="node_timeout_seconds must be 0"):
        check_seconds("node_timeout_seconds", value)
    with pytest.raises(InvalidArgumentError, match="retries must be from 0 to 10"):
        check_retries(11)
    check_seconds("node_timeout_seconds", 0)
    check_retries(0)


def test_percent_is_held_while_a_layer_size_is_unknown_and_never_goes_back() -> None:
    sizes = LayerSizes()
    waiting = [("aaa", "Pulling fs layer", 0), ("bbb", "Pulling fs layer", 0)]
    assert sizes.update(waiting, 0, 0) == 0.0
    # The small layer is done while the big one waits: not 100 %.
    assert sizes.update([("aaa", "Download complete", 100)], 100, 100) == 0.0
    # The big one's size is known: the share of both.
    assert sizes.update([("bbb", "Downloading", 900)], 100, 1000) == 10.0
    assert sizes.update([("bbb", "Downloading", 900)], 550, 1000) == 55.0
    # A layer already present has no size and never holds the percent.
    assert sizes.update([("ccc", "Already exists", 0)], 550, 1000) == 55.0
    assert sizes.update([("bbb", "Pull complete", 900)], 1000, 1000) == 100.0


def test_a_caller_cancelled_while_waiting_leaves_no_task_behind() -> None:
    node = FakeNode([[NodeProgress(1, 10), 30.0, PULLED]])

    async def cancel_midway() -> set[asyncio.Task[object]]:
        before = asyncio.all_tasks()
        target = PullTarget("a:1", "a", attempt=node.attempt([]))
        items = fleet_pull([target], options(stall_timeout_seconds=60))

        async def consume() -> None:
            async for _ in items:
                pass

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.1)  # the pull waits in its 30 s step
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await asyncio.sleep(0)  # let cancelled tasks finish
        return {task for task in asyncio.all_tasks() - before if not task.done()}

    assert asyncio.run(asyncio.wait_for(cancel_midway(), 5)) == set()
