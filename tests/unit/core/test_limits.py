from __future__ import annotations

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


def test_concurrency_limit_refuses_at_once_and_frees_on_exit() -> None:
    limit = ConcurrencyLimit("build", 2)
    with limit.slot(), limit.slot():
        assert limit.running == 2
        with pytest.raises(ResourceExhaustedError) as caught, limit.slot():
            pass
        error = caught.value
        assert error.reason is Reason.CONCURRENCY_LIMIT
        assert error.retry_after_seconds == CONCURRENCY_RETRY_SECONDS
        assert error.metadata == {"operation": "build", "limit": "2"}
        assert "maximum of 2 concurrent builds" in error.message
        assert limit.running == 2
    assert limit.running == 0
    with limit.slot():
        assert limit.running == 1


def test_a_slot_is_freed_when_the_block_fails() -> None:
    limit = ConcurrencyLimit("pull", 1)
    with pytest.raises(RuntimeError), limit.slot():
        raise RuntimeError("boom")
    with limit.slot():
        pass


def test_zero_means_no_concurrency_limit() -> None:
    limit = ConcurrencyLimit("push", 0)
    with limit.slot(), limit.slot(), limit.slot():
        assert limit.running == 3


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
