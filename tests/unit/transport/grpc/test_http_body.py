"""ExportImages' messages written by hand (transport/grpc/http_body.py): the bytes are
google.api.HttpBody's own serialization, and the interceptor gives that serializer to
the listed methods only, building the handler once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.api import httpbody_pb2

from imagesvc.transport.grpc.http_body import (
    HttpBodyChunk,
    WireEncodingInterceptor,
    encode_http_body,
)

EXPORT = "/imagesvc.v1.ImageService/ExportImages"


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


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _finding(handler: Any) -> Callable[[grpc.HandlerCallDetails], Awaitable[Any]]:
    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return handler

    return continuation


async def _chunks(request: Any, context: Any) -> Any:
    yield HttpBodyChunk(b"data")


def test_the_listed_method_gets_the_hand_serializer_once_and_others_are_left_alone() -> None:
    async def check() -> None:
        interceptor = WireEncodingInterceptor()
        original: Any = grpc.unary_stream_rpc_method_handler(
            _chunks, response_serializer=httpbody_pb2.HttpBody.SerializeToString
        )
        handler: Any = await interceptor.intercept_service(_finding(original), _Details(EXPORT))
        assert handler.response_serializer is encode_http_body
        assert handler.unary_stream is _chunks
        assert handler.response_streaming
        assert not handler.request_streaming
        again = await interceptor.intercept_service(_finding(original), _Details(EXPORT))
        assert again is handler

        other: Any = grpc.unary_unary_rpc_method_handler(_chunks)
        get_image = "/imagesvc.v1.ImageService/GetImage"
        assert await interceptor.intercept_service(_finding(other), _Details(get_image)) is other
        assert await interceptor.intercept_service(_finding(None), _Details(EXPORT)) is None

    asyncio.run(check())
