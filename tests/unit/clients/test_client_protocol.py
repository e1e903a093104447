"""The clients against a scripted ImageService on a real loopback gRPC server: the bearer
token they send, how they follow pages, split streams into events and result, and turn
a rich status (ErrorInfo, RetryInfo) into typed errors. No Docker here: the integration
tests cover the real service."""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from imagesvc_client import (
    AsyncImageClient,
    ImageClient,
    Internal,
    NotFound,
    ResourceExhausted,
    Unknown,
)
from imagesvc_client.cli.main import main as cli_main
from imagesvc_client.errors import error_from_status
from imagesvc_client.v1 import image_pb2, image_service_pb2_grpc
from imagesvc_client.v1 import image_service_pb2 as pb
from tests.unit.clients.scripted_server import serving

TOKEN = "t0ken-for-the-test"
CLIENT_ROOT = Path(__file__).resolve().parents[3] / "clients" / "python"


def _rich_abort(context: grpc.ServicerContext, code: int, message: str) -> None:
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason="TOO_MANY", domain="imagesvc", metadata={"limit": "5"})
    )
    retry = any_pb2.Any()
    retry.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=5)))
    status = status_pb2.Status(code=code, message=message, details=[info, retry])
    context.abort_with_status(rpc_status.to_status(status))


class ScriptedService(image_service_pb2_grpc.ImageServiceServicer):
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.context_bytes = 0

    def _record(self, context: grpc.ServicerContext) -> None:
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata()})

    def ListImages(self, request: pb.ListImagesRequest, context: Any) -> pb.ListImagesResponse:
        self._record(context)
        pages = {"": (["a", "b"], "page-2"), "page-2": (["c"], "")}
        ids, token = pages[request.page_token]
        return pb.ListImagesResponse(
            images=[image_pb2.Image(id=i) for i in ids], next_page_token=token, total_size=3
        )

    def GetImage(self, request: pb.GetImageRequest, context: Any) -> pb.GetImageResponse:
        self._record(context)
        _rich_abort(context, code_pb2.RESOURCE_EXHAUSTED, "slow down")
        raise AssertionError("abort returns no more")

    def PullImage(
        self, request: pb.PullImageRequest, context: Any
    ) -> Iterator[pb.PullImageResponse]:
        self._record(context)
        for done in (1, 2):
            yield pb.PullImageResponse(
                progress=image_pb2.TransferProgress(layers_done=done, layers_total=2)
            )
        if request.reference != "no-result":
            yield pb.PullImageResponse(result=pb.PullImageResult(image_id="sha256:pulled"))

    def PushImage(
        self, request: pb.PushImageRequest, context: Any
    ) -> Iterator[pb.PushImageResponse]:
        yield pb.PushImageResponse(progress=image_pb2.TransferProgress(layers_total=1))
        context.abort(grpc.StatusCode.NOT_FOUND, "gone mid-stream")

    def BuildImage(
        self, request_iterator: Iterator[pb.BuildImageRequest], context: Any
    ) -> Iterator[pb.BuildImageResponse]:
        self._record(context)
        requests = iter(request_iterator)
        first = next(requests)
        assert first.WhichOneof("payload") == "options"
        self.context_bytes = sum(len(r.context_chunk) for r in requests)
        yield pb.BuildImageResponse(log="Step 1/1 : FROM scratch\n")
        yield pb.BuildImageResponse(
            result=pb.BuildImageResult(image_id="sha256:built", tags=list(first.options.tags))
        )


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[str, ScriptedService]]:
    service = ScriptedService()  # type: ignore[abstract]  # the other RPCs are not scripted
    with serving(service, workers=4) as address:
        yield address, service


def test_sync_client_follows_pages_and_sends_the_token(
    scripted: tuple[str, ScriptedService],
) -> None:
    address, service = scripted
    with ImageClient(address, token=TOKEN) as client:
        assert [image.id for image in client.list()] == ["a", "b", "c"]
    assert service.metadata[-2]["authorization"] == f"Bearer {TOKEN}"
    assert service.metadata[-1]["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in repr(client)


@pytest.mark.parametrize("token", [None, ""])
def test_no_token_no_authorization_header(
    scripted: tuple[str, ScriptedService], token: str | None
) -> None:
    # "": what token=os.environ.get("IMAGESVC_TOKEN") gives for a variable set empty.
    address, service = scripted
    with ImageClient(address, token=token) as client:
        list(client.list())
    assert "authorization" not in service.metadata[-1]


@pytest.mark.parametrize("token", ["two\nlines", "a\r"])
def test_a_token_of_several_lines_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="one line"):
        ImageClient("127.0.0.1:1", token=token)


def test_rich_status_becomes_a_typed_error(scripted: tuple[str, ScriptedService]) -> None:
    address, _ = scripted
    with ImageClient(address) as client, pytest.raises(ResourceExhausted) as caught:
        client.get("x")
    error = caught.value
    assert error.message == "slow down"
    assert error.reason == "TOO_MANY"
    assert error.domain == "imagesvc"
    assert error.metadata == {"limit": "5"}
    assert error.retry_after == timedelta(seconds=2, microseconds=0)
    assert str(error) == "slow down (TOO_MANY)"


def test_streams_split_into_events_and_result(scripted: tuple[str, ScriptedService]) -> None:
    address, service = scripted
    with ImageClient(address, token=TOKEN) as client:
        pull = client.pull("ref")
        assert [p.layers_done for p in pull] == [1, 2]
        assert pull.result.image_id == "sha256:pulled"
        assert client.pull("ref").result.image_id == "sha256:pulled"  # waits for it all

        with pytest.raises(Internal, match="without a result"):
            client.pull("no-result").wait()

        push = client.push("ref")
        with pytest.raises(NotFound, match="gone mid-stream"):
            list(push)

        build = client.build(b"x" * 10_000, tags=["t:1"], chunk_size=4096)
        assert list(build) == ["Step 1/1 : FROM scratch\n"]
        assert build.result.image_id == "sha256:built"
        assert list(build.result.tags) == ["t:1"]
    assert service.context_bytes == 10_000
    assert service.metadata[-1]["authorization"] == f"Bearer {TOKEN}"


def test_async_client_has_the_same_surface(scripted: tuple[str, ScriptedService]) -> None:
    address, service = scripted

    async def scenario() -> None:
        async with AsyncImageClient(address, token=TOKEN) as client:
            assert [image.id async for image in client.list()] == ["a", "b", "c"]
            with pytest.raises(ResourceExhausted) as caught:
                await client.get("x")
            assert caught.value.reason == "TOO_MANY"
            pull = client.pull("ref")
            assert [p.layers_done async for p in pull] == [1, 2]
            assert pull.result.image_id == "sha256:pulled"
            assert (await client.pull("ref").wait()).image_id == "sha256:pulled"
            with pytest.raises(NotFound):
                await client.push("ref").wait()
            build = client.build(b"y" * 5000, chunk_size=1000)
            assert [line async for line in build] == ["Step 1/1 : FROM scratch\n"]
            assert build.result.image_id == "sha256:built"

    asyncio.run(scenario())
    assert service.context_bytes == 5000
    assert service.metadata[-1]["authorization"] == f"Bearer {TOKEN}"


def test_status_without_details_still_maps_by_code() -> None:
    plain = error_from_status(grpc.StatusCode.NOT_FOUND, "nope", ())
    assert isinstance(plain, NotFound)
    assert plain.reason == ""
    garbled = error_from_status(
        grpc.StatusCode.DATA_LOSS, "bad", (("grpc-status-details-bin", b"\xff\xff"),)
    )
    assert garbled.code is grpc.StatusCode.DATA_LOSS
    assert garbled.message == "bad"
    unknown = error_from_status(grpc.StatusCode.OK, "odd", None)
    assert isinstance(unknown, Unknown)


def test_cli_sends_the_token_from_a_file_or_the_environment(
    scripted: tuple[str, ScriptedService],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    address, service = scripted
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file\n")
    monkeypatch.setenv("IMAGESVC_TOKEN", "from-the-environment")

    assert cli_main(["--server", address, "ls", "-q", "--token-file", str(token_file)]) == 0
    assert service.metadata[-1]["authorization"] == "Bearer from-the-file"
    assert capsys.readouterr().out.split() == ["a", "b", "c"]

    monkeypatch.setenv("IMAGESVC_SERVER", address)
    assert cli_main(["ls", "-q"]) == 0
    assert service.metadata[-1]["authorization"] == "Bearer from-the-environment"

    # A server error: exit code 1 and the message, also as JSON.
    assert cli_main(["inspect", "x"]) == 1
    error = json.loads(capsys.readouterr().err)["error"]
    assert error == {
        "code": "RESOURCE_EXHAUSTED",
        "message": "slow down",
        "reason": "TOO_MANY",
        "metadata": {"limit": "5"},
    }


def test_server_and_client_stubs_load_side_by_side() -> None:
    """The client ships its own copy of the generated modules under imagesvc_client.v1;
    with the server's in the same process, both share the descriptors and classes."""
    from imagesvc.v1 import image_service_pb2 as server_pb

    assert server_pb.DESCRIPTOR is pb.DESCRIPTOR
    assert server_pb.PullImageRequest is pb.PullImageRequest  # type: ignore[comparison-overlap]
    message = pb.PullImageRequest(reference="r:1")
    assert server_pb.PullImageRequest.FromString(message.SerializeToString()) == message


def test_the_client_requires_the_runtimes_its_stubs_were_generated_for() -> None:
    generated = Path(image_service_pb2_grpc.__file__).read_text()
    grpc_version = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", generated)
    messages = Path(pb.__file__).read_text()
    protobuf_version = re.search(
        r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),",
        messages,
    )
    assert grpc_version is not None
    assert protobuf_version is not None
    pyproject = tomllib.loads((CLIENT_ROOT / "pyproject.toml").read_text())
    dependencies = pyproject["project"]["dependencies"]
    assert f"grpcio>={grpc_version[1]},<2" in dependencies
    assert f"protobuf>={'.'.join(protobuf_version.groups())}" in dependencies
