"""The exceptions every call raises: one class per gRPC status code, under ImagesvcError.

A failed call carries the server's message and, in the ``grpc-status-details-bin``
trailer, a ``google.rpc.Status`` whose ``google.rpc.ErrorInfo`` names the reason a
program can switch on (``IMAGE_NOT_FOUND``, ``REGISTRY_UNAUTHENTICATED``, ...) and, when
the server asks the caller to back off, a ``google.rpc.RetryInfo``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "ImagesvcError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "error_from_rpc",
]

_DETAILS_KEY = "grpc-status-details-bin"


class ImagesvcError(Exception):
    """A call to imagesvc failed.

    ``code`` is the gRPC status code, ``message`` the server's message, ``reason`` the
    ErrorInfo reason ("" when the server sent none), ``metadata`` the ErrorInfo metadata
    and ``retry_after`` the RetryInfo delay, if any.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.message} ({self.reason})" if self.reason else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class Cancelled(ImagesvcError):
    code = grpc.StatusCode.CANCELLED


class Unknown(ImagesvcError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(ImagesvcError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(ImagesvcError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(ImagesvcError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ImagesvcError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ImagesvcError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ImagesvcError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ImagesvcError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ImagesvcError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(ImagesvcError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(ImagesvcError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ImagesvcError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(ImagesvcError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(ImagesvcError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(ImagesvcError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[ImagesvcError]] = {
    kind.code: kind
    for kind in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}

Metadata = Sequence[tuple[str, str | bytes]]


def error_from_status(
    code: grpc.StatusCode, message: str, trailing_metadata: Metadata | None
) -> ImagesvcError:
    """The exception for a status, with the ErrorInfo and RetryInfo from the trailer."""
    kind = _BY_CODE.get(code, Unknown)
    status = _rich_status(trailing_metadata)
    info = error_details_pb2.ErrorInfo()
    retry = error_details_pb2.RetryInfo()
    has_info = has_retry = False
    if status is not None:
        for detail in status.details:
            if not has_info and detail.Is(info.DESCRIPTOR):
                has_info = detail.Unpack(info)
            elif not has_retry and detail.Is(retry.DESCRIPTOR):
                has_retry = detail.Unpack(retry)
    return kind(
        message,
        reason=info.reason,
        domain=info.domain,
        metadata=dict(info.metadata),
        retry_after=retry.retry_delay.ToTimedelta() if has_retry else None,
    )


def error_from_rpc(error: grpc.RpcError) -> ImagesvcError:
    """The typed exception for a failed call of the sync or the asyncio API."""
    if isinstance(error, grpc.aio.AioRpcError):
        return error_from_status(
            error.code(), error.details() or "", tuple(error.trailing_metadata() or ())
        )
    if isinstance(error, grpc.Call):
        return error_from_status(
            error.code(), error.details() or "", tuple(error.trailing_metadata() or ())
        )
    return Unknown(str(error))


def _rich_status(trailing_metadata: Metadata | None) -> status_pb2.Status | None:
    for key, value in trailing_metadata or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except DecodeError:  # a garbled trailer must not hide the error itself
                return None
            return status
    return None
