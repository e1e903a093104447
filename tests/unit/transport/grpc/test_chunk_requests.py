"""BuildImage's and ImportImages' chunk messages read by hand
(transport/grpc/chunk_requests.py): a message that is only the chunk field becomes a
view of the same bytes protobuf would give; every other message is protobuf's parse."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError

from imagesvc.transport.grpc.chunk_requests import RequestChunk, build_request, import_request
from imagesvc.v1 import image_service_pb2 as pb

SIZES = [0, 1, 127, 128, 16_383, 16_384, 1024 * 1024]


@pytest.mark.parametrize("size", SIZES)
def test_a_context_chunk_message_is_a_view_of_its_chunk(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    message = pb.BuildImageRequest(context_chunk=data).SerializeToString()
    parsed = build_request(message)
    assert isinstance(parsed, RequestChunk)
    assert isinstance(parsed.data, memoryview)
    assert parsed.data.obj is message  # a view, not a copy
    assert bytes(parsed.data) == data == pb.BuildImageRequest.FromString(message).context_chunk


@pytest.mark.parametrize("size", SIZES[1:])  # an empty archive_chunk is no field at all
def test_an_archive_chunk_message_is_a_view_of_its_chunk(size: int) -> None:
    data = b"\x1f" * size
    message = pb.ImportImagesRequest(archive_chunk=data).SerializeToString()
    parsed = import_request(message)
    assert isinstance(parsed, RequestChunk)
    assert bytes(parsed.data) == data


def _field(key: int, payload: bytes) -> bytes:
    length, encoded = len(payload), bytearray()
    while length > 0x7F:
        encoded.append(length & 0x7F | 0x80)
        length >>= 7
    encoded.append(length)
    return bytes([key]) + bytes(encoded) + payload


OPTIONS = pb.BuildImageRequest(options=pb.BuildOptions(tags=["app:1"])).SerializeToString()
CHUNK = _field(0x12, b"abc")


@pytest.mark.parametrize(
    "message",
    [
        OPTIONS,  # the first message: options
        b"",  # no field: payload unset
        CHUNK + CHUNK,  # the field twice: protobuf keeps the last
        CHUNK + _field(0x7A, b"x"),  # an unknown field after the chunk
        _field(0x7A, b"x") + CHUNK,  # and before it
        OPTIONS + CHUNK,  # options then chunk: the oneof's last wins
    ],
)
def test_any_other_build_message_is_protobufs_parse(message: bytes) -> None:
    parsed = build_request(message)
    assert isinstance(parsed, pb.BuildImageRequest)
    assert parsed == pb.BuildImageRequest.FromString(message)


def test_a_truncated_chunk_field_is_refused_as_protobuf_refuses_it() -> None:
    for message in (CHUNK[:-1], b"\x12", b"\x12\x85"):
        with pytest.raises(DecodeError):
            build_request(message)


def test_an_empty_import_message_is_protobufs_parse() -> None:
    parsed = import_request(b"")
    assert isinstance(parsed, pb.ImportImagesRequest)
    assert parsed.archive_chunk == b""


def test_an_import_message_with_other_fields_is_protobufs_parse() -> None:
    message = _field(0x0A, b"ab") + _field(0x12, b"zz")  # archive_chunk, then unknown 2
    parsed = import_request(message)
    assert isinstance(parsed, pb.ImportImagesRequest)
    assert parsed.archive_chunk == b"ab"
