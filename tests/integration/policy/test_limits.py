"""Limits on the real server: pulls over the maximum of concurrent pulls wait their turn
and succeed; a build over the maximum of concurrent builds waits the maximum wait, then
gets RESOURCE_EXHAUSTED with a RetryInfo delay; calls over the caller's rate are
answered at once with RESOURCE_EXHAUSTED and a RetryInfo delay (over gRPC and REST);
and the service recovers afterwards."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pytest

from devtools.sandbox import BuiltImage, Engine, Registry, build_busybox_image
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.builds import build_requests, dockerfile, make_tar, run_build, unique_repo
from tests.integration.local_images import expect_error
from tests.integration.policy.conftest import Running, retry_delay, running
from tests.integration.rpc_errors import error_info
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import read_pull, registry_manifest, remove_local, unique
from tests.scrape import scrape

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
_RUNNING_IN = re.compile(r"Running in [0-9a-f]{12}")
MAX_WAIT_SECONDS = 1.0
PULL = {"operation": "pull"}


@pytest.fixture
def one_build_at_a_time(engine: Engine) -> Iterator[Running]:
    with running(
        engine, max_concurrent_builds=1, max_queue_wait_seconds=MAX_WAIT_SECONDS
    ) as server:
        yield server


@pytest.fixture
def one_pull_at_a_time(engine: Engine) -> Iterator[Running]:
    with running(engine, max_concurrent_pulls=1, max_queue_wait_seconds=60) as server:
        yield server


# Tags of one image: pulls of different references, which never join one another.
TAGS = ("1", "2", "3", "4")


@pytest.fixture
def small_image(engine: Engine, open_registry: Registry) -> Iterator[tuple[str, str]]:
    """(repository, digest) of an image with a 1 MiB random layer in the open registry
    under each of TAGS, not on the Engine."""
    repository = unique("team/queued-")
    direct = [f"{open_registry.address}/{repository}:{tag}" for tag in TAGS]
    build_busybox_image(
        engine, direct[0], extra_lines=["RUN dd if=/dev/urandom of=/blob bs=1M count=1"]
    )
    for reference in direct[1:]:
        engine.docker("tag", direct[0], reference)
    engine.docker("push", "--all-tags", f"{open_registry.address}/{repository}")
    digest = registry_manifest(open_registry, repository, "1").digest
    remove_local(engine, *direct)
    yield repository, digest
    remove_local(engine, *direct)


def test_pulls_over_the_concurrency_limit_wait_their_turn_then_succeed(
    one_pull_at_a_time: Running, open_registry: Registry, small_image: tuple[str, str]
) -> None:
    stub = one_pull_at_a_time.stub
    port = one_pull_at_a_time.server.http_port
    repository, digest = small_image

    def pull(reference: str) -> pb.PullImageResult:
        request = pb.PullImageRequest(reference=reference)
        return read_pull(stub.PullImage(request, timeout=120))[1]

    # The registry stalls behind the proxy: the pull that gets the slot holds it. Pulls
    # of different references (identical pulls would join the running one instead).
    with ThrottleProxy(open_registry.address, rate=0) as proxy:
        references = [f"{proxy.address}/{repository}:{tag}" for tag in TAGS]
        with ThreadPoolExecutor(max_workers=3) as pool:
            pulls = [pool.submit(pull, reference) for reference in references[:3]]
            deadline = time.monotonic() + 30
            while scrape(port).value("imagesvc_limit_queue_length", PULL) != 2:
                assert time.monotonic() < deadline, "the pulls over the limit never queued"
                assert not any(p.done() for p in pulls), [p.exception() for p in pulls]
                time.sleep(0.1)
            # A queued pull whose deadline passes leaves the queue, taking no one's turn.
            late_request = pb.PullImageRequest(reference=references[3])
            with pytest.raises(grpc.RpcError) as late:
                read_pull(stub.PullImage(late_request, timeout=1))
            assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert scrape(port).value("imagesvc_limit_queue_length", PULL) == 2
            time.sleep(1.5)  # longer than a refusal's RetryInfo: still waiting, not refused
            assert not any(p.done() for p in pulls), [p.exception() for p in pulls]

            proxy.set_rate(None)
            results = [p.result(timeout=90) for p in pulls]
    assert [result.digest for result in results] == [digest] * 3
    after = scrape(port)
    assert after.value("imagesvc_limit_queue_length", PULL) == 0
    # The two that waited their turn and the one whose deadline passed.
    assert after.value("imagesvc_limit_queue_wait_seconds_count", PULL) == 3
    # The two waited at least the 1 s and 1.5 s above.
    assert after.value("imagesvc_limit_queue_wait_seconds_sum", PULL) >= 5.0


@pytest.fixture
def tags(engine: Engine) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for tag in made:
        engine.docker("image", "rm", "--force", tag, check=False)


def test_a_build_over_the_concurrency_limit_waits_the_maximum_then_is_refused(
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
    # It waited its turn for the maximum wait, and no slot became free.
    assert MAX_WAIT_SECONDS <= time.monotonic() - started < MAX_WAIT_SECONDS + 5
    assert refused.code() is EXHAUSTED
    assert "waited 1 s" in (refused.details() or "")
    assert "concurrent build slots" in (refused.details() or "")
    info = error_info(refused)
    assert info.reason == "CONCURRENCY_LIMIT"
    assert dict(info.metadata) == {"operation": "build", "limit": "1"}
    assert retry_delay(refused) == 1.0
    metrics = scrape(one_build_at_a_time.server.http_port)
    assert metrics.value("imagesvc_limit_queue_wait_seconds_count", {"operation": "build"}) == 1
    assert metrics.value("imagesvc_limit_queue_length", {"operation": "build"}) == 0

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
