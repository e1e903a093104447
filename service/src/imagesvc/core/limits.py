"""Limits on what callers can make the daemon do at once: a maximum of concurrent pulls,
pushes and builds (each its own), and a request rate per caller (token bucket).

A call over a concurrency limit waits its turn in a bounded first-in first-out queue
(a burst of pulls from a pre-puller or a CI fleet expects to wait, not to fail), for at
most the configured wait; the caller's own deadline or cancellation cancels the wait
as it cancels any other await of the call. A full queue, or a wait that ran out, is
answered with RESOURCE_EXHAUSTED and a retry delay, as the rate limit always is.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from imagesvc.core.errors import Reason, ResourceExhaustedError
from imagesvc.core.identity import current_identity, current_origin

# A slot frees when some transfer or build ends, which cannot be predicted.
CONCURRENCY_RETRY_SECONDS = 1.0
ANONYMOUS = "anonymous"
_MAX_TRACKED_CALLERS = 10_000


class QueueObserver(Protocol):
    """Told about the queues of the concurrency limits (the server's metrics)."""

    def queue_length(self, operation: str, length: int) -> None: ...

    def queue_wait(self, operation: str, seconds: float) -> None: ...


class _NoObserver:
    def queue_length(self, operation: str, length: int) -> None:
        pass

    def queue_wait(self, operation: str, seconds: float) -> None:
        pass


class ConcurrencyLimit:
    """At most `maximum` operations of one kind at once (0: no limit). Up to `max_queued`
    more wait, first come first served, at most `max_wait_seconds` each (either 0: none
    wait). Used from one event loop."""

    def __init__(
        self,
        operation: str,
        maximum: int,
        *,
        max_queued: int = 0,
        max_wait_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maximum < 0:
            raise ValueError(f"the maximum of concurrent {operation}s cannot be negative")
        if max_queued < 0 or max_wait_seconds < 0:
            raise ValueError(
                f"the queue length and the queue wait of {operation}s cannot be negative"
            )
        self.operation = operation
        self.maximum = maximum
        self.max_queued = max_queued if max_wait_seconds else 0
        self.max_wait_seconds = max_wait_seconds if max_queued else 0.0
        self.observer: QueueObserver = _NoObserver()
        self._clock = clock
        self._running = 0
        # Each waiter's future is resolved when a finishing operation hands it its slot.
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def running(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Holds one slot for the block, after waiting for one in the queue if all are
        taken; RESOURCE_EXHAUSTED (CONCURRENCY_LIMIT) when the queue is full or the wait
        ran out."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        if not self.maximum or (self._running < self.maximum and not self._waiters):
            self._running += 1
            return
        if len(self._waiters) >= self.max_queued:
            raise self._refusal(
                f"this service already runs its maximum of {self.maximum} concurrent"
                f" {self.operation}s"
                + (
                    f" and {self.max_queued} more are waiting (its queue is full)"
                    if self.max_queued
                    else ""
                )
                + "; try again shortly"
            )
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        self.observer.queue_length(self.operation, len(self._waiters))
        started = self._clock()
        try:
            async with asyncio.timeout(self.max_wait_seconds):
                await turn
        except TimeoutError:
            if not self._granted(turn):
                raise self._refusal(
                    f"waited {self.max_wait_seconds:g} s (this service's maximum wait) for"
                    f" one of its {self.maximum} concurrent {self.operation} slots, and"
                    " none became free; try again shortly"
                ) from None
            # The slot came as the wait ran out: take it rather than pass it on.
        except BaseException:
            if self._granted(turn):
                self._release()  # the caller left just as its turn came: pass it on
            raise
        finally:
            self._leave(turn)
            self.observer.queue_wait(self.operation, self._clock() - started)

    @staticmethod
    def _granted(turn: asyncio.Future[None]) -> bool:
        return turn.done() and not turn.cancelled()

    def _leave(self, turn: asyncio.Future[None]) -> None:
        """Takes a waiter that leaves without its turn out of the queue at once, so it
        neither holds a place nor is handed a slot later."""
        if not turn.done():
            turn.cancel()
        if turn in self._waiters:  # else handed its slot, already out of the queue
            self._waiters.remove(turn)
        self.observer.queue_length(self.operation, len(self._waiters))

    def _release(self) -> None:
        """Hands the slot to the first waiter still waiting, else frees it."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                self.observer.queue_length(self.operation, len(self._waiters))
                return
        self._running -= 1

    def _refusal(self, message: str) -> ResourceExhaustedError:
        return ResourceExhaustedError(
            message,
            reason=Reason.CONCURRENCY_LIMIT,
            metadata={"operation": self.operation, "limit": str(self.maximum)},
            retry_after_seconds=CONCURRENCY_RETRY_SECONDS,
        )


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per caller: `burst` requests at once, refilled at `per_second`.
    `per_second` 0 turns it off. Remembers the most recently seen callers only; a
    forgotten caller starts again with a full bucket."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = _MAX_TRACKED_CALLERS,
    ) -> None:
        if per_second < 0 or burst < 0:
            raise ValueError("the rate limit and its burst cannot be negative")
        if per_second and burst < 1:
            raise ValueError("a rate limit needs a burst of at least 1")
        self.per_second = per_second
        self.burst = burst
        self._clock = clock
        self._max_callers = max_callers
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def admit(self, caller: str) -> None:
        """Takes one token of `caller`'s bucket; RESOURCE_EXHAUSTED (TOO_MANY_REQUESTS)
        with the time until the next token when it is empty."""
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(caller, None)
            if bucket is None:
                bucket = _Bucket(tokens=float(self.burst), updated=now)
            bucket.tokens = min(
                float(self.burst), bucket.tokens + (now - bucket.updated) * self.per_second
            )
            bucket.updated = now
            self._buckets[caller] = bucket
            while len(self._buckets) > self._max_callers:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = (1.0 - bucket.tokens) / self.per_second
        raise ResourceExhaustedError(
            f"too many requests from {caller!r}: this service allows {self.per_second:g}"
            f" per second (bursts of {self.burst}); try again in {math.ceil(wait * 1000)} ms",
            reason=Reason.TOO_MANY_REQUESTS,
            metadata={"caller": caller[:128], "limit_per_second": f"{self.per_second:g}"},
            retry_after_seconds=wait,
        )


def peer_host(peer: str) -> str:
    """The host of a gRPC peer (`ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`, `unix:...`) or
    of a REST one (`127.0.0.1:5000`, `[::1]:5000`), without the port."""
    kind, sep, address = peer.partition(":")
    if sep and kind in ("ipv4", "ipv6"):
        peer = address
    elif sep and kind == "unix":
        return "unix"
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    return peer.rpartition(":")[0] if peer.count(":") == 1 else peer


def current_caller() -> str:
    """Who the rate limit is kept for: the authenticated identity; callers without one
    (authentication off) each by their address, "anonymous@127.0.0.1"."""
    identity = current_identity.get()
    if identity is not None and identity.via != ANONYMOUS:
        return identity.name
    origin = current_origin.get()
    host = peer_host(origin.peer) if origin is not None else ""
    return f"{ANONYMOUS}@{host}" if host else ANONYMOUS


@dataclass(frozen=True, slots=True)
class Limits:
    pulls: ConcurrencyLimit = field(default_factory=lambda: ConcurrencyLimit("pull", 0))
    pushes: ConcurrencyLimit = field(default_factory=lambda: ConcurrencyLimit("push", 0))
    builds: ConcurrencyLimit = field(default_factory=lambda: ConcurrencyLimit("build", 0))
    rate: RateLimiter = field(default_factory=lambda: RateLimiter(0, 0))

    def admit(self) -> None:
        """The current caller's rate limit, for every ImageService call."""
        if self.rate.enabled:  # who the caller is costs time; only ask when it counts
            self.rate.admit(current_caller())

    def observe(self, observer: QueueObserver) -> None:
        """Reports the queues of the concurrency limits to `observer`."""
        for limit in (self.pulls, self.pushes, self.builds):
            limit.observer = observer
            observer.queue_length(limit.operation, limit.queued)
