"""The BuildImage requests the clients send: serialized by the client itself (each
context chunk copied once into its message), byte for byte what protobuf makes, and the
context arriving whole although its chunks are read into one reused buffer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from imagesvc_client import AsyncImageClient, BuildContext, ImageClient
from imagesvc_client._base import context_chunk_request
from imagesvc_client.v1 import image_service_pb2 as pb
from imagesvc_client.v1 import image_service_pb2_grpc
from tests.unit.file_trees import write_tree


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16_383, 16_384, 1 << 20, (1 << 21) + 3])
def test_a_chunk_request_is_what_protobuf_serializes(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = pb.BuildImageRequest(context_chunk=data).SerializeToString()
    assert context_chunk_request(data) == expected
    assert context_chunk_request(memoryview(bytearray(data))) == expected
    parsed = pb.BuildImageRequest.FromString(context_chunk_request(data))
    assert parsed.WhichOneof("payload") == "context_chunk"
    assert parsed.context_chunk == data


class Recorder(image_service_pb2_grpc.ImageServiceServicer):
    def __init__(self) -> None:
        self.options: list[pb.BuildOptions] = []
        self.contexts: list[bytes] = []

    def BuildImage(
        self, request_iterator: Iterator[pb.BuildImageRequest], context: Any
    ) -> Iterator[pb.BuildImageResponse]:
        requests = iter(request_iterator)
        self.options.append(next(requests).options)
        self.contexts.append(b"".join(r.context_chunk for r in requests))
        yield pb.BuildImageResponse(result=pb.BuildImageResult(image_id="sha256:built"))


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[str, Recorder]]:
    service = Recorder()  # type: ignore[abstract]  # the other RPCs are not scripted
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    image_service_pb2_grpc.add_ImageServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", service
    server.stop(grace=None).wait()


def test_both_clients_send_a_directory_context_whole(
    tmp_path: Path, recorded: tuple[str, Recorder]
) -> None:
    address, service = recorded
    write_tree(
        tmp_path,
        {
            "Dockerfile": "FROM scratch\n",
            "a.bin": "".join(chr(65 + n % 26) for n in range(50_000)),
            "b/c.txt": "c" * 777,
        },
    )
    expected = b"".join(BuildContext.prepare(tmp_path).chunks())

    with ImageClient(address) as client:
        operation = client.build(str(tmp_path), tags=["t:1"], chunk_size=4096)
        assert operation.wait().image_id == "sha256:built"

    async def scenario() -> None:
        async with AsyncImageClient(address) as client:
            operation = client.build(tmp_path, tags=["t:2"], chunk_size=1000)
            assert (await operation.wait()).image_id == "sha256:built"

    asyncio.run(scenario())
    assert service.contexts[-2:] == [expected, expected]
    assert [(list(o.tags), o.dockerfile) for o in service.options[-2:]] == [
        (["t:1"], "Dockerfile"),
        (["t:2"], "Dockerfile"),
    ]
