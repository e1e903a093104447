from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from imagesvc.core.errors import PermissionDeniedError, Reason, ResourceExhaustedError
from imagesvc.transport.grpc.errors import error_status


def details(serialized: bytes) -> list[object]:
    status = status_pb2.Status.FromString(serialized)
    unpacked: list[object] = []
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo):
            message = kind()
            if detail.Unpack(message):
                unpacked.append(message)
    return unpacked


def test_resource_exhausted_with_a_delay_carries_retry_info_after_error_info() -> None:
    error = ResourceExhaustedError(
        "too many requests",
        reason=Reason.TOO_MANY_REQUESTS,
        metadata={"caller": "alice"},
        retry_after_seconds=1.25,
    )
    code, message, serialized = error_status(error)
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert message == "too many requests"
    info, retry = details(serialized)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "TOO_MANY_REQUESTS"
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (1, 250_000_000)


def test_errors_without_a_delay_carry_error_info_only() -> None:
    error = PermissionDeniedError("no", reason=Reason.REGISTRY_NOT_ALLOWED)
    code, _, serialized = error_status(error)
    assert code is grpc.StatusCode.PERMISSION_DENIED
    [info] = details(serialized)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "REGISTRY_NOT_ALLOWED"


def test_the_delay_survives_a_redacted_copy() -> None:
    error = ResourceExhaustedError("x", reason=Reason.CONCURRENCY_LIMIT, retry_after_seconds=1.0)
    assert error.with_message("y").retry_after_seconds == 1.0
