"""/metrics after real calls against the real engine: each counter and histogram count
moves by exactly what the calls did, under the right labels.

The module runs its own server (so nothing else moves its counters) and compares a
scrape before with one after. Its image gauges are refreshed only after this service
changed the images (interval one hour), so the Engine list calls are predictable too.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.sandbox import BuiltImage, Engine, Registry
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.builds import (
    build_requests,
    dockerfile,
    make_tar,
    read_build,
    run_build_requests,
    unique_repo,
)
from tests.integration.conftest import server_settings
from tests.integration.transfers import read_pull, read_push, remove_local, unique
from tests.scrape import Scrape, delta, scrape

Stub = image_service_pb2_grpc.ImageServiceStub

IMAGES = "imagesvc.v1.ImageService"
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
# grpc-go's names of the 17 codes, as go-grpc-middleware labels grpc_code.
GO_CODES = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "Unauthenticated",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
]
# client_golang's prometheus.DefBuckets.
DEF_BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0")

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def rpc(method: str, kind: str, service: str = IMAGES) -> dict[str, str]:
    return {"grpc_type": kind, "grpc_service": service, "grpc_method": method}


def handled(method: str, kind: str, code: str, service: str = IMAGES) -> dict[str, str]:
    return {**rpc(method, kind, service), "grpc_code": code}


def assert_rpc_moved(
    before: Scrape,
    after: Scrape,
    labels: dict[str, str],
    *,
    codes: dict[str, int],
    received: int,
    sent: int,
) -> None:
    """The five gRPC series of one method moved by exactly this much."""
    calls = sum(codes.values())
    assert delta(before, after, "grpc_server_started_total", labels) == calls
    for code in GO_CODES:
        moved = delta(before, after, "grpc_server_handled_total", {**labels, "grpc_code": code})
        assert moved == codes.get(code, 0), f"{labels['grpc_method']} {code}: {moved}"
    assert delta(before, after, "grpc_server_msg_received_total", labels) == received
    assert delta(before, after, "grpc_server_msg_sent_total", labels) == sent
    assert delta(before, after, "grpc_server_handling_seconds_count", labels) == calls
    inf = {**labels, "le": "+Inf"}
    assert delta(before, after, "grpc_server_handling_seconds_bucket", inf) == calls


def engine_calls(before: Scrape, after: Scrape, operation: str) -> float:
    return delta(
        before, after, "imagesvc_engine_call_duration_seconds_count", {"operation": operation}
    )


def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {within}s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def metered(engine: Engine) -> Iterator[ThreadedServer]:
    running = ThreadedServer(server_settings(engine.host, image_stats_interval_seconds=3600))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def metered_channel(metered: ThreadedServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{metered.port}") as opened:
        yield opened


@pytest.fixture(scope="module")
def metered_stub(metered_channel: grpc.Channel) -> Stub:
    return image_service_pb2_grpc.ImageServiceStub(metered_channel)


def now(server: ThreadedServer) -> Scrape:
    return scrape(server.http_port)


def quiet(server: ThreadedServer) -> Scrape:
    """A scrape once the live image index is live and has made no Engine call for half a
    second (it refreshes what earlier tests' images did, which would count below)."""
    index = server.server.index
    assert index is not None
    wait_for(lambda: index.live, 30, "the image index to go live")
    last = now(server)
    deadline = time.monotonic() + 30
    while True:
        time.sleep(0.5)
        current = now(server)
        if (
            engine_calls(last, current, "inspect_image") == 0
            and engine_calls(last, current, "list_images") == 0
        ):
            return current
        assert time.monotonic() < deadline, "the image index never went quiet"
        last = current


# Start-up -------------------------------------------------------------------------------


def test_every_method_of_every_service_has_its_series_at_start(engine: Engine) -> None:
    fresh = ThreadedServer(server_settings(engine.host))
    try:
        metrics = now(fresh)
    finally:
        fresh.stop()
    methods = {
        (IMAGES, "ListImages", "unary"),
        (IMAGES, "GetImage", "unary"),
        (IMAGES, "GetImageHistory", "unary"),
        (IMAGES, "PullImage", "server_stream"),
        (IMAGES, "TagImage", "unary"),
        (IMAGES, "PushImage", "server_stream"),
        (IMAGES, "BuildImage", "bidi_stream"),
        (IMAGES, "RemoveImage", "unary"),
        (IMAGES, "PruneImages", "unary"),
        (IMAGES, "CheckRegistryAuth", "unary"),
        (IMAGES, "InspectRegistryImage", "unary"),
        (IMAGES, "CheckImageUpdates", "unary"),
        (HEALTH, "Check", "unary"),
        (HEALTH, "Watch", "server_stream"),
        (REFLECTION, "ServerReflectionInfo", "bidi_stream"),
    }
    for name in (
        "grpc_server_started_total",
        "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total",
        "grpc_server_handling_seconds_count",
    ):
        series = {
            (labels["grpc_service"], labels["grpc_method"], labels["grpc_type"]): value
            for labels, value in metrics.samples(name)
        }
        assert set(series) >= methods, name
        assert all(series[m] == 0 for m in methods), name
    for service, method, kind in methods:
        labels = rpc(method, kind, service)
        for code in GO_CODES:
            assert metrics.value("grpc_server_handled_total", {**labels, "grpc_code": code}) == 0
        buckets = [
            got["le"]
            for got, value in metrics.samples("grpc_server_handling_seconds_bucket")
            if {k: v for k, v in got.items() if k != "le"} == labels and value == 0
        ]
        assert buckets == [*DEF_BUCKETS, "+Inf"]
    # Nothing but these codes, these types and the provider's label names.
    for labels, _ in metrics.samples("grpc_server_handled_total"):
        assert set(labels) == {"grpc_type", "grpc_service", "grpc_method", "grpc_code"}
        assert labels["grpc_code"] in GO_CODES
        assert labels["grpc_type"] in ("unary", "client_stream", "server_stream", "bidi_stream")
    # The process collectors of the default registry are there too.
    assert metrics.value("process_open_fds") > 0
    assert metrics.samples("python_info")


# Unary calls ----------------------------------------------------------------------------


def test_unary_calls_and_their_failures(
    metered: ThreadedServer,
    metered_stub: Stub,
    metered_channel: grpc.Channel,
    busybox_image: BuiltImage,
) -> None:
    health: Any = health_pb2_grpc.HealthStub(metered_channel)
    before = quiet(metered)

    metered_stub.ListImages(pb.ListImagesRequest(page_size=5), timeout=10)
    metered_stub.GetImage(pb.GetImageRequest(image=busybox_image.tag), timeout=10)
    with pytest.raises(grpc.RpcError) as missing:
        metered_stub.GetImage(pb.GetImageRequest(image="imagesvc-test/no-such:1"), timeout=10)
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as empty:  # refused before any Engine call
        metered_stub.GetImage(pb.GetImageRequest(image=""), timeout=10)
    assert empty.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    health.Check(health_pb2.HealthCheckRequest(service=IMAGES), timeout=5)
    with pytest.raises(grpc.RpcError) as unknown:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND

    after = now(metered)
    assert_rpc_moved(before, after, rpc("ListImages", "unary"), codes={"OK": 1}, received=1, sent=1)
    assert_rpc_moved(
        before,
        after,
        rpc("GetImage", "unary"),
        codes={"OK": 1, "NotFound": 1, "InvalidArgument": 1},
        received=3,
        sent=1,
    )
    assert_rpc_moved(
        before,
        after,
        rpc("Check", "unary", HEALTH),
        codes={"OK": 1, "NotFound": 1},
        received=2,
        sent=1,
    )
    # Methods nobody called did not move.
    assert_rpc_moved(before, after, rpc("TagImage", "unary"), codes={}, received=0, sent=0)

    # Two inspects reached the Engine; one found nothing.
    assert engine_calls(before, after, "inspect_image") == 2
    errors = {"operation": "inspect_image", "reason": "IMAGE_NOT_FOUND"}
    assert delta(before, after, "imagesvc_engine_call_errors_total", errors) == 1


# Streams --------------------------------------------------------------------------------


def _manifest_layer_bytes(registry: Registry, repository: str, tag: str) -> int:
    url = f"{registry.url}/v2/{repository}/manifests/{tag}"
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(  # noqa: S310 (loopback, checked above)
        url, headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    )
    with _DIRECT.open(request, timeout=10) as response:
        manifest = json.loads(response.read())
    return sum(int(layer["size"]) for layer in manifest["layers"])


def test_push_then_pull_of_a_fresh_image(
    metered: ThreadedServer, metered_stub: Stub, engine: Engine, open_registry: Registry
) -> None:
    repository = unique("team/metrics-")
    reference = f"{open_registry.address}/{repository}:1"
    # FROM scratch and one layer of random bytes: nothing the registry or Engine has.
    payload = (unique("") * 40_000).encode()[:300_000]
    outcome = run_build_requests(
        metered_stub,
        build_requests(
            pb.BuildOptions(tags=[reference]),
            make_tar(
                {"Dockerfile": dockerfile("FROM scratch", "COPY blob /blob"), "blob": payload}
            ),
        ),
    )
    outcome.succeeded()
    try:
        before = now(metered)
        pushed = list(metered_stub.PushImage(pb.PushImageRequest(reference=reference), timeout=60))
        progress, _ = read_push(iter(pushed))
        after_push = now(metered)
        assert_rpc_moved(
            before,
            after_push,
            rpc("PushImage", "server_stream"),
            codes={"OK": 1},
            received=1,
            sent=len(pushed),
        )
        assert delta(before, after_push, "imagesvc_pushes_total", {"outcome": "success"}) == 1
        assert engine_calls(before, after_push, "push") == 1
        pushed_bytes = delta(before, after_push, "imagesvc_pushed_bytes_total")
        assert pushed_bytes == progress[-1].bytes_done > 0

        remove_local(engine, reference)
        pulled = list(metered_stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60))
        progress, _ = read_pull(iter(pulled))
        after_pull = now(metered)
        assert_rpc_moved(
            after_push,
            after_pull,
            rpc("PullImage", "server_stream"),
            codes={"OK": 1},
            received=1,
            sent=len(pulled),
        )
        assert delta(after_push, after_pull, "imagesvc_pulls_total", {"outcome": "success"}) == 1
        assert engine_calls(after_push, after_pull, "pull") == 1
        # Every layer was downloaded: exactly the compressed sizes the manifest lists.
        pulled_bytes = delta(after_push, after_pull, "imagesvc_pulled_bytes_total")
        assert pulled_bytes == _manifest_layer_bytes(open_registry, repository, "1")
        assert pulled_bytes == progress[-1].bytes_done
        for operation in ("pull", "push", "build"):
            labels = {"operation": operation}
            assert after_pull.value("imagesvc_engine_streams_in_flight", labels) == 0

        # A pull of a tag the registry does not have.
        with pytest.raises(grpc.RpcError) as missing:
            read_pull(
                metered_stub.PullImage(
                    pb.PullImageRequest(reference=f"{open_registry.address}/{repository}:2"),
                    timeout=60,
                )
            )
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        failed = now(metered)
        assert_rpc_moved(
            after_pull,
            failed,
            rpc("PullImage", "server_stream"),
            codes={"NotFound": 1},
            received=1,
            sent=0,
        )
        assert delta(after_pull, failed, "imagesvc_pulls_total", {"outcome": "failure"}) == 1
        errors = {"operation": "pull", "reason": "IMAGE_NOT_FOUND"}
        assert delta(after_pull, failed, "imagesvc_engine_call_errors_total", errors) == 1
        assert delta(after_pull, failed, "imagesvc_pulled_bytes_total") == 0
    finally:
        remove_local(engine, reference)


def test_build_counts_every_message_it_received(
    metered: ThreadedServer, metered_stub: Stub, engine: Engine, busybox_image: BuiltImage
) -> None:
    tag = f"{unique_repo('metrics')}:1"
    context = make_tar(
        {
            "Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "COPY data /data"),
            "data": unique("").encode() * 2000,
        }
    )
    requests = build_requests(pb.BuildOptions(tags=[tag]), context, chunk_size=4096)
    assert len(requests) > 5
    try:
        before = now(metered)
        responses = list(metered_stub.BuildImage(iter(requests), timeout=60))
        read_build(iter(responses)).succeeded()
        after = now(metered)
        assert_rpc_moved(
            before,
            after,
            rpc("BuildImage", "bidi_stream"),
            codes={"OK": 1},
            received=len(requests),
            sent=len(responses),
        )
        assert delta(before, after, "imagesvc_builds_total", {"outcome": "success"}) == 1
        assert delta(before, after, "imagesvc_builds_total", {"outcome": "failure"}) == 0
        success = {"outcome": "success"}
        assert delta(before, after, "imagesvc_build_duration_seconds_count", success) == 1
        assert engine_calls(before, after, "build") == 1

        # A RUN step that fails.
        failing = make_tar({"Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "RUN exit 3")})
        outcome = run_build_requests(
            metered_stub, build_requests(pb.BuildOptions(tags=[f"{tag}-bad"]), failing)
        )
        assert outcome.failed().code() is grpc.StatusCode.FAILED_PRECONDITION
        failed = now(metered)
        assert_rpc_moved(
            after,
            failed,
            rpc("BuildImage", "bidi_stream"),
            codes={"FailedPrecondition": 1},
            received=2,
            sent=len(outcome.logs),
        )
        assert delta(after, failed, "imagesvc_builds_total", {"outcome": "failure"}) == 1
        errors = {"operation": "build", "reason": "BUILD_FAILED"}
        assert delta(after, failed, "imagesvc_engine_call_errors_total", errors) == 1
    finally:
        remove_local(engine, tag)


def test_a_cancelled_build_is_in_flight_until_it_is_cancelled(
    metered: ThreadedServer, metered_stub: Stub, busybox_image: BuiltImage
) -> None:
    context = make_tar(
        {"Dockerfile": dockerfile(f"FROM {busybox_image.tag}", f"RUN sleep 30 # {unique('')}")}
    )
    before = now(metered)
    call = metered_stub.BuildImage(iter(build_requests(pb.BuildOptions(), context)), timeout=60)
    reader = threading.Thread(target=read_build, args=(call,), daemon=True)
    reader.start()
    in_flight = {"operation": "build"}
    wait_for(
        lambda: now(metered).value("imagesvc_engine_streams_in_flight", in_flight) == 1,
        20,
        "the build to reach the Engine",
    )
    call.cancel()
    reader.join(timeout=10)
    wait_for(
        lambda: now(metered).value("imagesvc_engine_streams_in_flight", in_flight) == 0,
        10,
        "the build to end",
    )
    after = now(metered)
    assert delta(before, after, "imagesvc_builds_total", {"outcome": "canceled"}) == 1
    assert delta(before, after, "imagesvc_builds_total", {"outcome": "failure"}) == 0
    labels = rpc("BuildImage", "bidi_stream")
    assert delta(before, after, "grpc_server_started_total", labels) == 1
    wait_for(
        lambda: (
            delta(
                before,
                now(metered),
                "grpc_server_handled_total",
                {**labels, "grpc_code": "Canceled"},
            )
            == 1
        ),
        5,
        "the cancelled call to be counted",
    )


# Daemon gauges ---------------------------------------------------------------------------


def _engine_images(engine: Engine) -> tuple[int, int]:
    """(images, sum of their sizes) as the Engine reports them to the docker CLI."""
    ids = sorted(set(engine.docker("image", "ls", "--quiet", "--no-trunc").stdout.split()))
    if not ids:
        return 0, 0
    sizes = engine.docker("image", "inspect", "--format", "{{.Size}}", *ids).stdout.split()
    return len(ids), sum(int(size) for size in sizes)


def test_image_gauges_follow_the_images_this_service_changes(
    metered: ThreadedServer, metered_stub: Stub, engine: Engine, busybox_image: BuiltImage
) -> None:
    def gauges() -> tuple[int, int]:
        metrics = now(metered)
        return (
            int(metrics.value("imagesvc_docker_images")),
            int(metrics.value("imagesvc_docker_images_size_bytes")),
        )

    wait_for(lambda: gauges() == _engine_images(engine), 5, "the gauges to match the Engine")
    tag = f"{unique_repo('gauges')}:1"
    context = make_tar(
        {
            "Dockerfile": dockerfile(f"FROM {busybox_image.tag}", "COPY data /data"),
            "data": unique("").encode() * 5000,
        }
    )
    images, size = gauges()
    try:
        run_build_requests(
            metered_stub, build_requests(pb.BuildOptions(tags=[tag]), context)
        ).succeeded()
        expected = _engine_images(engine)
        assert expected[0] == images + 1
        assert expected[1] > size
        wait_for(lambda: gauges() == expected, 5, "the gauges to count the new image")
        metered_stub.RemoveImage(pb.RemoveImageRequest(image=tag), timeout=30)
        wait_for(lambda: gauges() == (images, size), 5, "the gauges to drop the image")
    finally:
        remove_local(engine, tag)


def test_daemon_up_and_engine_info(metered: ThreadedServer, engine: Engine) -> None:
    metrics = now(metered)
    assert metrics.value("imagesvc_docker_daemon_up") == 1
    server = json.loads(engine.docker("version", "--format", "{{json .Server}}").stdout)
    [(labels, value)] = metrics.samples("imagesvc_docker_engine_info")
    assert value == 1
    assert labels == {
        "version": server["Version"],
        "api_version": server["ApiVersion"],
        "min_api_version": server["MinAPIVersion"],
        "os": server["Os"],
        "arch": server["Arch"],
    }


# HTTP -----------------------------------------------------------------------------------


def test_http_requests_are_counted_by_route_template(metered: ThreadedServer) -> None:
    base = f"http://127.0.0.1:{metered.http_port}"
    secret_name = f"imagesvc-test/{unique('private-')}"
    before = now(metered)
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/readyz").status_code == 200
    assert httpx.post(f"{base}/metrics").status_code == 405
    assert httpx.get(f"{base}/no/{secret_name}").status_code == 404
    assert httpx.request("BREW", f"{base}/healthz").status_code == 405
    after = now(metered)

    def moved(method: str, route: str, code: str) -> float:
        labels = {"method": method, "route": route, "code": code}
        return delta(before, after, "imagesvc_http_requests_total", labels)

    assert moved("GET", "/healthz", "200") == 2
    assert moved("GET", "/readyz", "200") == 1
    assert moved("POST", "/metrics", "405") == 1
    assert moved("GET", "unmatched", "404") == 1
    assert moved("other", "/healthz", "405") == 1
    # The scrape `before` itself was answered and counted before `after` was taken.
    assert moved("GET", "/metrics", "200") == 1
    duration = {"method": "GET", "route": "/healthz"}
    assert delta(before, after, "imagesvc_http_request_duration_seconds_count", duration) == 2
    # A raw path never becomes a label.
    assert secret_name not in after.text
    for labels, _ in after.samples("imagesvc_http_requests_total"):
        assert labels["route"] in {"/healthz", "/readyz", "/metrics", "unmatched"} or (
            labels["route"].startswith("/v1/") and "{" in labels["route"]
        )


def test_rest_calls_are_counted_by_their_route_template(
    metered: ThreadedServer, busybox_image: BuiltImage
) -> None:
    base = f"http://127.0.0.1:{metered.http_port}"
    missing = f"imagesvc-test/{unique('missing-')}:1"
    # The live image index answers what it was asked before from memory: ask it once.
    index = metered.server.index
    assert index is not None
    deadline = time.monotonic() + 30
    while not index.live:
        assert time.monotonic() < deadline, "the image index never went live"
        time.sleep(0.05)
    for path in ("", "/history"):
        httpx.get(f"{base}/v1/images/{quote(busybox_image.tag, safe='')}{path}", timeout=10)
    before = now(metered)
    found = httpx.get(f"{base}/v1/images/{quote(busybox_image.tag, safe='')}", timeout=10)
    assert found.status_code == 200
    absent = httpx.get(f"{base}/v1/images/{quote(missing, safe='')}", timeout=10)
    assert absent.status_code == 404
    history = httpx.get(f"{base}/v1/images/{quote(busybox_image.tag, safe='')}/history")
    assert history.status_code == 200
    assert httpx.get(f"{base}/v1/nothing/here", timeout=10).status_code == 404
    after = now(metered)

    def moved(method: str, route: str, code: str) -> float:
        labels = {"method": method, "route": route, "code": code}
        return delta(before, after, "imagesvc_http_requests_total", labels)

    assert moved("GET", "/v1/images/{image}", "200") == 1
    assert moved("GET", "/v1/images/{image}", "404") == 1
    assert moved("GET", "/v1/images/{image}/history", "200") == 1
    assert moved("GET", "unmatched", "404") == 1
    duration = {"method": "GET", "route": "/v1/images/{image}"}
    assert delta(before, after, "imagesvc_http_request_duration_seconds_count", duration) == 2
    # The same core calls as over gRPC, but no gRPC call: the image found and its
    # history from the index's memory, the missing one from the Engine (its NOT_FOUND).
    assert engine_calls(before, after, "inspect_image") == 1
    assert engine_calls(before, after, "image_history") == 0
    assert delta(before, after, "grpc_server_started_total", rpc("GetImage", "unary")) == 0
    assert missing not in after.text
