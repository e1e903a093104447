"""imagesvc.v1.ImageService over gRPC: decode, call the core, encode. Errors are raised
as core errors and turned into statuses by the interceptor, in one place."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from imagesvc.core.errors import InvalidArgumentError, Reason
from imagesvc.core.image_core import ImageCore
from imagesvc.core.tar_check import UploadChunk
from imagesvc.transport.grpc import convert
from imagesvc.transport.grpc.chunk_requests import RequestChunk
from imagesvc.transport.grpc.http_body import HttpBodyChunk
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc

# ExportImages' content type, on its first message (as grpc-gateway serves HttpBody).
TAR_CONTENT_TYPE = "application/x-tar"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ImageService"].full_name


def _required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgumentError(f"{field} is required", metadata={"field": field})
    return value


class ImageServiceServicer(image_service_pb2_grpc.ImageServiceServicer):
    def __init__(self, core: ImageCore) -> None:
        self._core = core

    async def ListImages(
        self, request: pb.ListImagesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ListImagesResponse:
        page = await self._core.list_images(
            convert.image_filter(request.filter),
            all=request.all,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return convert.list_images_response(page)

    async def GetImage(
        self, request: pb.GetImageRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetImageResponse:
        image = await self._core.get_image(_required(request.image, "image"))
        return convert.get_image_response(image)

    async def GetImageHistory(
        self, request: pb.GetImageHistoryRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetImageHistoryResponse:
        return convert.history(await self._core.image_history(_required(request.image, "image")))

    async def WatchImages(
        self, request: pb.WatchImagesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[pb.WatchImagesResponse]:
        events = self._core.watch_images(
            convert.image_filter(request.filter),
            send_initial=request.send_initial_images,
            resume_token=request.resume_token,
        )
        async with contextlib.aclosing(events):
            async for event in events:
                yield convert.watch_response(event)

    async def PullImage(
        self, request: pb.PullImageRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[pb.PullImageResponse]:
        items = self._core.pull_image(
            _required(request.reference, "reference"),
            platform=request.platform,
            auth=convert.optional_auth(request.HasField("auth"), request.auth),
        )
        async with contextlib.aclosing(items):
            async for item in items:
                yield convert.pull_response(item)

    async def TagImage(
        self, request: pb.TagImageRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.TagImageResponse:
        result = await self._core.tag_image(
            _required(request.source, "source"), _required(request.target, "target")
        )
        return pb.TagImageResponse(id=result.id, target=result.target)

    async def PushImage(
        self, request: pb.PushImageRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[pb.PushImageResponse]:
        items = self._core.push_image(
            _required(request.reference, "reference"),
            auth=convert.optional_auth(request.HasField("auth"), request.auth),
        )
        async with contextlib.aclosing(items):
            async for item in items:
                yield convert.push_response(item)

    async def BuildImage(
        self,
        request_iterator: AsyncIterator[pb.BuildImageRequest | RequestChunk],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[pb.BuildImageResponse]:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if not isinstance(first, pb.BuildImageRequest) or first.WhichOneof("payload") != "options":
            raise InvalidArgumentError(
                "the first BuildImage message must set options; the context follows in"
                " context_chunk messages",
                reason=Reason.INVALID_BUILD_OPTIONS,
            )

        async def context_chunks() -> AsyncIterator[UploadChunk]:
            async for message in requests:
                if isinstance(message, RequestChunk):
                    yield message.data
                    continue
                if message.WhichOneof("payload") != "context_chunk":
                    raise InvalidArgumentError(
                        "only the first BuildImage message may set options; later ones must"
                        " set context_chunk",
                        reason=Reason.INVALID_BUILD_OPTIONS,
                    )
                yield message.context_chunk

        items = self._core.build_image(convert.build_options(first.options), context_chunks())
        async with contextlib.aclosing(items):
            async for item in items:
                yield convert.build_response(item)

    async def ImportImages(
        self,
        request_iterator: AsyncIterator[pb.ImportImagesRequest | RequestChunk],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[pb.ImportImagesResponse]:
        async def archive_chunks() -> AsyncIterator[UploadChunk]:
            async for message in request_iterator:
                yield message.data if isinstance(message, RequestChunk) else message.archive_chunk

        items = self._core.import_images(archive_chunks())
        async with contextlib.aclosing(items):
            async for item in items:
                yield convert.import_response(item)

    async def RemoveImage(
        self, request: pb.RemoveImageRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.RemoveImageResponse:
        result = await self._core.remove_image(
            _required(request.image, "image"), force=request.force, no_prune=request.no_prune
        )
        return pb.RemoveImageResponse(untagged=result.untagged, deleted=result.deleted)

    async def PruneImages(
        self, request: pb.PruneImagesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.PruneImagesResponse:
        result = await self._core.prune_images(convert.prune_options(request))
        return pb.PruneImagesResponse(
            deleted=result.deleted,
            untagged=result.untagged,
            space_reclaimed_bytes=result.space_reclaimed_bytes,
        )

    async def CheckRegistryAuth(
        self,
        request: pb.CheckRegistryAuthRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> pb.CheckRegistryAuthResponse:
        result = await self._core.check_registry_auth(convert.registry_auth(request.auth))
        return pb.CheckRegistryAuthResponse(
            status=result.status, identity_token=result.identity_token
        )

    # Registry inspection (issue 16) ---------------------------------------------------

    async def InspectRegistryImage(
        self,
        request: pb.InspectRegistryImageRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> pb.InspectRegistryImageResponse:
        found = await self._core.inspect_registry_image(
            _required(request.reference, "reference"),
            auth=convert.optional_auth(request.HasField("auth"), request.auth),
        )
        return convert.registry_image_response(found)

    async def CheckImageUpdates(
        self,
        request: pb.CheckImageUpdatesRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> pb.CheckImageUpdatesResponse:
        updates = await self._core.check_image_updates(
            list(request.references),
            registry_auths=[convert.registry_auth(a) for a in request.registry_auths],
        )
        return convert.image_updates_response(updates)

    # Yields HttpBodyChunk, not HttpBody: the handler's serializer is encode_http_body
    # (http_body.py says why).
    async def ExportImages(
        self, request: pb.ExportImagesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[HttpBodyChunk]:
        chunks = self._core.export_images(list(request.images))
        content_type = TAR_CONTENT_TYPE
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield HttpBodyChunk(chunk, content_type)
                content_type = ""

    async def GetDiskUsage(
        self, request: pb.GetDiskUsageRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetDiskUsageResponse:
        return convert.disk_usage_response(await self._core.disk_usage())
