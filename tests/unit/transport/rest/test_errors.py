"""gRPC codes to HTTP statuses (grpc-gateway's runtime.HTTPStatusFromCode), and core
errors as the google.rpc.Status gRPC sends for them."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from imagesvc.core.errors import (
    EngineError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    Reason,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from imagesvc.transport.grpc.errors import status_code_for
from imagesvc.transport.rest.errors import HTTP_STATUS, core_error_status, http_status

# Copied by hand from grpc-gateway v2 runtime/errors.go: the table must not drift.
GRPC_GATEWAY = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}


def test_every_grpc_code_maps_like_grpc_gateway() -> None:
    assert {code.name: status for code, status in HTTP_STATUS.items()} == GRPC_GATEWAY
    assert set(HTTP_STATUS) == set(grpc.StatusCode)
    for code in grpc.StatusCode:
        assert http_status(code.value[0]) == GRPC_GATEWAY[code.name]
    assert http_status(99) == 500


def test_core_errors_become_the_status_grpc_sends() -> None:
    cases = [
        (NotFoundError("No such image: x"), 404),
        (InvalidArgumentError("bad", reason=Reason.INVALID_REFERENCE), 400),
        (UnauthenticatedError("registry said no"), 401),
        (PermissionDeniedError("denied"), 403),
        (FailedPreconditionError("in use"), 400),
        (ResourceExhaustedError("too big"), 429),
        (UnavailableError("daemon down"), 503),
        (EngineError("odd"), 500),
    ]
    for error, expected in cases:
        status = core_error_status(error)
        assert status.code == status_code_for(error).value[0]
        assert status.message == error.message
        assert http_status(status.code) == expected
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info)
        assert (info.domain, info.reason) == ("imagesvc", str(error.reason))
