"""Identical pulls join: one Engine pull (a "flight") for every caller pulling the same
image, for the same platform, with the same credentials, at the same time.

A burst of pulls of one image (a pre-puller, a CI fleet) would otherwise take as many
concurrency slots and Engine requests as callers, though the Engine pulls the image
once. Each caller is checked (authorization, rate limit, registry policy) before it
joins; then it gets the flight's progress from when it joined, starting with a
snapshot of where the pull stands, and the same result or error as every other
caller. A caller that leaves (cancel, deadline) leaves the others running; the
Engine pull is stopped when the last one leaves. The flight holds one concurrency
slot, whoever joined it.

Credentials are never shared: callers join only when they gave identical credentials
(compared by a keyed fingerprint, never kept in the clear), anonymous with anonymous.

Used from one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from imagesvc.core.errors import ImageServiceError, Reason, UnavailableError
from imagesvc.core.models import RegistryAuth

T = TypeVar("T")

# Items a caller may have waiting before they are replaced by a snapshot of the pull:
# a caller that reads slowly holds a bounded amount of memory, however long the pull.
MAX_BACKLOG = 256


class FlightObserver(Protocol):
    """Told about joined pulls (the server's metrics)."""

    def pull_joined(self) -> None: ...

    def flights_running(self, count: int) -> None: ...


class _NoObserver:
    def pull_joined(self) -> None:
        pass

    def flights_running(self, count: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class FlightKey:
    """What makes two pulls identical. `auth` is a keyed fingerprint ("" anonymous)."""

    reference: str
    platform: str
    auth: str


class _Caller(Generic[T]):
    """One caller of a flight: what it still has to read, and how the flight ended."""

    def __init__(self) -> None:
        self.backlog: deque[T] = deque()
        self.ended = False
        self.error: BaseException | None = None
        self.ready = asyncio.Event()

    def put(self, item: T, snapshot: Callable[[], T | None]) -> None:
        self.backlog.append(item)
        if len(self.backlog) > MAX_BACKLOG:
            now = snapshot()
            self.backlog.clear()
            if now is not None:
                self.backlog.append(now)
            self.backlog.append(item)
        self.ready.set()

    def end(self, error: BaseException | None) -> None:
        self.ended = True
        self.error = error
        self.ready.set()


class _Flight(Generic[T]):
    def __init__(
        self, start: Callable[[], AsyncGenerator[T, None]], snapshot: Callable[[], T | None]
    ) -> None:
        self._start = start
        self.snapshot = snapshot
        self.callers: list[_Caller[T]] = []
        self.finished = False
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        error: BaseException | None = None
        try:
            async with contextlib.aclosing(self._start()) as items:
                async for item in items:
                    for caller in self.callers:
                        caller.put(item, self.snapshot)
        except asyncio.CancelledError:
            # The last caller left (nobody to tell), or the server is stopping.
            error = UnavailableError(
                "the pull was stopped: the server is shutting down",
                reason=Reason.SHUTTING_DOWN,
            )
            raise
        except Exception as failure:  # noqa: BLE001 (every caller gets the flight's error)
            error = failure
        finally:
            self.finished = True
            for caller in self.callers:
                caller.end(error)


class PullFlights:
    """The pulls running now, by FlightKey."""

    def __init__(self, observer: FlightObserver | None = None) -> None:
        self.observer: FlightObserver = observer or _NoObserver()
        # Fingerprints are keyed per process: a key seen in memory says nothing about
        # the credentials elsewhere, and never the same twice across restarts.
        self._fingerprint_key = os.urandom(32)
        self._flights: dict[FlightKey, _Flight[Any]] = {}

    @property
    def running(self) -> int:
        return len(self._flights)

    def key(self, reference: str, platform: str, auth: RegistryAuth | None) -> FlightKey:
        fingerprint = ""
        if auth is not None and not auth.is_empty:
            document = json.dumps(auth.engine_document(), sort_keys=True).encode()
            fingerprint = hmac.new(self._fingerprint_key, document, hashlib.sha256).hexdigest()
        return FlightKey(reference, platform.lower(), fingerprint)

    async def join(
        self,
        key: FlightKey,
        start: Callable[[], AsyncGenerator[T, None]],
        snapshot: Callable[[], T | None],
    ) -> AsyncGenerator[T, None]:
        """The items of the flight of `key`: joined when one is running, else started
        with `start` (the pull's items, the result last) and `snapshot` (where the pull
        stands, for callers who join later)."""
        flight: _Flight[T] | None = self._flights.get(key)
        caller: _Caller[T] = _Caller()
        if flight is not None and not flight.finished:
            self.observer.pull_joined()
            now = flight.snapshot()
            if now is not None:
                caller.put(now, flight.snapshot)
            flight.callers.append(caller)
        else:
            flight = _Flight(start, snapshot)
            flight.callers.append(caller)
            self._flights[key] = flight
            flight.task = asyncio.create_task(self._run(key, flight))
            self.observer.flights_running(len(self._flights))
        try:
            while True:
                await caller.ready.wait()
                while caller.backlog:
                    yield caller.backlog.popleft()
                if caller.ended:
                    break
                caller.ready.clear()
            if caller.error is not None:
                raise _own_copy(caller.error)
        finally:
            flight.callers.remove(caller)
            if not flight.callers and not flight.finished and flight.task is not None:
                # The last caller left: stop the Engine pull before returning, so that a
                # caller that closes its pull knows the Engine request is closed.
                flight.task.cancel()
                await asyncio.wait({flight.task})
                # A task cancelled before it ran never ran _run's `finally` either.
                self._forget(key, flight)

    async def _run(self, key: FlightKey, flight: _Flight[T]) -> None:
        try:
            await flight.run()
        finally:
            self._forget(key, flight)

    def _forget(self, key: FlightKey, flight: _Flight[T]) -> None:
        flight.finished = True
        if self._flights.get(key) is flight:
            del self._flights[key]
            self.observer.flights_running(len(self._flights))


def _own_copy(error: BaseException) -> BaseException:
    """Each caller raises its own exception object (a raise adds to its traceback)."""
    if isinstance(error, ImageServiceError):
        return error.with_message(error.message)
    return error
