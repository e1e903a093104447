"""The change feed behind WatchImages: the live index's changes, numbered, kept in a
bounded ring, and delivered to each watcher through its filter.

Like a Kubernetes watch: a watcher may first get every matching image (ADDED), then a
`Live` marker, then each change as it is applied; every change carries a resume token
(this log's generation and the change's sequence number), and a watch resumed from one
gets exactly the changes after it. A token this log cannot resume from (another
generation: the server restarted or its index was rebuilt; or older than the ring) is
refused with WATCH_EXPIRED, and so is a watcher that falls behind by more than the ring:
the client lists again, never silently misses a change.

Per-watcher filter transitions are stateless, from each change's previous and current
entry: matched before and after -> UPDATED; only after -> ADDED; only before, or
deleted -> DELETED carrying the image as it last matched (as Kubernetes' watch cache
does when an object leaves a selector).

Everything runs on the event loop: the index calls `publish` there, in apply order, and
`watch` takes its snapshot and registers its watcher in one step without an await, so
no change falls between the snapshot and the first live change, or appears in both.
Watchers share the ring and keep only a cursor into it (no per-watcher queue): a slow
watcher costs nothing and never delays the index or another watcher; when the ring has
moved past its cursor it is told WATCH_EXPIRED.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from imagesvc.core import documents
from imagesvc.core.errors import (
    FailedPreconditionError,
    ImageServiceError,
    InvalidArgumentError,
    Reason,
)
from imagesvc.core.image_entries import IndexEntry
from imagesvc.core.image_filters import image_view
from imagesvc.core.models import Image, ImageFilter
from imagesvc.core.paging import sort_key

# Changes kept for resuming and for slow watchers. A change holds two references to
# entries the index keeps anyway, so the ring costs about 100 bytes a slot.
DEFAULT_CAPACITY = 4096

_GENERATION_BYTES = 16
_SEQUENCE_BYTES = 8
_TOKEN_BYTES = _GENERATION_BYTES + _SEQUENCE_BYTES


class ChangeKind(StrEnum):
    ADDED = "ADDED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


class ExpiryCause(StrEnum):
    """Why a watch got WATCH_EXPIRED (the `cause` label of the metric)."""

    # The resume token names another generation (a restart, or the index was rebuilt).
    OTHER_GENERATION = "other_generation"
    # The resume token is older than the oldest change the ring keeps.
    TOKEN_TOO_OLD = "token_too_old"  # noqa: S105 (a cause, not a secret)
    # The watcher read so slowly that the ring moved past what it had not read.
    FELL_BEHIND = "fell_behind"
    # The index started a new generation while the watcher was open.
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class ImageChange:
    """One change as a watcher sees it. `resume_token` is empty for the images of the
    initial snapshot: only the `Live` marker after them is a place to resume from."""

    kind: ChangeKind
    image: Image
    resume_token: str


@dataclass(frozen=True, slots=True)
class Live:
    """The initial images (if asked for) are all sent; changes follow as they happen."""

    resume_token: str


WatchEvent = ImageChange | Live
Snapshot = Callable[[], Iterable[IndexEntry]]
Predicate = Callable[[IndexEntry], bool]


class WatchObserver(Protocol):
    """Told how the feed is used (the server's metrics implement it)."""

    def watchers_open(self, count: int) -> None: ...

    def change_published(self) -> None: ...

    def watch_expired(self, cause: ExpiryCause) -> None: ...


class _NoObserver:
    def watchers_open(self, count: int) -> None:
        pass

    def change_published(self) -> None:
        pass

    def watch_expired(self, cause: ExpiryCause) -> None:
        pass


@dataclass(frozen=True, slots=True)
class _Change:
    sequence: int
    previous: IndexEntry | None
    current: IndexEntry | None


class _Watcher:
    """A watcher's place in the ring: the sequence of the last change it has taken."""

    __slots__ = ("cursor", "ended", "wake")

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor
        self.wake = asyncio.Event()
        self.ended: ImageServiceError | None = None

    def end(self, error: ImageServiceError) -> None:
        if self.ended is None:
            self.ended = error
        self.wake.set()


def _encode_token(generation: bytes, sequence: int) -> str:
    raw = generation + sequence.to_bytes(_SEQUENCE_BYTES, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_token(token: str) -> tuple[bytes, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _TOKEN_BYTES:
        raise InvalidArgumentError(
            "resume_token is not a token this service gave: pass the resume_token of a"
            " WatchImages message unchanged",
            metadata={"field": "resume_token"},
        )
    return raw[:_GENERATION_BYTES], int.from_bytes(raw[_GENERATION_BYTES:], "big")


def _expired(why: str, cause: ExpiryCause) -> FailedPreconditionError:
    return FailedPreconditionError(
        f"{why}: list the images again, then watch from the new state"
        " (send_initial_images, or the resume_token of the new watch)",
        reason=Reason.WATCH_EXPIRED,
        metadata={"cause": str(cause)},
    )


def _newest_first(entry: IndexEntry) -> tuple[int, str]:
    return sort_key(documents.created_unix(entry.summary), entry.id)


class ImageChangeLog:
    """The ChangeSink of the live image index (core/image_entries.py) and the source of
    every WatchImages stream. Use it on the event loop only."""

    def __init__(
        self, *, capacity: int = DEFAULT_CAPACITY, observer: WatchObserver | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError("the change log keeps at least one change")
        self._capacity = capacity
        self._observer: WatchObserver = observer or _NoObserver()
        self._slots: list[_Change | None] = [None] * capacity
        self._generation = os.urandom(_GENERATION_BYTES)
        self._last = 0
        self._watchers: set[_Watcher] = set()
        self._closed: ImageServiceError | None = None

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def last_sequence(self) -> int:
        """The sequence number of the last change published (0: none yet)."""
        return self._last

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def current_token(self) -> str:
        """The resume token of the state after the last change."""
        return _encode_token(self._generation, self._last)

    # The index's side ----------------------------------------------------------------

    def publish(self, previous: IndexEntry | None, current: IndexEntry | None) -> None:
        """Records one applied change and wakes the watchers; never blocks."""
        if previous is None and current is None:
            return
        self._last += 1
        self._slots[self._last % self._capacity] = _Change(self._last, previous, current)
        self._observer.change_published()
        for watcher in self._watchers:
            watcher.wake.set()

    def reset(self, why: str) -> None:
        """Starts a new generation, for when the index cannot vouch that its changes
        continue the ones published so far (e.g. it was rebuilt from scratch): every
        token given so far expires, and so does every open watch."""
        self._generation = os.urandom(_GENERATION_BYTES)
        self._last = 0
        self._slots = [None] * self._capacity
        for watcher in self._watchers:
            if watcher.ended is None:
                self._observer.watch_expired(ExpiryCause.RESET)
            watcher.end(_expired(f"the image index was rebuilt ({why})", ExpiryCause.RESET))

    def close(self, error: ImageServiceError) -> None:
        """Ends every watch with `error` and refuses new ones (the server is stopping)."""
        self._closed = error
        for watcher in self._watchers:
            watcher.end(error)

    # The watchers' side --------------------------------------------------------------

    async def watch(
        self,
        image_filter: ImageFilter,
        *,
        send_initial: bool,
        resume_token: str,
        snapshot: Snapshot,
    ) -> AsyncGenerator[WatchEvent, None]:
        """The images matching `image_filter` (when `send_initial`), a `Live` marker,
        then every matching change; or, from `resume_token`, the marker and every
        change after the token. `snapshot` gives the index's entries as of the last
        change published. The snapshot is taken, and the position fixed, when iteration
        starts. Runs until the caller stops iterating, or raises WATCH_EXPIRED (or the
        error the log was closed with)."""
        if self._closed is not None:
            raise self._closed
        if send_initial and resume_token:
            raise InvalidArgumentError(
                "send_initial_images and resume_token exclude each other: a resumed watch"
                " continues where its token left off",
                metadata={"field": "resume_token"},
            )
        # From here to the registration below nothing awaits: the snapshot, the position
        # and the ring are one consistent state.
        position = self._position(resume_token) if resume_token else self._last
        entries = list(snapshot())
        matches = image_predicate(image_filter, entries)
        initial = sorted(filter(matches, entries), key=_newest_first) if send_initial else []
        generation = self._generation
        watcher = _Watcher(position)
        self._watchers.add(watcher)
        self._observer.watchers_open(len(self._watchers))
        try:
            for entry in initial:
                yield ImageChange(ChangeKind.ADDED, entry.image, "")
            if watcher.ended is None:
                yield Live(_encode_token(generation, position))
            while True:
                if watcher.ended is not None:
                    raise watcher.ended
                if watcher.cursor == self._last:
                    watcher.wake.clear()
                    await watcher.wake.wait()
                    continue
                change = self._next_change(watcher)
                event = _transition(change, matches, _encode_token(generation, change.sequence))
                if event is not None:
                    yield event
        finally:
            self._watchers.discard(watcher)
            self._observer.watchers_open(len(self._watchers))

    def _position(self, token: str) -> int:
        generation, sequence = _decode_token(token)
        if generation != self._generation:
            self._observer.watch_expired(ExpiryCause.OTHER_GENERATION)
            raise _expired(
                "the resume token is from another run of this server's image index (the"
                " server restarted, or the index was rebuilt)",
                ExpiryCause.OTHER_GENERATION,
            )
        if sequence > self._last:
            raise InvalidArgumentError(
                "resume_token is ahead of every change this server has published",
                metadata={"field": "resume_token"},
            )
        if sequence < self._last - self._capacity:
            self._observer.watch_expired(ExpiryCause.TOKEN_TOO_OLD)
            raise _expired(
                f"the resume token is older than the last {self._capacity} changes this"
                " server keeps",
                ExpiryCause.TOKEN_TOO_OLD,
            )
        return sequence

    def _next_change(self, watcher: _Watcher) -> _Change:
        """The change after the watcher's cursor, which it then takes; WATCH_EXPIRED
        when the ring no longer holds it."""
        if watcher.cursor < self._last - self._capacity:
            self._observer.watch_expired(ExpiryCause.FELL_BEHIND)
            error = _expired(
                f"this watch fell more than {self._capacity} changes behind (it was read"
                " too slowly)",
                ExpiryCause.FELL_BEHIND,
            )
            watcher.end(error)
            raise error
        watcher.cursor += 1
        change = self._slots[watcher.cursor % self._capacity]
        assert change is not None
        assert change.sequence == watcher.cursor
        return change


def _transition(change: _Change, matches: Predicate, token: str) -> ImageChange | None:
    was = change.previous is not None and matches(change.previous)
    now = change.current is not None and matches(change.current)
    if now:
        assert change.current is not None
        kind = ChangeKind.UPDATED if was else ChangeKind.ADDED
        return ImageChange(kind, change.current.image, token)
    if was:
        assert change.previous is not None
        return ImageChange(ChangeKind.DELETED, change.previous.image, token)
    return None


def image_predicate(image_filter: ImageFilter, entries: Iterable[IndexEntry]) -> Predicate:
    """Whether an entry matches `image_filter` as ListImages (with `all`) decides it
    (core/image_filters.py), before/since resolved once against `entries`."""
    try:
        view = image_view(image_filter, entries)
    except NotImplementedError as exc:
        raise InvalidArgumentError(
            f"this filter cannot be watched ({exc}): name the before/since image by its full id",
            metadata={"field": "filter"},
        ) from None

    def matches(entry: IndexEntry) -> bool:
        try:
            return view(entry) is not None
        except NotImplementedError:
            # Undecidable from the list's whole seconds (created in the same second as
            # the before/since image): left out, as the proto says.
            return False

    return matches
