"""The live image index against the fake Engine: the order of subscribing and listing,
events, resyncs, the stale-refresh guard, reads from memory and the fallback to the
Engine when the index is not live."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from imagesvc.core.build_context import ContextLimits
from imagesvc.core.errors import NotFoundError, UnavailableError
from imagesvc.core.image_core import CoreSettings, ImageCore
from imagesvc.core.image_entries import IndexEntry
from imagesvc.core.image_index import ImageIndex, IndexSettings, IndexState
from imagesvc.core.models import ImageFilter, ImagePage
from imagesvc.core.port import JsonDocument
from tests.unit.aio import run
from tests.unit.fakes import FakeDockerPort, engine_image, image_event, image_id

LIMITS = ContextLimits(max_bytes=64 * 1024, memory_bytes=4096)
FAST = IndexSettings(
    reconcile_interval_seconds=3600.0,
    retry_min_seconds=0.01,
    retry_max_seconds=0.05,
    write_sync_timeout_seconds=5.0,
    explain_grace_seconds=0.05,
)


@dataclass
class Recorder:
    """The index's observer and change sink in one."""

    states: list[str] = field(default_factory=list)
    corrections: int = 0
    resyncs: int = 0
    applied: int = 0
    lags: list[float] = field(default_factory=list)
    changes: list[tuple[str | None, str | None]] = field(default_factory=list)

    def index_state(self, state: str) -> None:
        self.states.append(state)

    def index_images(self, count: int) -> None:
        pass

    def index_events_applied(self, count: int) -> None:
        self.applied += count

    def index_resynced(self) -> None:
        self.resyncs += 1

    def index_corrected(self, count: int) -> None:
        self.corrections += count

    def index_lag(self, seconds: float) -> None:
        self.lags.append(seconds)

    def publish(self, previous: IndexEntry | None, current: IndexEntry | None) -> None:
        self.changes.append((previous.id if previous else None, current.id if current else None))


@dataclass
class Running:
    fake: FakeDockerPort
    index: ImageIndex
    core: ImageCore
    recorder: Recorder

    async def until(self, condition: Callable[[], bool]) -> None:
        """Polls: the conditions are on state that threads and the index change."""
        async with asyncio.timeout(5.0):
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.005)

    async def live(self) -> None:
        await self.until(lambda: self.index.live)

    def tags(self, n: int) -> tuple[str, ...]:
        return next(e.image.repo_tags for e in self.index.entries() if e.id == image_id(n))

    def ids(self) -> set[str]:
        return {e.id for e in self.index.entries()}


@asynccontextmanager
async def running(fake: FakeDockerPort, settings: IndexSettings = FAST) -> AsyncIterator[Running]:
    recorder = Recorder()
    fake.narrows_reference_lists = True
    with ThreadPoolExecutor(4) as pool, ThreadPoolExecutor(1) as events:
        index = ImageIndex(fake, pool, events, settings=settings, sink=recorder, observer=recorder)
        core = ImageCore(fake, pool, CoreSettings(build_context=LIMITS), index=index)
        task = asyncio.create_task(index.run())
        try:
            yield Running(fake, index, core, recorder)
        finally:
            index.stop()
            async with asyncio.timeout(5):
                await task
    assert all(stream.closed for stream in fake.event_streams)


def two_images() -> FakeDockerPort:
    fake = FakeDockerPort()
    fake.add(engine_image(1, tags=["app:1"], created=1_700_000_100))
    fake.add(engine_image(2, tags=["db:2", "db:latest"], created=1_700_000_200))
    return fake


def test_subscribes_before_listing_and_goes_live() -> None:
    async def scenario() -> None:
        fake = two_images()
        async with running(fake) as r:
            await r.live()
            methods = [m for m in fake.methods_called if m in ("image_events", "list_images")]
            assert methods[:2] == ["image_events", "list_images"]
            assert fake.event_stream.opened.is_set()
            assert r.ids() == {image_id(1), image_id(2)}
            assert r.recorder.states[:2] == ["starting", "live"]
        assert r.index.state is IndexState.STOPPED

    run(scenario())


class ChangingWhileListed(FakeDockerPort):
    """Tags an image right after the first full list was taken, before it is returned,
    with its event: the change must not be lost."""

    def list_images(self, *, all: bool, filters: Mapping[str, list[str]]) -> list[JsonDocument]:
        listed = super().list_images(all=all, filters=filters)
        if len(self.calls_to("list_images")) == 1:
            self.tag(image_id(1), "app", "2")
        return listed


def test_an_event_during_the_initial_list_is_applied_after_it() -> None:
    async def scenario() -> None:
        fake = ChangingWhileListed()
        fake.add(engine_image(1, tags=["app:1"]))
        async with running(fake) as r:
            await r.live()
            await r.until(lambda: "app:2" in r.tags(1))
            assert r.recorder.applied == 1

    run(scenario())


def test_tag_over_another_images_tag_moves_it_in_the_index() -> None:
    async def scenario() -> None:
        fake = two_images()
        async with running(fake) as r:
            await r.live()
            # The Engine tells only the new holder (as Engine 20.10 and 26 do).
            fake.tag(image_id(1), "db", "latest")
            await r.until(lambda: "db:latest" in r.tags(1))
            assert set(r.tags(1)) == {"app:1", "db:latest"}  # every name, not the matching
            assert r.tags(2) == ("db:2",)
            assert r.index.lookup("db") == image_id(1)
            assert r.recorder.lags
            assert all(0 <= lag < 5 for lag in r.recorder.lags)

    run(scenario())


def test_untag_and_delete_events() -> None:
    async def scenario() -> None:
        fake = two_images()
        async with running(fake) as r:
            await r.live()
            r.recorder.changes.clear()
            fake.remove_image("db:2", force=False, no_prune=False)
            await r.until(lambda: r.tags(2) == ("db:latest",))
            fake.remove_image("db:latest", force=False, no_prune=False)
            await r.until(lambda: image_id(2) not in r.ids())
            assert r.recorder.changes == [(image_id(2), image_id(2)), (image_id(2), None)]
            assert r.index.lookup("db:2") is None

    run(scenario())


def test_a_lost_stream_resyncs_and_counts_no_correction_for_replayed_events() -> None:
    async def scenario() -> None:
        fake = two_images()
        async with running(fake) as r:
            await r.live()
            first = fake.event_stream
            first.emit(image_event("pull", "app:1"))  # gives the index a last event time
            await r.until(lambda: r.recorder.applied == 1)
            fake.emits_events = False
            first.end()
            await r.until(lambda: not r.index.live)
            # Changed while the index listened to nothing; the Engine replays the event.
            fake.tag(image_id(2), "app", "new")
            await r.until(
                lambda: len(fake.event_streams) == 2 and fake.event_stream.opened.is_set()
            )
            second = fake.event_stream
            assert second.since  # asked for what it missed
            second.emit(image_event("tag", image_id(2), "app:new"))
            await r.live()
            await r.until(lambda: "app:new" in r.tags(2))
            await asyncio.sleep(0.2)  # the grace of the correction count
            assert r.recorder.resyncs == 1
            assert r.recorder.corrections == 0
            assert "resyncing" in r.recorder.states

    run(scenario())


def test_a_change_no_event_reports_is_corrected_and_counted() -> None:
    async def scenario() -> None:
        fake = two_images()
        async with running(fake) as r:
            await r.live()
            fake.emits_events = False
            fake.tag(image_id(1), "silent", "1")
            del fake.images[image_id(2)]
            fake.event_stream.end()
            await r.until(lambda: r.recorder.corrections > 0)
            assert r.recorder.corrections == 2
            assert r.ids() == {image_id(1)}
            assert "silent:1" in r.tags(1)

    run(scenario())


def test_periodic_reconciliation() -> None:
    async def scenario() -> None:
        fake = two_images()
        settings = IndexSettings(
            reconcile_interval_seconds=0.1, retry_min_seconds=0.01, explain_grace_seconds=0.01
        )
        async with running(fake, settings) as r:
            await r.live()
            await r.until(lambda: r.recorder.resyncs >= 2)
            assert r.recorder.corrections == 0
            fake.emits_events = False
            fake.add(engine_image(3, tags=["late:1"]))
            await r.until(lambda: image_id(3) in r.ids())
            await r.until(lambda: r.recorder.corrections == 1)
            assert r.index.live

    run(scenario())


def test_engine_down_then_back() -> None:
    async def scenario() -> None:
        fake = two_images()
        fake.failures["image_events"] = UnavailableError("daemon down")
        async with running(fake) as r:
            await r.until(lambda: r.index.state is IndexState.DOWN)
            # Reads go to the Engine while the index is not live.
            before = len(fake.calls_to("inspect_image"))
            image = await r.core.get_image("app:1")
            assert image.id == image_id(1)
            assert len(fake.calls_to("inspect_image")) == before + 1
            del fake.failures["image_events"]
            await r.live()
            assert r.recorder.states[-2:] == ["down", "live"]

    run(scenario())


class SlowInspect(FakeDockerPort):
    """inspect_image waits for `release` once `gate` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()
        self.release = threading.Event()

    def inspect_image(self, image: str) -> JsonDocument:
        document = copy.deepcopy(super().inspect_image(image))  # as of now
        if self.gate.is_set():
            self.waiting.set()
            self.release.wait(5)
        return document


def test_an_inspect_older_than_the_entry_is_not_cached() -> None:
    async def scenario() -> None:
        fake = SlowInspect()
        fake.add(engine_image(1, tags=["app:1"]))
        async with running(fake) as r:
            await r.live()
            fake.gate.set()
            reader = asyncio.create_task(r.core.get_image("app:1"))
            await r.until(fake.waiting.is_set)
            fake.gate.clear()
            fake.tag(image_id(1), "app", "2")  # the entry changes meanwhile
            await r.until(lambda: "app:2" in r.tags(1))
            fake.release.set()
            old = await reader
            assert old.repo_tags == ("app:1",)  # what the Engine said then
            assert r.index.inspected(image_id(1)) is None  # but not kept
            fresh = await r.core.get_image("app:1")
            assert set(fresh.repo_tags) == {"app:1", "app:2"}
            calls = len(fake.calls_to("inspect_image"))
            assert await r.core.get_image(image_id(1)) == fresh  # now from memory
            assert len(fake.calls_to("inspect_image")) == calls

    run(scenario())


def test_reads_answer_from_memory() -> None:
    async def scenario() -> None:
        fake = two_images()
        fake.histories[image_id(2)] = [{"Id": image_id(2), "Created": 1, "CreatedBy": "x"}]
        async with running(fake) as r:
            await r.live()
            calls = len(fake.calls)
            page = await r.core.list_images(ImageFilter(), all=False, page_size=0, page_token="")
            assert [i.id for i in page.images] == [image_id(2), image_id(1)]
            page = await r.core.list_images(ImageFilter(), all=False, page_size=1, page_token="")
            assert [i.id for i in page.images] == [image_id(2)]
            nxt = await r.core.list_images(
                ImageFilter(), all=False, page_size=1, page_token=page.next_page_token
            )
            assert [i.id for i in nxt.images] == [image_id(1)]
            assert len(fake.calls) == calls  # no Engine call
            first = await r.core.get_image("db")
            assert first.id == image_id(2)
            for name in ("db:latest", "docker.io/library/db:2", image_id(2), image_id(2)[7:]):
                assert await r.core.get_image(name) is first
            history = await r.core.image_history("db:2")
            assert await r.core.image_history(image_id(2)) is history
            assert [c.method for c in fake.calls[calls:]] == ["inspect_image", "image_history"]

    run(scenario())


def test_a_repeated_list_is_kept_until_the_index_changes() -> None:
    async def scenario() -> None:
        fake = two_images()
        async with running(fake) as r:
            await r.live()

            async def listed(page_size: int = 0, references: tuple[str, ...] = ()) -> ImagePage:
                return await r.core.list_images(
                    ImageFilter(references=references),
                    all=False,
                    page_size=page_size,
                    page_token="",
                )

            first = await listed()
            assert await listed() is first  # kept: the transport reuses its wire form
            one = await listed(page_size=1)  # another query, another page
            assert [i.id for i in one.images] == [image_id(2)]
            assert one.next_page_token
            matching = await listed(references=("app",))
            assert [i.repo_tags for i in matching.images] == [("app:1",)]
            assert await listed(references=("app",)) is matching
            # Changed by another client: the event changes the index, the next list shows it.
            fake.tag(image_id(1), "app", "2")
            await r.until(lambda: "app:2" in r.tags(1))
            changed = await listed()
            assert changed is not first
            assert set(next(i for i in changed.images if i.id == image_id(1)).repo_tags) == {
                "app:1",
                "app:2",
            }
            assert [set(i.repo_tags) for i in (await listed(references=("app",))).images] == [
                {"app:1", "app:2"}
            ]
            fake.remove_image(image_id(2), force=True, no_prune=False)
            await r.until(lambda: image_id(2) not in r.ids())
            assert [i.id for i in (await listed()).images] == [image_id(1)]
            assert (await listed(page_size=1)).next_page_token == ""

    run(scenario())


def test_lookup_rules() -> None:
    async def scenario() -> None:
        fake = FakeDockerPort()
        fake.add(
            engine_image(
                0xABC1,
                tags=["127.0.0.1:5000/team/app:1", "busybox:latest"],
                digests=["busybox@sha256:" + "d" * 64],
            )
        )
        fake.add(engine_image(0xABC2, tags=["localhost/x:1", "x:1"]))
        async with running(fake) as r:
            await r.live()
            one, two = image_id(0xABC1), image_id(0xABC2)
            assert r.index.lookup(one) == one
            assert r.index.lookup(one[7:]) == one
            assert r.index.lookup("busybox") == one
            assert r.index.lookup("docker.io/library/busybox:latest") == one
            assert r.index.lookup("busybox@sha256:" + "d" * 64) == one
            assert r.index.lookup("127.0.0.1:5000/team/app:1") == one
            assert r.index.lookup("127.0.0.1:5000/team/app") is None  # :latest, unknown
            assert r.index.lookup("x:1") is None  # Podman might find localhost/x:1
            assert r.index.lookup("sha256:" + "0" * 60 + "abc1") == one
            assert r.index.lookup("0" * 60 + "abc") is None  # a prefix of both
            assert r.index.lookup("sha256:" + "f" * 64) is None  # unknown: ask the Engine
            assert r.index.lookup("busybox:1@sha256:" + "d" * 64) is None
            assert r.index.lookup(two) == two

    run(scenario())


def test_an_unknown_image_is_the_engines_not_found() -> None:
    async def scenario() -> None:
        fake = two_images()
        async with running(fake) as r:
            await r.live()
            with pytest.raises(NotFoundError):
                await r.core.get_image("nothing:here")
            assert fake.calls_to("inspect_image")[-1].args == ("nothing:here",)

    run(scenario())


def test_a_filter_the_index_cannot_evaluate_goes_to_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def cannot(*args: object, **kwargs: object) -> list[IndexEntry]:
        raise NotImplementedError

    monkeypatch.setattr("imagesvc.core.image_core.select_images", cannot)

    async def scenario() -> None:
        fake = two_images()
        async with running(fake) as r:
            await r.live()
            lists = len(fake.calls_to("list_images"))
            page = await r.core.list_images(
                ImageFilter(references=("db",)), all=False, page_size=0, page_token=""
            )
            assert [i.id for i in page.images] == [image_id(2)]
            calls = fake.calls_to("list_images")
            assert len(calls) == lists + 1
            assert calls[-1].kwargs == {"all": False, "filters": {"reference": ["db"]}}

    run(scenario())


def test_writes_are_seen_by_the_next_read_without_events() -> None:
    async def scenario() -> None:
        fake = two_images()
        fake.emits_events = False  # only the write's own refresh can show it
        async with running(fake) as r:
            await r.live()
            result = await r.core.tag_image("app:1", "app:2")
            assert result.id == image_id(1)
            page = await r.core.list_images(ImageFilter(), all=False, page_size=0, page_token="")
            assert "app:2" in next(i for i in page.images if i.id == image_id(1)).repo_tags
            assert (await r.core.get_image("app:2")).id == image_id(1)
            await r.core.remove_image("db:2", force=False, no_prune=False)
            assert r.tags(2) == ("db:latest",)
            await r.core.remove_image("db:latest", force=False, no_prune=False)
            page = await r.core.list_images(ImageFilter(), all=False, page_size=0, page_token="")
            assert [i.id for i in page.images] == [image_id(1)]
            with pytest.raises(NotFoundError):
                await r.core.get_image("db:latest")
            assert r.index.live

    run(scenario())


def test_a_failed_refresh_stops_answering_from_memory() -> None:
    async def scenario() -> None:
        fake = two_images()
        fake.emits_events = False
        async with running(fake) as r:
            await r.live()
            fake.failures["inspect_image"] = UnavailableError("gone")
            fake.failures["list_images"] = UnavailableError("gone")
            fake.tag(image_id(1), "app", "2")
            await r.index.refreshed([image_id(1)], ["app:2"])
            assert not r.index.live
            # Reads now fail as the Engine does, never answer from memory.
            with pytest.raises(UnavailableError):
                await r.core.list_images(ImageFilter(), all=False, page_size=0, page_token="")
            del fake.failures["list_images"]
            del fake.failures["inspect_image"]
            await r.live()
            assert "app:2" in r.tags(1)

    run(scenario())


def test_stop_closes_the_stream_while_subscribing() -> None:
    class BlockingOpen(FakeDockerPort):
        def image_events(self, *, since: str = "") -> object:  # type: ignore[override]
            stream = super().image_events(since=since)
            original = stream.open

            def open_blocking() -> None:
                while not stream.closed:
                    threading.Event().wait(0.01)
                original()

            stream.open = open_blocking  # type: ignore[method-assign]
            return stream

    async def scenario() -> None:
        fake = BlockingOpen()
        async with running(fake) as r:
            await r.until(lambda: bool(fake.event_streams))
            assert r.index.state is IndexState.STARTING

    run(scenario())


def test_a_known_image_is_refreshed_by_inspect_a_new_one_by_a_filtered_list() -> None:
    async def scenario() -> None:
        fake = two_images()
        async with running(fake) as r:
            await r.live()
            calls = len(fake.calls)
            fake.tag(image_id(1), "app", "2")
            await r.until(lambda: "app:2" in r.tags(1))
            refresh = [c.method for c in fake.calls[calls:] if c.method != "tag"]
            assert refresh == ["inspect_image"]  # by the name the event gives, no list
            calls = len(fake.calls)
            fake.add(engine_image(3, tags=["pulled:1"], labels={"a": "b"}))
            fake.emit(image_event("pull", "pulled:1"))
            await r.until(lambda: image_id(3) in r.ids())
            lists = [c.kwargs for c in fake.calls[calls:] if c.method == "list_images"]
            assert lists == [{"all": True, "filters": {"reference": ["pulled:1"]}}]
            [entry] = [e for e in r.index.entries() if e.id == image_id(3)]
            assert entry.summary["Labels"] == {"a": "b"}
            assert entry.summary["Created"] == 1_700_000_000

    run(scenario())


class SlowFirstList(FakeDockerPort):
    """The first full list is taken at once but answered only when `gate` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.listing = threading.Event()
        self.gate = threading.Event()

    def list_images(self, *, all: bool, filters: Mapping[str, list[str]]) -> list[JsonDocument]:
        listed = copy.deepcopy(super().list_images(all=all, filters=filters))
        if len(self.calls_to("list_images")) == 1:
            self.listing.set()
            self.gate.wait(5)
        return listed


def test_a_write_while_the_index_starts_returns_once_it_shows_it() -> None:
    async def scenario() -> None:
        fake = SlowFirstList()
        fake.add(engine_image(1, tags=["app:1"]))
        fake.emits_events = False
        async with running(fake) as r:
            await r.until(fake.listing.is_set)
            write = asyncio.create_task(r.core.tag_image("app:1", "app:2"))
            await asyncio.sleep(0.1)
            assert not write.done()  # its refresh waits for the list taken before it
            fake.gate.set()
            await write
            assert r.index.live
            page = await r.core.list_images(ImageFilter(), all=False, page_size=0, page_token="")
            assert set(page.images[0].repo_tags) == {"app:1", "app:2"}

    run(scenario())


def test_untagged_parents_deleted_with_their_image_without_events_go_too() -> None:
    async def scenario() -> None:
        fake = FakeDockerPort()
        fake.add(engine_image(1, tags=["base:1"]))
        fake.add(engine_image(2, parent=image_id(1)))  # a build step
        fake.add(engine_image(3, tags=["app:1"], parent=image_id(2)))
        async with running(fake) as r:
            await r.live()
            # As the containerd store does: one event, for the image named.
            del fake.images[image_id(3)]
            del fake.images[image_id(2)]
            fake.emit(image_event("delete", image_id(3)))
            await r.until(lambda: image_id(3) not in r.ids())
            assert r.ids() == {image_id(1)}

    run(scenario())


def test_children_of_a_parent_that_goes_and_comes_back_show_the_engines_parent() -> None:
    async def scenario() -> None:
        fake = FakeDockerPort()
        fake.add(engine_image(2))
        fake.add(engine_image(3, tags=["app:1"], parent=image_id(2)))
        async with running(fake) as r:
            await r.live()
            step = fake.images.pop(image_id(2))
            fake.images[image_id(3)]["Parent"] = ""  # as the containerd store shows it
            fake.emit(image_event("delete", image_id(2)))
            await r.until(lambda: image_id(2) not in r.ids())
            await r.until(lambda: r.index.entries()[0].image.parent == "")
            fake.add(step)
            fake.images[image_id(3)]["Parent"] = image_id(2)
            fake.emit(image_event("load", image_id(2)))
            await r.until(lambda: image_id(2) in r.ids())
            await r.until(
                lambda: (
                    {e.id: e.image.parent for e in r.index.entries()}[image_id(3)] == image_id(2)
                )
            )

    run(scenario())


LIST_ONLY_DIGEST = f"db@sha256:{'d' * 64}"


@dataclass
class PodmanLikePort(FakeDockerPort):
    """Lists as Podman does (its own summary keys), with a repo digest of image 2 that
    only the full list shows; each full list, once `hold_lists` is set, is computed and
    then held until the test releases its gate (an Engine slow to answer a list)."""

    hold_lists: bool = False
    gates: list[threading.Event] = field(default_factory=list)

    def list_images(self, *, all: bool, filters: Mapping[str, list[str]]) -> list[JsonDocument]:
        summaries = super().list_images(all=all, filters=filters)
        for summary in summaries:
            summary["Digest"] = summary["Id"]
            if not filters and summary["Id"] == image_id(2):
                summary["RepoDigests"] = [*summary["RepoDigests"], LIST_ONLY_DIGEST]
        if self.hold_lists and not filters:
            gate = threading.Event()
            with self._lock:
                self.gates.append(gate)
            gate.wait(10)
        return summaries


def digests(r: Running, n: int) -> tuple[str, ...]:
    return next(e.image.repo_digests for e in r.index.entries() if e.id == image_id(n))


def test_names_settle_from_a_full_list_and_events_never_wait_for_it() -> None:
    """Where lists name images otherwise than inspect, a full list after the last refresh
    settles the names; it runs beside the applier, so an event arriving meanwhile is
    applied at once, and the list (older than that event's refresh) does not undo it."""

    async def scenario() -> None:
        fake = PodmanLikePort()
        fake.add(engine_image(1, tags=["app:1"]))
        fake.add(engine_image(2, tags=["db:2"]))
        settings = dataclasses.replace(FAST, names_settle_seconds=0.05)
        async with running(fake, settings) as r:
            await r.live()
            assert LIST_ONLY_DIGEST in digests(r, 2)  # the first list's names
            fake.hold_lists = True
            fake.tag(image_id(2), "db", "3")
            await r.until(lambda: "db:3" in r.tags(2))
            assert LIST_ONLY_DIGEST not in digests(r, 2)  # inspect's names, until settled
            await r.until(lambda: len(fake.gates) == 1)  # the settling list is out
            fake.tag(image_id(1), "app", "2")
            await r.until(lambda: "app:2" in r.tags(1))  # not held up by that list
            fake.gates[0].set()
            await r.until(lambda: LIST_ONLY_DIGEST in digests(r, 2))
            # The list was taken before "app:2": image 1 keeps what its refresh found.
            assert set(r.tags(1)) == {"app:1", "app:2"}
            fake.hold_lists = False
            for gate in fake.gates:
                gate.set()

    run(scenario())


def test_the_names_settling_list_brings_in_what_no_event_announced() -> None:
    """The containerd store announces an untagged build's images with no event: the list
    that settles names after the last refresh finds them (and what went unannounced)."""

    async def scenario() -> None:
        fake = PodmanLikePort()
        fake.add(engine_image(1, tags=["app:1"]))
        fake.add(engine_image(2, tags=["db:2"]))
        settings = dataclasses.replace(FAST, names_settle_seconds=0.05)
        async with running(fake, settings) as r:
            await r.live()
            fake.add(engine_image(3))  # no event
            del fake.images[image_id(2)]  # no event
            fake.tag(image_id(1), "app", "2")
            await r.until(lambda: r.ids() == {image_id(1), image_id(3)})
            assert set(r.tags(1)) == {"app:1", "app:2"}

    run(scenario())
