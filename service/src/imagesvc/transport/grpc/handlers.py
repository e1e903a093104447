"""Rewrapping a grpc.aio method handler, shared by the server interceptors: each takes
the handler's behaviour, wraps it, and needs a handler of the same kind back."""

from __future__ import annotations

from collections.abc import Callable
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
