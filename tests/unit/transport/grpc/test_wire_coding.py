"""The interceptor that gives the hand-coded methods (transport/grpc/wire_coding.py)
their (de)serializers: the listed methods only, the handler built once per method."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.api import httpbody_pb2

from imagesvc.transport.grpc.chunk_requests import build_request, import_request
from imagesvc.transport.grpc.http_body import encode_http_body
from imagesvc.transport.grpc.wire_coding import WireEncodingInterceptor
from imagesvc.v1 import image_service_pb2 as pb

SERVICE = "/imagesvc.v1.ImageService/"


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _finding(handler: Any) -> Callable[[grpc.HandlerCallDetails], Awaitable[Any]]:
    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return handler

    return continuation


async def _behaviour(request: Any, context: Any) -> Any:
    yield b""


def test_each_listed_method_gets_its_hand_coding_once() -> None:
    async def check() -> None:
        interceptor = WireEncodingInterceptor()
        export: Any = grpc.unary_stream_rpc_method_handler(
            _behaviour,
            request_deserializer=pb.ExportImagesRequest.FromString,
            response_serializer=httpbody_pb2.HttpBody.SerializeToString,
        )
        handler: Any = await interceptor.intercept_service(
            _finding(export), _Details(SERVICE + "ExportImages")
        )
        assert handler.response_serializer is encode_http_body
        assert handler.request_deserializer == pb.ExportImagesRequest.FromString
        assert handler.unary_stream is _behaviour
        again = await interceptor.intercept_service(
            _finding(export), _Details(SERVICE + "ExportImages")
        )
        assert again is handler

        for method, deserializer in (
            ("BuildImage", build_request),
            ("ImportImages", import_request),
        ):
            original: Any = grpc.stream_stream_rpc_method_handler(
                _behaviour,
                request_deserializer=pb.BuildImageRequest.FromString,
                response_serializer=pb.BuildImageResponse.SerializeToString,
            )
            coded: Any = await interceptor.intercept_service(
                _finding(original), _Details(SERVICE + method)
            )
            assert coded.request_deserializer is deserializer
            assert coded.response_serializer == pb.BuildImageResponse.SerializeToString
            assert coded.stream_stream is _behaviour

    asyncio.run(check())


def test_other_methods_and_unknown_ones_are_left_alone() -> None:
    async def check() -> None:
        interceptor = WireEncodingInterceptor()
        other: Any = grpc.unary_unary_rpc_method_handler(_behaviour)
        found = await interceptor.intercept_service(_finding(other), _Details(SERVICE + "GetImage"))
        assert found is other
        missing = await interceptor.intercept_service(
            _finding(None), _Details(SERVICE + "ExportImages")
        )
        assert missing is None

    asyncio.run(check())
