"""Limits on the real server: a build over the maximum of concurrent builds, and calls
over the caller's rate, are answered at once with RESOURCE_EXHAUSTED and a RetryInfo
delay (over gRPC and REST), and the service recovers afterwards."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest

from devtools.sandbox import BuiltImage, Engine
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.builds import build_requests, dockerfile, make_tar, run_build, unique_repo
from tests.integration.local_images import expect_error
from tests.integration.policy.conftest import Running, retry_delay, running
from tests.integration.rpc_errors import error_info

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
_RUNNING_IN = re.compile(r"Running in [0-9a-f]{12}")


@pytest.fixture
def one_build_at_a_time(engine: Engine) -> Iterator[Running]:
    with running(engine, max_concurrent_builds=1) as server:
        yield server


@pytest.fixture
def tags(engine: Engine) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for tag in made:
        engine.docker("image", "rm", "--force", tag, check=False)


def test_a_build_over_the_concurrency_limit_is_refused_then_admitted(
    one_build_at_a_time: Running, busybox_image: BuiltImage, tags: list[str]
) -> None:
    stub = one_build_at_a_time.stub
    slow = f"{unique_repo('slow')}:1"
    quick = f"{unique_repo('quick')}:1"
    tags += [slow, quick]
    quick_context = make_tar({"Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "RUN true")})
    requests = build_requests(
        pb.BuildOptions(tags=[slow]),
        make_tar({"Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "RUN sleep 30")}),
    )
    running_build = stub.BuildImage(iter(requests), timeout=60)
    text = ""
    for response in running_build:
        text += response.log
        if _RUNNING_IN.search(text):
            break
    started = time.monotonic()
    refused = run_build(stub, pb.BuildOptions(tags=[quick]), quick_context).failed()
    assert time.monotonic() - started < 2  # answered at once, not queued
    assert refused.code() is EXHAUSTED
    info = error_info(refused)
    assert info.reason == "CONCURRENCY_LIMIT"
    assert dict(info.metadata) == {"operation": "build", "limit": "1"}
    assert retry_delay(refused) == 1.0

    running_build.cancel()
    # Once the slot is free, a build is admitted again (retrying as RetryInfo says).
    deadline = time.monotonic() + 15
    while True:
        outcome = run_build(stub, pb.BuildOptions(tags=[quick]), quick_context)
        if outcome.error is None:
            break
        assert outcome.error.code() is EXHAUSTED, outcome.error.details()
        assert time.monotonic() < deadline, "the slot of the cancelled build was never freed"
        time.sleep(retry_delay(outcome.error))
    outcome.succeeded()


@pytest.fixture
def rate_limited(engine: Engine) -> Iterator[Running]:
    # One token every 2 s: the REST call below comes well within that window.
    with running(engine, rate_limit_per_second=0.5, rate_limit_burst=3) as server:
        yield server


def test_calls_over_the_rate_get_resource_exhausted_with_a_delay_then_recover(
    rate_limited: Running, busybox_image: BuiltImage
) -> None:
    stub = rate_limited.stub
    for _ in range(3):
        stub.ListImages(pb.ListImagesRequest(page_size=1), timeout=10)
    error = expect_error(
        stub.GetImage, pb.GetImageRequest(image=busybox_image.tag), EXHAUSTED, "TOO_MANY_REQUESTS"
    )
    info = error_info(error)
    # Callers without credentials are kept apart by their address.
    assert info.metadata["caller"] == "anonymous@127.0.0.1"
    delay = retry_delay(error)
    assert 0 < delay <= 2.0

    # The REST port shares the caller's bucket: 429 with the same RetryInfo detail.
    with httpx.Client(base_url=rate_limited.http_url, timeout=10, trust_env=False) as client:
        response = client.get("/v1/images", params={"pageSize": 1})
    assert response.status_code == 429, response.text
    details = {d["@type"].rsplit(".", 1)[-1]: d for d in response.json()["details"]}
    assert details["ErrorInfo"]["reason"] == "TOO_MANY_REQUESTS"
    assert float(details["RetryInfo"]["retryDelay"].removesuffix("s")) > 0

    time.sleep(delay + 0.05)
    reply = stub.GetImage(pb.GetImageRequest(image=busybox_image.tag), timeout=10)
    assert reply.image.id == busybox_image.id
