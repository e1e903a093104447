"""Failures of the local-image RPCs: a daemon that is not there, malformed references
and missing arguments. Each ends in a clean status with an ErrorInfo, and the server
keeps serving afterwards."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from devtools.sandbox import BuiltImage
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.conftest import server_settings
from tests.integration.local_images import MALFORMED, Stub, assert_serving, expect_error

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract


@dataclass(frozen=True)
class Unreachable:
    socket: Path
    stub: Stub


@pytest.fixture(scope="module")
def unreachable() -> Iterator[Unreachable]:
    """A server whose DOCKER_HOST is a unix socket that does not exist."""
    socket = Path(f"/tmp/imagesvc-missing-{uuid.uuid4().hex[:12]}.sock")
    assert not socket.exists()
    running = ThreadedServer(server_settings(f"unix://{socket}"))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield Unreachable(socket, image_service_pb2_grpc.ImageServiceStub(channel))
    finally:
        running.stop()


def _calls(stub: Stub) -> dict[str, tuple[Callable[..., Any], Any]]:
    return {
        "ListImages": (stub.ListImages, pb.ListImagesRequest()),
        "GetImage": (stub.GetImage, pb.GetImageRequest(image="imagesvc-test/busybox:1.0")),
        "GetImageHistory": (
            stub.GetImageHistory,
            pb.GetImageHistoryRequest(image="imagesvc-test/busybox:1.0"),
        ),
        "TagImage": (
            stub.TagImage,
            pb.TagImageRequest(source="imagesvc-test/busybox:1.0", target="imagesvc-test/x:1"),
        ),
        "RemoveImage": (stub.RemoveImage, pb.RemoveImageRequest(image="imagesvc-test/x:1")),
        "PruneImages": (stub.PruneImages, pb.PruneImagesRequest(labels=["never=matches"])),
    }


def _assert_daemon_unavailable(stub: Stub, method: str) -> str:
    call, request = _calls(stub)[method]
    started = time.monotonic()
    error = expect_error(
        call, request, grpc.StatusCode.UNAVAILABLE, "DAEMON_UNAVAILABLE", timeout=10
    )
    assert time.monotonic() - started < 5, "a missing socket must fail fast, not time out"
    message = error.details() or ""
    # The message says what is wrong and what to check.
    assert "not reachable" in message
    assert "DOCKER_HOST" in message
    return message


def test_list_images_without_a_daemon(unreachable: Unreachable) -> None:
    first = _assert_daemon_unavailable(unreachable.stub, "ListImages")
    # The server keeps serving: the next call gets the same clean error.
    second = _assert_daemon_unavailable(unreachable.stub, "ListImages")
    assert second == first
    assert not unreachable.socket.exists()


@pytest.mark.parametrize(
    "method", ["GetImage", "GetImageHistory", "TagImage", "RemoveImage", "PruneImages"]
)
def test_every_local_image_call_without_a_daemon(unreachable: Unreachable, method: str) -> None:
    _assert_daemon_unavailable(unreachable.stub, method)
    _assert_daemon_unavailable(unreachable.stub, "ListImages")


def test_argument_errors_come_before_the_daemon(unreachable: Unreachable) -> None:
    """A request that is wrong whatever the daemon says is refused without asking it."""
    expect_error(
        unreachable.stub.GetImage,
        pb.GetImageRequest(image="a b"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REFERENCE",
    )
    expect_error(
        unreachable.stub.ListImages,
        pb.ListImagesRequest(page_token="forged"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    expect_error(
        unreachable.stub.RemoveImage,
        pb.RemoveImageRequest(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize("reference", MALFORMED)
def test_malformed_reference_in_every_call(
    stub: Stub, busybox_image: BuiltImage, reference: str
) -> None:
    requests: list[tuple[Callable[..., Any], Any]] = [
        (stub.RemoveImage, pb.RemoveImageRequest(image=reference)),
        (stub.RemoveImage, pb.RemoveImageRequest(image=reference, force=True)),
        (stub.TagImage, pb.TagImageRequest(source=reference, target="imagesvc-test/never:1")),
        (stub.ListImages, pb.ListImagesRequest(filter=pb.ImageFilter(since=reference))),
        (stub.ListImages, pb.ListImagesRequest(filter=pb.ImageFilter(before=reference))),
    ]
    for call, request in requests:
        error = expect_error(call, request, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REFERENCE")
        assert "reference" in (error.details() or "").lower(), error.details()
    assert_serving(stub, busybox_image)


@pytest.mark.parametrize(
    ("method", "request_message"),
    [
        ("GetImage", pb.GetImageRequest()),
        ("GetImageHistory", pb.GetImageHistoryRequest()),
        ("RemoveImage", pb.RemoveImageRequest(force=True)),
        ("TagImage", pb.TagImageRequest()),
    ],
)
def test_missing_required_field(
    stub: Stub, busybox_image: BuiltImage, method: str, request_message: Any
) -> None:
    error = expect_error(
        getattr(stub, method),
        request_message,
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    assert "required" in (error.details() or "")
    assert_serving(stub, busybox_image)


def test_many_failures_in_a_row_leave_the_server_serving(
    stub: Stub, busybox_image: BuiltImage
) -> None:
    for _ in range(20):
        expect_error(
            stub.GetImage,
            pb.GetImageRequest(image=f"imagesvc-test/missing-{uuid.uuid4().hex[:8]}:1"),
            grpc.StatusCode.NOT_FOUND,
            "IMAGE_NOT_FOUND",
        )
        expect_error(
            stub.GetImage,
            pb.GetImageRequest(image="x@sha256:zz"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REFERENCE",
        )
    assert_serving(stub, busybox_image)
