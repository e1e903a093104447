"""AsyncImageClient: the asyncio client, with the surface of ImageClient.

    async with AsyncImageClient("127.0.0.1:50051") as client:
        async for image in client.list():
            print(image.id)
        pull = client.pull("127.0.0.1:5000/team/app:1.0")
        async for progress in pull:
            ...
        print(pull.result.image_id)

Reading a build context from disk happens in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc

from imagesvc_client._common import (
    DEFAULT_ADDRESS,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_TIMEOUT,
    AuthLike,
    Connection,
    PemSource,
    auth_proto,
    build_options,
    list_request,
    prune_request,
    split_build,
    split_pull,
    split_push,
)
from imagesvc_client.client import ContextSource, context_chunks
from imagesvc_client.errors import error_from_rpc
from imagesvc_client.operations import AsyncOperation
from imagesvc_client.v1 import image_pb2, image_service_pb2_grpc
from imagesvc_client.v1 import image_service_pb2 as pb

__all__ = [
    "AsyncBuildOperation",
    "AsyncImageClient",
    "AsyncPullOperation",
    "AsyncPushOperation",
]

T = TypeVar("T")

AsyncPullOperation = AsyncOperation[image_pb2.TransferProgress, pb.PullImageResult]
AsyncPushOperation = AsyncOperation[image_pb2.TransferProgress, pb.PushImageResult]
AsyncBuildOperation = AsyncOperation[str, pb.BuildImageResult]

_END = object()


class _AsyncBuildRequests:
    """The BuildImage request stream, reading the context in a worker thread."""

    def __init__(self, options: pb.BuildOptions, chunks: Iterator[bytes]) -> None:
        self._options = options
        self._chunks = chunks
        self.error: Exception | None = None

    async def __aiter__(self) -> AsyncIterator[pb.BuildImageRequest]:
        yield pb.BuildImageRequest(options=self._options)
        try:
            while True:
                chunk = await asyncio.to_thread(next, self._chunks, _END)
                if chunk is _END:
                    return
                assert isinstance(chunk, bytes)
                yield pb.BuildImageRequest(context_chunk=chunk)
        except Exception as error:
            self.error = error
            raise


class AsyncImageClient:
    """The asyncio twin of ImageClient (same arguments, same methods, awaitable).
    Create it inside the event loop that uses it."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        tls: bool = False,
        root_certificates: PemSource | None = None,
        client_certificate: PemSource | None = None,
        client_key: PemSource | None = None,
        server_name: str | None = None,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self._connection = Connection.make(
            address,
            tls=tls,
            root_certificates=root_certificates,
            client_certificate=client_certificate,
            client_key=client_key,
            server_name=server_name,
            token=token,
        )
        self.timeout = timeout
        connection = self._connection
        self._channel = (
            grpc.aio.secure_channel(address, connection.credentials(), options=connection.options())
            if connection.tls
            else grpc.aio.insecure_channel(address, options=connection.options())
        )
        self._stub = image_service_pb2_grpc.ImageServiceStub(self._channel)
        self._metadata = connection.metadata()

    @property
    def address(self) -> str:
        return self._connection.address

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

    def __repr__(self) -> str:
        return f"AsyncImageClient({self.address!r})"

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
        references, labels = list(references), list(labels)
        token = ""
        while True:
            request = list_request(
                references=references,
                labels=labels,
                dangling=dangling,
                before=before,
                since=since,
                all=all,
                page_size=page_size,
                page_token=token,
            )
            page: pb.ListImagesResponse = await self._unary(self._stub.ListImages, request, timeout)
            for image in page.images:
                yield image
            token = page.next_page_token
            if not token:
                return

    async def get(self, image: str, *, timeout: float | None = None) -> image_pb2.Image:
        reply: pb.GetImageResponse = await self._unary(
            self._stub.GetImage, pb.GetImageRequest(image=image), timeout
        )
        return reply.image

    async def history(
        self, image: str, *, timeout: float | None = None
    ) -> builtins.list[image_pb2.HistoryEntry]:
        reply: pb.GetImageHistoryResponse = await self._unary(
            self._stub.GetImageHistory, pb.GetImageHistoryRequest(image=image), timeout
        )
        return list(reply.entries)

    async def tag(
        self, source: str, target: str, *, timeout: float | None = None
    ) -> pb.TagImageResponse:
        reply: pb.TagImageResponse = await self._unary(
            self._stub.TagImage, pb.TagImageRequest(source=source, target=target), timeout
        )
        return reply

    async def remove(
        self,
        image: str,
        *,
        force: bool = False,
        no_prune: bool = False,
        timeout: float | None = None,
    ) -> pb.RemoveImageResponse:
        request = pb.RemoveImageRequest(image=image, force=force, no_prune=no_prune)
        reply: pb.RemoveImageResponse = await self._unary(self._stub.RemoveImage, request, timeout)
        return reply

    async def prune(
        self,
        *,
        all: bool = False,
        labels: Iterable[str] = (),
        exclude_labels: Iterable[str] = (),
        until: datetime | None = None,
        timeout: float | None = None,
    ) -> pb.PruneImagesResponse:
        request = prune_request(all=all, labels=labels, exclude_labels=exclude_labels, until=until)
        reply: pb.PruneImagesResponse = await self._unary(self._stub.PruneImages, request, timeout)
        return reply

    # Registries ---------------------------------------------------------------------

    async def check_auth(
        self, auth: AuthLike, *, timeout: float | None = None
    ) -> pb.CheckRegistryAuthResponse:
        request = pb.CheckRegistryAuthRequest(auth=auth_proto(auth))
        reply: pb.CheckRegistryAuthResponse = await self._unary(
            self._stub.CheckRegistryAuth, request, timeout
        )
        return reply

    def pull(
        self,
        reference: str,
        *,
        platform: str = "",
        auth: AuthLike | None = None,
        timeout: float | None = None,
    ) -> AsyncPullOperation:
        """Starts a pull: ``async for`` the progress, then read ``.result``."""
        request = pb.PullImageRequest(reference=reference, platform=platform, auth=auth_proto(auth))
        call = self._stub.PullImage(request, timeout=timeout, metadata=self._metadata)
        return AsyncOperation("pull", call, _responses(call), split_pull)

    def push(
        self, reference: str, *, auth: AuthLike | None = None, timeout: float | None = None
    ) -> AsyncPushOperation:
        """Starts a push: ``async for`` the progress, then read ``.result``."""
        request = pb.PushImageRequest(reference=reference, auth=auth_proto(auth))
        call = self._stub.PushImage(request, timeout=timeout, metadata=self._metadata)
        return AsyncOperation("push", call, _responses(call), split_push)

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
        dockerfile_name, chunks = context_chunks(context, dockerfile, chunk_size)
        options = build_options(
            tags=tags,
            dockerfile=dockerfile_name,
            build_args=build_args,
            labels=labels,
            target=target,
            no_cache=no_cache,
            pull=pull,
            platform=platform,
            network_mode=network_mode,
            registry_auths=registry_auths,
        )
        requests = _AsyncBuildRequests(options, chunks)
        call = self._stub.BuildImage(requests.__aiter__(), timeout=timeout, metadata=self._metadata)
        return AsyncOperation(
            "build", call, _responses(call), split_build, local_error=lambda: requests.error
        )

    # --------------------------------------------------------------------------------

    async def _unary(
        self, method: Callable[..., Awaitable[Any]], request: object, timeout: float | None
    ) -> Any:
        try:
            return await method(
                request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error


async def _responses(call: Any) -> AsyncIterator[Any]:
    async for response in call:
        yield response
