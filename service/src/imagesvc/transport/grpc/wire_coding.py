"""The methods whose messages are written or read by hand, and the interceptor that gives
their handlers those (de)serializers in place of the generated protobuf ones: the 1 MiB
chunks of exports, build contexts and imports pass without protobuf's copies
(http_body.py, chunk_requests.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from imagesvc.transport.grpc.chunk_requests import build_request, import_request
from imagesvc.transport.grpc.handlers import RewrappingInterceptor, behaviour_of, with_behaviour
from imagesvc.transport.grpc.http_body import encode_http_body

_SERVICE = "/imagesvc.v1.ImageService/"
# method -> (request deserializer, response serializer); None keeps the generated one.
HAND_CODED: dict[str, tuple[Callable[[bytes], Any] | None, Callable[[Any], bytes] | None]] = {
    f"{_SERVICE}ExportImages": (None, encode_http_body),
    f"{_SERVICE}BuildImage": (build_request, None),
    f"{_SERVICE}ImportImages": (import_request, None),
}


class WireEncodingInterceptor(RewrappingInterceptor):
    """Gives the handlers of the `HAND_CODED` methods their (de)serializers. Put it last
    among the interceptors: the others rewrap the handler it returns and keep them."""

    def _wrap(
        self, method: str, original: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        coding = HAND_CODED.get(method)
        if coding is None:
            return original
        deserializer, serializer = coding
        return with_behaviour(
            original,
            behaviour_of(original),
            request_deserializer=deserializer,
            response_serializer=serializer,
        )
