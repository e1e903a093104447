"""What ImageClient and AsyncImageClient share, as httpx's Client and AsyncClient share
BaseClient: the connection settings, the request of every call and how its reply becomes
what the method returns (a `Unary` or `Stream` plan), and the mapping of gRPC errors to
ImagesvcError. The two clients only open their channel and make the calls."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Generic, TypeVar

from google.api import httpbody_pb2
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from imagesvc_client._common import (
    DEFAULT_ADDRESS,
    DEFAULT_TIMEOUT,
    AuthLike,
    Connection,
    PemSource,
    auth_proto,
    split_build,
    split_import,
    split_pull,
    split_push,
)
from imagesvc_client.errors import Internal
from imagesvc_client.operations import Splitter
from imagesvc_client.v1 import fleet_service_pb2 as fleet_pb
from imagesvc_client.v1 import image_pb2
from imagesvc_client.v1 import image_service_pb2 as pb

ReplyT = TypeVar("ReplyT")
ResultT = TypeVar("ResultT")
EventT = TypeVar("EventT")
RequestT = TypeVar("RequestT")

# A directory (packed honouring .dockerignore), or a tar archive (plain or gzip) as
# bytes or an open binary file, sent as is.
ContextSource = str | os.PathLike[str] | bytes | IO[bytes]


@dataclass(frozen=True)
class Unary(Generic[ReplyT, ResultT]):
    """One unary call: the stub method, its request, and what the method returns."""

    rpc: str
    request: Any
    result: Callable[[ReplyT], ResultT]
    # Which service's stub: "image" (ImageService) or "fleet" (FleetService).
    service: str = "image"


@dataclass(frozen=True)
class Stream(Generic[RequestT, EventT, ResultT]):
    """A pull, push, build or import: the stub method, its request (a message, or the
    Upload of a build or import), and how its responses split into events and result."""

    what: str
    rpc: str
    request: RequestT
    split: Splitter[Any, EventT, ResultT]
    # Which service's stub: "image" (ImageService) or "fleet" (FleetService).
    service: str = "image"


# A piece of an upload (a build's context, an import's archive). A memoryview may be a
# view of a buffer that the next piece overwrites (BuildContext.chunk_views): it is
# copied before the next is asked for.
Chunk = bytes | memoryview

# BuildImage and ImportImages, called with requests serialized here (a stream_stream
# without serializer) so that each chunk is copied once, straight into its message: a
# request message built and serialized by protobuf copies it twice more, each time into a
# fresh chunk-sized allocation.
_IMAGE_SERVICE = pb.DESCRIPTOR.services_by_name["ImageService"].full_name
BUILD_IMAGE_METHOD = f"/{_IMAGE_SERVICE}/BuildImage"
IMPORT_IMAGES_METHOD = f"/{_IMAGE_SERVICE}/ImportImages"
# ExportImages, called without response deserializer: each google.api.HttpBody arrives
# as the message's bytes and its data is written from a view into them (http_body_data),
# instead of protobuf copying it into a message and again into a bytes object of its own.
EXPORT_IMAGES_METHOD = f"/{_IMAGE_SERVICE}/ExportImages"


def _varint(value: int) -> bytes:
    """``value`` as a protobuf base-128 varint."""
    encoded = bytearray()
    while value > 0x7F:
        encoded.append(value & 0x7F | 0x80)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)


def _read_varint(message: memoryview, position: int) -> tuple[int, int]:
    """(the protobuf base-128 varint at ``position``, the position after it)."""
    value = 0
    for shift in range(0, 70, 7):  # at most 10 bytes
        if position >= len(message):
            raise DecodeError("a varint runs past the end")
        byte = message[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
    raise DecodeError("a varint is longer than 10 bytes")


_HTTP_BODY_FIELDS = httpbody_pb2.HttpBody.DESCRIPTOR.fields_by_name
_CONTENT_TYPE = _HTTP_BODY_FIELDS["content_type"].number
_DATA = _HTTP_BODY_FIELDS["data"].number
_EXTENSIONS = _HTTP_BODY_FIELDS["extensions"].number
_FIXED_SIZES = {1: 8, 5: 4}  # wire type: bytes (fixed64, fixed32)


def http_body_data(message: bytes) -> memoryview:
    """The data of the serialized google.api.HttpBody ``message`` as protobuf parses it
    (the last occurrence of the field wins, other and unknown fields are checked as
    protobuf checks them and skipped), as a view into ``message`` rather than a copy.
    A message protobuf would refuse raises Internal, as protobuf's error made the call
    fail with INTERNAL before."""
    view = memoryview(message)
    try:
        return _http_body_data(view)
    except (DecodeError, UnicodeDecodeError) as error:
        raise Internal(
            f"ExportImages sent a malformed google.api.HttpBody ({len(view)} bytes): {error}"
        ) from error


def _http_body_data(message: memoryview) -> memoryview:
    data = message[:0]
    position, end = 0, len(message)
    while position < end:
        key, position = _read_varint(message, position)
        number, wire_type = key >> 3, key & 7
        if number == 0 or key > 0xFFFFFFFF or wire_type not in (0, 1, 2, 5):
            # A group (deprecated, skipped by protobuf when unknown) or no valid field:
            # protobuf's parse decides (and raises DecodeError for what it refuses).
            return memoryview(httpbody_pb2.HttpBody.FromString(message.tobytes()).data)
        if wire_type == 0:
            _, position = _read_varint(message, position)
            continue
        if wire_type == 2:
            length, position = _read_varint(message, position)
        else:
            length = _FIXED_SIZES[wire_type]
        start, position = position, position + length
        if position > end:
            raise DecodeError(f"field {number}'s {length} bytes run past the end")
        if wire_type != 2:  # a known field with another wire type is unknown to protobuf
            continue
        if number == _DATA:
            data = message[start:position]
        elif number == _CONTENT_TYPE:  # a proto3 string: protobuf checks its UTF-8
            str(message[start:position], "utf-8")
        elif number == _EXTENSIONS:
            any_pb2.Any.FromString(message[start:position].tobytes())
    return data


class _BytesField:
    """Serializes a message whose only field set is the bytes field ``name``, as protobuf
    does: the field's tag, the length as a varint, the bytes."""

    def __init__(self, message: type[Message], name: str) -> None:
        # The wire type of a bytes field (length-delimited) is 2.
        self._tag = _varint(message.DESCRIPTOR.fields_by_name[name].number << 3 | 2)

    def __call__(self, chunk: Chunk) -> bytes:
        return self._tag + _varint(len(chunk)) + chunk


# The serialized BuildImageRequest whose context_chunk is the chunk.
context_chunk_request = _BytesField(pb.BuildImageRequest, "context_chunk")
# The serialized ImportImagesRequest whose archive_chunk is the chunk. Not for an empty
# chunk (archive_chunks makes none), which protobuf leaves out: archive_chunk is no oneof.
archive_chunk_request = _BytesField(pb.ImportImagesRequest, "archive_chunk")


@dataclass(frozen=True)
class Upload:
    """What a BuildImage or ImportImages request stream sends, serialized: ``first`` (the
    build's options), then ``chunk_request`` of each chunk."""

    chunks: Iterator[Chunk]
    chunk_request: Callable[[Chunk], bytes]
    first: bytes | None = None


class UploadRequests:
    """The base of the upload request streams (BUILD_IMAGE_METHOD, IMPORT_IMAGES_METHOD):
    keeps an error raised while reading the chunks, so that it is reported instead of the
    cancellation it makes gRPC send."""

    def __init__(self, upload: Upload) -> None:
        self.first = upload.first
        self.chunks = upload.chunks
        self.chunk_request = upload.chunk_request
        self.error: Exception | None = None

    def next_chunk(self) -> bytes | None:
        """The request of the next chunk; None after the last."""
        chunk = next(self.chunks, None)
        return None if chunk is None else self.chunk_request(chunk)


def context_chunks(
    context: ContextSource, dockerfile: str | os.PathLike[str] | None, chunk_size: int
) -> tuple[str, Iterator[bytes]]:
    """(Dockerfile path inside the context, the context's bytes in chunks)."""
    dockerfile_name, chunks = context_views(context, dockerfile, chunk_size)
    return dockerfile_name, (bytes(chunk) for chunk in chunks)


def context_views(
    context: ContextSource, dockerfile: str | os.PathLike[str] | None, chunk_size: int
) -> tuple[str, Iterator[Chunk]]:
    """``context_chunks`` without copying each chunk into a bytes object of its own (a
    Chunk may be overwritten by the next)."""
    if isinstance(context, bytes):
        return _dockerfile_name(dockerfile), _slices(context, chunk_size)
    if isinstance(context, str | os.PathLike):
        from imagesvc_client.build_context import BuildContext  # only a directory needs it

        prepared = BuildContext.prepare(context, dockerfile)
        return prepared.dockerfile, prepared.chunk_views(chunk_size)
    source = context
    return _dockerfile_name(dockerfile), iter(lambda: source.read(chunk_size), b"")


# An image archive (docker save or OCI layout tar, plain or gzip): a file path, bytes, an
# open binary file, or any iterable of byte chunks; streamed, never read whole.
ArchiveSource = str | os.PathLike[str] | bytes | IO[bytes] | Iterable[bytes]


def archive_chunks(archive: ArchiveSource, chunk_size: int) -> Iterator[Chunk]:
    """The archive's bytes in pieces of at most `chunk_size`, none empty (a file is
    opened lazily, at the first read, and closed at the end)."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    if isinstance(archive, bytes):
        return _slices(archive, chunk_size)
    if isinstance(archive, str | os.PathLike):
        return _file_chunks(os.fspath(archive), chunk_size)
    if hasattr(archive, "read"):
        source: IO[bytes] = archive  # type: ignore[assignment]
        # None: a non-blocking file had nothing yet; asked again.
        reads = iter(lambda: source.read(chunk_size), b"")
        return (chunk for chunk in reads if chunk is not None)
    return (bytes(chunk) for chunk in archive if chunk)


def _slices(data: bytes, chunk_size: int) -> Iterator[memoryview]:
    view = memoryview(data)
    return (view[i : i + chunk_size] for i in range(0, len(view), chunk_size))


def _file_chunks(path: str, chunk_size: int) -> Iterator[bytes]:
    with open(path, "rb") as file:
        while chunk := file.read(chunk_size):
            yield chunk


def _dockerfile_name(dockerfile: str | os.PathLike[str] | None) -> str:
    return "" if dockerfile is None else os.fspath(dockerfile)


def next_page(
    request: pb.ListImagesRequest, page: pb.ListImagesResponse
) -> pb.ListImagesRequest | None:
    """The request of the page after `page`; None after the last."""
    if not page.next_page_token:
        return None
    following = pb.ListImagesRequest()
    following.CopyFrom(request)
    following.page_token = page.next_page_token
    return following


class BaseClient:
    """Connection settings and the plans of the calls (see ImageClient for the arguments)."""

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
        self._metadata = self._connection.metadata()
        self._open(self._connection)

    def _open(self, connection: Connection) -> None:
        """Opens the channel (sync or asyncio) and makes the stub."""
        raise NotImplementedError

    @property
    def address(self) -> str:
        return self._connection.address

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r})"

    def _unary_options(self, timeout: float | None) -> dict[str, Any]:
        """A unary call is bounded by its own timeout, else the client's."""
        return {"timeout": self.timeout if timeout is None else timeout, "metadata": self._metadata}

    def _stream_options(self, timeout: float | None) -> dict[str, Any]:
        """A pull, push or build has no deadline unless its own timeout sets one."""
        return {"timeout": timeout, "metadata": self._metadata}

    # Plans of the calls ---------------------------------------------------------------

    @staticmethod
    def _first_page(
        *,
        references: Iterable[str],
        labels: Iterable[str],
        dangling: bool | None,
        before: str,
        since: str,
        all: bool,
        page_size: int,
    ) -> pb.ListImagesRequest:
        image_filter = pb.ImageFilter(
            references=list(references), labels=list(labels), before=before, since=since
        )
        if dangling is not None:
            image_filter.dangling = dangling
        return pb.ListImagesRequest(filter=image_filter, all=all, page_size=page_size)

    @staticmethod
    def _watch_request(
        *,
        references: Iterable[str],
        labels: Iterable[str],
        dangling: bool | None,
        before: str,
        since: str,
        send_initial_images: bool,
        resume_token: str,
    ) -> pb.WatchImagesRequest:
        image_filter = pb.ImageFilter(
            references=list(references), labels=list(labels), before=before, since=since
        )
        if dangling is not None:
            image_filter.dangling = dangling
        return pb.WatchImagesRequest(
            filter=image_filter,
            send_initial_images=send_initial_images,
            resume_token=resume_token,
        )

    @staticmethod
    def _list_page(
        request: pb.ListImagesRequest,
    ) -> Unary[pb.ListImagesResponse, pb.ListImagesResponse]:
        return Unary("ListImages", request, _same)

    @staticmethod
    def _get(image: str) -> Unary[pb.GetImageResponse, image_pb2.Image]:
        return Unary("GetImage", pb.GetImageRequest(image=image), lambda reply: reply.image)

    @staticmethod
    def _history(
        image: str,
    ) -> Unary[pb.GetImageHistoryResponse, list[image_pb2.HistoryEntry]]:
        request = pb.GetImageHistoryRequest(image=image)
        return Unary("GetImageHistory", request, lambda reply: list(reply.entries))

    @staticmethod
    def _tag(source: str, target: str) -> Unary[pb.TagImageResponse, pb.TagImageResponse]:
        return Unary("TagImage", pb.TagImageRequest(source=source, target=target), _same)

    @staticmethod
    def _remove(
        image: str, force: bool, no_prune: bool
    ) -> Unary[pb.RemoveImageResponse, pb.RemoveImageResponse]:
        request = pb.RemoveImageRequest(image=image, force=force, no_prune=no_prune)
        return Unary("RemoveImage", request, _same)

    @staticmethod
    def _prune(
        all: bool, labels: Iterable[str], exclude_labels: Iterable[str], until: datetime | None
    ) -> Unary[pb.PruneImagesResponse, pb.PruneImagesResponse]:
        request = pb.PruneImagesRequest(
            all=all, labels=list(labels), exclude_labels=list(exclude_labels)
        )
        if until is not None:
            if until.tzinfo is None:
                raise ValueError("until must be an aware datetime (with a time zone)")
            request.until.FromDatetime(until)
        return Unary("PruneImages", request, _same)

    @staticmethod
    def _remove_on_nodes(
        image: str, force: bool, no_prune: bool, nodes: Iterable[str]
    ) -> Unary[fleet_pb.RemoveImageOnNodesResponse, fleet_pb.ImagesOnNodesSummary]:
        request = fleet_pb.RemoveImageOnNodesRequest(
            image=image, force=force, no_prune=no_prune, nodes=list(nodes)
        )
        return Unary("RemoveImageOnNodes", request, lambda reply: reply.summary, "fleet")

    @classmethod
    def _prune_on_nodes(
        cls,
        all: bool,
        labels: Iterable[str],
        exclude_labels: Iterable[str],
        until: datetime | None,
        nodes: Iterable[str],
    ) -> Unary[fleet_pb.PruneImagesOnNodesResponse, fleet_pb.ImagesOnNodesSummary]:
        prune = cls._prune(all, labels, exclude_labels, until).request
        request = fleet_pb.PruneImagesOnNodesRequest(prune=prune, nodes=list(nodes))
        return Unary("PruneImagesOnNodes", request, lambda reply: reply.summary, "fleet")

    @staticmethod
    def _check_auth(
        auth: AuthLike,
    ) -> Unary[pb.CheckRegistryAuthResponse, pb.CheckRegistryAuthResponse]:
        request = pb.CheckRegistryAuthRequest(auth=auth_proto(auth))
        return Unary("CheckRegistryAuth", request, _same)

    @staticmethod
    def _export_request(images: Iterable[str]) -> pb.ExportImagesRequest:
        names = [images] if isinstance(images, str) else list(images)
        return pb.ExportImagesRequest(images=names)

    @staticmethod
    def _disk_usage() -> Unary[pb.GetDiskUsageResponse, pb.GetDiskUsageResponse]:
        return Unary("GetDiskUsage", pb.GetDiskUsageRequest(), _same)

    @staticmethod
    def _pull(
        reference: str, platform: str, auth: AuthLike | None
    ) -> Stream[pb.PullImageRequest, image_pb2.TransferProgress, pb.PullImageResult]:
        request = pb.PullImageRequest(reference=reference, platform=platform, auth=auth_proto(auth))
        return Stream("pull", "PullImage", request, split_pull)

    @staticmethod
    def _push(
        reference: str, auth: AuthLike | None
    ) -> Stream[pb.PushImageRequest, image_pb2.TransferProgress, pb.PushImageResult]:
        request = pb.PushImageRequest(reference=reference, auth=auth_proto(auth))
        return Stream("push", "PushImage", request, split_push)

    @staticmethod
    def _build(
        context: ContextSource,
        *,
        tags: Iterable[str],
        dockerfile: str | os.PathLike[str] | None,
        build_args: Mapping[str, str] | None,
        labels: Mapping[str, str] | None,
        target: str,
        no_cache: bool,
        pull: bool,
        platform: str,
        network_mode: str,
        registry_auths: Iterable[AuthLike],
        chunk_size: int,
    ) -> Stream[Upload, str, pb.BuildImageResult]:
        dockerfile_name, chunks = context_views(context, dockerfile, chunk_size)
        auths = [a for a in (auth_proto(x) for x in registry_auths) if a is not None]
        options = pb.BuildOptions(
            tags=list(tags),
            dockerfile=dockerfile_name,
            build_args=dict(build_args or {}),
            labels=dict(labels or {}),
            target=target,
            no_cache=no_cache,
            pull=pull,
            platform=platform,
            network_mode=network_mode,
            registry_auths=auths,
        )
        first = pb.BuildImageRequest(options=options).SerializeToString()
        upload = Upload(chunks, context_chunk_request, first)
        return Stream("build", "BuildImage", upload, split_build)

    # Registry inspection (issue 16) -------------------------------------------------

    @staticmethod
    def _inspect_registry(
        reference: str, auth: AuthLike | None
    ) -> Unary[pb.InspectRegistryImageResponse, pb.InspectRegistryImageResponse]:
        request = pb.InspectRegistryImageRequest(reference=reference, auth=auth_proto(auth))
        return Unary("InspectRegistryImage", request, _same)

    @staticmethod
    def _list_nodes() -> Unary[fleet_pb.ListNodesResponse, list[fleet_pb.Node]]:
        return Unary("ListNodes", fleet_pb.ListNodesRequest(), lambda r: list(r.nodes), "fleet")

    @staticmethod
    def _find_image(image: str) -> Unary[fleet_pb.FindImageResponse, list[fleet_pb.NodeImage]]:
        request = fleet_pb.FindImageRequest(image=image)
        return Unary("FindImage", request, lambda reply: list(reply.nodes), "fleet")

    @staticmethod
    def _pull_on_nodes(
        reference: str, options: FleetPullOptions
    ) -> Stream[
        fleet_pb.PullImageOnNodesRequest, fleet_pb.NodePull, fleet_pb.PullImageOnNodesSummary
    ]:
        request = options.request(reference)
        return Stream("fleet pull", "PullImageOnNodes", request, split_fleet_pull, "fleet")

    @staticmethod
    def _find_image_drift(
        image: str, auth: AuthLike | None
    ) -> Unary[fleet_pb.FindImageResponse, fleet_pb.FindImageResponse]:
        request = fleet_pb.FindImageRequest(image=image, check_registry=True, auth=auth_proto(auth))
        return Unary("FindImage", request, _same, "fleet")

    @staticmethod
    def _check_updates(
        references: Iterable[str], registry_auths: Iterable[AuthLike]
    ) -> Unary[pb.CheckImageUpdatesResponse, list[pb.ImageUpdate]]:
        auths = [a for a in (auth_proto(x) for x in registry_auths) if a is not None]
        request = pb.CheckImageUpdatesRequest(references=list(references), registry_auths=auths)
        return Unary("CheckImageUpdates", request, lambda reply: list(reply.updates))

    @staticmethod
    def _import(
        archive: ArchiveSource, chunk_size: int
    ) -> Stream[Upload, str, pb.ImportImagesResult]:
        upload = Upload(archive_chunks(archive, chunk_size), archive_chunk_request)
        return Stream("import", "ImportImages", upload, split_import)


@dataclass(frozen=True)
class FleetPullOptions:
    """PullImageOnNodes' options (see the proto): empty or 0 means the server's default."""

    platform: str = ""
    auth: AuthLike | None = None
    nodes: tuple[str, ...] = ()  # node names or host:port addresses; empty: every node
    parallelism: str = ""  # "4" or "25%"
    node_timeout_seconds: float = 0.0
    stall_timeout_seconds: float = 0.0
    retries: int | None = None
    retry_backoff_seconds: float = 0.0
    stop_on_first_failure: bool = False

    def request(self, reference: str) -> fleet_pb.PullImageOnNodesRequest:
        return fleet_pb.PullImageOnNodesRequest(
            reference=reference,
            platform=self.platform,
            auth=auth_proto(self.auth),
            nodes=list(self.nodes),
            parallelism=self.parallelism,
            node_timeout_seconds=self.node_timeout_seconds,
            stall_timeout_seconds=self.stall_timeout_seconds,
            retries=self.retries,
            retry_backoff_seconds=self.retry_backoff_seconds,
            completion_policy=fleet_pb.COMPLETION_POLICY_STOP_ON_FIRST_FAILURE
            if self.stop_on_first_failure
            else fleet_pb.COMPLETION_POLICY_BEST_EFFORT,
        )


def split_fleet_pull(
    response: fleet_pb.PullImageOnNodesResponse,
) -> tuple[fleet_pb.NodePull | None, fleet_pb.PullImageOnNodesSummary | None]:
    kind = response.WhichOneof("kind")
    if kind == "summary":
        return None, response.summary
    return (response.node, None) if kind == "node" else (None, None)


def _same(reply: ReplyT) -> ReplyT:
    return reply
