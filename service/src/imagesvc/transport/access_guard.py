"""Authorization and audit in one place for both transports.

gRPC and the REST gateway call the same servicer, so wrapping it here checks every
ImageService call once, whichever way it arrived: the caller established by the edge
(current_identity, credential_problem) against the role table (core/access.py), before
the wrapped servicer reads anything of the request stream. Every write leaves one audit
record, including refused ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TypeVar

import grpc

from imagesvc.core.access import WRITE_RPCS, authorize
from imagesvc.core.audit import AuditEvent, Value
from imagesvc.core.errors import ImageServiceError, Reason
from imagesvc.core.identity import credential_problem, current_identity, current_origin
from imagesvc.transport.grpc.chunk_requests import RequestChunk
from imagesvc.transport.grpc.errors import status_code_for
from imagesvc.transport.grpc.http_body import HttpBodyChunk
from imagesvc.transport.grpc.servicer import ImageServiceServicer
from imagesvc.v1 import image_service_pb2 as pb

Context = grpc.aio.ServicerContext[object, object]
T = TypeVar("T")

_REFUSALS = frozenset({Reason.CALLER_UNAUTHENTICATED, Reason.CALLER_PERMISSION_DENIED})


@contextlib.asynccontextmanager
async def _guarded(rpc: str, **subject: Value) -> AsyncIterator[AuditEvent]:
    """Authorizes the call, then yields its audit event for the body to add results to;
    for a write, writes the record with the outcome."""
    started = time.monotonic()
    event = AuditEvent(rpc, current_identity.get(), current_origin.get(), dict(subject))
    audited = rpc in WRITE_RPCS
    outcome, code, reason = "ok", "", ""
    try:
        authorize(rpc, event.identity, credential_problem.get())
        yield event
    except ImageServiceError as error:
        code, reason = status_code_for(error).name, str(error.reason)
        outcome = "denied" if error.reason in _REFUSALS else "failed"
        raise
    except (asyncio.CancelledError, GeneratorExit):
        outcome, code = "cancelled", grpc.StatusCode.CANCELLED.name
        raise
    except BaseException:
        outcome, code, reason = "failed", grpc.StatusCode.INTERNAL.name, str(Reason.INTERNAL)
        raise
    finally:
        if audited:
            duration_ms = (time.monotonic() - started) * 1000
            event.write(outcome, code=code, reason=reason, duration_ms=duration_ms)


def _authorize_read(rpc: str) -> None:
    """A read: authorized like any call, never audited, so no audit event to keep."""
    authorize(rpc, current_identity.get(), credential_problem.get())


@contextlib.asynccontextmanager
async def _closing(items: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Closes the wrapped servicer's stream when this one ends early (a cancelled call
    must close the Engine response there too)."""
    try:
        yield items
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


class GuardedServicer(ImageServiceServicer):
    """The servicer both transports use: each RPC authorized, each write audited, then
    delegated to `inner`."""

    def __init__(self, inner: ImageServiceServicer) -> None:
        # Not super().__init__: every RPC is overridden and delegates to `inner`.
        self._inner = inner

    async def ListImages(
        self, request: pb.ListImagesRequest, context: Context
    ) -> pb.ListImagesResponse:
        _authorize_read("ListImages")
        return await self._inner.ListImages(request, context)

    async def GetImage(self, request: pb.GetImageRequest, context: Context) -> pb.GetImageResponse:
        _authorize_read("GetImage")
        return await self._inner.GetImage(request, context)

    async def GetImageHistory(
        self, request: pb.GetImageHistoryRequest, context: Context
    ) -> pb.GetImageHistoryResponse:
        _authorize_read("GetImageHistory")
        return await self._inner.GetImageHistory(request, context)

    async def WatchImages(
        self, request: pb.WatchImagesRequest, context: Context
    ) -> AsyncIterator[pb.WatchImagesResponse]:
        async with _guarded("WatchImages"):
            items = self._inner.WatchImages(request, context)
            async with _closing(items):
                async for item in items:
                    yield item

    async def PullImage(
        self, request: pb.PullImageRequest, context: Context
    ) -> AsyncIterator[pb.PullImageResponse]:
        async with _guarded("PullImage", reference=request.reference) as event:
            items = self._inner.PullImage(request, context)
            async with _closing(items):
                async for item in items:
                    if item.HasField("result"):
                        event.result.update(
                            image_id=item.result.image_id, digest=item.result.digest
                        )
                    yield item

    async def TagImage(self, request: pb.TagImageRequest, context: Context) -> pb.TagImageResponse:
        async with _guarded("TagImage", source=request.source, target=request.target) as event:
            response = await self._inner.TagImage(request, context)
            event.result.update(image_id=response.id)
            return response

    async def PushImage(
        self, request: pb.PushImageRequest, context: Context
    ) -> AsyncIterator[pb.PushImageResponse]:
        async with _guarded("PushImage", reference=request.reference) as event:
            items = self._inner.PushImage(request, context)
            async with _closing(items):
                async for item in items:
                    if item.HasField("result"):
                        event.result.update(digest=item.result.digest)
                    yield item

    async def BuildImage(
        self,
        request_iterator: AsyncIterator[pb.BuildImageRequest | RequestChunk],
        context: Context,
    ) -> AsyncIterator[pb.BuildImageResponse]:
        async with _guarded("BuildImage") as event:

            async def observed() -> AsyncIterator[pb.BuildImageRequest | RequestChunk]:
                # The tags become known when the options message passes by.
                async for message in request_iterator:
                    if (
                        isinstance(message, pb.BuildImageRequest)
                        and message.WhichOneof("payload") == "options"
                        and "tags" not in event.subject
                    ):
                        event.subject["tags"] = list(message.options.tags)
                    yield message

            items = self._inner.BuildImage(observed(), context)
            async with _closing(items):
                async for item in items:
                    if item.HasField("result"):
                        event.result.update(image_id=item.result.image_id)
                    yield item

    async def ImportImages(
        self,
        request_iterator: AsyncIterator[pb.ImportImagesRequest | RequestChunk],
        context: Context,
    ) -> AsyncIterator[pb.ImportImagesResponse]:
        async with _guarded("ImportImages") as event:
            items = self._inner.ImportImages(request_iterator, context)
            async with _closing(items):
                async for item in items:
                    if item.HasField("result"):
                        event.result.update(
                            image_ids=[image.id for image in item.result.images],
                            tags=[tag for image in item.result.images for tag in image.tags],
                        )
                    yield item

    async def RemoveImage(
        self, request: pb.RemoveImageRequest, context: Context
    ) -> pb.RemoveImageResponse:
        async with _guarded("RemoveImage", image=request.image) as event:
            response = await self._inner.RemoveImage(request, context)
            event.result.update(untagged=list(response.untagged), deleted=list(response.deleted))
            return response

    async def PruneImages(
        self, request: pb.PruneImagesRequest, context: Context
    ) -> pb.PruneImagesResponse:
        subject: dict[str, Value] = {"all": str(request.all).lower()}
        if request.labels:
            subject["labels"] = list(request.labels)
        async with _guarded("PruneImages", **subject) as event:
            response = await self._inner.PruneImages(request, context)
            event.result.update(
                deleted=len(response.deleted),
                space_reclaimed_bytes=response.space_reclaimed_bytes,
            )
            return response

    async def CheckRegistryAuth(
        self, request: pb.CheckRegistryAuthRequest, context: Context
    ) -> pb.CheckRegistryAuthResponse:
        # The registry only: never the user name's secrets (password, tokens).
        async with _guarded("CheckRegistryAuth", registry=request.auth.server_address):
            return await self._inner.CheckRegistryAuth(request, context)

    # Registry inspection (issue 16) ---------------------------------------------------

    async def InspectRegistryImage(
        self, request: pb.InspectRegistryImageRequest, context: Context
    ) -> pb.InspectRegistryImageResponse:
        # The reference only: never the credentials' secrets.
        async with _guarded("InspectRegistryImage", reference=request.reference) as event:
            response = await self._inner.InspectRegistryImage(request, context)
            event.result.update(digest=response.digest)
            return response

    async def CheckImageUpdates(
        self, request: pb.CheckImageUpdatesRequest, context: Context
    ) -> pb.CheckImageUpdatesResponse:
        async with _guarded("CheckImageUpdates", references=len(request.references)):
            return await self._inner.CheckImageUpdates(request, context)

    async def ExportImages(
        self, request: pb.ExportImagesRequest, context: Context
    ) -> AsyncIterator[HttpBodyChunk]:
        async with _guarded("ExportImages", images=list(request.images)) as event:
            items = self._inner.ExportImages(request, context)
            sent = 0
            try:
                async with _closing(items):
                    async for item in items:
                        sent += len(item.data)
                        yield item
            finally:
                event.result.update(bytes=sent)

    async def GetDiskUsage(
        self, request: pb.GetDiskUsageRequest, context: Context
    ) -> pb.GetDiskUsageResponse:
        _authorize_read("GetDiskUsage")
        return await self._inner.GetDiskUsage(request, context)
