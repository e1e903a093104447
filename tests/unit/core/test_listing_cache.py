"""The listing cache: what one index generation keeps, and what a new one drops."""

from __future__ import annotations

from imagesvc.core.listing_cache import Listing, ListingCache
from imagesvc.core.models import ImageFilter, ImagePage

EMPTY = Listing((), ())


def page(token: str) -> ImagePage:
    return ImagePage((), token, 0)


def test_kept_within_a_generation_and_dropped_by_the_next() -> None:
    cache = ListingCache()
    cache.at(1)
    key = (ImageFilter(), False, 0, "")
    kept = page("a")
    cache.keep_page(key, kept)
    cache.keep_listing((ImageFilter(), False), EMPTY)
    cache.at(1)
    assert cache.page(key) is kept
    assert cache.listing((ImageFilter(), False)) is EMPTY
    assert cache.page((ImageFilter(), True, 0, "")) is None  # `all` is part of the query
    cache.at(2)
    assert cache.page(key) is None
    assert cache.listing((ImageFilter(), False)) is None
    assert len(cache) == 0


def test_many_queries_evict_the_oldest() -> None:
    cache = ListingCache(capacity=3)
    cache.at(1)
    pages = {token: page(token) for token in ("a", "b", "c", "d")}
    for token, kept in pages.items():
        cache.keep_page((ImageFilter(), False, 10, token), kept)
    assert cache.page((ImageFilter(), False, 10, "a")) is None
    assert [cache.page((ImageFilter(), False, 10, t)) for t in "bcd"] == [pages[t] for t in "bcd"]
    assert len(cache) == 3
