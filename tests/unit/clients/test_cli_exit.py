"""imagesvc-cli as a process (`python -m imagesvc_client.cli`, what the console script
runs): it exits without the interpreter's teardown (cli.main.run), so these check that
everything it wrote still arrives and its exit code is the command's."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from imagesvc_client.v1 import image_pb2, image_service_pb2_grpc
from imagesvc_client.v1 import image_service_pb2 as pb
from tests.unit.clients.scripted_server import serving

CLI = [sys.executable, "-m", "imagesvc_client.cli"]
IMAGES = 3000  # ~200 KiB of `ls -q` output: more than any stream buffer holds


def _image_id(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


class Images(image_service_pb2_grpc.ImageServiceServicer):
    def ListImages(self, request: pb.ListImagesRequest, context: Any) -> pb.ListImagesResponse:
        return pb.ListImagesResponse(
            images=[image_pb2.Image(id=_image_id(n)) for n in range(IMAGES)],
            total_size=IMAGES,
        )

    def GetImage(self, request: pb.GetImageRequest, context: Any) -> pb.GetImageResponse:
        context.abort(grpc.StatusCode.NOT_FOUND, f"no such image: {request.image}")
        raise AssertionError("abort returns no more")


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with serving(Images()) as address:  # type: ignore[abstract]  # the rest is not scripted
        yield address


def _cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESVC_")}
    environment.update({"IMAGESVC_SERVER": address, "NO_COLOR": "1"})
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=environment, timeout=60, check=False
    )


def test_all_output_arrives_before_the_exit(address: str) -> None:
    done = _cli(address, "ls", "--no-trunc", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [_image_id(n) for n in range(IMAGES)]
    assert done.stderr == ""


def test_a_failed_command_keeps_its_exit_code_and_message(address: str) -> None:
    done = _cli(address, "inspect", "team/missing:1.0")
    assert done.returncode == 1
    assert "no such image: team/missing:1.0" in done.stderr


def test_usage_errors_leave_the_usual_way() -> None:
    done = _cli("127.0.0.1:1", "build", "--no-such-flag", ".")
    assert done.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in done.stderr
