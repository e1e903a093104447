"""One log line with the cause of every call that ends `UNAVAILABLE`, `INTERNAL` or
`UNKNOWN`, on either port: the status alone ("daemon unavailable") does not say why, and
the access line carries only the code. The cause is the exception, its type and message
and its chain (`__cause__`, else `__context__`), with the call's secrets and any URL user
information redacted; for a bug (not a core error), its traceback too."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping

import grpc

from imagesvc.core.errors import ImageServiceError
from imagesvc.core.redaction import call_secrets, redacted_text

log = logging.getLogger("imagesvc.failures")

# The codes that say "something went wrong on our side or the Engine's", not "your request".
LOGGED_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
)
_MAX_CHAIN = 8


def _name(error: BaseException) -> str:
    kind = type(error)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _message(error: BaseException) -> str:
    return error.message if isinstance(error, ImageServiceError) else str(error)


def cause_chain(error: BaseException, secrets: frozenset[str]) -> list[str]:
    """`type: message` of the error and of each exception that led to it, redacted."""
    chain: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(chain) < _MAX_CHAIN:
        seen.add(id(current))
        chain.append(f"{_name(current)}: {redacted_text(_message(current), secrets)}")
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return chain


def log_failure_cause(
    code: grpc.StatusCode,
    error: BaseException,
    *,
    request_id: str,
    bug: bool = False,
    where: Mapping[str, str] | None = None,
) -> None:
    """Logs why a call ends with `code`, if it is one of LOGGED_CODES (once per call: the
    transports call this where they turn the failure into the call's status); `where`:
    the method or route, as in the access line."""
    if code not in LOGGED_CODES:
        return
    secrets = call_secrets()
    chain = cause_chain(error, secrets)
    extra: dict[str, object] = {
        **(where or {}),
        "grpc_code": code.name,
        "error_type": _name(error),
        "error_message": redacted_text(_message(error), secrets),
        "cause_chain": chain,
        "request_id": request_id,
    }
    if isinstance(error, ImageServiceError):
        extra["reason"] = str(error.reason)
    if bug:
        extra["traceback"] = redacted_text("".join(traceback.format_exception(error)), secrets)
    level = logging.WARNING if code is grpc.StatusCode.UNAVAILABLE else logging.ERROR
    log.log(level, "call failed: %s: %s", code.name, " <- ".join(chain), extra=extra)
