"""ExportImages as the clients read it: each google.api.HttpBody arrives as its bytes and
its data is read by hand (http_body_data), a view into the message instead of protobuf's
copies: the same data protobuf parses, the same refusals, and the archive arriving whole
through both clients and `imagesvc-cli save`."""

from __future__ import annotations

import asyncio
import io
import random
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.api import httpbody_pb2
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError

from imagesvc_client import AsyncImageClient, ImageClient
from imagesvc_client._base import _varint, http_body_data
from imagesvc_client.cli.main import main as cli_main
from imagesvc_client.errors import Internal, NotFound
from imagesvc_client.v1 import image_service_pb2 as pb
from tests.unit.clients.scripted_server import serving

HttpBody = httpbody_pb2.HttpBody
MALFORMED_ERROR = r"malformed google\.api\.HttpBody"
SIZES = [0, 1, 127, 128, 300, 16_383, 16_384, 1 << 20, (1 << 21) + 3]


def _data(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    """A field as it is on the wire: the tag, then (length-delimited) the length, then the
    payload (a varint's or fixed field's bytes as they are)."""
    length = _varint(len(payload)) if wire_type == 2 else b""
    return _varint(number << 3 | wire_type) + length + payload


EXTENSION = any_pb2.Any(type_url="type.example/x.Y", value=b"\x08\x01").SerializeToString()

# Messages protobuf parses, some never made by a protobuf serializer: fields in other
# orders, the data given twice (the last wins), known fields with another wire type and
# unknown fields of every wire type, a group among them (skipped by protobuf).
ODD_MESSAGES = {
    "empty": b"",
    "data first": _field(2, 2, b"abc") + _field(1, 2, b"application/x-tar"),
    "extension between": _field(1, 2, b"t")
    + _field(3, 2, EXTENSION)
    + _field(2, 2, b"xyz")
    + _field(3, 2, b""),
    "data twice": _field(2, 2, b"first") + _field(1, 2, b"t") + _field(2, 2, b"second"),
    "data then empty data": _field(2, 2, b"first") + _field(2, 2, b""),
    "unknown fields": _field(9, 0, _varint(2**63))
    + _field(10, 1, bytes(8))
    + _field(2, 2, b"kept")
    + _field(11, 5, bytes(4))
    + _field(12, 2, b"\xff" * 300)
    + _field(536_870_911, 0, b"\x01"),
    "known fields with other wire types": _field(2, 2, b"kept")
    + _field(2, 0, b"\x05")
    + _field(1, 5, bytes(4))
    + _field(2, 1, bytes(8)),
    "a group": _field(2, 2, b"before")
    + _field(7, 3, b"")
    + _field(8, 0, b"\x01")
    + _field(7, 4, b"")
    + _field(2, 2, b"after"),
    "a long varint tag": b"\x92\x80\x00" + _varint(3) + b"pad",  # field 2 in 3 bytes
}

# Messages protobuf refuses.
MALFORMED = {
    "a truncated tag": b"\x92",
    "a truncated length": _field(1, 2, b"t") + b"\x12\x80",
    "data past the end": _field(1, 2, b"t") + b"\x12\x05abc",
    "a varint of 11 bytes": b"\x48" + b"\xff" * 10 + b"\x01",
    "a truncated fixed64": _field(9, 1, bytes(8))[:-1],
    "a truncated fixed32": _field(9, 5, bytes(4))[:-2],
    "field number 0": b"\x02\x00",
    "wire type 6": b"\x16\x00",
    "wire type 7": b"\x17\x00",
    "an end group alone": _field(7, 4, b""),
    "an unterminated group": _field(7, 3, b"") + _field(2, 2, b"x"),
    "content_type not UTF-8": _field(2, 2, b"x") + _field(1, 2, b"\xff\xfe"),
    "a malformed extension": _field(2, 2, b"x") + _field(3, 2, b"\x0a\x05ab"),
}


@pytest.mark.parametrize("size", SIZES)
def test_the_data_of_protobuf_s_serialization_is_protobuf_s(size: int) -> None:
    data = _data(size)
    messages = [
        HttpBody(data=data),
        HttpBody(content_type="application/x-tar", data=data),
        HttpBody(
            content_type="application/x-tar",
            data=data,
            extensions=[any_pb2.Any.FromString(EXTENSION)] * 2,
        ),
    ]
    for message in messages:
        serialized = message.SerializeToString()
        view = http_body_data(serialized)
        assert view == HttpBody.FromString(serialized).data == data
        if size:
            assert view.obj is serialized  # a view into the message, no copy


@pytest.mark.parametrize("name", ODD_MESSAGES)
def test_the_data_of_any_message_protobuf_parses_is_protobuf_s(name: str) -> None:
    message = ODD_MESSAGES[name]
    assert http_body_data(message) == HttpBody.FromString(message).data


@pytest.mark.parametrize("name", MALFORMED)
def test_a_message_protobuf_refuses_raises(name: str) -> None:
    message = MALFORMED[name]
    with pytest.raises(DecodeError):
        HttpBody.FromString(message)
    with pytest.raises(Internal, match=MALFORMED_ERROR):
        http_body_data(message)


# The export the fake server streams: chunks of CHUNK bytes, each message with a
# content type and, every third, an extension (the clients ignore both).
ARCHIVE = random.Random(11).randbytes(50_000)
CHUNK = 4096
MALFORMED_IMAGE = "malformed:1"
ENDLESS_IMAGE = "endless:1"
# Set when an export of ENDLESS_IMAGE ends: only a cancelled call ends it.
ENDED = threading.Event()


def _export(request: pb.ExportImagesRequest, context: Any) -> Iterator[bytes]:
    if list(request.images) == ["missing:1"]:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such image: missing:1")
    if list(request.images) == [ENDLESS_IMAGE]:
        context.add_callback(ENDED.set)
        while True:
            yield HttpBody(data=bytes(1024)).SerializeToString()
            time.sleep(0.001)
    if list(request.images) == [MALFORMED_IMAGE]:
        yield HttpBody(data=b"good").SerializeToString()
        yield MALFORMED["data past the end"]
        return
    for n, start in enumerate(range(0, len(ARCHIVE), CHUNK)):
        message = HttpBody(content_type="application/x-tar", data=ARCHIVE[start : start + CHUNK])
        if n % 3 == 0:
            message.extensions.add().ParseFromString(EXTENSION)
        yield message.SerializeToString()


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    # The responses are serialized by _export itself (to send a malformed one too).
    handler = grpc.method_handlers_generic_handler(
        "imagesvc.v1.ImageService",
        {
            "ExportImages": grpc.unary_stream_rpc_method_handler(
                _export, request_deserializer=pb.ExportImagesRequest.FromString
            )
        },
    )
    with serving(handlers=[handler]) as address:
        yield address


def test_the_sync_client_exports_whole(tmp_path: Path, address: str) -> None:
    with ImageClient(address) as client:
        assert client.export("app:1", tmp_path / "app.tar") == len(ARCHIVE)
        file = io.BytesIO()
        assert client.export(["app:1", "app:2"], file) == len(ARCHIVE)
        chunks = list(client.export_chunks(pb.ExportImagesRequest(images=["app:1"])))
    assert (tmp_path / "app.tar").read_bytes() == file.getvalue() == ARCHIVE
    assert all(type(chunk) is bytes for chunk in chunks)
    assert b"".join(chunks) == ARCHIVE


def test_the_asyncio_client_exports_whole(tmp_path: Path, address: str) -> None:
    async def scenario() -> list[bytes]:
        async with AsyncImageClient(address) as client:
            assert await client.export("app:1", tmp_path / "app.tar") == len(ARCHIVE)
            file = io.BytesIO()
            assert await client.export(["app:1"], file) == len(ARCHIVE)
            assert file.getvalue() == ARCHIVE
            request = pb.ExportImagesRequest(images=["app:1"])
            return [chunk async for chunk in client.export_chunks(request)]

    chunks = asyncio.run(scenario())
    assert (tmp_path / "app.tar").read_bytes() == ARCHIVE
    assert all(type(chunk) is bytes for chunk in chunks)
    assert b"".join(chunks) == ARCHIVE


def test_the_cli_saves_whole(
    tmp_path: Path, address: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert cli_main(["--server", address, "save", "-o", str(tmp_path / "a.tar"), "app:1"]) == 0
    assert (tmp_path / "a.tar").read_bytes() == ARCHIVE
    assert cli_main(["--server", address, "save", "app:1"]) == 0
    assert capsysbinary.readouterr().out == ARCHIVE


def test_a_malformed_message_fails_the_export_and_leaves_no_file(
    tmp_path: Path, address: str
) -> None:
    target = tmp_path / "bad.tar"
    with ImageClient(address) as client:
        with pytest.raises(Internal, match=MALFORMED_ERROR):
            client.export(MALFORMED_IMAGE, target)
        file = io.BytesIO()
        with pytest.raises(Internal):
            client.export(MALFORMED_IMAGE, file)
        assert file.getvalue() == b"good"  # what came before the malformed message
        with pytest.raises(NotFound, match="missing:1"):
            client.export("missing:1", target)

    async def scenario() -> None:
        async with AsyncImageClient(address) as client:
            with pytest.raises(Internal, match=MALFORMED_ERROR):
                await client.export(MALFORMED_IMAGE, target)
            with pytest.raises(NotFound):
                await client.export("missing:1", target)

    asyncio.run(scenario())
    assert list(tmp_path.iterdir()) == []


class _FailingFile(io.BytesIO):
    def write(self, data: Any) -> int:
        raise OSError(28, "No space left on device")


def test_an_export_stopped_early_is_cancelled(address: str) -> None:
    request = pb.ExportImagesRequest(images=[ENDLESS_IMAGE])
    with ImageClient(address) as client:
        ENDED.clear()
        for chunk in client.export_chunks(request):
            assert chunk == bytes(1024)
            break  # the consumer stops: the chunks are dropped
        assert ENDED.wait(10)
        ENDED.clear()
        with pytest.raises(OSError, match="No space"):
            client.export(ENDLESS_IMAGE, _FailingFile())
        assert ENDED.wait(10)

    async def scenario() -> None:
        async with AsyncImageClient(address) as client:
            ENDED.clear()
            chunks = cast(AsyncGenerator[bytes, None], client.export_chunks(request))
            assert await anext(chunks) == bytes(1024)
            await chunks.aclose()
            assert await asyncio.to_thread(ENDED.wait, 10)

    asyncio.run(scenario())
