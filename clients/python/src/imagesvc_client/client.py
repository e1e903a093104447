"""ImageClient: the blocking client of imagesvc.v1.ImageService.

    with ImageClient("127.0.0.1:50051", token=os.environ.get("IMAGESVC_TOKEN")) as client:
        for image in client.list(references=["team/*"]):
            print(image.id, list(image.repo_tags))

Every method raises an ImagesvcError subclass (NotFound, InvalidArgument, ...) when the
call fails; nothing returns an error value.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import IO, TypeVar

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
from imagesvc_client.build_context import BuildContext
from imagesvc_client.errors import error_from_rpc
from imagesvc_client.operations import Operation
from imagesvc_client.v1 import image_pb2, image_service_pb2_grpc
from imagesvc_client.v1 import image_service_pb2 as pb

__all__ = ["BuildOperation", "ContextSource", "ImageClient", "PullOperation", "PushOperation"]

T = TypeVar("T")

PullOperation = Operation[image_pb2.TransferProgress, pb.PullImageResult]
PushOperation = Operation[image_pb2.TransferProgress, pb.PushImageResult]
BuildOperation = Operation[str, pb.BuildImageResult]
# A directory (packed honouring .dockerignore), or a tar archive (plain or gzip) as
# bytes or an open binary file, sent as is.
ContextSource = str | os.PathLike[str] | bytes | IO[bytes]


class _BuildRequests:
    """The BuildImage request stream: the options, then the context in chunks. Keeps an
    error raised while reading the context, so that it is reported instead of the
    cancellation it makes gRPC send."""

    def __init__(self, options: pb.BuildOptions, chunks: Iterator[bytes]) -> None:
        self._options = options
        self._chunks = chunks
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[pb.BuildImageRequest]:
        yield pb.BuildImageRequest(options=self._options)
        try:
            for chunk in self._chunks:
                yield pb.BuildImageRequest(context_chunk=chunk)
        except Exception as error:
            self.error = error
            raise


def context_chunks(
    context: ContextSource, dockerfile: str | os.PathLike[str] | None, chunk_size: int
) -> tuple[str, Iterator[bytes]]:
    """(Dockerfile path inside the context, the context's bytes in chunks)."""
    if isinstance(context, bytes):
        data = context
        return _dockerfile_name(dockerfile), (
            data[i : i + chunk_size] for i in range(0, len(data), chunk_size)
        )
    if isinstance(context, str | os.PathLike):
        prepared = BuildContext.prepare(context, dockerfile)
        return prepared.dockerfile, prepared.chunks(chunk_size)
    source = context
    return _dockerfile_name(dockerfile), iter(lambda: source.read(chunk_size), b"")


def _dockerfile_name(dockerfile: str | os.PathLike[str] | None) -> str:
    return "" if dockerfile is None else os.fspath(dockerfile)


class ImageClient:
    """A connection to imagesvc.

    ``address``: "host:port". TLS: ``tls=True`` (system roots), or ``root_certificates``
    (PEM bytes or a file path; implies TLS); mutual TLS with ``client_certificate`` and
    ``client_key``; ``server_name`` overrides the name checked in the server's
    certificate. ``token`` is sent as ``authorization: Bearer <token>`` with every call
    (None or "" sends none).
    ``timeout`` (seconds) bounds each unary call; pulls, pushes and builds have no
    deadline unless their ``timeout`` argument sets one.
    """

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
            grpc.secure_channel(address, connection.credentials(), options=connection.options())
            if connection.tls
            else grpc.insecure_channel(address, options=connection.options())
        )
        self._stub = image_service_pb2_grpc.ImageServiceStub(self._channel)
        self._metadata = connection.metadata()

    @property
    def address(self) -> str:
        return self._connection.address

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ImageClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ImageClient({self.address!r})"

    # Local images -------------------------------------------------------------------

    def list(
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
    ) -> Iterator[image_pb2.Image]:
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
            page = self._unary(self._stub.ListImages, request, timeout)
            yield from page.images
            token = page.next_page_token
            if not token:
                return

    def get(self, image: str, *, timeout: float | None = None) -> image_pb2.Image:
        """The image (a reference or an id), every field filled, like ``docker image inspect``."""
        return self._unary(self._stub.GetImage, pb.GetImageRequest(image=image), timeout).image

    def history(
        self, image: str, *, timeout: float | None = None
    ) -> builtins.list[image_pb2.HistoryEntry]:
        """The layers of an image, newest first."""
        reply = self._unary(
            self._stub.GetImageHistory, pb.GetImageHistoryRequest(image=image), timeout
        )
        return list(reply.entries)

    def tag(self, source: str, target: str, *, timeout: float | None = None) -> pb.TagImageResponse:
        """Tags ``source`` (a reference or an id) as ``target``; an existing tag moves."""
        return self._unary(
            self._stub.TagImage, pb.TagImageRequest(source=source, target=target), timeout
        )

    def remove(
        self,
        image: str,
        *,
        force: bool = False,
        no_prune: bool = False,
        timeout: float | None = None,
    ) -> pb.RemoveImageResponse:
        """Removes or untags an image, like ``docker image rm``."""
        request = pb.RemoveImageRequest(image=image, force=force, no_prune=no_prune)
        return self._unary(self._stub.RemoveImage, request, timeout)

    def prune(
        self,
        *,
        all: bool = False,
        labels: Iterable[str] = (),
        exclude_labels: Iterable[str] = (),
        until: datetime | None = None,
        timeout: float | None = None,
    ) -> pb.PruneImagesResponse:
        """Removes dangling images, or with ``all`` every unused one."""
        request = prune_request(all=all, labels=labels, exclude_labels=exclude_labels, until=until)
        return self._unary(self._stub.PruneImages, request, timeout)

    # Registries ---------------------------------------------------------------------

    def check_auth(
        self, auth: AuthLike, *, timeout: float | None = None
    ) -> pb.CheckRegistryAuthResponse:
        """Checks credentials with the registry ``auth.server_address``, like ``docker login``."""
        request = pb.CheckRegistryAuthRequest(auth=auth_proto(auth))
        return self._unary(self._stub.CheckRegistryAuth, request, timeout)

    def pull(
        self,
        reference: str,
        *,
        platform: str = "",
        auth: AuthLike | None = None,
        timeout: float | None = None,
    ) -> PullOperation:
        """Starts a pull: iterate the returned operation for progress, then read ``.result``."""
        request = pb.PullImageRequest(reference=reference, platform=platform, auth=auth_proto(auth))
        responses = self._stub.PullImage(request, timeout=timeout, metadata=self._metadata)
        return Operation("pull", responses, split_pull)

    def push(
        self, reference: str, *, auth: AuthLike | None = None, timeout: float | None = None
    ) -> PushOperation:
        """Starts a push: iterate the returned operation for progress, then read ``.result``."""
        request = pb.PushImageRequest(reference=reference, auth=auth_proto(auth))
        responses = self._stub.PushImage(request, timeout=timeout, metadata=self._metadata)
        return Operation("push", responses, split_push)

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
    ) -> BuildOperation:
        """Starts a build: iterate the returned operation for the output lines, then read
        ``.result``. ``context`` is a directory (packed honouring its .dockerignore,
        streamed in ``chunk_size`` pieces), or a tar archive as bytes or a binary file."""
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
        requests = _BuildRequests(options, chunks)
        responses = self._stub.BuildImage(iter(requests), timeout=timeout, metadata=self._metadata)
        return Operation("build", responses, split_build, local_error=lambda: requests.error)

    # --------------------------------------------------------------------------------

    def _unary(self, method: Callable[..., T], request: object, timeout: float | None) -> T:
        try:
            return method(
                request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
