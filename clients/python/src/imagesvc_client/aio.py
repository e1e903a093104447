"""AsyncImageClient: the asyncio client, with the surface of ImageClient.

    async with AsyncImageClient("127.0.0.1:50051") as client:
        async for image in client.list():
            print(image.id)
        pull = client.pull("127.0.0.1:5000/team/app:1.0")
        async for progress in pull:
            ...
        print(pull.result.image_id)

Reading a build context or an image archive from disk happens in a worker thread, never
on the event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc

from imagesvc_client._base import (
    BUILD_IMAGE_METHOD,
    EXPORT_IMAGES_METHOD,
    IMPORT_IMAGES_METHOD,
    ArchiveSource,
    BaseClient,
    ContextSource,
    FleetPullOptions,
    Stream,
    Unary,
    UploadRequests,
    http_body_data,
    next_page,
)
from imagesvc_client._common import (
    DEFAULT_ARCHIVE_CHUNK_SIZE,
    DEFAULT_CHUNK_SIZE,
    AuthLike,
    Connection,
)
from imagesvc_client._streams import async_messages, rpc_errors
from imagesvc_client.archive import ArchiveDestination, archive_writer
from imagesvc_client.operations import AsyncOperation
from imagesvc_client.v1 import fleet_service_pb2 as fleet_pb
from imagesvc_client.v1 import fleet_service_pb2_grpc, image_pb2, image_service_pb2_grpc
from imagesvc_client.v1 import image_service_pb2 as pb
from imagesvc_client.watch import AsyncImageWatch

__all__ = [
    "AsyncBuildOperation",
    "AsyncFleetPullOperation",
    "AsyncImageClient",
    "AsyncPullOperation",
    "AsyncPushOperation",
]

ResultT = TypeVar("ResultT")
EventT = TypeVar("EventT")

AsyncPullOperation = AsyncOperation[image_pb2.TransferProgress, pb.PullImageResult]
AsyncFleetPullOperation = AsyncOperation[fleet_pb.NodePull, fleet_pb.PullImageOnNodesSummary]
AsyncPushOperation = AsyncOperation[image_pb2.TransferProgress, pb.PushImageResult]
AsyncBuildOperation = AsyncOperation[str, pb.BuildImageResult]
AsyncImportOperation = AsyncOperation[str, pb.ImportImagesResult]


class _AsyncUploadRequests(UploadRequests):
    """A BuildImage or ImportImages request stream (serialized), reading the context or
    archive and making each message in a worker thread."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.first is not None:
            yield self.first
        try:
            while (request := await asyncio.to_thread(self.next_chunk)) is not None:
                yield request
        except Exception as error:
            self.error = error
            raise


class AsyncImageClient(BaseClient):
    """The asyncio twin of ImageClient (same arguments, same methods, awaitable).
    Create it inside the event loop that uses it."""

    def _open(self, connection: Connection) -> None:
        address, options = connection.address, connection.options()
        self._channel = (
            grpc.aio.secure_channel(address, connection.credentials(), options=options)
            if connection.tls
            else grpc.aio.insecure_channel(address, options=options)
        )
        self._stub = image_service_pb2_grpc.ImageServiceStub(self._channel)
        self._fleet_stub = fleet_service_pb2_grpc.FleetServiceStub(self._channel)
        self._build_image: grpc.aio.StreamStreamMultiCallable[bytes, pb.BuildImageResponse] = (
            self._channel.stream_stream(
                BUILD_IMAGE_METHOD, response_deserializer=pb.BuildImageResponse.FromString
            )
        )
        self._import_images: grpc.aio.StreamStreamMultiCallable[bytes, pb.ImportImagesResponse] = (
            self._channel.stream_stream(
                IMPORT_IMAGES_METHOD, response_deserializer=pb.ImportImagesResponse.FromString
            )
        )
        # Without response deserializer: each message as its bytes (http_body_data).
        self._export_images: grpc.aio.UnaryStreamMultiCallable[pb.ExportImagesRequest, bytes] = (
            self._channel.unary_stream(
                EXPORT_IMAGES_METHOD, request_serializer=pb.ExportImagesRequest.SerializeToString
            )
        )

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncImageClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # Local images -------------------------------------------------------------------

    async def list(
        self,
        *,
        references: Iterable[str] = (),
        labels: Iterable[str] = (),
        dangling: bool | None = None,
        before: str = "",
        since: str = "",
        all: bool = False,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[image_pb2.Image]:
        """Every image matching the filter, newest first, fetching page after page."""
        request: pb.ListImagesRequest | None = self._first_page(
            references=references,
            labels=labels,
            dangling=dangling,
            before=before,
            since=since,
            all=all,
            page_size=page_size,
        )
        while request is not None:
            page = await self._call(self._list_page(request), timeout)
            for image in page.images:
                yield image
            request = next_page(request, page)

    def watch(
        self,
        *,
        references: Iterable[str] = (),
        labels: Iterable[str] = (),
        dangling: bool | None = None,
        before: str = "",
        since: str = "",
        send_initial_images: bool = False,
        resume_token: str = "",
        timeout: float | None = None,
    ) -> AsyncImageWatch:
        """Watches the images matching the filter (as ``list`` filters them, intermediate
        images included): with ``send_initial_images`` every one first, then the live
        marker, then each change; or, from ``resume_token``, every change after it. No
        deadline unless ``timeout`` sets one. See imagesvc_client.watch."""
        request = self._watch_request(
            references=references,
            labels=labels,
            dangling=dangling,
            before=before,
            since=since,
            send_initial_images=send_initial_images,
            resume_token=resume_token,
        )
        call = self._stub.WatchImages(request, **self._stream_options(timeout))
        return AsyncImageWatch(call, resume_token)

    async def get(self, image: str, *, timeout: float | None = None) -> image_pb2.Image:
        return await self._call(self._get(image), timeout)

    async def history(
        self, image: str, *, timeout: float | None = None
    ) -> builtins.list[image_pb2.HistoryEntry]:
        return await self._call(self._history(image), timeout)

    async def tag(
        self, source: str, target: str, *, timeout: float | None = None
    ) -> pb.TagImageResponse:
        return await self._call(self._tag(source, target), timeout)

    async def remove(
        self,
        image: str,
        *,
        force: bool = False,
        no_prune: bool = False,
        timeout: float | None = None,
    ) -> pb.RemoveImageResponse:
        return await self._call(self._remove(image, force, no_prune), timeout)

    async def prune(
        self,
        *,
        all: bool = False,
        labels: Iterable[str] = (),
        exclude_labels: Iterable[str] = (),
        until: datetime | None = None,
        timeout: float | None = None,
    ) -> pb.PruneImagesResponse:
        return await self._call(self._prune(all, labels, exclude_labels, until), timeout)

    async def export(
        self,
        images: str | Iterable[str],
        destination: ArchiveDestination,
        *,
        timeout: float | None = None,
    ) -> int:
        """Writes the images (references or ids) as one tar archive, like ``docker
        save``, to ``destination`` (a path, created only once the whole archive arrived,
        or a binary file); returns the bytes written. File writes run in a worker
        thread. No deadline unless ``timeout``."""
        request = self._export_request(images)
        written = 0
        with archive_writer(destination) as file:
            async for chunk in self._export_views(request, timeout):
                await asyncio.to_thread(file.write, chunk)
                written += len(chunk)
        return written

    async def export_chunks(
        self, request: pb.ExportImagesRequest, *, timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """The archive of an ExportImages request, chunk by chunk as it arrives."""
        async with contextlib.aclosing(self._export_views(request, timeout)) as views:
            async for view in views:
                yield bytes(view)

    async def _export_views(
        self, request: pb.ExportImagesRequest, timeout: float | None
    ) -> AsyncGenerator[memoryview, None]:
        """``export_chunks``, each chunk a view into the message it came in."""
        responses = self._export_images(request, **self._stream_options(timeout))
        try:
            async for message in async_messages(responses):
                yield http_body_data(message)
        finally:
            responses.cancel()  # a consumer that stops early stops the export

    async def disk_usage(self, *, timeout: float | None = None) -> pb.GetDiskUsageResponse:
        """The images' disk usage, like ``docker system df -v``: per image its size,
        shared and unique bytes and containers; each layer counted once in the total."""
        return await self._call(self._disk_usage(), timeout)

    # Registries ---------------------------------------------------------------------

    async def check_auth(
        self, auth: AuthLike, *, timeout: float | None = None
    ) -> pb.CheckRegistryAuthResponse:
        return await self._call(self._check_auth(auth), timeout)

    def pull(
        self,
        reference: str,
        *,
        platform: str = "",
        auth: AuthLike | None = None,
        timeout: float | None = None,
    ) -> AsyncPullOperation:
        """Starts a pull: ``async for`` the progress, then read ``.result``."""
        return self._start(self._pull(reference, platform, auth), timeout)

    def push(
        self, reference: str, *, auth: AuthLike | None = None, timeout: float | None = None
    ) -> AsyncPushOperation:
        """Starts a push: ``async for`` the progress, then read ``.result``."""
        return self._start(self._push(reference, auth), timeout)

    def build(
        self,
        context: ContextSource,
        *,
        tags: Iterable[str] = (),
        dockerfile: str | os.PathLike[str] | None = None,
        build_args: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        target: str = "",
        no_cache: bool = False,
        pull: bool = False,
        platform: str = "",
        network_mode: str = "",
        registry_auths: Iterable[AuthLike] = (),
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: float | None = None,
    ) -> AsyncBuildOperation:
        """Starts a build: ``async for`` the output lines, then read ``.result``."""
        plan = self._build(
            context,
            tags=tags,
            dockerfile=dockerfile,
            build_args=build_args,
            labels=labels,
            target=target,
            no_cache=no_cache,
            pull=pull,
            platform=platform,
            network_mode=network_mode,
            registry_auths=registry_auths,
            chunk_size=chunk_size,
        )
        requests = _AsyncUploadRequests(plan.request)
        call = self._build_image(requests.__aiter__(), **self._stream_options(timeout))
        return AsyncOperation(
            "build", call, _responses(call), plan.split, local_error=lambda: requests.error
        )

    # Registry inspection (issue 16) -------------------------------------------------

    async def inspect_registry_image(
        self, reference: str, *, auth: AuthLike | None = None, timeout: float | None = None
    ) -> pb.InspectRegistryImageResponse:
        return await self._call(self._inspect_registry(reference, auth), timeout)

    async def check_image_updates(
        self,
        references: Iterable[str],
        *,
        registry_auths: Iterable[AuthLike] = (),
        timeout: float | None = None,
    ) -> builtins.list[pb.ImageUpdate]:
        return await self._call(self._check_updates(references, registry_auths), timeout)

    def import_images(
        self,
        archive: ArchiveSource,
        *,
        chunk_size: int = DEFAULT_ARCHIVE_CHUNK_SIZE,
        timeout: float | None = None,
    ) -> AsyncImportOperation:
        """Starts loading the images of an archive, like ``docker load``: ``async for``
        the progress lines, then read ``.result.images``."""
        plan = self._import(archive, chunk_size)
        requests = _AsyncUploadRequests(plan.request)
        call = self._import_images(requests.__aiter__(), **self._stream_options(timeout))
        return AsyncOperation(
            "import", call, _responses(call), plan.split, local_error=lambda: requests.error
        )

    # --------------------------------------------------------------------------------

    # The fleet (FleetService; the caller needs the fleet role) ------------------------

    async def list_nodes(self, *, timeout: float | None = None) -> builtins.list[fleet_pb.Node]:
        """Every node the server reaches, itself first (see ImageClient.list_nodes)."""
        return await self._call(self._list_nodes(), timeout)

    async def find_image(
        self, image: str, *, timeout: float | None = None
    ) -> builtins.list[fleet_pb.NodeImage]:
        """Which nodes hold ``image`` (see ImageClient.find_image)."""
        return await self._call(self._find_image(image), timeout)

    async def remove_on_nodes(
        self,
        image: str,
        *,
        force: bool = False,
        no_prune: bool = False,
        nodes: Iterable[str] = (),
        timeout: float | None = None,
    ) -> fleet_pb.ImagesOnNodesSummary:
        """Removes an image on every node (or ``nodes``: names or host:port), as
        ``remove`` does on one: the summary (succeeded, skipped where absent, failed).
        Needs the admin role."""
        return await self._call(self._remove_on_nodes(image, force, no_prune, nodes), timeout)

    async def prune_on_nodes(
        self,
        *,
        all: bool = False,
        labels: Iterable[str] = (),
        exclude_labels: Iterable[str] = (),
        until: datetime | None = None,
        nodes: Iterable[str] = (),
        timeout: float | None = None,
    ) -> fleet_pb.ImagesOnNodesSummary:
        """Prunes images on every node (or ``nodes``), as ``prune`` does on one: the
        summary. Needs the admin role."""
        plan = self._prune_on_nodes(all, labels, exclude_labels, until, nodes)
        return await self._call(plan, timeout)

    def pull_on_nodes(
        self,
        reference: str,
        options: FleetPullOptions | None = None,
        *,
        timeout: float | None = None,
    ) -> AsyncFleetPullOperation:
        """Starts a pull on every node (see ImageClient.pull_on_nodes)."""
        return self._start(self._pull_on_nodes(reference, options or FleetPullOptions()), timeout)

    async def find_image_drift(
        self, image: str, *, auth: AuthLike | None = None, timeout: float | None = None
    ) -> fleet_pb.FindImageResponse:
        """``find_image`` with the registry's current digest and each node's drift (see
        ImageClient.find_image_drift)."""
        return await self._call(self._find_image_drift(image, auth), timeout)

    async def _call(self, plan: Unary[Any, ResultT], timeout: float | None) -> ResultT:
        stub = self._fleet_stub if plan.service == "fleet" else self._stub
        with rpc_errors():
            reply = await getattr(stub, plan.rpc)(plan.request, **self._unary_options(timeout))
        return plan.result(reply)

    def _start(
        self, plan: Stream[Any, EventT, ResultT], timeout: float | None
    ) -> AsyncOperation[EventT, ResultT]:
        stub = self._fleet_stub if plan.service == "fleet" else self._stub
        call = getattr(stub, plan.rpc)(plan.request, **self._stream_options(timeout))
        return AsyncOperation(plan.what, call, _responses(call), plan.split)


async def _responses(call: Any) -> AsyncIterator[Any]:
    async for response in call:
        yield response
