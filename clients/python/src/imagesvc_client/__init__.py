"""Python client of imagesvc.v1.ImageService: ImageClient (blocking), AsyncImageClient
(asyncio), the typed errors they raise, and the generated messages in imagesvc_client.v1.

The names below are imported on first use (PEP 562), so that importing a part of the
package (imagesvc_client.cli, imagesvc_client.errors) does not load all of it: the
blocking CLI never loads the asyncio client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

# The module defining each exported name (imported above for the type checkers).
_MODULES = {
    "_base": ("FleetPullOptions",),
    "_common": ("RegistryAuth",),
    "aio": (
        "AsyncBuildOperation",
        "AsyncFleetPullOperation",
        "AsyncImageClient",
        "AsyncPullOperation",
        "AsyncPushOperation",
    ),
    "build_context": ("BuildContext", "ContextError"),
    "client": (
        "BuildOperation",
        "FleetPullOperation",
        "ImageClient",
        "PullOperation",
        "PushOperation",
    ),
    "errors": (
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
    ),
    "operations": ("AsyncOperation", "Operation"),
    "watch": ("WATCH_EXPIRED", "AsyncImageWatch", "ImageWatch"),
}
_ORIGINS = {name: module for module, names in _MODULES.items() for name in names}


if not TYPE_CHECKING:  # hidden from type checkers: a misspelt name stays an error there

    def __getattr__(name: str) -> object:
        module = _ORIGINS.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # found directly from now on
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


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
