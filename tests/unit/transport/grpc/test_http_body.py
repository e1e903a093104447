"""ExportImages' messages written by hand (transport/grpc/http_body.py): the bytes are
google.api.HttpBody's own serialization."""

from __future__ import annotations

import pytest
from google.api import httpbody_pb2

from imagesvc.transport.grpc.http_body import HttpBodyChunk, encode_http_body


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"x", ""),
        (b"tar" * 50, "application/x-tar"),  # a two-byte length
        (bytes(range(256)) * 4096, "application/x-tar"),  # 1 MiB: a three-byte length
        (b"", "application/x-tar"),
        (b"", ""),
        (b"\x00" * 127, "t" * 200),  # both lengths at a varint's byte boundary
        (b"\x00" * 128, ""),
    ],
)
def test_the_bytes_are_protobufs_serialization_of_the_same_message(
    data: bytes, content_type: str
) -> None:
    encoded = encode_http_body(HttpBodyChunk(data, content_type))
    expected = httpbody_pb2.HttpBody(data=data, content_type=content_type)
    assert encoded == expected.SerializeToString()
    parsed = httpbody_pb2.HttpBody.FromString(encoded)
    assert (parsed.data, parsed.content_type) == (data, content_type)
