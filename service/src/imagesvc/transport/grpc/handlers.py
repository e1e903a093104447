"""Rewrapping a grpc.aio method handler, shared by the server interceptors: each takes
the handler's behaviour, wraps it, and needs a handler of the same kind back; and the
base class that builds each method's wrapper once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc


def behaviour_of(handler: Any) -> Callable[..., Any]:
    """The function a handler runs, whatever its kind (unary or streaming either way).
    `handler` is typed Any: the stubs describe sync behaviours, these are the aio ones."""
    behaviour: Callable[..., Any] = (
        handler.unary_unary or handler.stream_unary or handler.unary_stream or handler.stream_stream
    )
    return behaviour


def with_behaviour(
    handler: Any,
    behaviour: Callable[..., Any],
    *,
    request_deserializer: Callable[[bytes], Any] | None = None,
    response_serializer: Callable[[Any], bytes] | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same kind and (de)serializers as `handler` that runs `behaviour`
    (with the (de)serializers given in place of its own)."""
    args = {
        "request_deserializer": request_deserializer or handler.request_deserializer,
        "response_serializer": response_serializer or handler.response_serializer,
    }
    if handler.response_streaming:
        if handler.request_streaming:
            return grpc.stream_stream_rpc_method_handler(behaviour, **args)
        return grpc.unary_stream_rpc_method_handler(behaviour, **args)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(behaviour, **args)
    return grpc.unary_unary_rpc_method_handler(behaviour, **args)


class RewrappingInterceptor(grpc.aio.ServerInterceptor):
    """A server interceptor that answers each method with the handler `_wrap` makes of
    the one gRPC found. The wrapper is built on a method's first call and reused while
    gRPC finds the same handler (it does on every call); building it per call cost time
    on every RPC. A method gRPC does not know stays unknown, and nothing is kept for it."""

    def __init__(self) -> None:
        # Per method: the handler found and the one wrapping it.
        self._wrapped: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        original = await continuation(handler_call_details)
        if original is None:
            return None
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None and wrapped[0] is original:
            return wrapped[1]
        handler = self._wrap(method, original)
        self._wrapped[method] = (original, handler)
        return handler

    def _wrap(
        self, method: str, original: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """The handler that serves `method` (`original` itself, to leave it alone)."""
        raise NotImplementedError
