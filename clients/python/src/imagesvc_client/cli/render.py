"""Plain output of the CLI: docker-like tables, sizes, ages, and JSON documents."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from google.protobuf.timestamp_pb2 import Timestamp

from imagesvc_client.errors import ImagesvcError

_SI = ("B", "kB", "MB", "GB", "TB", "PB")
# tabwriter.NewWriter(out, 10, 1, 3, ' ', 0) of the docker CLI's table formatter.
_MIN_CELL = 10
_PADDING = 3


def human_size(size: float) -> str:
    """Like the docker CLI (go-units HumanSizeWithPrecision(size, 3)): 1.23MB, 512B."""
    unit = 0
    while size >= 1000 and unit < len(_SI) - 1:
        size /= 1000
        unit += 1
    return f"{size:.3g}{_SI[unit]}"


def human_age(created: Timestamp, now: datetime | None = None) -> str:
    """Like the docker CLI's "CREATED" column: "3 days ago"."""
    if created.seconds == 0 and created.nanos == 0:
        return "N/A"
    now = now or datetime.now(UTC)
    seconds = (now - created.ToDatetime(tzinfo=UTC)).total_seconds()
    return _duration(seconds) + " ago"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)  # Go's int(d.Hours() + 0.5), not round-half-even
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def short_id(image_id: str, *, no_trunc: bool = False) -> str:
    """ "sha256:0123456789ab..." -> "0123456789ab" (the full id with no_trunc)."""
    if no_trunc or not image_id.startswith("sha256:"):
        return image_id
    return image_id.removeprefix("sha256:")[:12]


def split_reference(reference: str) -> tuple[str, str]:
    """ "127.0.0.1:5000/team/app:1.0" -> ("127.0.0.1:5000/team/app", "1.0")."""
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, "<none>"


def print_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], out: TextIO | None = None
) -> None:
    """Aligned columns like the docker CLI's tabwriter (minimum width 10, padding 3)."""
    out = out or sys.stdout
    table = [list(header), *(list(row) for row in rows)]
    widths = [
        max(_MIN_CELL, max(len(row[i]) for row in table) + _PADDING) for i in range(len(header))
    ]
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        out.write("".join(cells).rstrip() + "\n")


def to_json(message: Message) -> dict[str, Any]:
    """A message in the protobuf JSON mapping (lowerCamelCase names, int64 as strings,
    as the REST gateway answers), with every field present."""
    from google.protobuf import json_format  # only the json output needs it

    document: dict[str, Any] = json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True
    )
    return document


def print_json(document: object, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def error_document(error: ImagesvcError) -> dict[str, Any]:
    return {
        "error": {
            "code": error.code.name,
            "message": error.message,
            "reason": error.reason,
            "metadata": error.metadata,
        }
    }
