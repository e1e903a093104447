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
from collections.abc import Iterable, Iterator, Mapping
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
from imagesvc_client._base import context_chunks as context_chunks  # imported from here before
from imagesvc_client._common import (
    DEFAULT_ARCHIVE_CHUNK_SIZE,
    DEFAULT_CHUNK_SIZE,
    AuthLike,
    Connection,
)
from imagesvc_client._streams import messages, rpc_errors
from imagesvc_client.archive import ArchiveDestination, archive_writer
from imagesvc_client.operations import Operation
from imagesvc_client.v1 import fleet_service_pb2 as fleet_pb
from imagesvc_client.v1 import fleet_service_pb2_grpc, image_pb2, image_service_pb2_grpc
from imagesvc_client.v1 import image_service_pb2 as pb
from imagesvc_client.watch import ImageWatch

__all__ = [
    "ArchiveSource",
    "BuildOperation",
    "ContextSource",
    "FleetPullOperation",
    "ImageClient",
    "ImportOperation",
    "PullOperation",
    "PushOperation",
]

ResultT = TypeVar("ResultT")
EventT = TypeVar("EventT")

PullOperation = Operation[image_pb2.TransferProgress, pb.PullImageResult]
FleetPullOperation = Operation[fleet_pb.NodePull, fleet_pb.PullImageOnNodesSummary]
PushOperation = Operation[image_pb2.TransferProgress, pb.PushImageResult]
BuildOperation = Operation[str, pb.BuildImageResult]
ImportOperation = Operation[str, pb.ImportImagesResult]


class _UploadRequests(UploadRequests):
    """A BuildImage or ImportImages request stream (serialized): the build's options,
    then the context or archive in chunks, each read when gRPC asks for the next message."""

    def __iter__(self) -> Iterator[bytes]:
        if self.first is not None:
            yield self.first
        try:
            while (request := self.next_chunk()) is not None:
                yield request
        except Exception as error:
            self.error = error
            raise


class ImageClient(BaseClient):
    """A connection to imagesvc.

    ``address``: "host:port". TLS: ``tls=True`` (system roots), or ``root_certificates``
    (PEM bytes or a file path; implies TLS); mutual TLS with ``client_certificate`` and
    ``client_key``; ``server_name`` overrides the name checked in the server's
    certificate. ``token`` is sent as ``authorization: Bearer <token>`` with every call
    (None or "" sends none).
    ``timeout`` (seconds) bounds each unary call; pulls, pushes and builds have no
    deadline unless their ``timeout`` argument sets one.
    """

    def _open(self, connection: Connection) -> None:
        address, options = connection.address, connection.options()
        self._channel = (
            grpc.secure_channel(address, connection.credentials(), options=options)
            if connection.tls
            else grpc.insecure_channel(address, options=options)
        )
        self._stub = image_service_pb2_grpc.ImageServiceStub(self._channel)
        self._fleet_stub = fleet_service_pb2_grpc.FleetServiceStub(self._channel)
        self._build_image: grpc.StreamStreamMultiCallable[bytes, pb.BuildImageResponse] = (
            self._channel.stream_stream(
                BUILD_IMAGE_METHOD, response_deserializer=pb.BuildImageResponse.FromString
            )
        )
        self._import_images: grpc.StreamStreamMultiCallable[bytes, pb.ImportImagesResponse] = (
            self._channel.stream_stream(
                IMPORT_IMAGES_METHOD, response_deserializer=pb.ImportImagesResponse.FromString
            )
        )
        # Without response deserializer: each message as its bytes (http_body_data).
        self._export_images: grpc.UnaryStreamMultiCallable[pb.ExportImagesRequest, bytes] = (
            self._channel.unary_stream(
                EXPORT_IMAGES_METHOD, request_serializer=pb.ExportImagesRequest.SerializeToString
            )
        )

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
            page = self._call(self._list_page(request), timeout)
            yield from page.images
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
    ) -> ImageWatch:
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
        responses = self._stub.WatchImages(request, **self._stream_options(timeout))
        return ImageWatch(responses, resume_token)

    def get(self, image: str, *, timeout: float | None = None) -> image_pb2.Image:
        """The image (a reference or an id), every field filled, like ``docker image inspect``."""
        return self._call(self._get(image), timeout)

    def history(
        self, image: str, *, timeout: float | None = None
    ) -> builtins.list[image_pb2.HistoryEntry]:
        """The layers of an image, newest first."""
        return self._call(self._history(image), timeout)

    def tag(self, source: str, target: str, *, timeout: float | None = None) -> pb.TagImageResponse:
        """Tags ``source`` (a reference or an id) as ``target``; an existing tag moves."""
        return self._call(self._tag(source, target), timeout)

    def remove(
        self,
        image: str,
        *,
        force: bool = False,
        no_prune: bool = False,
        timeout: float | None = None,
    ) -> pb.RemoveImageResponse:
        """Removes or untags an image, like ``docker image rm``."""
        return self._call(self._remove(image, force, no_prune), timeout)

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
        return self._call(self._prune(all, labels, exclude_labels, until), timeout)

    def export(
        self,
        images: str | Iterable[str],
        destination: ArchiveDestination,
        *,
        timeout: float | None = None,
    ) -> int:
        """Writes the images (references or ids) as one tar archive, like ``docker
        save``, to ``destination`` (a path, created only once the whole archive arrived,
        or a binary file); returns the bytes written. No deadline unless ``timeout``."""
        request = self._export_request(images)
        written = 0
        with archive_writer(destination) as file:
            for chunk in self._export_views(request, timeout):
                file.write(chunk)
                written += len(chunk)
        return written

    def export_chunks(
        self, request: pb.ExportImagesRequest, *, timeout: float | None = None
    ) -> Iterator[bytes]:
        """The archive of an ExportImages request, chunk by chunk as it arrives."""
        return (bytes(view) for view in self._export_views(request, timeout))

    def _export_views(
        self, request: pb.ExportImagesRequest, timeout: float | None
    ) -> Iterator[memoryview]:
        """``export_chunks``, each chunk a view into the message it came in."""
        responses = self._export_images(request, **self._stream_options(timeout))
        try:
            for message in messages(responses):
                yield http_body_data(message)
        finally:
            responses.cancel()  # a consumer that stops early stops the export

    def disk_usage(self, *, timeout: float | None = None) -> pb.GetDiskUsageResponse:
        """The images' disk usage, like ``docker system df -v``: per image its size,
        shared and unique bytes and containers; each layer counted once in the total."""
        return self._call(self._disk_usage(), timeout)

    # Registries ---------------------------------------------------------------------

    def check_auth(
        self, auth: AuthLike, *, timeout: float | None = None
    ) -> pb.CheckRegistryAuthResponse:
        """Checks credentials with the registry ``auth.server_address``, like ``docker login``."""
        return self._call(self._check_auth(auth), timeout)

    def pull(
        self,
        reference: str,
        *,
        platform: str = "",
        auth: AuthLike | None = None,
        timeout: float | None = None,
    ) -> PullOperation:
        """Starts a pull: iterate the returned operation for progress, then read ``.result``."""
        return self._start(self._pull(reference, platform, auth), timeout)

    def push(
        self, reference: str, *, auth: AuthLike | None = None, timeout: float | None = None
    ) -> PushOperation:
        """Starts a push: iterate the returned operation for progress, then read ``.result``."""
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
    ) -> BuildOperation:
        """Starts a build: iterate the returned operation for the output lines, then read
        ``.result``. ``context`` is a directory (packed honouring its .dockerignore,
        streamed in ``chunk_size`` pieces), or a tar archive as bytes or a binary file."""
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
        requests = _UploadRequests(plan.request)
        responses = self._build_image(iter(requests), **self._stream_options(timeout))
        return Operation("build", responses, plan.split, local_error=lambda: requests.error)

    # Registry inspection (issue 16) -------------------------------------------------

    def inspect_registry_image(
        self, reference: str, *, auth: AuthLike | None = None, timeout: float | None = None
    ) -> pb.InspectRegistryImageResponse:
        """What the registry serves for ``reference`` (digest, media type, size, platforms),
        without pulling it, like ``docker manifest inspect``."""
        return self._call(self._inspect_registry(reference, auth), timeout)

    def check_image_updates(
        self,
        references: Iterable[str],
        *,
        registry_auths: Iterable[AuthLike] = (),
        timeout: float | None = None,
    ) -> builtins.list[pb.ImageUpdate]:
        """Whether each local tag still points at what its registry serves under it (one
        answer per reference, in order; a registry that fails makes its answers UNKNOWN)."""
        return self._call(self._check_updates(references, registry_auths), timeout)

    # The fleet (FleetService; the caller needs the fleet role) ------------------------

    def list_nodes(self, *, timeout: float | None = None) -> builtins.list[fleet_pb.Node]:
        """Every node the server reaches, itself first: name, address, readiness (and why
        not), Engine version, image count and disk usage."""
        return self._call(self._list_nodes(), timeout)

    def find_image(
        self, image: str, *, timeout: float | None = None
    ) -> builtins.list[fleet_pb.NodeImage]:
        """Which nodes hold ``image`` (a reference, id or ``name@digest``): one entry per
        node, with its image id and repo digests; a node that could not answer has
        ``error`` set."""
        return self._call(self._find_image(image), timeout)

    def remove_on_nodes(
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
        return self._call(self._remove_on_nodes(image, force, no_prune, nodes), timeout)

    def prune_on_nodes(
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
        return self._call(plan, timeout)

    def pull_on_nodes(
        self,
        reference: str,
        options: FleetPullOptions | None = None,
        *,
        timeout: float | None = None,
    ) -> FleetPullOperation:
        """Starts a pull on every node (or ``options.nodes``): iterate the returned
        operation for each node's updates (phase, bytes, percent, attempt), then read
        ``.result``, the summary (succeeded, skipped, failed with reasons, cancelled)."""
        return self._start(self._pull_on_nodes(reference, options or FleetPullOptions()), timeout)

    def find_image_drift(
        self, image: str, *, auth: AuthLike | None = None, timeout: float | None = None
    ) -> fleet_pb.FindImageResponse:
        """``find_image`` plus a drift report: the server resolves the reference at its
        registry once (``auth`` for that registry; never sent to peers) and answers its
        ``registry_digest`` beside the nodes, each with ``drift`` CURRENT, STALE or
        UNKNOWN (no digest of that repository)."""
        return self._call(self._find_image_drift(image, auth), timeout)

    def import_images(
        self,
        archive: ArchiveSource,
        *,
        chunk_size: int = DEFAULT_ARCHIVE_CHUNK_SIZE,
        timeout: float | None = None,
    ) -> ImportOperation:
        """Starts loading the images of an archive, like ``docker load``: iterate the
        returned operation for progress lines, then read ``.result.images`` (each an id
        and its tags). ``archive`` is a path, bytes, a binary file or an iterable of byte
        chunks, of a ``docker save`` or OCI layout tar (plain or gzip), streamed."""
        plan = self._import(archive, chunk_size)
        requests = _UploadRequests(plan.request)
        responses = self._import_images(iter(requests), **self._stream_options(timeout))
        return Operation("import", responses, plan.split, local_error=lambda: requests.error)

    # --------------------------------------------------------------------------------

    def _call(self, plan: Unary[Any, ResultT], timeout: float | None) -> ResultT:
        stub = self._fleet_stub if plan.service == "fleet" else self._stub
        with rpc_errors():
            reply = getattr(stub, plan.rpc)(plan.request, **self._unary_options(timeout))
        return plan.result(reply)

    def _start(
        self, plan: Stream[Any, EventT, ResultT], timeout: float | None
    ) -> Operation[EventT, ResultT]:
        stub = self._fleet_stub if plan.service == "fleet" else self._stub
        responses = getattr(stub, plan.rpc)(plan.request, **self._stream_options(timeout))
        return Operation(plan.what, responses, plan.split)
