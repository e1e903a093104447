"""Python client of imagesvc.v1.ImageService: ImageClient (blocking), AsyncImageClient
(asyncio), the typed errors they raise, and the generated messages in imagesvc_client.v1."""

from imagesvc_client._base import FleetPullOptions
from imagesvc_client._common import RegistryAuth
from imagesvc_client.aio import (
    AsyncBuildOperation,
    AsyncFleetPullOperation,
    AsyncImageClient,
    AsyncPullOperation,
    AsyncPushOperation,
)
from imagesvc_client.build_context import BuildContext, ContextError
from imagesvc_client.client import (
    BuildOperation,
    FleetPullOperation,
    ImageClient,
    PullOperation,
    PushOperation,
)
from imagesvc_client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    ImagesvcError,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from imagesvc_client.operations import AsyncOperation, Operation
from imagesvc_client.watch import WATCH_EXPIRED, AsyncImageWatch, ImageWatch

__all__ = [
    "WATCH_EXPIRED",
    "Aborted",
    "AlreadyExists",
    "AsyncBuildOperation",
    "AsyncFleetPullOperation",
    "AsyncImageClient",
    "AsyncImageWatch",
    "AsyncOperation",
    "AsyncPullOperation",
    "AsyncPushOperation",
    "BuildContext",
    "BuildOperation",
    "Cancelled",
    "ContextError",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FleetPullOperation",
    "FleetPullOptions",
    "ImageClient",
    "ImageWatch",
    "ImagesvcError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "Operation",
    "OutOfRange",
    "PermissionDenied",
    "PullOperation",
    "PushOperation",
    "RegistryAuth",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
]
