"""The change feed behind WatchImages (core/image_changes.py): order, per-watcher filter
transitions, the initial snapshot taken atomically with the subscription, resuming
without a gap or a repeat, expired tokens, slow watchers, and cleanup."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagesvc.core.errors import FailedPreconditionError, InvalidArgumentError, Reason
from imagesvc.core.image_changes import (
    ExpiryCause,
    ImageChange,
    ImageChangeLog,
    Live,
    WatchEvent,
)
from imagesvc.core.image_entries import IndexEntry
from imagesvc.core.models import ImageFilter
from tests.unit.aio import run
from tests.unit.fakes import image_id

EVERYTHING = ImageFilter()
BARRIER = 999


def entry(
    n: int, *, tags: Iterable[str] = (), labels: dict[str, str] | None = None, created: int = 0
) -> IndexEntry:
    return IndexEntry.from_summary(
        {
            "Id": image_id(n),
            "RepoTags": list(tags),
            "RepoDigests": [],
            "ParentId": "",
            "Created": created or 1_700_000_000 + n,
            "Size": 1000 + n,
            "Labels": dict(labels or {}),
            "Containers": -1,
        }
    )


@dataclass
class RecordingObserver:
    open_counts: list[int] = field(default_factory=list)
    published: int = 0
    expired: list[ExpiryCause] = field(default_factory=list)

    def watchers_open(self, count: int) -> None:
        self.open_counts.append(count)

    def change_published(self) -> None:
        self.published += 1

    def watch_expired(self, cause: ExpiryCause) -> None:
        self.expired.append(cause)


class Index:
    """A stand-in for the live index: entries by id, each change applied and published
    in one step, as the real index must."""

    def __init__(self, log: ImageChangeLog) -> None:
        self.log = log
        self.entries: dict[str, IndexEntry] = {}
        self.barriers = 0

    def put(self, new: IndexEntry) -> None:
        previous = self.entries.get(new.id)
        self.entries[new.id] = new
        self.log.publish(previous, new)

    def delete(self, n: int) -> None:
        self.log.publish(self.entries.pop(image_id(n)), None)

    def barrier(self) -> str:
        """Publishes a change every test filter matches, to read a watcher up to."""
        self.barriers += 1
        self.put(entry(BARRIER, tags=[f"barrier:{self.barriers}"], labels={"team": "a"}))
        return f"barrier:{self.barriers}"

    def snapshot(self) -> list[IndexEntry]:
        return list(self.entries.values())

    def watch(
        self, image_filter: ImageFilter = EVERYTHING, *, initial: bool = False, token: str = ""
    ) -> AsyncGenerator[WatchEvent, None]:
        return self.log.watch(
            image_filter, send_initial=initial, resume_token=token, snapshot=self.snapshot
        )


def summary(event: WatchEvent) -> tuple[str, str]:
    if isinstance(event, Live):
        return ("LIVE", "")
    return (str(event.kind), event.image.id)


async def take(events: AsyncGenerator[WatchEvent, None], count: int) -> list[WatchEvent]:
    """The next `count` events, failing instead of hanging when fewer come."""
    async with asyncio.timeout(5):
        return [await anext(events) for _ in range(count)]


async def nothing_more(events: AsyncGenerator[WatchEvent, None]) -> None:
    """No event is pending (the watcher waits for the next change)."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await anext(events)


def test_changes_arrive_in_order_with_increasing_tokens() -> None:
    async def go() -> None:
        index = Index(ImageChangeLog())
        async with contextlib.aclosing(index.watch()) as events:
            live = await take(events, 1)
            assert isinstance(live[0], Live)
            assert live[0].resume_token
            index.put(entry(1, tags=["a:1"]))
            index.put(entry(2))
            index.put(entry(1, tags=["a:1", "a:2"]))
            index.delete(2)
            got = await take(events, 4)
            assert [summary(e) for e in got] == [
                ("ADDED", image_id(1)),
                ("ADDED", image_id(2)),
                ("UPDATED", image_id(1)),
                ("DELETED", image_id(2)),
            ]
            changes = [e for e in got if isinstance(e, ImageChange)]
            assert changes[2].image.repo_tags == ("a:1", "a:2")
            # The deleted image as it was last seen.
            assert changes[3].image.size == 1002
            tokens = [live[0].resume_token, *(e.resume_token for e in changes)]
            assert len(set(tokens)) == 5
            assert index.log.current_token() == tokens[-1]
            await nothing_more(events)

    run(go())


def test_a_filter_turns_changes_into_transitions_of_that_watcher() -> None:
    async def go() -> None:
        index = Index(ImageChangeLog())
        selected = ImageFilter(labels=("team=a",))
        async with (
            contextlib.aclosing(index.watch(selected)) as filtered,
            contextlib.aclosing(index.watch()) as everything,
        ):
            await take(filtered, 1)
            await take(everything, 1)
            index.put(entry(1))  # not matching
            index.put(entry(1, labels={"team": "a"}))  # starts matching
            index.put(entry(1, labels={"team": "a"}, tags=["x:1"]))  # still matching
            index.put(entry(1, labels={"team": "b"}, tags=["x:1"]))  # stops matching
            index.put(entry(2, labels={"team": "a"}))
            index.delete(1)  # not matching any more: nothing for the filtered watcher
            index.delete(2)
            got = await take(filtered, 4)
            assert [summary(e) for e in got] == [
                ("ADDED", image_id(1)),
                ("UPDATED", image_id(1)),
                ("DELETED", image_id(1)),
                ("ADDED", image_id(2)),
            ]
            # Leaving the selector: the image as it last matched.
            left = got[2]
            assert isinstance(left, ImageChange)
            assert left.image.labels == {"team": "a"}
            assert [summary(e) for e in await take(filtered, 1)] == [("DELETED", image_id(2))]
            await nothing_more(filtered)
            # The unfiltered watcher saw all seven.
            assert len(await take(everything, 7)) == 7

    run(go())


def test_the_initial_images_come_newest_first_then_the_live_marker() -> None:
    async def go() -> None:
        index = Index(ImageChangeLog())
        index.put(entry(1, tags=["app:1"], created=100))
        index.put(entry(2, tags=["app:2"], created=300))
        index.put(entry(3, tags=["other:1"], created=200))
        async with contextlib.aclosing(
            index.watch(ImageFilter(references=("app",)), initial=True)
        ) as events:
            got = await take(events, 3)
            assert [summary(e) for e in got] == [
                ("ADDED", image_id(2)),
                ("ADDED", image_id(1)),
                ("LIVE", ""),
            ]
            assert all(e.resume_token == "" for e in got if isinstance(e, ImageChange))
            marker = got[2]
            assert isinstance(marker, Live)
            assert marker.resume_token == index.log.current_token()
            await nothing_more(events)

    run(go())


def test_changes_during_the_initial_images_follow_the_marker_exactly_once() -> None:
    async def go() -> None:
        index = Index(ImageChangeLog())
        for n in range(1, 6):
            index.put(entry(n))
        async with contextlib.aclosing(index.watch(initial=True)) as events:
            first = await take(events, 2)  # the snapshot is taken on the first read
            index.put(entry(6))  # after the snapshot: a change, not an initial image
            index.put(entry(1, tags=["new:1"]))
            index.delete(5)
            rest = await take(events, 3 + 1 + 3)
            got = [summary(e) for e in first + rest]
            assert sorted(got[:5]) == [("ADDED", image_id(n)) for n in range(1, 6)]
            assert got[5:] == [
                ("LIVE", ""),
                ("ADDED", image_id(6)),
                ("UPDATED", image_id(1)),
                ("DELETED", image_id(5)),
            ]
            await nothing_more(events)

    run(go())


def test_without_initial_images_the_marker_comes_first() -> None:
    async def go() -> None:
        index = Index(ImageChangeLog())
        index.put(entry(1))
        async with contextlib.aclosing(index.watch()) as events:
            assert [summary(e) for e in await take(events, 1)] == [("LIVE", "")]
            await nothing_more(events)

    run(go())


# Resuming ------------------------------------------------------------------------------

Operation = tuple[str, int, str]  # ("put" | "delete", image number, label value)

operations = st.lists(
    st.tuples(st.sampled_from(["put", "delete"]), st.integers(1, 5), st.sampled_from("ab")),
    max_size=40,
)


def apply(index: Index, operation: Operation) -> None:
    verb, n, label = operation
    if verb == "put":
        index.put(entry(n, labels={"team": label}))
    elif image_id(n) in index.entries:
        index.delete(n)


@settings(max_examples=150, deadline=None)
@given(
    before=operations,
    during=operations,
    after=operations,
    cut=st.integers(0, 60),
    filtered=st.booleans(),
)
def test_a_resumed_watch_misses_nothing_and_repeats_nothing(
    before: list[Operation],
    during: list[Operation],
    after: list[Operation],
    cut: int,
    filtered: bool,
) -> None:
    """A watcher that stops after any number of events and resumes from the last token
    it got sees exactly what one uninterrupted watcher sees."""
    image_filter = ImageFilter(labels=("team=a",)) if filtered else EVERYTHING

    async def go() -> None:
        index = Index(ImageChangeLog(capacity=200))
        for operation in before:
            apply(index, operation)
        async with contextlib.aclosing(index.watch(image_filter)) as whole:
            assert await take(whole, 1) == [Live(index.log.current_token())]
            async with contextlib.aclosing(index.watch(image_filter)) as first:
                seen = await take(first, 1)  # the marker
                for operation in during:
                    apply(index, operation)
                seen += await _read_to(first, index.barrier(), limit=cut)
            token = seen[-1].resume_token
            async with contextlib.aclosing(index.watch(image_filter, token=token)) as resumed:
                for operation in after:
                    apply(index, operation)
                end = index.barrier()
                rest = await _read_to(resumed, end)
            everything = await _read_to(whole, end)
        assert rest[0] == Live(token)
        assert _changes(seen) + _changes(rest) == _changes(everything)

    run(go())


async def _read_to(
    events: AsyncGenerator[WatchEvent, None], barrier: str, limit: int | None = None
) -> list[WatchEvent]:
    """The events up to the change of the barrier tag (or `limit` events)."""
    got: list[WatchEvent] = []
    async with asyncio.timeout(5):
        while limit is None or len(got) < limit:
            got.append(await anext(events))
            last = got[-1]
            if isinstance(last, ImageChange) and barrier in last.image.repo_tags:
                break
    return got


def _changes(events: list[WatchEvent]) -> list[tuple[str, str, str]]:
    return [(str(e.kind), e.image.id, e.resume_token) for e in events if isinstance(e, ImageChange)]


# Tokens that cannot be resumed from -------------------------------------------------------


def expired(error: pytest.ExceptionInfo[FailedPreconditionError], cause: ExpiryCause) -> bool:
    return (
        error.value.reason is Reason.WATCH_EXPIRED
        and error.value.metadata == {"cause": str(cause)}
        and "list the images again" in error.value.message
    )


def test_a_token_of_another_generation_has_expired() -> None:
    async def go() -> None:
        observer = RecordingObserver()
        index = Index(ImageChangeLog(observer=observer))
        other = ImageChangeLog()
        with pytest.raises(FailedPreconditionError) as error:
            await anext(index.watch(token=other.current_token()))
        assert expired(error, ExpiryCause.OTHER_GENERATION)
        assert observer.expired == [ExpiryCause.OTHER_GENERATION]
        assert index.log.watchers == 0

    run(go())


def test_a_token_older_than_the_ring_has_expired_and_the_oldest_kept_one_resumes() -> None:
    async def go() -> None:
        index = Index(ImageChangeLog(capacity=4))
        tokens = []
        for n in range(1, 11):
            index.put(entry(n))
            tokens.append(index.log.current_token())
        # tokens[i] is the state after change i + 1; changes 7..10 are kept.
        with pytest.raises(FailedPreconditionError) as error:
            await anext(index.watch(token=tokens[4]))
        assert expired(error, ExpiryCause.TOKEN_TOO_OLD)
        async with contextlib.aclosing(index.watch(token=tokens[5])) as events:
            got = await take(events, 5)
            assert [summary(e) for e in got[1:]] == [("ADDED", image_id(n)) for n in range(7, 11)]

    run(go())


@pytest.mark.parametrize(
    "token",
    ["x", "not a token!", "AAAA", ImageChangeLog().current_token() + "AAAA"],
)
def test_a_malformed_token_is_an_invalid_argument(token: str) -> None:
    async def go() -> None:
        with pytest.raises(InvalidArgumentError) as error:
            await anext(Index(ImageChangeLog()).watch(token=token))
        assert error.value.metadata == {"field": "resume_token"}

    run(go())


def test_a_token_ahead_of_the_log_is_an_invalid_argument() -> None:
    async def go() -> None:
        index = Index(ImageChangeLog())
        index.put(entry(1))
        # The same generation, one change further than published.
        raw = base64.urlsafe_b64decode(index.log.current_token() + "==")
        ahead = raw[:16] + (int.from_bytes(raw[16:], "big") + 1).to_bytes(8, "big")
        token = base64.urlsafe_b64encode(ahead).rstrip(b"=").decode()
        with pytest.raises(InvalidArgumentError):
            await anext(index.watch(token=token))

    run(go())


def test_initial_images_and_a_resume_token_exclude_each_other() -> None:
    async def go() -> None:
        index = Index(ImageChangeLog())
        with pytest.raises(InvalidArgumentError):
            await anext(index.watch(initial=True, token=index.log.current_token()))

    run(go())


# Slow watchers, resets, closing, cleanup ----------------------------------------------------


def test_a_slow_watcher_is_expired_and_delays_neither_the_index_nor_others() -> None:
    async def go() -> None:
        observer = RecordingObserver()
        index = Index(ImageChangeLog(capacity=8, observer=observer))
        async with (
            contextlib.aclosing(index.watch()) as slow,
            contextlib.aclosing(index.watch()) as keeping_up,
        ):
            await take(slow, 1)
            await take(keeping_up, 1)
            for n in range(1, 21):
                index.put(entry(n))  # publish never waits for a reader
                assert [summary(e) for e in await take(keeping_up, 1)] == [("ADDED", image_id(n))]
            with pytest.raises(FailedPreconditionError) as error:
                await anext(slow)
            assert expired(error, ExpiryCause.FELL_BEHIND)
            # The other one goes on.
            index.put(entry(21))
            assert [summary(e) for e in await take(keeping_up, 1)] == [("ADDED", image_id(21))]
        assert observer.expired == [ExpiryCause.FELL_BEHIND]
        assert observer.published == 21

    run(go())


def test_a_watcher_exactly_one_ring_behind_still_gets_everything() -> None:
    async def go() -> None:
        index = Index(ImageChangeLog(capacity=8))
        async with contextlib.aclosing(index.watch()) as events:
            await take(events, 1)
            for n in range(1, 9):
                index.put(entry(n))
            got = await take(events, 8)
            assert [summary(e) for e in got] == [("ADDED", image_id(n)) for n in range(1, 9)]

    run(go())


def test_a_reset_expires_open_watches_and_every_earlier_token() -> None:
    async def go() -> None:
        observer = RecordingObserver()
        index = Index(ImageChangeLog(observer=observer))
        index.put(entry(1))
        old_token = index.log.current_token()
        async with contextlib.aclosing(index.watch()) as events:
            await take(events, 1)
            index.put(entry(2))
            index.log.reset("the Engine's event stream was lost")
            with pytest.raises(FailedPreconditionError) as error:
                await anext(events)
            assert expired(error, ExpiryCause.RESET)
            assert "the Engine's event stream was lost" in error.value.message
        with pytest.raises(FailedPreconditionError) as error:
            await anext(index.watch(token=old_token))
        assert expired(error, ExpiryCause.OTHER_GENERATION)
        assert observer.expired == [ExpiryCause.RESET, ExpiryCause.OTHER_GENERATION]

    run(go())


def test_closing_ends_every_watch_with_the_error_and_refuses_new_ones() -> None:
    from imagesvc.core.errors import Reason as R
    from imagesvc.core.errors import UnavailableError

    async def go() -> None:
        index = Index(ImageChangeLog())
        stopping = UnavailableError("shutting down", reason=R.SHUTTING_DOWN)
        async with contextlib.aclosing(index.watch()) as events:
            await take(events, 1)
            waiting = asyncio.create_task(anext(events))
            await asyncio.sleep(0)
            index.log.close(stopping)
            with pytest.raises(UnavailableError):
                await waiting
        with pytest.raises(UnavailableError):
            await anext(index.watch())
        assert index.log.watchers == 0

    run(go())


def test_a_cancelled_or_closed_watch_leaves_nothing_behind() -> None:
    async def go() -> None:
        observer = RecordingObserver()
        index = Index(ImageChangeLog(observer=observer))
        events = index.watch(initial=True)
        reader = asyncio.create_task(collect_all(events))
        await asyncio.sleep(0.01)
        assert index.log.watchers == 1
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert index.log.watchers == 0
        closed = index.watch()
        await take(closed, 1)
        assert index.log.watchers == 1
        await closed.aclose()
        assert index.log.watchers == 0
        # A watch never iterated never registered.
        index.watch()
        assert index.log.watchers == 0
        assert observer.open_counts == [1, 0, 1, 0]
        assert asyncio.all_tasks() == {asyncio.current_task()}
        # Publishing after all that touches no one.
        index.put(entry(1))

    run(go())


async def collect_all(events: AsyncGenerator[WatchEvent, None]) -> list[WatchEvent]:
    return [event async for event in events]


# The provisional filter (until core/image_filters.py provides image_predicate) ---------------


def test_filters_select_like_the_engine_lists() -> None:
    from imagesvc.core.errors import NotFoundError
    from imagesvc.core.image_changes import image_predicate

    entries = [
        entry(1, tags=["team/app:1"], labels={"tier": "web"}, created=100),
        entry(2, tags=[], labels={"tier": "db"}, created=200),
        entry(3, tags=["other:2"], created=300),
    ]

    def selected(image_filter: ImageFilter) -> list[str]:
        matches = image_predicate(image_filter, entries)
        return [e.id for e in entries if matches(e)]

    assert selected(ImageFilter(references=("team/*",))) == [image_id(1)]
    assert selected(ImageFilter(labels=("tier",))) == [image_id(1), image_id(2)]
    assert selected(ImageFilter(labels=("tier=db",))) == [image_id(2)]
    assert selected(ImageFilter(dangling=True)) == [image_id(2)]
    assert selected(ImageFilter(dangling=False)) == [image_id(1), image_id(3)]
    assert selected(ImageFilter(before="other:2")) == [image_id(1), image_id(2)]
    assert selected(ImageFilter(since="team/app:1")) == [image_id(2), image_id(3)]
    assert selected(ImageFilter(since=image_id(2).removeprefix("sha256:"))) == [image_id(3)]
    with pytest.raises(NotFoundError):
        selected(ImageFilter(before="absent:1"))
