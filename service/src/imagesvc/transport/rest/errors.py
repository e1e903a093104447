"""Errors on the REST port, as grpc-gateway v2 writes them: a google.rpc.Status as JSON,
with the HTTP status derived from its gRPC code by grpc-gateway's table
(runtime.HTTPStatusFromCode).

Core errors get their gRPC code, message and ErrorInfo from `grpc/errors.py`'s `error_status`,
the one core -> gRPC table; this module only adds the gRPC -> HTTP step.
"""

from __future__ import annotations

import grpc
from google.rpc import status_pb2

from imagesvc.core.errors import ImageServiceError
from imagesvc.transport.grpc.errors import error_status

# grpc-gateway's runtime.HTTPStatusFromCode, code for code.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    # Deliberately not 412 Precondition Failed (grpc-gateway's choice, kept).
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def status_code(code: int) -> grpc.StatusCode:
    """The gRPC code of a numeric one (UNKNOWN if unknown)."""
    return _CODES_BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)


def http_status(code: int) -> int:
    """The HTTP status grpc-gateway answers for a numeric gRPC code (500 if unknown)."""
    known = _CODES_BY_NUMBER.get(code)
    return HTTP_STATUS.get(known, 500) if known is not None else 500


class RestError(Exception):
    """A failure decided by the gateway itself (routing, request decoding), not by the
    core. `http` overrides the status derived from the code, as grpc-gateway's
    HTTPStatusError does for malformed path escapes."""

    def __init__(self, code: grpc.StatusCode, message: str, *, http: int | None = None) -> None:
        super().__init__(message)
        self.status = status_pb2.Status(code=code.value[0], message=message)
        self.http = http if http is not None else HTTP_STATUS[code]


def core_error_status(error: ImageServiceError) -> status_pb2.Status:
    """The google.rpc.Status (with its ErrorInfo) gRPC sends for this core error."""
    _, _, details = error_status(error)
    return status_pb2.Status.FromString(details)


# What grpc-gateway's DefaultRoutingErrorHandler answers when no route matches.
def route_not_found() -> RestError:
    return RestError(grpc.StatusCode.NOT_FOUND, "Not Found")


def method_not_allowed() -> RestError:
    # grpc-gateway maps 405 to UNIMPLEMENTED, which its table turns into HTTP 501.
    return RestError(grpc.StatusCode.UNIMPLEMENTED, "Method Not Allowed")


def malformed_escape(sequence: str) -> RestError:
    # grpc-gateway: status.Convert of a plain error is UNKNOWN; the HTTP status is 400.
    return RestError(
        grpc.StatusCode.UNKNOWN, f"malformed path escape {_go_quote(sequence)}", http=400
    )


def _go_quote(text: str) -> str:
    """strconv.Quote for the ASCII text of an escape sequence."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
