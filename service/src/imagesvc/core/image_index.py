"""The live image index: every image of the Engine in memory, kept current by its events.

Lifecycle (`run`, an asyncio task of the server): subscribe to the Engine's image events
first, then list every image (`GET /images/json?all=1`), then apply the events that
arrived meanwhile; that order loses nothing. While the subscription lasts the index is
`live` and reads (ImageCore) answer from it; when the stream ends or fails, or a refresh
fails, it is not live (reads go to the Engine) until it has subscribed again and
re-listed everything. A full re-list also runs every `reconcile_interval_seconds`; what
a re-list changes that no event explains is counted as a correction (should stay 0).

Events are applied by a targeted refresh of what they name, not by re-listing: on the
containerd image store one full list of 400 images costs about 2.3 s, a list filtered
by one reference 20 ms and an inspect 7 ms (Engine 20.10: 42 ms, 37 ms and 1 ms). The
refresh inspects each image concerned: one the index knows keeps its list summary with
the inspect document's names and parent (nothing else in a summary changes for an image
id); one
new to the index gets the Engine's own summary from a list filtered by one of its names
(or of the dangling images), since a list filtered by reference shows only the
matching names. An untagged image with children (a classic build's intermediate
images, which no event announces) is only found by a full list. One applier runs every
refresh, one at a time and in order, so an older refresh can never overwrite a newer
one; inspect documents and histories fetched lazily by readers are kept only when their
entry did not change in the meantime (per-entry sequence numbers).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import functools
import logging
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from imagesvc.core import documents
from imagesvc.core.errors import (
    ImageServiceError,
    InvalidArgumentError,
    NotFoundError,
    Reason,
    UnavailableError,
)
from imagesvc.core.image_entries import ChangeSink, IndexEntry
from imagesvc.core.image_filters import Store, image_store
from imagesvc.core.models import HistoryEntry, Image
from imagesvc.core.port import DockerPort, EventStream, JsonDocument
from imagesvc.core.references import familiar, is_image_id, parse_reference

log = logging.getLogger(__name__)
T = TypeVar("T")

_FULL_ID = re.compile(r"(?:sha256:)?[0-9a-f]{64}")
# Events that change nothing an image list shows, when they name nothing to refresh
# (a prune is followed by a delete or untag event per image).
_HARMLESS_ACTIONS = frozenset({"prune", "save"})
# Removed parents whose children are remembered, in case the parent comes back.
_MAX_ORPHANED_PARENTS = 1000
_NO_NAMES = frozenset({"<none>:<none>", "<none>@<none>"})


class IndexState(enum.StrEnum):
    STARTING = "starting"  # never live yet: subscribing and listing
    LIVE = "live"  # reads answer from memory
    RESYNCING = "resyncing"  # lost the stream or a refresh failed: subscribing, re-listing
    DOWN = "down"  # the Engine cannot be reached; retrying with backoff
    STOPPED = "stopped"


class IndexObserver(Protocol):
    """What the index reports (imagesvc.metrics implements it)."""

    def index_state(self, state: str) -> None: ...

    def index_images(self, count: int) -> None: ...

    def index_events_applied(self, count: int) -> None: ...

    def index_resynced(self) -> None: ...

    def index_corrected(self, count: int) -> None: ...

    def index_lag(self, seconds: float) -> None: ...


class _NoObserver:
    def index_state(self, state: str) -> None:
        pass

    def index_images(self, count: int) -> None:
        pass

    def index_events_applied(self, count: int) -> None:
        pass

    def index_resynced(self) -> None:
        pass

    def index_corrected(self, count: int) -> None:
        pass

    def index_lag(self, seconds: float) -> None:
        pass


class _NoSink:
    def publish(self, previous: IndexEntry | None, current: IndexEntry | None) -> None:
        pass


@dataclass(frozen=True, slots=True)
class IndexSettings:
    reconcile_interval_seconds: float = 300.0
    retry_min_seconds: float = 0.2
    retry_max_seconds: float = 5.0
    # A write waits at most this long for the index to show its effect; past it the
    # index re-lists and reads go to the Engine meanwhile.
    write_sync_timeout_seconds: float = 10.0
    # How long a re-list waits for events that explain its differences before counting
    # them as corrections.
    explain_grace_seconds: float = 0.25
    # On stores whose lists name images otherwise than their inspect documents: how long
    # after the last targeted refresh a full list makes the names the Engine's own. The
    # list runs beside the applier (events never wait for it); long enough that a burst
    # of changes (a CLI script, a CI job) is over first, so one list settles it all.
    names_settle_seconds: float = 2.0


@dataclass(slots=True)
class _Slot:
    entry: IndexEntry
    version: int  # changes whenever the entry does: lazily fetched documents check it
    inspected: Image | None = None
    history: tuple[HistoryEntry, ...] | None = None


@dataclass(slots=True)
class _Work:
    """A refresh to run: what it names, or everything."""

    ids: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    everything: bool = False
    # A names-settling list: the index's version when it began, and what it listed.
    settled: tuple[int, dict[str, JsonDocument]] | None = None
    event_times: list[float] = field(default_factory=list)  # Unix seconds, for the lag
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def merge(self, other: _Work) -> None:
        self.ids |= other.ids
        self.names |= other.names
        self.everything = self.everything or other.everything
        self.settled = other.settled or self.settled
        self.event_times += other.event_times
        self.waiters += other.waiters


class _StreamEnded(Exception):
    """The Engine's event stream ended (the reader thread's last word)."""


def _name_key(name: str) -> str:
    """The key a tag or digest is indexed under: Docker's familiar form."""
    return familiar(name)


def _reference_key(text: str) -> str | None:
    """The index key of a reference as a caller or an event writes it (`latest` by
    default, Docker Hub's names familiar), or None when it is not one."""
    try:
        reference = parse_reference(text)
    except InvalidArgumentError:
        return None
    if reference.tag and reference.digest:
        return None
    return familiar(reference.with_default_tag().normalized())


def _event_keys(event: JsonDocument) -> tuple[set[str], set[str]]:
    """The image ids and references an image event names."""
    actor = event.get("Actor")
    actor = actor if isinstance(actor, dict) else {}
    attributes = actor.get("Attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    ids: set[str] = set()
    names: set[str] = set()
    for value in (actor.get("ID") or event.get("id"), attributes.get("name")):
        if not isinstance(value, str) or not value:
            continue
        if _FULL_ID.fullmatch(value):
            ids.add(documents.image_id(value))
        elif _reference_key(value) is not None:
            names.add(value)
    return ids, names


def _with_names(summary: JsonDocument, document: JsonDocument) -> JsonDocument:
    """A list summary with every name of the image's inspect document: a list filtered by
    reference shows only the names that match it."""
    merged = dict(summary)
    merged["RepoTags"] = list(document.get("RepoTags") or [])
    merged["RepoDigests"] = list(document.get("RepoDigests") or [])
    # The containerd store shows a parent only while it exists: as of the document.
    parent = documents.image_id(document.get("Parent"))
    if parent != documents.image_id(summary.get("ParentId")):
        merged["ParentId"] = parent
    return merged


def _comparable(summary: JsonDocument) -> JsonDocument:
    """A summary as far as it matters whether it changed: names as a sorted list, without
    the "<none>" placeholders older Engines list (or null for none)."""
    comparable = dict(summary)
    comparable["ParentId"] = documents.image_id(summary.get("ParentId"))
    for key in ("RepoTags", "RepoDigests"):
        names = summary.get(key) or []
        comparable[key] = sorted(n for n in names if n not in _NO_NAMES)
    return comparable


def _event_time(event: JsonDocument) -> float | None:
    nanos = event.get("timeNano")
    if isinstance(nanos, int) and nanos > 0:
        return nanos / 1e9
    seconds = event.get("time")
    if isinstance(seconds, int) and seconds > 0:
        return float(seconds)
    return None


class ImageIndex:
    """Every image of one Engine, by id, with lookups by reference."""

    def __init__(
        self,
        engine: DockerPort,
        executor: Executor,
        events_executor: Executor,
        *,
        settings: IndexSettings | None = None,
        sink: ChangeSink | None = None,
        observer: IndexObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`executor` runs the index's Engine calls (lists, inspects); `events_executor`
        holds the thread that reads the event stream (it blocks for as long as the
        stream lasts)."""
        self._engine = engine
        self._executor = executor
        self._events_executor = events_executor
        self._settings = settings or IndexSettings()
        self._sink: ChangeSink = sink or _NoSink()
        self._observer: IndexObserver = observer or _NoObserver()
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._counting: set[asyncio.Task[None]] = set()
        # Removed image id -> the images that had it as parent (see _refresh).
        self._orphans: dict[str, set[str]] = {}
        self._by_name: dict[str, set[str]] = {}
        self._versions = 0
        # Bumped whenever the set of entries changes (one put or removed): reads may
        # keep what they derived from the entries for as long as it stays the same.
        self._generation = 0
        self._state = IndexState.STARTING
        self._work: asyncio.Queue[_Work | _StreamEnded] | None = None
        self._stream: EventStream | None = None
        self._stopping = False
        self._settle_handle: asyncio.TimerHandle | None = None
        self._settling: asyncio.Task[None] | None = None
        # What the last names-settling list and the index disagreed on the existence of.
        self._unexplained: set[str] = set()
        self._last_event_time: float | None = None
        # (monotonic time received, keys it names or None for "anything"), for telling
        # corrections from changes events explain; only the last minute is kept.
        self._recent_events: collections.deque[tuple[float, set[str] | None]] = collections.deque()
        self._observer.index_state(self._state)

    # State ---------------------------------------------------------------------------

    @property
    def state(self) -> IndexState:
        return self._state

    @property
    def live(self) -> bool:
        return self._state is IndexState.LIVE

    def _set_state(self, state: IndexState, why: str = "") -> None:
        if state is self._state:
            return
        previous, self._state = self._state, state
        level = logging.INFO if state in (IndexState.LIVE, IndexState.STOPPED) else logging.WARNING
        log.log(
            level,
            "image index is %s%s",
            state.value,
            f" ({why})" if why else "",
            extra={"index_state": state.value, "previous_state": previous.value, "why": why},
        )
        self._observer.index_state(state)

    # Reads (on the event loop, no Engine call) ----------------------------------------

    @property
    def generation(self) -> int:
        """Changes whenever an entry is added, replaced or removed."""
        return self._generation

    def entries(self) -> list[IndexEntry]:
        return [slot.entry for slot in self._slots.values()]

    def live_entries(self) -> list[IndexEntry]:
        """The entries, only while they are the Engine's (WatchImages' snapshot): else
        UNAVAILABLE, to retry once the index is live again."""
        if not self.live:
            raise UnavailableError(
                f"the live image index is {self._state.value} (the Docker daemon's events"
                " are not being followed): retry shortly",
                reason=Reason.WATCH_UNAVAILABLE,
            )
        return self.entries()

    def __len__(self) -> int:
        return len(self._slots)

    def lookup(self, text: str) -> str | None:
        """The id of the image the Engine would find by `text` (an id, id prefix or
        reference), or None when the index cannot say for sure (ask the Engine)."""
        if _FULL_ID.fullmatch(text):
            image_id = documents.image_id(text)
            return image_id if image_id in self._slots else None
        key = _reference_key(text)
        if key is not None:
            holders = self._by_name.get(key)
            # Podman also finds localhost/x:1 by x:1: a name it might resolve otherwise.
            if holders and len(holders) == 1 and f"localhost/{key}" not in self._by_name:
                return next(iter(holders))
            if holders:
                return None
        if is_image_id(text):  # no image has it as a name: an id prefix, if unique
            prefix = documents.image_id(text) if text.startswith("sha256:") else f"sha256:{text}"
            found = [image_id for image_id in self._slots if image_id.startswith(prefix)]
            if len(found) == 1:
                return found[0]
        return None

    def inspected(self, image_id: str) -> Image | None:
        slot = self._slots.get(image_id)
        return slot.inspected if slot is not None else None

    def history(self, image_id: str) -> tuple[HistoryEntry, ...] | None:
        slot = self._slots.get(image_id)
        return slot.history if slot is not None else None

    async def inspect(self, image_id: str) -> Image:
        """The image's inspect document, from the Engine once, then from memory (kept
        only when its entry did not change while the Engine answered)."""
        slot = self._slots.get(image_id)
        version = slot.version if slot is not None else -1
        document = await self._call(self._engine.inspect_image, image_id)
        image = documents.image_from_inspect(document)
        slot = self._slots.get(image_id)
        if slot is not None and slot.version == version and image.id == image_id:
            slot.inspected = image
        return image

    async def load_history(self, image_id: str) -> tuple[HistoryEntry, ...]:
        slot = self._slots.get(image_id)
        version = slot.version if slot is not None else -1
        entries = documents.history_from_engine(
            await self._call(self._engine.image_history, image_id)
        )
        slot = self._slots.get(image_id)
        if slot is not None and slot.version == version:
            slot.history = entries
        return entries

    # Writes of this service ----------------------------------------------------------

    async def refreshed(self, ids: Iterable[str] = (), names: Iterable[str] = ()) -> None:
        """Returns once the index shows the Engine's state of these images (after a write
        through this service), or once it is no longer live (reads then go to the
        Engine). Never raises: a failed refresh makes the index re-list."""
        # Also while a session starts: its list may predate the write; the refresh runs
        # after that list, and the write returns after the refresh.
        if self._work is None:
            return
        work = _Work()
        for key in (*ids, *names):
            if not key:
                continue
            if _FULL_ID.fullmatch(key):
                work.ids.add(documents.image_id(key))
            elif _reference_key(key) is not None:
                work.names.add(key)
            else:  # an id prefix: which image it was is not known any more
                work.everything = True
        if not work.ids and not work.names and not work.everything:
            return
        done = asyncio.get_running_loop().create_future()
        work.waiters.append(done)
        self._work.put_nowait(work)
        try:
            async with asyncio.timeout(self._settings.write_sync_timeout_seconds):
                await asyncio.shield(done)
        except TimeoutError:
            self.resync("a write waited too long for the index")

    def resync(self, why: str) -> None:
        """Stops answering from memory and starts over: subscribes again, then re-lists
        (on the event loop)."""
        if self.live:
            self._set_state(IndexState.RESYNCING, why)
        stream = self._stream
        if stream is not None:
            stream.close()

    # Lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        """Keeps the index current until `stop()` (or cancellation)."""
        delay = self._settings.retry_min_seconds
        try:
            while not self._stopping:
                was_live = False
                try:
                    was_live = await self._session()
                except ImageServiceError as error:
                    if not self._stopping:
                        self._set_state(
                            IndexState.DOWN
                            if error.reason in (Reason.DAEMON_UNAVAILABLE, Reason.DAEMON_TIMEOUT)
                            else IndexState.RESYNCING,
                            f"{error.reason}: {error}",
                        )
                except Exception:
                    log.exception("image index failed; starting over")
                    if not self._stopping:
                        self._set_state(IndexState.RESYNCING, "internal error")
                if self._stopping:
                    break
                if self._state is IndexState.LIVE:
                    self._set_state(IndexState.RESYNCING, "the Engine's event stream ended")
                if was_live:
                    delay = self._settings.retry_min_seconds
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.retry_max_seconds)
        finally:
            for task in self._counting:
                task.cancel()
            if self._settling is not None:
                self._settling.cancel()
            self._set_state(IndexState.STOPPED)

    def stop(self) -> None:
        """Ends `run` soon: closes the event stream (which ends its reader thread)."""
        self._stopping = True
        if self._settle_handle is not None:
            self._settle_handle.cancel()
        stream = self._stream
        if stream is not None:
            stream.close()
        if self._work is not None:
            self._work.put_nowait(_StreamEnded())

    async def _session(self) -> bool:
        """One subscription: subscribe, list, then apply events until the stream ends.
        True when it went live."""
        loop = asyncio.get_running_loop()
        since = (
            f"{self._last_event_time:.9f}"
            if self._last_event_time is not None
            else f"{self._clock() - 1:.9f}"  # covers the instant between answer and subscribe
        )
        stream = self._engine.image_events(since=since)
        self._stream = stream
        work: asyncio.Queue[_Work | _StreamEnded] = asyncio.Queue()
        self._work = work
        reader: asyncio.Future[None] | None = None
        try:
            await loop.run_in_executor(self._events_executor, stream.open)
            if self._stopping:
                return False
            reader = loop.run_in_executor(self._events_executor, self._read, stream, loop, work)
            first = not self._slots and self._state is IndexState.STARTING
            started = time.monotonic() - 5  # events just before it may be unapplied yet
            changes = await self._relist()
            if not first:
                self._observer.index_resynced()
                self._count_corrections_later(changes, started)
            self._set_state(IndexState.LIVE)
            await self._apply(work)
            return True
        finally:
            if self._state is IndexState.LIVE:  # before anything else may read
                self._set_state(IndexState.RESYNCING, "the Engine's event stream ended")
            self._stream = None
            self._work = None
            stream.close()
            if reader is not None:
                with contextlib.suppress(Exception):
                    await reader
            while not work.empty():  # writes waiting on this session: reads go to the Engine
                item = work.get_nowait()
                if isinstance(item, _Work):
                    _release(item)

    def _read(
        self,
        stream: EventStream,
        loop: asyncio.AbstractEventLoop,
        work: asyncio.Queue[_Work | _StreamEnded],
    ) -> None:
        """The reader thread: every event onto the loop, then the end of the stream."""
        try:
            for event in stream:
                loop.call_soon_threadsafe(self._received, event, work)
        except ImageServiceError as error:
            log.warning(
                "the Engine's event stream failed",
                extra={"reason": str(error.reason), "error": str(error)},
            )
        except Exception:
            log.exception("reading the Engine's event stream failed")
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(work.put_nowait, _StreamEnded())

    def _received(self, event: JsonDocument, work: asyncio.Queue[_Work | _StreamEnded]) -> None:
        when = _event_time(event)
        if when is not None:
            self._last_event_time = max(self._last_event_time or 0.0, when)
        ids, names = _event_keys(event)
        item = _Work(ids=ids, names=names, event_times=[when] if when is not None else [])
        now = time.monotonic()
        while self._recent_events and self._recent_events[0][0] < now - 60:
            self._recent_events.popleft()
        if not ids and not names:
            if event.get("Action") in _HARMLESS_ACTIONS:
                return
            item.everything = True
        keys = None if item.everything else ids | {_name_key(n) for n in names}
        self._recent_events.append((now, keys))
        work.put_nowait(item)

    async def _apply(self, work: asyncio.Queue[_Work | _StreamEnded]) -> None:
        """The applier: one refresh at a time, coalescing what queued up meanwhile."""
        interval = self._settings.reconcile_interval_seconds
        next_reconcile = time.monotonic() + interval
        while not self._stopping:
            try:
                async with asyncio.timeout(max(next_reconcile - time.monotonic(), 0)):
                    item = await work.get()
            except TimeoutError:
                started = time.monotonic() - 5
                changes = await self._relist()
                self._observer.index_resynced()
                self._count_corrections_later(changes, started)
                next_reconcile = time.monotonic() + interval
                continue
            if isinstance(item, _StreamEnded):
                return
            while not work.empty():
                more = work.get_nowait()
                if isinstance(more, _StreamEnded):
                    work.put_nowait(more)  # after this refresh
                    break
                item.merge(more)
            try:
                if item.everything:
                    await self._relist()
                elif item.ids or item.names:
                    await self._refresh(item.ids, item.names)
                    self._settle_names_later(work)
                if item.settled is not None and not item.everything:
                    unexplained = self._adopt_listed_names(*item.settled)
                    # A disagreement a refresh did not end is left to the reconcile.
                    if unexplained and unexplained != self._unexplained:
                        await self._refresh(unexplained, set())
                        self._settle_names_later(work)  # the names of what it added
                    self._unexplained = unexplained
            except BaseException as error:
                # Not live before a waiting write returns: its reads go to the Engine.
                self._set_state(IndexState.RESYNCING, f"a refresh failed: {error}")
                _release(item)
                raise
            now = self._clock()
            for when in item.event_times:
                self._observer.index_lag(max(now - when, 0.0))
            if item.event_times:
                self._observer.index_events_applied(len(item.event_times))
            _release(item)

    def _settle_names_later(self, work: asyncio.Queue[_Work | _StreamEnded]) -> None:
        """On the containerd image store and Podman, an image's list names are not its
        inspect document's (their lists show fewer repo digests): a full list, shortly
        after the last targeted refresh, makes them the Engine's own again. The classic
        store lists exactly the inspect document's names."""
        if image_store(self.entries()) is Store.CLASSIC:
            return
        if self._settle_handle is not None:
            self._settle_handle.cancel()
        self._settle_handle = asyncio.get_running_loop().call_later(
            self._settings.names_settle_seconds, self._start_settling, work
        )

    def _start_settling(self, work: asyncio.Queue[_Work | _StreamEnded]) -> None:
        if self._stopping or self._work is not work:
            return  # that session is over: the next one lists anyway
        if self._settling is not None and not self._settling.done():
            self._settle_names_later(work)  # once this one is done
            return
        self._settling = asyncio.create_task(self._settle_names(work), name="image-index-names")

    async def _settle_names(self, work: asyncio.Queue[_Work | _StreamEnded]) -> None:
        """A full list beside the applier (on the containerd store it takes seconds at a
        few hundred images, which events must not wait for); the applier adopts it in
        order with the events (`_adopt_listed_names`)."""
        since = self._versions
        try:
            summaries = await self._call(self._engine.list_images, all=True, filters={})
        except ImageServiceError as error:
            # The event stream fails too when the Engine is gone; its re-list settles.
            log.info(
                "the names-settling list failed: %s", error, extra={"reason": str(error.reason)}
            )
            return
        listed = {documents.image_id(s.get("Id")): s for s in summaries}
        if self._work is work:
            work.put_nowait(_Work(settled=(since, listed)))

    def _adopt_listed_names(self, since: int, listed: dict[str, JsonDocument]) -> set[str]:
        """Takes the listed summary of every image no refresh changed since the list
        began (a later refresh knows better). Returns the images the list and the index
        disagree on the existence of, for a targeted refresh: the list may be older than
        the events applied since, and the daemon announces some changes with no event (an
        untagged build's images on the containerd store)."""
        for image_id, summary in listed.items():
            slot = self._slots.get(image_id)
            if slot is not None and slot.version <= since:
                self._put(image_id, summary)
        unknown = {image_id for image_id in listed if image_id not in self._slots}
        unlisted = {
            image_id
            for image_id, slot in self._slots.items()
            if image_id not in listed and slot.version <= since
        }
        return unknown | unlisted

    def _count_corrections_later(self, changes: list[tuple[str, set[str]]], since: float) -> None:
        """Counts after a grace for the explaining events, without holding up the applier."""
        if changes:
            task = asyncio.create_task(self._count_corrections(changes, since))
            self._counting.add(task)
            task.add_done_callback(self._counting.discard)

    async def _count_corrections(self, changes: list[tuple[str, set[str]]], since: float) -> None:
        """Counts the changes of a re-list that no event received from `since` (monotonic
        time, a little before the list) to a short grace after it explains."""
        if not changes:
            return
        await asyncio.sleep(self._settings.explain_grace_seconds)
        explaining: set[str] = set()
        for received_at, keys in self._recent_events:
            if received_at >= since:
                if keys is None:
                    return  # an event that names nothing in particular explains anything
                explaining |= keys
        corrected = [image_id for image_id, keys in changes if not keys & explaining]
        if corrected:
            log.warning(
                "image index corrected by a full list",
                extra={"corrections": len(corrected), "images": corrected[:10]},
            )
            self._observer.index_corrected(len(corrected))

    # Engine reads and applying them -----------------------------------------------------

    async def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _relist(self) -> list[tuple[str, set[str]]]:
        """Every image, from one full list: the changes, as (id, keys naming it)."""
        summaries = await self._call(self._engine.list_images, all=True, filters={})
        listed = {documents.image_id(s.get("Id")): s for s in summaries}
        changes: list[tuple[str, set[str]]] = []
        for image_id in [i for i in self._slots if i not in listed]:
            changes.append((image_id, self._keys_of(image_id)))
            self._remove(image_id)
        for image_id, summary in listed.items():
            before = self._keys_of(image_id)
            if self._put(image_id, summary):
                changes.append((image_id, before | self._keys_of(image_id)))
        self._observer.index_images(len(self._slots))
        return changes

    async def _refresh(self, ids: set[str], names: set[str]) -> None:
        """Re-reads the named images from the Engine: the image each name finds now, the
        images that held it before, and each id (gone when the Engine no longer has it).

        An image the index knows keeps its summary but for its names, which come from its
        inspect document (the rest of a summary never changes for an image id); only an
        image new to the index costs a list, filtered by one of its names."""
        ids = set(ids)
        documents_of: dict[str, JsonDocument] = {}
        for name in sorted(names):
            key = _reference_key(name)
            if key is not None:
                ids |= self._by_name.get(key, set())
            with contextlib.suppress(NotFoundError):
                found = await self._call(self._engine.inspect_image, name)
                found_id = documents.image_id(found.get("Id"))
                documents_of[found_id] = found
                ids.add(found_id)
        listed: dict[str, JsonDocument] = {}
        listed_names: set[str] = set()
        dangling_listed = False
        gone: set[str] = set()
        current: dict[str, JsonDocument] = {}
        pending = sorted(ids)
        seen = set(pending)
        while pending:
            image_id = pending.pop()
            document = documents_of.get(image_id)
            if document is None:
                try:
                    document = await self._call(self._engine.inspect_image, image_id)
                except NotFoundError:
                    gone.add(image_id)
                    # Its untagged parents may have gone with it: the containerd store
                    # sends an event for the image removed, none for them.
                    slot = self._slots.get(image_id)
                    parent = slot.entry.image.parent if slot is not None else ""
                    if parent in self._slots and parent not in seen:
                        seen.add(parent)
                        pending.append(parent)
                    continue
            image = documents.image_from_inspect(document)
            known = self._slots.get(image_id)
            if known is not None:
                current[image_id] = _with_names(known.entry.summary, document)
                continue
            names_now = [*image.repo_tags, *image.repo_digests]
            if names_now and names_now[0] not in listed_names:
                listed_names.add(names_now[0])
                for summary in await self._call(
                    self._engine.list_images, all=True, filters={"reference": [names_now[0]]}
                ):
                    listed[documents.image_id(summary.get("Id"))] = summary
            if image_id not in listed and not dangling_listed:
                dangling_listed = True
                for summary in await self._call(
                    self._engine.list_images, all=True, filters={"dangling": ["true"]}
                ):
                    listed.setdefault(documents.image_id(summary.get("Id")), summary)
            if image_id not in listed:
                # An untagged image with children (a classic build's intermediate image):
                # only a full list shows it as the Engine does.
                await self._relist()
                return
            current[image_id] = _with_names(listed[image_id], document)
            # A new image's parents may be new too (a build's intermediate images make
            # no image events).
            parent = image.parent
            if parent and parent not in self._slots and parent not in seen:
                seen.add(parent)
                pending.append(parent)
        # The containerd store shows an image's parent only while the parent exists:
        # the children of an image that went, or came back, show another ParentId.
        relinked: set[str] = set()
        for image_id in sorted(gone):
            children = {
                child
                for child, slot in self._slots.items()
                if slot.entry.image.parent == image_id and child not in gone
            }
            if children:
                self._orphans[image_id] = children
                while len(self._orphans) > _MAX_ORPHANED_PARENTS:
                    del self._orphans[next(iter(self._orphans))]
            relinked |= children
            self._remove(image_id)
        for image_id, summary in current.items():
            relinked |= self._orphans.pop(image_id, set())
            if not self._put(image_id, summary):
                self._forget_documents(image_id)
        self._observer.index_images(len(self._slots))
        relinked = {i for i in relinked if i in self._slots and i not in current}
        if relinked:
            await self._refresh(relinked, set())

    def _forget_documents(self, image_id: str) -> None:
        """An event named the image: its inspect document may have changed even where its
        summary did not (a tag set again moves its LastTagTime)."""
        slot = self._slots.get(image_id)
        if slot is not None:
            self._versions += 1
            slot.version = self._versions
            slot.inspected = None
            slot.history = None

    def _keys_of(self, image_id: str) -> set[str]:
        slot = self._slots.get(image_id)
        if slot is None:
            return {image_id}
        image = slot.entry.image
        return {image_id, *image.repo_tags, *image.repo_digests}

    def _put(self, image_id: str, summary: JsonDocument) -> bool:
        """Sets an entry from the Engine's summary; True when it changed (published)."""
        previous = self._slots.get(image_id)
        if previous is not None and _comparable(previous.entry.summary) == _comparable(summary):
            return False
        entry = IndexEntry.from_summary(summary)
        if previous is not None:
            self._unindex_names(previous.entry)
        self._versions += 1
        self._generation += 1
        self._slots[image_id] = _Slot(entry, self._versions)
        for name in (*entry.image.repo_tags, *entry.image.repo_digests):
            self._by_name.setdefault(_name_key(name), set()).add(image_id)
        self._sink.publish(previous.entry if previous else None, entry)
        return True

    def _remove(self, image_id: str) -> None:
        previous = self._slots.pop(image_id, None)
        if previous is None:
            return
        self._generation += 1
        self._unindex_names(previous.entry)
        self._sink.publish(previous.entry, None)

    def _unindex_names(self, entry: IndexEntry) -> None:
        for name in (*entry.image.repo_tags, *entry.image.repo_digests):
            key = _name_key(name)
            holders = self._by_name.get(key)
            if holders is not None:
                holders.discard(entry.id)
                if not holders:
                    del self._by_name[key]


def _release(work: _Work) -> None:
    for waiter in work.waiters:
        if not waiter.done():
            waiter.set_result(None)
