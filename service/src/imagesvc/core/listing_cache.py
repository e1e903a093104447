"""ListImages answers from the live index, kept while the index stays the same.

Automation polls the same list (an image pre-puller, a dashboard, a reconciler) far
more often than images change. While the index's generation is unchanged, one query
selects the same images in the same order, so the filtered, sorted listing and each
page asked of it are kept and handed out again: a repeated ListImages skips filtering,
sorting and the page token's checks, and the transport reuses the page's wire form
(the same page object comes back). Any change the index applies starts a new
generation and drops everything kept, so no answer outlives the images it shows, and
read-your-writes holds (a write returns once the index shows it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from imagesvc.core.models import Image, ImageFilter, ImagePage
from imagesvc.core.paging import SortKey

K = TypeVar("K")
V = TypeVar("V")

# Queries kept per generation: distinct filters and page tokens beyond this evict the
# oldest, so a caller paging through many tokens cannot grow the cache.
CAPACITY = 64


@dataclass(frozen=True, slots=True)
class Listing:
    """Every image a query lists, sorted, with their sort keys (for paging)."""

    keys: tuple[SortKey, ...]
    images: tuple[Image, ...]


ListingKey = tuple[ImageFilter, bool]  # filter, all
PageKey = tuple[ImageFilter, bool, int, str]  # filter, all, page_size, page_token


class _Bounded(Generic[K, V]):
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        if key not in self._items and len(self._items) >= self._capacity:
            del self._items[next(iter(self._items))]  # the oldest kept
        self._items[key] = value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class ListingCache:
    """Listings and pages of one index generation. Call `at(generation)` first in every
    read: a different generation drops what was kept."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._generation: int | None = None
        self._listings: _Bounded[ListingKey, Listing] = _Bounded(capacity)
        self._pages: _Bounded[PageKey, ImagePage] = _Bounded(capacity)

    def at(self, generation: int) -> None:
        if generation != self._generation:
            self._generation = generation
            self._listings.clear()
            self._pages.clear()

    def listing(self, key: ListingKey) -> Listing | None:
        return self._listings.get(key)

    def keep_listing(self, key: ListingKey, listing: Listing) -> None:
        self._listings.put(key, listing)

    def page(self, key: PageKey) -> ImagePage | None:
        return self._pages.get(key)

    def keep_page(self, key: PageKey, page: ImagePage) -> None:
        self._pages.put(key, page)

    def __len__(self) -> int:
        return len(self._listings) + len(self._pages)
