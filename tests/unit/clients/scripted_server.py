"""A real gRPC server in the test process, on a free loopback port, serving a scripted
ImageService (or raw handlers) for the client tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from concurrent import futures

import grpc

from imagesvc_client.v1 import image_service_pb2_grpc


@contextlib.contextmanager
def serving(
    service: image_service_pb2_grpc.ImageServiceServicer | None = None,
    *,
    handlers: Sequence[grpc.GenericRpcHandler] = (),
    workers: int = 2,
) -> Iterator[str]:
    """The server's address ("127.0.0.1:PORT") while it runs; stopped on exit."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), handlers=list(handlers))
    if service is not None:
        image_service_pb2_grpc.add_ImageServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait()
