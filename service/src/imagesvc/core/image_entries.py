"""What the live image index holds per image, and whom it tells about changes.

Shared by the index (core/image_index.py), the in-memory filters
(core/image_filters.py) and the change feed behind WatchImages
(core/image_changes.py), so that none of them imports another's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from imagesvc.core import documents
from imagesvc.core.models import Image
from imagesvc.core.port import JsonDocument


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One image as the Engine's `GET /images/json?all=1` lists it.

    `summary` is the Engine's own document (never mutated; filters read its
    RepoTags, RepoDigests, Labels, Created and ParentId), `image` the same converted
    once, so that reads convert nothing.
    """

    summary: JsonDocument
    image: Image

    @classmethod
    def from_summary(cls, summary: JsonDocument) -> IndexEntry:
        return cls(summary=summary, image=documents.image_from_summary(summary))

    @property
    def id(self) -> str:
        return self.image.id


class ChangeSink(Protocol):
    """Told of every change the index applies, in the order it applies them, on the
    event loop. `previous` is None for an added image, `current` None for a deleted
    one; the index calls it only when the entry really changed."""

    def publish(self, previous: IndexEntry | None, current: IndexEntry | None) -> None: ...


class ChangeSinks:
    """Several sinks behind the index's one (WatchImages' change log, kept images), each
    told every change in order. Sinks may be added until the index runs."""

    def __init__(self, *sinks: ChangeSink) -> None:
        self._sinks = list(sinks)

    def add(self, sink: ChangeSink) -> None:
        self._sinks.append(sink)

    def publish(self, previous: IndexEntry | None, current: IndexEntry | None) -> None:
        for sink in self._sinks:
            sink.publish(previous, current)
