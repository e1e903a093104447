"""Both server interceptors wrap a method's handler once and reuse the wrapper for
every later call of that method (building it per call cost time on every RPC), and
wrap afresh when gRPC finds a different handler."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from imagesvc.transport.grpc.interceptor import CallLifecycleInterceptor
from imagesvc.transport.grpc.metrics import GrpcMetricsInterceptor, GrpcServerMetrics

SERVICE = "imagesvc.v1.ImageService"
METHOD = f"/{SERVICE}/GetImage"


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


async def _answer(request: bytes, context: Any) -> bytes:
    return request


def _finding(handler: Any) -> Callable[[grpc.HandlerCallDetails], Awaitable[Any]]:
    """The continuation: gRPC's lookup, finding `handler`."""

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return handler

    return continuation


def _interceptors() -> list[grpc.aio.ServerInterceptor]:
    return [
        GrpcMetricsInterceptor(GrpcServerMetrics(CollectorRegistry())),
        CallLifecycleInterceptor(frozenset({SERVICE})),
    ]


def test_a_method_is_wrapped_once_and_rewrapped_when_its_handler_changes() -> None:
    async def check() -> None:
        for interceptor in _interceptors():
            first: Any = grpc.unary_unary_rpc_method_handler(_answer)
            wrapped = await interceptor.intercept_service(_finding(first), _Details(METHOD))
            assert wrapped is not None
            assert wrapped is not first
            again = await interceptor.intercept_service(_finding(first), _Details(METHOD))
            assert again is wrapped
            other: Any = grpc.unary_unary_rpc_method_handler(_answer)
            rewrapped = await interceptor.intercept_service(_finding(other), _Details(METHOD))
            assert rewrapped is not wrapped
            assert rewrapped is not other
            # An unknown method stays unknown, and nothing is kept for it.
            assert await interceptor.intercept_service(_finding(None), _Details("/x/Y")) is None

    asyncio.run(check())


def test_a_reused_wrapper_still_counts_every_call() -> None:
    registry = CollectorRegistry()
    interceptor = GrpcMetricsInterceptor(GrpcServerMetrics(registry))
    found: Any = grpc.unary_unary_rpc_method_handler(_answer)

    class _Context:
        def code(self) -> None:
            return None

    async def three_calls() -> None:
        for _ in range(3):
            handler: Any = await interceptor.intercept_service(_finding(found), _Details(METHOD))
            assert await handler.unary_unary(b"x", _Context()) == b"x"

    asyncio.run(three_calls())
    labels = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "GetImage"}
    assert registry.get_sample_value("grpc_server_started_total", labels) == 3
    handled = {**labels, "grpc_code": "OK"}
    assert registry.get_sample_value("grpc_server_handled_total", handled) == 3
