"""imagesvc-cli, run as a subprocess against a scripted server on loopback, ends quietly
(exit 0 or 141, nothing on stderr) when the reader of its output goes away, in every
kind of command: tables, quiet ids, JSON, progress, --help, and errors on stderr."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from imagesvc_client.v1 import image_pb2, image_service_pb2_grpc
from imagesvc_client.v1 import image_service_pb2 as pb
from tests.integration.clients.closed_pipe import assert_ended_quietly, run_into_closed_pipe
from tests.unit.clients.scripted_server import serving

CLI = [sys.executable, "-m", "imagesvc_client.cli"]
IMAGES = 6000  # even their short ids (13 bytes a line) outgrow a pipe's 64 KiB buffer


def _image(n: int) -> image_pb2.Image:
    return image_pb2.Image(
        id="sha256:" + hashlib.sha256(str(n).encode()).hexdigest(),
        repo_tags=[f"team/app-{n}:1.0"],
        size=1000 * n,
    )


class ManyImages(image_service_pb2_grpc.ImageServiceServicer):
    def ListImages(self, request: pb.ListImagesRequest, context: Any) -> pb.ListImagesResponse:
        start = int(request.page_token or 0)
        end = min(start + 1000, IMAGES)
        return pb.ListImagesResponse(
            images=[_image(n) for n in range(start, end)],
            next_page_token=str(end) if end < IMAGES else "",
            total_size=IMAGES,
        )

    def GetImage(self, request: pb.GetImageRequest, context: Any) -> pb.GetImageResponse:
        context.abort(grpc.StatusCode.NOT_FOUND, f"no such image: {request.image}")
        raise AssertionError("abort returns no more")

    def PullImage(
        self, request: pb.PullImageRequest, context: Any
    ) -> Iterator[pb.PullImageResponse]:
        for n in range(2000):
            yield pb.PullImageResponse(
                progress=image_pb2.TransferProgress(status=f"status line {n} of a long pull")
            )
        yield pb.PullImageResponse(result=pb.PullImageResult(image_id="sha256:pulled"))


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    service = ManyImages()  # type: ignore[abstract]  # the other RPCs are not scripted
    with serving(service, workers=4) as address:
        yield address


COMMANDS = [
    ["ls"],
    ["ls", "-q"],
    ["--output", "json", "ls"],
    ["pull", "team/app:1.0"],
    ["--help"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_pipe_closed_before_the_first_write(address: str, command: list[str]) -> None:
    assert_ended_quietly(run_into_closed_pipe(CLI, address, *command))


@pytest.mark.parametrize("command", COMMANDS[:4], ids=" ".join)
def test_a_reader_that_takes_three_lines_and_goes(address: str, command: list[str]) -> None:
    """`imagesvc-cli ls | head -3`: the output outgrows the pipe's buffer, so the CLI is
    still writing when the reader goes away."""
    ended = run_into_closed_pipe(CLI, address, *command, read_lines=3)
    assert all(line.endswith(b"\n") for line in ended.lines_read), ended.lines_read
    assert_ended_quietly(ended)


def test_an_error_message_into_a_closed_pipe(address: str) -> None:
    """`imagesvc-cli inspect missing 2>&1 | head -0`: the message has no reader either."""
    assert_ended_quietly(run_into_closed_pipe(CLI, address, "inspect", "missing", stream="stderr"))
