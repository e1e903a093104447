"""The one table from core error kinds to gRPC status codes (like containerd's errgrpc),
and the rich status (google.rpc.Status with ErrorInfo) every failure carries."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from imagesvc.core.errors import (
    DeadlineExceededError,
    EngineError,
    FailedPreconditionError,
    ImageServiceError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)

ERROR_DOMAIN = "imagesvc"

STATUS_CODES: dict[type[ImageServiceError], grpc.StatusCode] = {
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceededError: grpc.StatusCode.DEADLINE_EXCEEDED,
    InternalError: grpc.StatusCode.INTERNAL,
    EngineError: grpc.StatusCode.UNKNOWN,
    ImageServiceError: grpc.StatusCode.UNKNOWN,
}


def status_code_for(error: ImageServiceError) -> grpc.StatusCode:
    for kind in type(error).__mro__:
        if kind in STATUS_CODES:
            return STATUS_CODES[kind]
    return grpc.StatusCode.UNKNOWN


def rich_status(
    code: grpc.StatusCode,
    message: str,
    info: error_details_pb2.ErrorInfo,
    *more: Message,
) -> bytes:
    """The serialized google.rpc.Status for the grpc-status-details-bin trailer: ErrorInfo
    first, then any further details (RetryInfo)."""
    details = []
    for message_detail in (info, *more):
        detail = any_pb2.Any()
        detail.Pack(message_detail)
        details.append(detail)
    numeric = code.value[0]
    assert numeric in code_pb2.Code.values()
    status = status_pb2.Status(code=numeric, message=message, details=details)
    serialized: bytes = status.SerializeToString()
    return serialized


def error_status(error: ImageServiceError) -> tuple[grpc.StatusCode, str, bytes]:
    """Code, message and serialized rich status for a core error."""
    code = status_code_for(error)
    info = error_details_pb2.ErrorInfo(
        reason=str(error.reason), domain=ERROR_DOMAIN, metadata=error.metadata
    )
    more: list[Message] = []
    if error.retry_after_seconds is not None:
        more.append(retry_info(error.retry_after_seconds))
    return code, error.message, rich_status(code, error.message, info, *more)


def retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    """google.rpc.RetryInfo: how long the caller should wait before trying again."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(max(0, round(seconds * 1e9)))
    return error_details_pb2.RetryInfo(retry_delay=delay)
