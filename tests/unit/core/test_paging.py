from __future__ import annotations

import base64
import json

import pytest

from imagesvc.core.errors import InvalidArgumentError, Reason
from imagesvc.core.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    SortKey,
    effective_page_size,
    page_window,
    query_fingerprint,
    sort_key,
)

FP = query_fingerprint({"label": ["a=b"]}, False)


def keys_for(items: list[tuple[int, str]]) -> list[SortKey]:
    return sorted(sort_key(created, image_id) for created, image_id in items)


def walk(keys: list[SortKey], page_size: int, fingerprint: str = FP) -> list[list[SortKey]]:
    pages: list[list[SortKey]] = []
    token = ""
    while True:
        window = page_window(keys, page_size=page_size, page_token=token, fingerprint=fingerprint)
        pages.append(keys[window.start : window.stop])
        token = window.next_token
        if not token:
            return pages
        assert len(pages) <= len(keys) + 1, "paging does not terminate"


def test_sort_key_orders_newest_first_then_by_id() -> None:
    items = [(100, "b"), (300, "a"), (100, "a"), (200, "z")]
    ordered = keys_for(items)
    assert [(-created, image_id) for created, image_id in ordered] == [
        (300, "a"),
        (200, "z"),
        (100, "a"),
        (100, "b"),
    ]


@pytest.mark.parametrize("page_size", [1, 2, 3, 7, 10, 11, 50])
def test_pages_cover_every_item_exactly_once_in_order(page_size: int) -> None:
    keys = keys_for([(1000 - i // 3, f"id{i:03d}") for i in range(10)])
    pages = walk(keys, page_size)
    flattened = [key for page in pages for key in page]
    assert flattened == keys
    assert all(len(page) == page_size for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= page_size
    assert len(pages) == -(-len(keys) // page_size)


def test_single_page_has_no_next_token_and_empty_list_is_one_empty_page() -> None:
    keys = keys_for([(1, "a"), (2, "b")])
    window = page_window(keys, page_size=5, page_token="", fingerprint=FP)
    assert (window.start, window.stop, window.next_token) == (0, 2, "")
    empty = page_window([], page_size=5, page_token="", fingerprint=FP)
    assert (empty.start, empty.stop, empty.next_token) == (0, 0, "")


def test_exact_multiple_ends_without_a_trailing_empty_page() -> None:
    keys = keys_for([(i, f"id{i}") for i in range(4)])
    pages = walk(keys, 2)
    assert [len(page) for page in pages] == [2, 2]


def test_boundary_is_stable_when_a_newer_item_is_inserted_between_pages() -> None:
    before = keys_for([(100 - i, f"id{i}") for i in range(6)])
    first = page_window(before, page_size=3, page_token="", fingerprint=FP)
    seen = before[first.start : first.stop]
    # A new image (newest of all) and one in the second half arrive before page 2.
    after = sorted([*before, sort_key(500, "new"), sort_key(96, "mid")])
    second = page_window(after, page_size=3, page_token=first.next_token, fingerprint=FP)
    rest = after[second.start : second.stop]
    assert not set(seen) & set(rest)
    assert rest == [sort_key(97, "id3"), sort_key(96, "id4"), sort_key(96, "mid")]


def test_boundary_is_stable_when_items_are_removed_between_pages() -> None:
    before = keys_for([(100 - i, f"id{i}") for i in range(6)])
    first = page_window(before, page_size=3, page_token="", fingerprint=FP)
    # The last item of page 1 (the token's key) and the first of page 2 are deleted.
    after = [k for k in before if k not in (sort_key(98, "id2"), sort_key(97, "id3"))]
    second = page_window(after, page_size=3, page_token=first.next_token, fingerprint=FP)
    assert after[second.start : second.stop] == [sort_key(96, "id4"), sort_key(95, "id5")]
    assert second.next_token == ""


def test_ties_on_created_are_split_by_id_without_loss() -> None:
    keys = keys_for([(100, f"id{i}") for i in range(5)])
    pages = walk(keys, 2)
    assert [key for page in pages for key in page] == keys


def test_token_is_bound_to_the_query_fingerprint() -> None:
    keys = keys_for([(i, f"id{i}") for i in range(5)])
    first = page_window(keys, page_size=2, page_token="", fingerprint=FP)
    other = query_fingerprint({"label": ["a=c"]}, False)
    with pytest.raises(InvalidArgumentError) as caught:
        page_window(keys, page_size=2, page_token=first.next_token, fingerprint=other)
    assert caught.value.reason is Reason.INVALID_PAGE_TOKEN
    assert "page_token" in caught.value.message


def test_fingerprint_depends_on_every_part_but_not_dict_order() -> None:
    base = query_fingerprint({"label": ["a"], "dangling": ["true"]}, False)
    assert base == query_fingerprint({"dangling": ["true"], "label": ["a"]}, False)
    assert base != query_fingerprint({"label": ["a"], "dangling": ["true"]}, True)
    assert base != query_fingerprint({"label": ["b"], "dangling": ["true"]}, False)
    assert len(base) == 16


def _token(payload: object) -> str:
    raw = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "garbage!!",
        "x",
        "%%%%",
        "bm90IGpzb24",  # "not json"
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
        _token([1, 2, 3]),
        _token("a string"),
        _token({"c": -5, "i": "id"}),
        _token({"c": "-5", "i": "id", "q": FP}),
        _token({"c": -5, "i": 7, "q": FP}),
        _token({"c": -5, "i": "id", "q": "0" * 16}),
        _token(None),
    ],
)
def test_garbage_or_forged_tokens_are_invalid_page_token(token: str) -> None:
    keys = keys_for([(1, "a")])
    with pytest.raises(InvalidArgumentError) as caught:
        page_window(keys, page_size=10, page_token=token, fingerprint=FP)
    assert caught.value.reason is Reason.INVALID_PAGE_TOKEN


def test_well_formed_token_resumes_after_its_key() -> None:
    keys = keys_for([(3, "a"), (2, "b"), (1, "c")])
    token = _token({"c": -2, "i": "b", "q": FP})
    window = page_window(keys, page_size=10, page_token=token, fingerprint=FP)
    assert keys[window.start : window.stop] == [sort_key(1, "c")]


def test_page_size_defaults_caps_and_rejects_negative() -> None:
    assert effective_page_size(0) == DEFAULT_PAGE_SIZE == 100
    assert effective_page_size(1) == 1
    assert effective_page_size(1000) == 1000
    assert effective_page_size(1001) == MAX_PAGE_SIZE == 1000
    assert effective_page_size(10**9) == 1000
    with pytest.raises(InvalidArgumentError) as caught:
        effective_page_size(-1)
    assert caught.value.reason is Reason.INVALID_ARGUMENT
    assert "-1" in caught.value.message


def test_page_window_applies_default_and_cap() -> None:
    keys = keys_for([(i, f"id{i:05d}") for i in range(1500)])
    default = page_window(keys, page_size=0, page_token="", fingerprint=FP)
    assert default.stop - default.start == 100
    capped = page_window(keys, page_size=5000, page_token="", fingerprint=FP)
    assert capped.stop - capped.start == 1000
    assert capped.next_token
    with pytest.raises(InvalidArgumentError):
        page_window(keys, page_size=-5, page_token="", fingerprint=FP)
