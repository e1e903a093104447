"""A build whose caller goes away (cancel, deadline) stops on the daemon too."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

from devtools.sandbox import BuiltImage, Engine
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.builds import (
    build_requests,
    dockerfile,
    make_tar,
    read_build,
    run_build,
    unique_repo,
)

Stub = image_service_pb2_grpc.ImageServiceStub

_RUNNING_IN = re.compile(r"Running in ([0-9a-f]{12})")
# The container must be gone this soon after the caller left (the RUN would take 30 s).
_GONE_WITHIN = 5.0


def _sleep_build(busybox_image: BuiltImage, marker: str) -> bytes:
    return make_tar(
        {
            "Dockerfile": dockerfile(
                f"FROM {busybox_image.tag}",
                f"RUN echo {marker} && sleep 30",
                "RUN echo after-the-sleep",
            )
        }
    )


def _echoed(marker: str, text: str) -> bool:
    """Whether the RUN step printed the marker (the step line also holds it)."""
    return re.search(rf"^{re.escape(marker)}$", text, re.MULTILINE) is not None


def _containers(engine: Engine) -> list[str]:
    """`ID COMMAND` of every container on the engine, running or not."""
    listed = engine.docker("ps", "--all", "--no-trunc", "--format", "{{.ID}} {{.Command}}")
    return [line for line in listed.stdout.splitlines() if line.strip()]


def _wait_gone(engine: Engine, container_prefix: str, marker: str) -> float:
    """Seconds until no container with that id (or running the marker) exists."""
    started = time.monotonic()
    while True:
        left = [c for c in _containers(engine) if c.startswith(container_prefix) or marker in c]
        elapsed = time.monotonic() - started
        if not left:
            return elapsed
        assert elapsed < _GONE_WITHIN, f"build container still there after {elapsed:.1f}s: {left}"
        time.sleep(0.05)


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, float]]:
    """(grpc_code, duration_ms) of each BuildImage access-log line the server wrote."""
    return [
        (str(getattr(record, "grpc_code", "")), float(getattr(record, "duration_ms", -1)))
        for record in caplog.records
        if record.name == "imagesvc.access"
        and getattr(record, "grpc_method", "") == "/imagesvc.v1.ImageService/BuildImage"
    ]


def _assert_no_image(engine: Engine, tag: str) -> None:
    assert engine.docker("image", "inspect", tag, check=False).returncode != 0


def _assert_still_serving(stub: Stub, engine: Engine, busybox_image: BuiltImage) -> None:
    tag = f"{unique_repo('after-cancel')}:1"
    context = make_tar(
        {"Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "RUN echo still-serving")}
    )
    try:
        outcome = run_build(stub, pb.BuildOptions(tags=[tag]), context, timeout=30)
        result = outcome.succeeded()
        assert "still-serving" in outcome.text
        inspected = engine.docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
        assert result.image_id == inspected
    finally:
        engine.docker("image", "rm", "--force", tag, check=False)


@pytest.fixture
def tag(engine: Engine) -> Iterator[str]:
    name = f"{unique_repo('cancel')}:1"
    yield name
    engine.docker("image", "rm", "--force", name, check=False)


def test_cancel_mid_build_removes_the_build_container(
    stub: Stub,
    engine: Engine,
    busybox_image: BuiltImage,
    tag: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="imagesvc.access")
    marker = f"cancel-{uuid.uuid4().hex}"
    requests = build_requests(pb.BuildOptions(tags=[tag]), _sleep_build(busybox_image, marker))
    call = stub.BuildImage(iter(requests), timeout=60)
    logs: list[str] = []
    container = ""
    for response in call:
        logs.append(response.log)
        text = "".join(logs)
        match = _RUNNING_IN.search(text)
        # Once the RUN step's own output shows, its container is in the sleep.
        if match and _echoed(marker, text):
            container = match.group(1)
            break
    assert container, "".join(logs)
    # The RUN step is running on the daemon right now.
    assert any(c.startswith(container) for c in _containers(engine))

    call.cancel()
    cancelled_at = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        for _ in call:
            pass
    assert caught.value.code() is grpc.StatusCode.CANCELLED

    gone_after = _wait_gone(engine, container, marker)
    # Measured: under 0.1 s on the sandboxed engine.
    print(f"build container gone {gone_after:.2f}s after the cancel")
    assert time.monotonic() - cancelled_at < _GONE_WITHIN
    # The rest of the Dockerfile never runs and the tag never appears.
    time.sleep(1.0)
    _assert_no_image(engine, tag)
    assert not any(marker in c or "after-the-sleep" in c for c in _containers(engine))
    # The server's access log says what happened to the call.
    assert [code for code, _ in _access_lines(caplog)] == ["CANCELLED"]
    _assert_still_serving(stub, engine, busybox_image)


def test_deadline_mid_build_removes_the_build_container(
    stub: Stub,
    engine: Engine,
    busybox_image: BuiltImage,
    tag: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="imagesvc.access")
    marker = f"deadline-{uuid.uuid4().hex}"
    requests = build_requests(pb.BuildOptions(tags=[tag]), _sleep_build(busybox_image, marker))
    started = time.monotonic()
    outcome = read_build(stub.BuildImage(iter(requests), timeout=3))
    failed_at = time.monotonic()
    text = outcome.text
    assert outcome.failed().code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 2.5 < failed_at - started < 10
    # It did reach the sleeping RUN step before the deadline.
    match = _RUNNING_IN.search(text)
    assert match, text
    assert _echoed(marker, text)

    gone_after = _wait_gone(engine, match.group(1), marker)
    print(f"build container gone {gone_after:.2f}s after the deadline")
    time.sleep(1.0)
    _assert_no_image(engine, tag)
    assert not any(marker in c for c in _containers(engine))
    # The server's side of the call ended at the deadline. The client's expiry reaches the
    # server as a cancel (RST_STREAM) a few ms before its own deadline timer, so the access
    # log says CANCELLED, as gRPC core does.
    [(code, duration_ms)] = _access_lines(caplog)
    assert code in ("CANCELLED", "DEADLINE_EXCEEDED")
    assert 2500 < duration_ms < 6000
    _assert_still_serving(stub, engine, busybox_image)
