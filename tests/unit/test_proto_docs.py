"""The API's own documentation stays in step with the code: every ErrorInfo reason the
service can send is listed in the ImageService comment of the proto."""

from __future__ import annotations

import re
from pathlib import Path

from imagesvc.core.errors import Reason

PROTO = Path(__file__).parents[2] / "proto" / "imagesvc" / "v1" / "image_service.proto"


def test_every_reason_is_documented_in_the_proto() -> None:
    text = PROTO.read_text()
    start = text.index("// Every failure ends the call")
    comment = text[start : text.index("service ImageService")]
    listed = set(re.findall(r"\b[A-Z][A-Z_]+[A-Z]\b", comment))
    assert {str(reason) for reason in Reason} <= listed
