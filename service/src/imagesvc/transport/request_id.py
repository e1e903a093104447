"""Request ids: taken from the caller's `x-request-id` (gRPC metadata or HTTP header) when
it is a sane token, made up otherwise, returned to the caller and written in its access
line; `current_request_id` holds it while the request runs, for other log lines."""

from __future__ import annotations

import os
import re
from contextvars import ContextVar

REQUEST_ID_KEY = "x-request-id"
# The same id as grpc-gateway carries gRPC metadata over HTTP, both ways.
GATEWAY_REQUEST_ID_HEADER = "grpc-metadata-x-request-id"

# Visible ASCII, no spaces or quotes, at most 128 characters: UUIDs, hex and base64 ids,
# trace ids; nothing that can break a header or a log line.
_VALID = re.compile(r"[A-Za-z0-9._:/+=@~-]{1,128}")

current_request_id: ContextVar[str] = ContextVar("imagesvc_request_id", default="")


def request_id_from(value: str | None) -> str:
    """The caller's id when it is valid, else a new one."""
    if value is not None and _VALID.fullmatch(value):
        return value
    return os.urandom(16).hex()  # as random as a uuid4's hex, without building a UUID
