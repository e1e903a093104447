"""Limits on what callers can make the daemon do at once: a maximum of concurrent pulls,
pushes and builds (each its own), and a request rate per caller (token bucket).

Both answer at once with RESOURCE_EXHAUSTED and a retry delay, never with a queue: a
queue would hold the caller's connection, memory and (for builds) a spooled context
while the daemon is busy, and would hide the overload from the caller's back-off.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from imagesvc.core.errors import Reason, ResourceExhaustedError
from imagesvc.core.identity import current_identity, current_origin

# A slot frees when some transfer or build ends, which cannot be predicted.
CONCURRENCY_RETRY_SECONDS = 1.0
ANONYMOUS = "anonymous"
_MAX_TRACKED_CALLERS = 10_000


class ConcurrencyLimit:
    """At most `maximum` operations of one kind at once (0: no limit)."""

    def __init__(self, operation: str, maximum: int) -> None:
        if maximum < 0:
            raise ValueError(f"the maximum of concurrent {operation}s cannot be negative")
        self.operation = operation
        self.maximum = maximum
        self._running = 0
        self._lock = threading.Lock()

    @property
    def running(self) -> int:
        return self._running

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Holds one slot for the block; RESOURCE_EXHAUSTED (CONCURRENCY_LIMIT) when full."""
        with self._lock:
            if self.maximum and self._running >= self.maximum:
                raise ResourceExhaustedError(
                    f"this service already runs its maximum of {self.maximum} concurrent"
                    f" {self.operation}s; try again shortly",
                    reason=Reason.CONCURRENCY_LIMIT,
                    metadata={"operation": self.operation, "limit": str(self.maximum)},
                    retry_after_seconds=CONCURRENCY_RETRY_SECONDS,
                )
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1


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
        self.rate.admit(current_caller())
