"""The adapter's Engine stream hands out progress messages and raises an Engine error
line as its core error: the core and the instrumentation never see an error line. The
HTTP response is a requests.Response over bytes, as the Engine would send them."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests

from imagesvc.core.errors import FailedPreconditionError, NotFoundError, Reason, UnavailableError
from imagesvc.engine.docker_adapter import DockerEngineStream

STEP_FAILED = "The command '/bin/sh -c false' returned a non-zero code: 1"


def _stream(lines: list[Any], operation: str, registry: str = "") -> DockerEngineStream:
    def start() -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response.raw = io.BytesIO(b"".join(json.dumps(line).encode() + b"\r\n" for line in lines))
        return response

    return DockerEngineStream(start, operation, registry=registry)


def test_progress_lines_are_handed_out_in_order() -> None:
    lines = [{"status": "Pulling from library/busybox", "id": "1"}, {"status": "Digest: x"}]
    assert list(_stream(lines, "pull")) == lines


def test_a_pull_error_line_is_raised_as_its_core_error() -> None:
    stream = _stream(
        [
            {"status": "Pulling from library/busybox", "id": "nope"},
            {"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"},
            {"status": "never read"},
        ],
        "pull",
    )
    assert next(stream) == {"status": "Pulling from library/busybox", "id": "nope"}
    with pytest.raises(NotFoundError) as caught:
        next(stream)
    assert caught.value.reason is Reason.IMAGE_NOT_FOUND
    assert caught.value.message == "manifest unknown"


def test_a_build_error_line_is_a_build_failure() -> None:
    stream = _stream(
        [{"stream": "Step 1/1 : RUN false\n"}, {"errorDetail": {"message": STEP_FAILED}}],
        "build",
    )
    next(stream)
    with pytest.raises(FailedPreconditionError) as caught:
        next(stream)
    assert caught.value.reason is Reason.BUILD_FAILED
    assert caught.value.message == STEP_FAILED


RESET = "read tcp 127.0.0.1:58618->127.0.0.1:5000: read: connection reset by peer"


@pytest.mark.parametrize("operation", ["pull", "push"])
def test_an_unreachable_registry_is_named(operation: str) -> None:
    stream = _stream([{"errorDetail": {"message": RESET}}], operation, "127.0.0.1:5000")
    with pytest.raises(UnavailableError) as caught:
        next(stream)
    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    assert caught.value.message == (
        f"the registry 127.0.0.1:5000 is unavailable ({operation}): {RESET}"
    )


def test_other_errors_keep_the_engine_s_words() -> None:
    stream = _stream([{"errorDetail": {"message": "manifest unknown"}}], "pull", "127.0.0.1:5000")
    with pytest.raises(NotFoundError) as caught:
        next(stream)
    assert caught.value.message == "manifest unknown"
