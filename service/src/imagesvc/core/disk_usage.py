"""The images' disk usage from the Engine's `GET /system/df`, in either of its shapes.

- Up to API 1.51 (every Engine this service meets today): `LayersSize` (each layer
  counted once) and `Images`, summaries with `Size`, `SharedSize` and `Containers`. The
  totals are computed as the docker CLI computes them (cli/command/formatter/
  disk_usage.go): active images are those with containers, reclaimable is the layers'
  size minus the unique bytes of the active images.
- API 1.52 and later: `ImagesDiskUsage` with the Engine's own `TotalCount`,
  `ActiveCount`, `TotalSize` and `Reclaimable`, and the summaries under `Items` (asked
  for with `verbose=1`); `LayersSize` and `Images` are gone.

Podman and the containerd image store report a figure they do not know as -1, and
Podman 4 a `LayersSize` of 0 however big its images: such a figure is None here (and
unset on the wire), never a number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagesvc.core import documents
from imagesvc.core.models import DiskUsage, ImageDiskUsage

_NEW_SHAPE_KEY = "ImagesDiskUsage"


def _known(value: object) -> int | None:
    """A figure of the Engine's, or None when it says it does not know (-1) or sent none."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def image_usage(summary: Mapping[str, Any]) -> ImageDiskUsage:
    size = _known(summary.get("Size"))
    if size is None:  # Engines before API 1.44 also send the same figure as VirtualSize
        size = _known(summary.get("VirtualSize")) or 0
    return ImageDiskUsage(
        id=documents.image_id(summary.get("Id")),
        repo_tags=documents.repo_tags(summary.get("RepoTags")),
        created=documents.parse_engine_time(summary.get("Created")),
        size_bytes=size,
        shared_size_bytes=_known(summary.get("SharedSize")),
        containers=_known(summary.get("Containers")),
    )


def _newest_first(images: list[ImageDiskUsage]) -> tuple[ImageDiskUsage, ...]:
    return tuple(
        sorted(
            images,
            key=lambda i: (i.created.timestamp() if i.created else 0.0, i.id),
            reverse=True,
        )
    )


def disk_usage(document: Mapping[str, Any]) -> DiskUsage:
    """The images' disk usage from a `GET /system/df` answer."""
    usage = document.get(_NEW_SHAPE_KEY)
    if isinstance(usage, Mapping):
        items = usage.get("Items") or []
        images = [image_usage(s) for s in items if isinstance(s, Mapping)]
        return DiskUsage(
            images=_newest_first(images),
            image_count=_known(usage.get("TotalCount")) or len(images),
            active_image_count=_known(usage.get("ActiveCount")) or 0,
            total_size_bytes=_known(usage.get("TotalSize")) or 0,
            reclaimable_bytes=_known(usage.get("Reclaimable")) or 0,
        )
    summaries = document.get("Images") or []
    images = [image_usage(s) for s in summaries if isinstance(s, Mapping)]
    active = [i for i in images if i.containers]
    total = _known(document.get("LayersSize"))
    if total == 0 and any(i.size_bytes for i in images):
        total = None  # Podman 4 does not add the layers up: it answers 0
    # The CLI's RECLAIMABLE: an image in use whose shared size is unknown counts nothing.
    in_use = sum(i.unique_size_bytes or 0 for i in active)
    return DiskUsage(
        images=_newest_first(images),
        image_count=len(images),
        active_image_count=len(active),
        total_size_bytes=total,
        reclaimable_bytes=None if total is None else max(total - in_use, 0),
    )
