"""The gRPC server metrics on a real grpc.aio server: Go's code names, the status of
failures the interceptor did not map itself, and message counts of each call shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from imagesvc.transport.grpc.metrics import (
    GO_CODE_NAMES,
    GrpcMetricsInterceptor,
    GrpcServerMetrics,
    grpc_type,
    split_method,
)

SERVICE = "test.v1.Echo"


def test_code_names_are_grpc_gos() -> None:
    # grpc-go codes.Code.String(): note Canceled with one L, unlike Python's CANCELLED.
    assert {code.name: name for code, name in GO_CODE_NAMES.items()} == {
        "OK": "OK",
        "CANCELLED": "Canceled",
        "UNKNOWN": "Unknown",
        "INVALID_ARGUMENT": "InvalidArgument",
        "DEADLINE_EXCEEDED": "DeadlineExceeded",
        "NOT_FOUND": "NotFound",
        "ALREADY_EXISTS": "AlreadyExists",
        "PERMISSION_DENIED": "PermissionDenied",
        "RESOURCE_EXHAUSTED": "ResourceExhausted",
        "FAILED_PRECONDITION": "FailedPrecondition",
        "ABORTED": "Aborted",
        "OUT_OF_RANGE": "OutOfRange",
        "UNIMPLEMENTED": "Unimplemented",
        "INTERNAL": "Internal",
        "UNAVAILABLE": "Unavailable",
        "DATA_LOSS": "DataLoss",
        "UNAUTHENTICATED": "Unauthenticated",
    }


def test_types_and_names_split_as_the_go_provider_does() -> None:
    assert grpc_type(client_streaming=False, server_streaming=False) == "unary"
    assert grpc_type(client_streaming=True, server_streaming=False) == "client_stream"
    assert grpc_type(client_streaming=False, server_streaming=True) == "server_stream"
    assert grpc_type(client_streaming=True, server_streaming=True) == "bidi_stream"
    assert split_method("/imagesvc.v1.ImageService/PullImage") == (
        "imagesvc.v1.ImageService",
        "PullImage",
    )
    assert split_method("nonsense") == ("unknown", "unknown")


async def _bug(request: bytes, context: Any) -> bytes:
    raise RuntimeError("a bug")


async def _refuse(request: bytes, context: Any) -> bytes:
    await context.abort(grpc.StatusCode.NOT_FOUND, "nothing here")
    raise AssertionError("abort returns by raising")


async def _count(requests: AsyncIterator[bytes], context: Any) -> bytes:
    return str(len([r async for r in requests])).encode()


async def _three(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for n in range(3):
        yield str(n).encode()


async def _echo(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


def _value(registry: CollectorRegistry, name: str, method: str, kind: str, **extra: str) -> float:
    labels = {"grpc_type": kind, "grpc_service": SERVICE, "grpc_method": method, **extra}
    return registry.get_sample_value(name, labels) or 0.0


def _method(channel: grpc.aio.Channel, shape: str, name: str) -> Any:
    """A multi-callable for raw bytes (typed Any: the stubs want message types)."""
    return getattr(channel, shape)(f"/{SERVICE}/{name}")


async def _calls(registry: CollectorRegistry) -> None:
    handlers = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Bug": grpc.unary_unary_rpc_method_handler(_bug),
            "Refuse": grpc.unary_unary_rpc_method_handler(_refuse),
            "Count": grpc.stream_unary_rpc_method_handler(_count),
            "Three": grpc.unary_stream_rpc_method_handler(_three),
            "Echo": grpc.stream_stream_rpc_method_handler(_echo),
        },
    )
    server = grpc.aio.server(interceptors=[GrpcMetricsInterceptor(GrpcServerMetrics(registry))])
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as bug:
                await _method(channel, "unary_unary", "Bug")(b"x")
            assert bug.value.code() is grpc.StatusCode.UNKNOWN
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _method(channel, "unary_unary", "Refuse")(b"x")
            assert refused.value.code() is grpc.StatusCode.NOT_FOUND
            assert await _method(channel, "stream_unary", "Count")(iter([b"a", b"b", b"c"])) == b"3"
            assert [m async for m in _method(channel, "unary_stream", "Three")(b"x")] == [
                b"0",
                b"1",
                b"2",
            ]
            echoed = _method(channel, "stream_stream", "Echo")(iter([b"a", b"b"]))
            assert [m async for m in echoed] == [b"a", b"b"]
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await _method(channel, "unary_unary", "Missing")(b"x")
            assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(None)


def test_each_call_shape_is_counted_like_the_go_provider() -> None:
    registry = CollectorRegistry()
    asyncio.run(_calls(registry))

    def value(name: str, method: str, kind: str, **extra: str) -> float:
        return _value(registry, name, method, kind, **extra)

    # A bug nobody mapped is what grpc answers: Unknown. Nothing was sent.
    assert value("grpc_server_handled_total", "Bug", "unary", grpc_code="Unknown") == 1
    assert value("grpc_server_msg_received_total", "Bug", "unary") == 1
    assert value("grpc_server_msg_sent_total", "Bug", "unary") == 0
    assert value("grpc_server_handled_total", "Refuse", "unary", grpc_code="NotFound") == 1
    # Three messages in (end-of-stream is not a message), one out.
    assert value("grpc_server_msg_received_total", "Count", "client_stream") == 3
    assert value("grpc_server_msg_sent_total", "Count", "client_stream") == 1
    assert value("grpc_server_handled_total", "Count", "client_stream", grpc_code="OK") == 1
    assert value("grpc_server_msg_received_total", "Three", "server_stream") == 1
    assert value("grpc_server_msg_sent_total", "Three", "server_stream") == 3
    assert value("grpc_server_msg_received_total", "Echo", "bidi_stream") == 2
    assert value("grpc_server_msg_sent_total", "Echo", "bidi_stream") == 2
    for method, kind in (
        ("Bug", "unary"),
        ("Refuse", "unary"),
        ("Count", "client_stream"),
        ("Three", "server_stream"),
        ("Echo", "bidi_stream"),
    ):
        assert value("grpc_server_started_total", method, kind) == 1
        assert value("grpc_server_handling_seconds_count", method, kind) == 1
    # An unknown method reaches no handler and is not counted.
    counted = {
        s.labels["grpc_method"]
        for family in registry.collect()
        for s in family.samples
        if "grpc_method" in s.labels
    }
    assert counted == {"Bug", "Refuse", "Count", "Three", "Echo"}


async def _slow(request: bytes, context: Any) -> bytes:
    await asyncio.sleep(30)
    return request


async def _slow_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield b"first"
    await asyncio.sleep(30)


async def _ended_calls(registry: CollectorRegistry) -> None:
    """Calls the caller's deadline ends, and calls the caller cancels, on each shape."""
    handlers = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Slow": grpc.unary_unary_rpc_method_handler(_slow),
            "SlowStream": grpc.unary_stream_rpc_method_handler(_slow_stream),
        },
    )
    server = grpc.aio.server(interceptors=[GrpcMetricsInterceptor(GrpcServerMetrics(registry))])
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for name, shape in (("Slow", "unary_unary"), ("SlowStream", "unary_stream")):
                with pytest.raises(grpc.aio.AioRpcError) as late:
                    await _to_the_end(_method(channel, shape, name)(b"x", timeout=0.3))
                assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                cancelled = _method(channel, shape, name)(b"x", timeout=30)
                await asyncio.sleep(0.3)
                cancelled.cancel()
            # The server sees each end a moment after the client did.
            for _ in range(100):
                done = registry.get_sample_value(
                    "grpc_server_handling_seconds_count",
                    {
                        "grpc_type": "server_stream",
                        "grpc_service": SERVICE,
                        "grpc_method": "SlowStream",
                    },
                )
                if done == 2:
                    break
                await asyncio.sleep(0.05)
    finally:
        await server.stop(None)


async def _to_the_end(call: Any) -> None:
    if isinstance(call, grpc.aio.UnaryUnaryCall):
        await call
        return
    async for _ in call:
        pass


def test_a_passed_deadline_is_deadline_exceeded_and_a_cancel_canceled() -> None:
    """As Go's provider reports them (the handler's context error): the alerts count a
    passed deadline as the service's failure, a caller's cancel as not."""
    registry = CollectorRegistry()
    asyncio.run(_ended_calls(registry))
    for method, kind in (("Slow", "unary"), ("SlowStream", "server_stream")):
        codes = {
            code: _value(registry, "grpc_server_handled_total", method, kind, grpc_code=code)
            for code in GO_CODE_NAMES.values()
        }
        assert {code: n for code, n in codes.items() if n} == {
            "DeadlineExceeded": 1,
            "Canceled": 1,
        }, method
