"""Error kinds of the core, independent of any transport (like containerd's errdefs).

Each error carries a machine-readable reason (sent as google.rpc.ErrorInfo.reason)
and a message a person can act on. Transports map the kinds to their own codes in
one table each; nothing else decides status codes.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    IMAGE_NOT_FOUND = "IMAGE_NOT_FOUND"
    INVALID_REFERENCE = "INVALID_REFERENCE"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"  # noqa: S105 (a reason, not a secret)
    INVALID_BUILD_OPTIONS = "INVALID_BUILD_OPTIONS"
    INVALID_BUILD_CONTEXT = "INVALID_BUILD_CONTEXT"
    BUILD_CONTEXT_TOO_LARGE = "BUILD_CONTEXT_TOO_LARGE"
    # ImportImages: an archive refused as a build context would be (INVALID_ARGUMENT), or
    # over the import size limit (RESOURCE_EXHAUSTED).
    INVALID_IMAGE_ARCHIVE = "INVALID_IMAGE_ARCHIVE"
    IMAGE_ARCHIVE_TOO_LARGE = "IMAGE_ARCHIVE_TOO_LARGE"
    BUILD_FAILED = "BUILD_FAILED"
    # The build ran longer than the server's build time limit and was stopped.
    BUILD_TIMEOUT = "BUILD_TIMEOUT"
    # A pull or push moved nothing for the transfer stall timeout and was stopped.
    TRANSFER_STALLED = "TRANSFER_STALLED"
    # Registry policy and build restrictions (PERMISSION_DENIED): a reference outside the
    # pull or tag/push allowlist, a base image the policy cannot determine, a build option
    # or build argument the server does not allow.
    REGISTRY_NOT_ALLOWED = "REGISTRY_NOT_ALLOWED"
    BASE_IMAGE_UNRESOLVED = "BASE_IMAGE_UNRESOLVED"
    BUILD_OPTION_NOT_ALLOWED = "BUILD_OPTION_NOT_ALLOWED"
    # Limits (RESOURCE_EXHAUSTED, with a retry delay): the caller's rate limit, or the
    # server's maximum of concurrent pulls, pushes or builds.
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    CONCURRENCY_LIMIT = "CONCURRENCY_LIMIT"
    # A request (a REST JSON body, one message of a JSON stream) over the message limit.
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    # The server's disk where build contexts are spooled is full (RESOURCE_EXHAUSTED).
    SPOOL_FULL = "SPOOL_FULL"
    # The Docker daemon's own disk (its data root) is full (RESOURCE_EXHAUSTED): a pull,
    # build or push that writes there fails until an operator frees space.
    DAEMON_DISK_FULL = "DAEMON_DISK_FULL"
    # The caller of this service: no valid credentials / its roles lack the RPC.
    CALLER_UNAUTHENTICATED = "CALLER_UNAUTHENTICATED"
    CALLER_PERMISSION_DENIED = "CALLER_PERMISSION_DENIED"
    REGISTRY_UNAUTHENTICATED = "REGISTRY_UNAUTHENTICATED"
    REGISTRY_DENIED = "REGISTRY_DENIED"
    REGISTRY_UNAVAILABLE = "REGISTRY_UNAVAILABLE"
    IMAGE_IN_USE = "IMAGE_IN_USE"
    # PruneImages (FAILED_PRECONDITION): it could remove a kept image (--keep-images-file)
    IMAGE_KEPT = "IMAGE_KEPT"
    CONFLICT = "CONFLICT"
    # WatchImages (FAILED_PRECONDITION): the resume token is from another server or index
    # generation, or older than the changes kept, or the watcher fell that far behind;
    # the client lists again (Kubernetes' 410 Gone).
    WATCH_EXPIRED = "WATCH_EXPIRED"
    # WatchImages (UNAVAILABLE): the live image index it reads is not running or not in
    # step with the Engine now; retry later.
    WATCH_UNAVAILABLE = "WATCH_UNAVAILABLE"
    DAEMON_UNAVAILABLE = "DAEMON_UNAVAILABLE"
    DAEMON_TIMEOUT = "DAEMON_TIMEOUT"
    # The server is draining before it stops (UNAVAILABLE): retry, e.g. on another replica.
    SHUTTING_DOWN = "SHUTTING_DOWN"
    ENGINE_ERROR = "ENGINE_ERROR"
    INTERNAL = "INTERNAL"


class ImageServiceError(Exception):
    """Base of every error the core reports to a caller."""

    default_reason = Reason.ENGINE_ERROR

    def __init__(
        self,
        message: str,
        *,
        reason: Reason | None = None,
        metadata: dict[str, str] | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})
        # When set, the caller may try again after this long (google.rpc.RetryInfo).
        self.retry_after_seconds = retry_after_seconds

    def with_message(self, message: str) -> ImageServiceError:
        """The same kind of error with another message (used to redact or add context)."""
        clone = type(self)(
            message,
            reason=self.reason,
            metadata=self.metadata,
            retry_after_seconds=self.retry_after_seconds,
        )
        clone.__cause__ = self.__cause__
        return clone


class NotFoundError(ImageServiceError):
    default_reason = Reason.IMAGE_NOT_FOUND


class InvalidArgumentError(ImageServiceError):
    default_reason = Reason.INVALID_ARGUMENT


class UnauthenticatedError(ImageServiceError):
    default_reason = Reason.REGISTRY_UNAUTHENTICATED


class PermissionDeniedError(ImageServiceError):
    default_reason = Reason.REGISTRY_DENIED


class FailedPreconditionError(ImageServiceError):
    default_reason = Reason.IMAGE_IN_USE


class ResourceExhaustedError(ImageServiceError):
    default_reason = Reason.BUILD_CONTEXT_TOO_LARGE


class UnavailableError(ImageServiceError):
    default_reason = Reason.DAEMON_UNAVAILABLE


class DeadlineExceededError(ImageServiceError):
    default_reason = Reason.DAEMON_TIMEOUT


class InternalError(ImageServiceError):
    """A bug in this service; the message says no more than that."""

    default_reason = Reason.INTERNAL


class EngineError(ImageServiceError):
    """The Engine failed in a way no other kind describes."""

    default_reason = Reason.ENGINE_ERROR
