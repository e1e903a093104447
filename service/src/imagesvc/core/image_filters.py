"""ListImages' filters evaluated in memory, with exactly the Engine's semantics.

STUB: the in-memory evaluation is being written (issue 14). Until then only the
unfiltered list is answered here; `select_images` raises NotImplementedError for
any filter so that callers fall back to the Engine.
"""

from __future__ import annotations

from collections.abc import Iterable

from imagesvc.core.image_entries import IndexEntry
from imagesvc.core.models import ImageFilter


def select_images(
    entries: Iterable[IndexEntry], image_filter: ImageFilter, *, all: bool
) -> list[IndexEntry]:
    """The entries the Engine's `GET /images/json?all=<all>&filters=<image_filter>`
    would list, given every image it has (`entries`, as `?all=1` lists them).
    Order is not significant (the caller sorts)."""
    if image_filter != ImageFilter():
        raise NotImplementedError("filters are not evaluated in memory yet")
    entries = list(entries)
    if all:
        return entries
    parents = {e.image.parent for e in entries if e.image.parent}
    # Without `all`, Docker hides untagged images that are another image's parent
    # (the classic builder's intermediate layers).
    return [e for e in entries if e.image.repo_tags or e.image.repo_digests or e.id not in parents]
