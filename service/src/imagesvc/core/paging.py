"""Keyset pagination over one Engine list response.

Images are ordered newest first, ties broken by id. A page token holds the sort key
of the last image returned and a fingerprint of the query, so a page boundary stays
put when images are added or removed between calls, and a token cannot be replayed
against a different filter.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from imagesvc.core.errors import InvalidArgumentError, Reason

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

SortKey = tuple[int, str]


@dataclass(frozen=True, slots=True)
class PageWindow:
    start: int
    stop: int
    next_token: str


def query_fingerprint(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def effective_page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgumentError(
            f"page_size must not be negative, got {page_size}", reason=Reason.INVALID_ARGUMENT
        )
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)


def _encode(key: SortKey, fingerprint: str) -> str:
    raw = json.dumps({"c": key[0], "i": key[1], "q": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(token: str, fingerprint: str) -> SortKey:
    bad = InvalidArgumentError(
        "page_token is not valid for this request: pass the next_page_token of the previous"
        " response, with the same filter and all",
        reason=Reason.INVALID_PAGE_TOKEN,
    )
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        created, image_id, query = data["c"], data["i"], data["q"]
    except (ValueError, KeyError, TypeError) as exc:
        raise bad from exc
    if not isinstance(created, int) or not isinstance(image_id, str) or query != fingerprint:
        raise bad
    return created, image_id


def sort_key(created_unix: int, image_id: str) -> SortKey:
    """Newest first, then by id: ascending order of (-created, id)."""
    return -created_unix, image_id


def page_window(
    keys: Sequence[SortKey], *, page_size: int, page_token: str, fingerprint: str
) -> PageWindow:
    """Where the requested page lies in `keys` (sorted ascending) and the next token."""
    size = effective_page_size(page_size)
    start = 0
    if page_token:
        after = _decode(page_token, fingerprint)
        start = bisect.bisect_right(keys, after)
    stop = min(start + size, len(keys))
    next_token = _encode(keys[stop - 1], fingerprint) if stop < len(keys) else ""
    return PageWindow(start, stop, next_token)
