from __future__ import annotations

import asyncio
import contextvars

import pytest

from imagesvc.core.errors import Reason, ResourceExhaustedError
from imagesvc.core.identity import CallOrigin, Identity, current_identity, current_origin
from imagesvc.core.limits import (
    CONCURRENCY_RETRY_SECONDS,
    ConcurrencyLimit,
    RateLimiter,
    current_caller,
    peer_host,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_concurrency_limit_without_a_queue_refuses_at_once_and_frees_on_exit() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit("build", 2)
        async with limit.slot(), limit.slot():
            assert limit.running == 2
            with pytest.raises(ResourceExhaustedError) as caught:
                async with limit.slot():
                    pass
            error = caught.value
            assert error.reason is Reason.CONCURRENCY_LIMIT
            assert error.retry_after_seconds == CONCURRENCY_RETRY_SECONDS
            assert error.metadata == {"operation": "build", "limit": "2"}
            assert "maximum of 2 concurrent builds" in error.message
            assert limit.running == 2
        assert limit.running == 0
        async with limit.slot():
            assert limit.running == 1

    asyncio.run(scenario())


def test_a_slot_is_freed_when_the_block_fails() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit("pull", 1)
        with pytest.raises(RuntimeError):
            async with limit.slot():
                raise RuntimeError("boom")
        async with limit.slot():
            assert limit.running == 1

    asyncio.run(scenario())


def test_zero_means_no_concurrency_limit() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit("push", 0, max_queued=1, max_wait_seconds=1)
        async with limit.slot(), limit.slot(), limit.slot():
            assert limit.running == 3
            assert limit.queued == 0

    asyncio.run(scenario())


class Observer:
    def __init__(self) -> None:
        self.lengths: list[tuple[str, int]] = []
        self.waits: list[tuple[str, float]] = []

    def queue_length(self, operation: str, length: int) -> None:
        self.lengths.append((operation, length))

    def queue_wait(self, operation: str, seconds: float) -> None:
        self.waits.append((operation, seconds))


async def _hold(limit: ConcurrencyLimit, name: str, order: list[str], go: asyncio.Event) -> None:
    async with limit.slot():
        order.append(name)
        await go.wait()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_calls_over_the_limit_wait_their_turn_first_in_first_out() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit("pull", 1, max_queued=8, max_wait_seconds=30)
        observer = Observer()
        limit.observer = observer
        order: list[str] = []
        go = {name: asyncio.Event() for name in "abcde"}
        tasks = {}
        for name in "abcde":
            tasks[name] = asyncio.create_task(_hold(limit, name, order, go[name]))
            await _settle()
        assert order == ["a"]
        assert (limit.running, limit.queued) == (1, 4)
        assert observer.lengths[-1] == ("pull", 4)
        for name in "abcde":
            go[name].set()
            await tasks[name]
            await _settle()
        assert order == list("abcde")
        assert (limit.running, limit.queued) == (0, 0)
        assert observer.lengths[-1] == ("pull", 0)
        assert [operation for operation, _ in observer.waits] == ["pull"] * 4

    asyncio.run(scenario())


def test_a_wait_that_runs_out_is_refused_with_a_retry_delay_and_frees_nothing() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit("push", 1, max_queued=8, max_wait_seconds=0.2)
        observer = Observer()
        limit.observer = observer
        go = asyncio.Event()
        order: list[str] = []
        holder = asyncio.create_task(_hold(limit, "holder", order, go))
        await _settle()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ResourceExhaustedError) as caught:
            async with limit.slot():
                pytest.fail("the wait ran out: no slot")
        assert 0.19 <= loop.time() - started < 2
        error = caught.value
        assert error.reason is Reason.CONCURRENCY_LIMIT
        assert error.retry_after_seconds == CONCURRENCY_RETRY_SECONDS
        assert "waited 0.2 s" in error.message
        assert "1 concurrent push slots" in error.message
        assert (limit.running, limit.queued) == (1, 0)
        operation, waited = observer.waits[-1]
        assert operation == "push"
        assert waited >= 0.19
        go.set()
        await holder
        assert limit.running == 0

    asyncio.run(scenario())


def test_a_full_queue_is_refused_at_once() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit("build", 1, max_queued=2, max_wait_seconds=30)
        go = asyncio.Event()
        order: list[str] = []
        tasks = [asyncio.create_task(_hold(limit, str(i), order, go)) for i in range(3)]
        await _settle()
        assert (limit.running, limit.queued) == (1, 2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ResourceExhaustedError) as caught:
            async with limit.slot():
                pytest.fail("the queue is full: no slot")
        assert loop.time() - started < 0.1
        assert "2 more are waiting (its queue is full)" in caught.value.message
        assert caught.value.retry_after_seconds == CONCURRENCY_RETRY_SECONDS
        assert (limit.running, limit.queued) == (1, 2)
        go.set()
        await asyncio.gather(*tasks)
        assert order == ["0", "1", "2"]
        assert (limit.running, limit.queued) == (0, 0)

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_at_once_and_skips_nobody() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit("pull", 1, max_queued=8, max_wait_seconds=30)
        order: list[str] = []
        go = {name: asyncio.Event() for name in "abc"}
        tasks = {}
        for name in "abc":
            tasks[name] = asyncio.create_task(_hold(limit, name, order, go[name]))
            await _settle()
        assert limit.queued == 2
        tasks["b"].cancel()
        await _settle()
        assert tasks["b"].cancelled()
        assert (limit.running, limit.queued) == (1, 1)  # b's place is gone at once
        go["a"].set()
        await tasks["a"]
        await _settle()
        assert order == ["a", "c"]  # c, behind b, got the slot
        assert (limit.running, limit.queued) == (1, 0)
        go["c"].set()
        await tasks["c"]
        assert (limit.running, limit.queued) == (0, 0)

    asyncio.run(scenario())


def test_a_freed_slot_goes_to_the_first_waiter_not_to_a_newcomer() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit("pull", 1, max_queued=8, max_wait_seconds=30)
        order: list[str] = []
        go = {name: asyncio.Event() for name in "bc"}
        held = limit.slot()
        await held.__aenter__()
        waiter = asyncio.create_task(_hold(limit, "b", order, go["b"]))
        await _settle()
        await held.__aexit__(None, None, None)  # hands the slot to b before b runs
        newcomer = asyncio.create_task(_hold(limit, "c", order, go["c"]))
        await _settle()
        assert order == ["b"]
        assert (limit.running, limit.queued) == (1, 1)
        go["b"].set()
        go["c"].set()
        await asyncio.gather(waiter, newcomer)
        assert order == ["b", "c"]
        assert (limit.running, limit.queued) == (0, 0)

    asyncio.run(scenario())


def test_a_waiter_cancelled_as_its_turn_comes_passes_the_slot_on() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit("pull", 1, max_queued=8, max_wait_seconds=30)
        order: list[str] = []
        go = {name: asyncio.Event() for name in "bc"}
        held = limit.slot()
        await held.__aenter__()
        tasks = {}
        for name in "bc":
            tasks[name] = asyncio.create_task(_hold(limit, name, order, go[name]))
            await _settle()
        await held.__aexit__(None, None, None)  # hands the slot to b before b runs
        tasks["b"].cancel()
        await _settle()
        assert tasks["b"].cancelled()
        assert order == ["c"]
        assert (limit.running, limit.queued) == (1, 0)
        go["c"].set()
        await tasks["c"]
        assert (limit.running, limit.queued) == (0, 0)

    asyncio.run(scenario())


def test_rate_limiter_allows_a_burst_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    for _ in range(3):
        limiter.admit("alice")
    with pytest.raises(ResourceExhaustedError) as caught:
        limiter.admit("alice")
    error = caught.value
    assert error.reason is Reason.TOO_MANY_REQUESTS
    assert error.retry_after_seconds == pytest.approx(0.5)
    assert error.metadata == {"caller": "alice", "limit_per_second": "2"}
    assert "500 ms" in error.message
    # Other callers have their own bucket.
    limiter.admit("bob")
    clock.now += 0.25
    with pytest.raises(ResourceExhaustedError) as again:
        limiter.admit("alice")
    assert again.value.retry_after_seconds == pytest.approx(0.25)
    clock.now += 0.25
    limiter.admit("alice")
    clock.now += 100
    for _ in range(3):  # refilled to the burst, never beyond
        limiter.admit("alice")
    with pytest.raises(ResourceExhaustedError):
        limiter.admit("alice")


def test_rate_limiter_off_admits_everything() -> None:
    limiter = RateLimiter(0, 0)
    assert not limiter.enabled
    for _ in range(10_000):
        limiter.admit("anyone")


def test_rate_limiter_forgets_the_oldest_callers_beyond_its_bound() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock, max_callers=2)
    limiter.admit("a")
    limiter.admit("b")
    limiter.admit("c")  # "a" is forgotten: it starts again with a full bucket
    limiter.admit("a")
    with pytest.raises(ResourceExhaustedError):
        limiter.admit("c")


@pytest.mark.parametrize(
    ("kwargs"), [{"per_second": -1, "burst": 1}, {"per_second": 1, "burst": 0}]
)
def test_rate_limiter_rejects_impossible_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        RateLimiter(kwargs["per_second"], int(kwargs["burst"]))


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:5000", "127.0.0.1"),
        ("ipv6:[::1]:5000", "::1"),
        ("unix:/run/imagesvc.sock", "unix"),
        ("127.0.0.1:5000", "127.0.0.1"),
        ("[::1]:5000", "::1"),
        ("", ""),
    ],
)
def test_peer_host(peer: str, host: str) -> None:
    assert peer_host(peer) == host


def test_current_caller_is_the_identity_or_the_anonymous_peer() -> None:
    def caller(identity: Identity | None, peer: str | None) -> str:
        def inside() -> str:
            current_identity.set(identity)
            if peer is not None:
                current_origin.set(CallOrigin("grpc", "r1", peer))
            return current_caller()

        return contextvars.copy_context().run(inside)

    alice = Identity("alice", frozenset({"viewer"}), "token")
    anonymous = Identity("anonymous", frozenset({"admin"}), "anonymous")
    assert caller(alice, "ipv4:10.0.0.1:1") == "alice"
    assert caller(anonymous, "ipv4:10.0.0.1:1234") == "anonymous@10.0.0.1"
    assert caller(None, "ipv6:[::1]:1") == "anonymous@::1"
    assert caller(None, None) == "anonymous"
