"""Identical pulls at once make one Engine pull (core/pull_flights.py), against a fake port."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from imagesvc.core.errors import (
    ImageServiceError,
    Reason,
    ResourceExhaustedError,
    UnauthenticatedError,
)
from imagesvc.core.image_core import CoreSettings, ImageCore
from imagesvc.core.limits import ConcurrencyLimit, Limits, RateLimiter
from imagesvc.core.models import PullResult, RegistryAuth, TransferProgress
from imagesvc.core.pull_flights import MAX_BACKLOG, PullFlights, _Caller
from tests.unit.aio import run
from tests.unit.core.test_image_core import AUTH, L1, L2, SECRET, error_message, pull_script
from tests.unit.fakes import FakeDockerPort, FakeEngineStream, engine_image, image_id

REFERENCE = "127.0.0.1:5000/team/app:1"
# pull_script() messages before this one: both layers downloading, the first at 1,000 bytes.
BOTH_DOWNLOADING = 5


class GatedStream(FakeEngineStream):
    """Blocks before message `gate_at` until `gate` is set (or the stream is closed)."""

    def __init__(self, messages: Iterable[Any], *, gate_at: int) -> None:
        super().__init__(messages)
        self.gate = threading.Event()
        self.waiting = threading.Event()
        self._gate_at = gate_at

    def __next__(self) -> Any:
        if self.delivered == self._gate_at:
            self.waiting.set()
            while not (self.gate.is_set() or self.closed):
                self.gate.wait(0.01)
        return super().__next__()


class Observer:
    def __init__(self) -> None:
        self.joined = 0
        self.running: list[int] = []

    def pull_joined(self) -> None:
        self.joined += 1

    def flights_running(self, count: int) -> None:
        self.running.append(count)


@pytest.fixture
def observer() -> Observer:
    return Observer()


@pytest.fixture
def flights_core(
    port: FakeDockerPort, executor: ThreadPoolExecutor, settings: CoreSettings, observer: Observer
) -> ImageCore:
    port.add(engine_image(7, tags=[REFERENCE], digests=[]))
    limits = Limits(pulls=ConcurrencyLimit("pull", 1))
    flights = PullFlights(observer)
    return ImageCore(
        port, executor, dataclasses.replace(settings, limits=limits, pull_flights=flights)
    )


async def drain(core: ImageCore, reference: str = REFERENCE, **kwargs: Any) -> list[object]:
    options: dict[str, Any] = {"platform": "", "auth": None} | kwargs
    return [item async for item in core.pull_image(reference, **options)]


async def until(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 5)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_identical_pulls_make_one_engine_pull_and_get_the_same_result(
    flights_core: ImageCore, port: FakeDockerPort, observer: Observer
) -> None:
    stream = GatedStream(pull_script("1", "team/app"), gate_at=2)
    port.pull_streams.append(stream)

    async def scenario() -> list[list[object]]:
        first = asyncio.create_task(drain(flights_core))
        await until(stream.waiting)
        # Over the limit of one pull at once: they join, they do not queue.
        others = [asyncio.create_task(drain(flights_core)) for _ in range(5)]
        await settle()
        stream.gate.set()
        return await asyncio.wait_for(asyncio.gather(first, *others), 5)

    results = run(scenario())
    assert port.methods_called.count("pull") == 1
    finals = [items[-1] for items in results]
    assert all(isinstance(final, PullResult) for final in finals)
    assert finals[0] == PullResult(
        image_id=image_id(7),
        digest="sha256:" + "d1" * 32,
        reference=REFERENCE,
        status="Downloaded newer image for team/app:1",
    )
    assert all(final == finals[0] for final in finals)
    assert observer.joined == 5
    assert observer.running == [1, 0]
    assert stream.closed


def test_a_late_caller_starts_with_a_snapshot_of_the_pull(
    flights_core: ImageCore, port: FakeDockerPort
) -> None:
    stream = GatedStream(pull_script("1", "team/app"), gate_at=BOTH_DOWNLOADING)
    port.pull_streams.append(stream)

    async def scenario() -> list[object]:
        first = asyncio.create_task(drain(flights_core))
        await until(stream.waiting)
        await settle()
        late = asyncio.create_task(drain(flights_core))
        await settle()
        stream.gate.set()
        await first
        return await late

    items = run(scenario())
    snapshot = items[0]
    assert isinstance(snapshot, TransferProgress)
    assert {(lp.layer_id, lp.state, lp.current) for lp in snapshot.layers} == {
        (L1, "Downloading", 1_000),
        (L2, "Downloading", 500),
    }
    assert (snapshot.bytes_done, snapshot.bytes_total) == (1_500, 3_500)
    # Then the pull from there on, not from its start.
    states = [lp.state for item in items[1:-1] for lp in getattr(item, "layers", ())]
    assert "Pulling fs layer" not in states
    assert states[-1] == "Pull complete"
    assert isinstance(items[-1], PullResult)


def test_a_caller_that_leaves_leaves_the_others_pulling(
    flights_core: ImageCore, port: FakeDockerPort
) -> None:
    stream = GatedStream(pull_script("1", "team/app"), gate_at=2)
    port.pull_streams.append(stream)

    async def scenario() -> list[object]:
        leaving = asyncio.create_task(drain(flights_core))
        await until(stream.waiting)
        staying = asyncio.create_task(drain(flights_core))
        await settle()
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert not stream.closed
        stream.gate.set()
        return await asyncio.wait_for(staying, 5)

    items = run(scenario())
    assert isinstance(items[-1], PullResult)
    assert port.methods_called.count("pull") == 1


def test_the_engine_pull_stops_when_the_last_caller_leaves(
    flights_core: ImageCore, port: FakeDockerPort, observer: Observer
) -> None:
    stream = GatedStream(pull_script("1", "team/app"), gate_at=2)
    port.pull_streams += [stream, FakeEngineStream(pull_script("1", "team/app"))]

    async def scenario() -> list[object]:
        callers = [asyncio.create_task(drain(flights_core)) for _ in range(3)]
        await until(stream.waiting)
        await settle()
        for caller in callers:
            caller.cancel()
        for caller in callers:
            with pytest.raises(asyncio.CancelledError):
                await caller
        # Closed by the time the last caller is gone, which freed the slot.
        assert stream.closed
        return await asyncio.wait_for(drain(flights_core), 5)

    items = run(scenario())
    # A pull after that is a new Engine pull, not a join of the stopped one.
    assert isinstance(items[-1], PullResult)
    assert port.methods_called.count("pull") == 2
    assert observer.running == [1, 0, 1, 0]


def test_a_caller_that_closes_its_pull_early_closes_the_engine_pull(
    flights_core: ImageCore, port: FakeDockerPort
) -> None:
    stream = GatedStream(pull_script("1", "team/app"), gate_at=3)
    port.pull_streams.append(stream)

    async def scenario() -> None:
        pull = flights_core.pull_image(REFERENCE, platform="", auth=None)
        assert isinstance(pull, AsyncIterator)
        await anext(pull)
        await pull.aclose()
        assert stream.closed

    run(scenario())


def test_every_caller_gets_the_error(flights_core: ImageCore, port: FakeDockerPort) -> None:
    script = [*pull_script("1", "team/app")[:3], error_message("unauthorized: who are you")]
    stream = GatedStream(script, gate_at=2)
    port.pull_streams.append(stream)

    async def scenario() -> list[BaseException | list[object]]:
        callers = [asyncio.create_task(drain(flights_core)) for _ in range(3)]
        await until(stream.waiting)
        await settle()
        stream.gate.set()
        return await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 5)

    outcomes = run(scenario())
    assert all(isinstance(o, UnauthenticatedError) for o in outcomes), outcomes
    errors = [o for o in outcomes if isinstance(o, ImageServiceError)]
    assert len({id(e) for e in errors}) == 3  # each its own exception
    assert {(e.reason, e.message) for e in errors} == {
        (Reason.REGISTRY_UNAUTHENTICATED, errors[0].message)
    }
    assert port.methods_called.count("pull") == 1


OTHER_AUTH = RegistryAuth(username="bob", password="other-pw", server_address="127.0.0.1:5000")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"auth": AUTH}, {"auth": None}),
        ({"auth": None}, {"auth": AUTH}),
        ({"auth": AUTH}, {"auth": OTHER_AUTH}),
        ({"auth": AUTH}, {"auth": dataclasses.replace(AUTH, password="guess")}),
        ({"platform": "linux/amd64"}, {"platform": "linux/arm64"}),
        ({"platform": ""}, {"platform": "linux/amd64"}),
    ],
    ids=["auth-anonymous", "anonymous-auth", "two-users", "wrong-password", "platforms", "default"],
)
def test_pulls_with_other_credentials_or_platforms_never_join(
    flights_core: ImageCore,
    port: FakeDockerPort,
    observer: Observer,
    first: dict[str, Any],
    second: dict[str, Any],
) -> None:
    stream = GatedStream(pull_script("1", "team/app"), gate_at=2)
    port.pull_streams += [stream, FakeEngineStream(pull_script("1", "team/app"))]
    # Two Engine pulls at once: the limit of one would refuse the second.
    flights_core._settings.limits.pulls.maximum = 0

    async def scenario() -> None:
        one = asyncio.create_task(drain(flights_core, **first))
        await until(stream.waiting)
        two = asyncio.create_task(drain(flights_core, **second))
        await asyncio.wait_for(two, 5)
        stream.gate.set()
        await asyncio.wait_for(one, 5)

    run(scenario())
    assert port.methods_called.count("pull") == 2
    assert observer.joined == 0


def test_identical_credentials_join() -> None:
    flights = PullFlights()
    same = RegistryAuth(username="alice", password=SECRET, server_address="127.0.0.1:5001")
    assert flights.key(REFERENCE, "", AUTH) == flights.key(REFERENCE, "", same)
    assert flights.key(REFERENCE, "", None) == flights.key(REFERENCE, "", RegistryAuth())
    assert flights.key(REFERENCE, "Linux/AMD64", None) == flights.key(
        REFERENCE, "linux/amd64", None
    )


def test_a_flight_key_holds_no_credential() -> None:
    key = PullFlights().key(REFERENCE, "", AUTH)
    assert SECRET not in repr(key)
    assert "alice" not in repr(key)
    # Keyed per process: another service's fingerprint of the same credentials differs.
    assert key != PullFlights().key(REFERENCE, "", AUTH)


def test_a_caller_that_reads_slowly_holds_a_bounded_backlog() -> None:
    async def scenario() -> list[int]:
        caller: _Caller[int] = _Caller()
        for item in range(MAX_BACKLOG + 10):
            caller.put(item, lambda: -1)
        return list(caller.backlog)

    backlog = run(scenario())
    assert len(backlog) <= MAX_BACKLOG
    assert backlog[0] == -1  # the snapshot instead of what it had not read
    assert backlog[-1] == MAX_BACKLOG + 9


def test_each_caller_is_checked_before_it_joins(
    port: FakeDockerPort, executor: ThreadPoolExecutor, settings: CoreSettings, observer: Observer
) -> None:
    """A caller over its rate never joins: the checks come before the join."""
    port.add(engine_image(7, tags=[REFERENCE], digests=[]))
    stream = GatedStream(pull_script("1", "team/app"), gate_at=2)
    port.pull_streams.append(stream)
    limits = Limits(rate=RateLimiter(0.001, 1, clock=lambda: 0.0))
    core = ImageCore(
        port,
        executor,
        dataclasses.replace(settings, limits=limits, pull_flights=PullFlights(observer)),
    )

    async def scenario() -> list[object]:
        first = asyncio.create_task(drain(core))
        await until(stream.waiting)
        with pytest.raises(ResourceExhaustedError) as caught:
            await drain(core)
        assert caught.value.reason is Reason.TOO_MANY_REQUESTS
        stream.gate.set()
        return await asyncio.wait_for(first, 5)

    items = run(scenario())
    assert isinstance(items[-1], PullResult)
    assert observer.joined == 0
    assert port.methods_called.count("pull") == 1
