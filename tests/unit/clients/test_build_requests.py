"""The BuildImage and ImportImages requests the clients send: serialized by the client
itself (each chunk copied once into its message), byte for byte what protobuf makes, and
the context or archive arriving whole (a build context although its chunks are read into
one reused buffer; an archive from every kind of source the import takes)."""

from __future__ import annotations

import asyncio
import io
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import pytest

from imagesvc_client import AsyncImageClient, BuildContext, ImageClient
from imagesvc_client._base import (
    ArchiveSource,
    BaseClient,
    archive_chunk_request,
    context_chunk_request,
)
from imagesvc_client.cli.main import main as cli_main
from imagesvc_client.client import _UploadRequests
from imagesvc_client.v1 import image_service_pb2 as pb
from imagesvc_client.v1 import image_service_pb2_grpc
from tests.unit.clients.scripted_server import serving
from tests.unit.file_trees import write_tree

SIZES = [1, 127, 128, 300, 16_383, 16_384, 1 << 20, (1 << 21) + 3]


def _data(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


@pytest.mark.parametrize("size", [0, *SIZES])
def test_a_chunk_request_is_what_protobuf_serializes(size: int) -> None:
    data = _data(size)
    expected = pb.BuildImageRequest(context_chunk=data).SerializeToString()
    assert context_chunk_request(data) == expected
    assert context_chunk_request(memoryview(bytearray(data))) == expected
    parsed = pb.BuildImageRequest.FromString(context_chunk_request(data))
    assert parsed.WhichOneof("payload") == "context_chunk"
    assert parsed.context_chunk == data


@pytest.mark.parametrize("size", SIZES)  # archive_chunks makes no empty chunk
def test_an_archive_chunk_request_is_what_protobuf_serializes(size: int) -> None:
    data = _data(size)
    expected = pb.ImportImagesRequest(archive_chunk=data).SerializeToString()
    assert archive_chunk_request(data) == expected
    assert archive_chunk_request(memoryview(bytearray(data))) == expected
    assert pb.ImportImagesRequest.FromString(expected).archive_chunk == data


def _tar_gz(name: str, content: bytes) -> bytes:
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        member = tarfile.TarInfo(name)
        member.size = len(content)
        tar.addfile(member, io.BytesIO(content))
    return packed.getvalue()


# A gzip archive (the clients send it as it is), in chunks of CHUNK bytes.
ARCHIVE = _tar_gz("layer.tar", random.Random(7).randbytes(20_000))
CHUNK = 1000


class _Trickle(io.RawIOBase):
    """A non-blocking file: its read answers None (nothing yet) before each piece."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._waiting = True

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes | None:
        self._waiting = not self._waiting
        if not self._waiting:
            return None
        piece, self._data = self._data[:size], self._data[size:]
        return bytes(piece)


def _archive_source(kind: str, path: Path) -> tuple[ArchiveSource, list[bytes]]:
    """A new source of ARCHIVE (in a file at ``path``) of a kind the import takes, and
    the chunks it is sent in."""
    cut = [ARCHIVE[i : i + CHUNK] for i in range(0, len(ARCHIVE), CHUNK)]
    path.write_bytes(ARCHIVE)
    if kind == "path":
        return str(path), cut
    if kind == "path-like":
        return path, cut
    if kind == "binary file":
        return io.BytesIO(ARCHIVE), cut
    if kind == "non-blocking file":
        return cast(IO[bytes], _Trickle(ARCHIVE)), cut
    if kind == "bytes":
        return ARCHIVE, cut
    if kind == "iterable":
        pieces = [ARCHIVE[:7], b"", ARCHIVE[7:4000], ARCHIVE[4000:]]
        return iter(pieces), [p for p in pieces if p]
    assert kind == "iterable of views"  # typed Iterable[bytes], taken as before
    views = [bytearray(ARCHIVE[:7]), memoryview(ARCHIVE)[7:]]
    return cast(list[bytes], views), [ARCHIVE[:7], ARCHIVE[7:]]


ARCHIVE_SOURCES = [
    "path",
    "path-like",
    "binary file",
    "non-blocking file",
    "bytes",
    "iterable",
    "iterable of views",
]


@pytest.mark.parametrize("kind", ARCHIVE_SOURCES)
def test_import_requests_are_protobuf_s_of_the_archive_s_chunks(tmp_path: Path, kind: str) -> None:
    source, chunks = _archive_source(kind, tmp_path / "images.tar.gz")
    plan = BaseClient._import(source, CHUNK)
    expected = [pb.ImportImagesRequest(archive_chunk=c).SerializeToString() for c in chunks]
    assert list(_UploadRequests(plan.request)) == expected


class Recorder(image_service_pb2_grpc.ImageServiceServicer):
    def __init__(self) -> None:
        self.options: list[pb.BuildOptions] = []
        self.contexts: list[bytes] = []
        self.archives: list[bytes] = []

    def BuildImage(
        self, request_iterator: Iterator[pb.BuildImageRequest], context: Any
    ) -> Iterator[pb.BuildImageResponse]:
        requests = iter(request_iterator)
        self.options.append(next(requests).options)
        self.contexts.append(b"".join(r.context_chunk for r in requests))
        yield pb.BuildImageResponse(result=pb.BuildImageResult(image_id="sha256:built"))

    def ImportImages(
        self, request_iterator: Iterator[pb.ImportImagesRequest], context: Any
    ) -> Iterator[pb.ImportImagesResponse]:
        self.archives.append(b"".join(r.archive_chunk for r in request_iterator))
        yield pb.ImportImagesResponse(log="Loading layer 1/1\n")
        image = pb.ImportedImage(id="sha256:loaded", tags=["t:1"])
        yield pb.ImportImagesResponse(result=pb.ImportImagesResult(images=[image]))


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[str, Recorder]]:
    service = Recorder()  # type: ignore[abstract]  # the other RPCs are not scripted
    with serving(service) as address:
        yield address, service


def test_both_clients_send_a_directory_context_whole(
    tmp_path: Path, recorded: tuple[str, Recorder]
) -> None:
    address, service = recorded
    write_tree(
        tmp_path,
        {
            "Dockerfile": "FROM scratch\n",
            "a.bin": "".join(chr(65 + n % 26) for n in range(50_000)),
            "b/c.txt": "c" * 777,
        },
    )
    expected = b"".join(BuildContext.prepare(tmp_path).chunks())

    with ImageClient(address) as client:
        operation = client.build(str(tmp_path), tags=["t:1"], chunk_size=4096)
        assert operation.wait().image_id == "sha256:built"

    async def scenario() -> None:
        async with AsyncImageClient(address) as client:
            operation = client.build(tmp_path, tags=["t:2"], chunk_size=1000)
            assert (await operation.wait()).image_id == "sha256:built"

    asyncio.run(scenario())
    assert service.contexts[-2:] == [expected, expected]
    assert [(list(o.tags), o.dockerfile) for o in service.options[-2:]] == [
        (["t:1"], "Dockerfile"),
        (["t:2"], "Dockerfile"),
    ]


@pytest.mark.parametrize("kind", ARCHIVE_SOURCES)
def test_both_clients_send_an_archive_whole(
    tmp_path: Path, recorded: tuple[str, Recorder], kind: str
) -> None:
    address, service = recorded
    path = tmp_path / "images.tar.gz"

    with ImageClient(address) as client:
        operation = client.import_images(_archive_source(kind, path)[0], chunk_size=CHUNK)
        assert list(operation) == ["Loading layer 1/1\n"]
        assert [(i.id, list(i.tags)) for i in operation.result.images] == [
            ("sha256:loaded", ["t:1"])
        ]

    async def scenario() -> None:
        async with AsyncImageClient(address) as client:
            operation = client.import_images(_archive_source(kind, path)[0], chunk_size=CHUNK)
            assert [image.id for image in (await operation.wait()).images] == ["sha256:loaded"]

    asyncio.run(scenario())
    assert service.archives[-2:] == [ARCHIVE, ARCHIVE]


def test_the_cli_loads_an_archive_from_a_file_and_from_stdin(
    tmp_path: Path,
    recorded: tuple[str, Recorder],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    address, service = recorded
    path = tmp_path / "images.tar.gz"
    path.write_bytes(ARCHIVE)
    assert cli_main(["--server", address, "load", "-i", str(path)]) == 0
    with open(path, "rb") as stdin:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(stdin))
        assert cli_main(["--server", address, "load", "-q"]) == 0
    assert service.archives[-2:] == [ARCHIVE, ARCHIVE]
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["Loading layer 1/1", "", "Loaded image: t:1", "Loaded image: t:1"]


def test_an_archive_that_cannot_be_read_is_the_import_s_error(
    tmp_path: Path, recorded: tuple[str, Recorder]
) -> None:
    # (The asyncio client reports the CancelledError of the call instead, as before.)
    address, _ = recorded
    with ImageClient(address) as client, pytest.raises(FileNotFoundError):
        client.import_images(tmp_path / "missing.tar").wait()
