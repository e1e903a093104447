"""The instrumented DockerPort: what each Engine call, stream and list does to the metrics."""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from imagesvc.core.errors import FailedPreconditionError, NotFoundError, Reason, UnavailableError
from imagesvc.core.models import BuildOptions
from imagesvc.core.port import JsonDocument
from imagesvc.engine.instrumented import InstrumentedDockerPort
from imagesvc.metrics import ImagesvcMetrics
from tests.unit.fakes import FakeDockerPort, FakeEngineStream, engine_image


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def measured(
    port: FakeDockerPort, registry: CollectorRegistry, clock: Clock
) -> InstrumentedDockerPort:
    return InstrumentedDockerPort(port, ImagesvcMetrics(registry), clock=clock)


def value(registry: CollectorRegistry, name: str, labels: Mapping[str, str] | None = None) -> float:
    got = registry.get_sample_value(name, dict(labels or {}))
    return 0.0 if got is None else got


def calls(registry: CollectorRegistry, operation: str) -> float:
    return value(registry, "imagesvc_engine_call_duration_seconds_count", {"operation": operation})


def layer(layer_id: str, status: str, current: int | None = None, total: int = 0) -> JsonDocument:
    message: JsonDocument = {"id": layer_id, "status": status}
    if current is not None:
        message["progressDetail"] = {"current": current, "total": total}
    return message


A, B = "aaaaaaaaaaaa", "bbbbbbbbbbbb"


def _empty() -> io.BytesIO:
    return io.BytesIO(b"")


def _request() -> Any:
    # Any: the frozen BuildOptions is read-only, the BuildRequest protocol's fields are not.
    return BuildOptions(tags=("team/app:1",))


def test_unary_calls_are_timed_and_failures_counted_by_reason(
    measured: InstrumentedDockerPort, port: FakeDockerPort, registry: CollectorRegistry
) -> None:
    port.add(engine_image(1, tags=["a:1"]))
    measured.inspect_image("a:1")
    with pytest.raises(NotFoundError):
        measured.inspect_image("b:1")
    assert calls(registry, "inspect_image") == 2
    errors = {"operation": "inspect_image", "reason": "IMAGE_NOT_FOUND"}
    assert value(registry, "imagesvc_engine_call_errors_total", errors) == 1
    assert measured.ping()
    assert calls(registry, "ping") == 1


def test_a_pull_counts_downloaded_bytes_and_its_outcome(
    measured: InstrumentedDockerPort, port: FakeDockerPort, registry: CollectorRegistry
) -> None:
    port.pull_streams.append(
        FakeEngineStream(
            [
                {"status": "Pulling from team/app", "id": "1"},
                layer(A, "Already exists"),
                layer(B, "Pulling fs layer"),
                layer(B, "Downloading", 100, 300),
                layer(B, "Downloading", 250, 300),
                layer(B, "Download complete"),
                layer(B, "Extracting", 300, 300),
                layer(B, "Pull complete"),
                {"status": "Status: Downloaded newer image for team/app:1"},
            ]
        )
    )
    stream = measured.pull("team/app", "1", platform="", auth=None)
    in_flight = {"operation": "pull"}
    assert value(registry, "imagesvc_engine_streams_in_flight", in_flight) == 0
    next(stream)
    assert value(registry, "imagesvc_engine_streams_in_flight", in_flight) == 1
    next(stream)
    next(stream)
    next(stream)
    assert value(registry, "imagesvc_pulled_bytes_total") == 100  # counted as it arrives
    assert len(list(stream)) == 5
    stream.close()  # the core always closes; nothing is counted twice
    assert value(registry, "imagesvc_pulled_bytes_total") == 300
    assert value(registry, "imagesvc_engine_streams_in_flight", in_flight) == 0
    assert value(registry, "imagesvc_pulls_total", {"outcome": "success"}) == 1
    assert value(registry, "imagesvc_pulls_total", {"outcome": "canceled"}) == 0
    assert calls(registry, "pull") == 1
    assert value(registry, "imagesvc_pushed_bytes_total") == 0


def test_a_push_counts_uploaded_bytes(
    measured: InstrumentedDockerPort, port: FakeDockerPort, registry: CollectorRegistry
) -> None:
    port.push_streams.append(
        FakeEngineStream(
            [
                layer(A, "Layer already exists"),
                layer(B, "Preparing"),
                layer(B, "Pushing", 512, 2048),
                layer(B, "Pushed"),
                {"status": "1: digest: sha256:" + "c" * 64 + " size: 528"},
            ]
        )
    )
    stream = measured.push("team/app", "1", auth=None)
    assert len(list(stream)) == 5
    assert value(registry, "imagesvc_pushed_bytes_total") == 2048
    assert value(registry, "imagesvc_pushes_total", {"outcome": "success"}) == 1


def test_an_error_line_is_a_failure_with_its_reason(
    measured: InstrumentedDockerPort, port: FakeDockerPort, registry: CollectorRegistry
) -> None:
    error = "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
    port.build_streams.append(
        FakeEngineStream(
            [{"stream": "Step 1/2 : FROM x\n"}, {"errorDetail": {"message": error}, "error": error}]
        )
    )
    stream = measured.build(_empty(), gzip=False, request=_request())
    next(stream)
    with pytest.raises(FailedPreconditionError):
        next(stream)  # the Engine stream raises the error line as its core error
    stream.close()
    assert value(registry, "imagesvc_builds_total", {"outcome": "failure"}) == 1
    errors = {"operation": "build", "reason": "BUILD_FAILED"}
    assert value(registry, "imagesvc_engine_call_errors_total", errors) == 1
    duration = {"outcome": "failure"}
    assert value(registry, "imagesvc_build_duration_seconds_count", duration) == 1
    assert value(registry, "imagesvc_build_duration_seconds_count", {"outcome": "success"}) == 0


def test_a_stream_that_raises_is_a_failure(
    measured: InstrumentedDockerPort, port: FakeDockerPort, registry: CollectorRegistry
) -> None:
    gone = UnavailableError("daemon gone", reason=Reason.DAEMON_UNAVAILABLE)
    port.pull_streams.append(FakeEngineStream([layer(B, "Downloading", 10, 100), gone]))
    stream = measured.pull("team/app", "1", platform="", auth=None)
    next(stream)
    with pytest.raises(UnavailableError):
        next(stream)
    stream.close()
    assert value(registry, "imagesvc_pulls_total", {"outcome": "failure"}) == 1
    errors = {"operation": "pull", "reason": "DAEMON_UNAVAILABLE"}
    assert value(registry, "imagesvc_engine_call_errors_total", errors) == 1
    assert value(registry, "imagesvc_pulled_bytes_total") == 10


def test_a_stream_closed_while_a_read_blocks_is_canceled_once(
    measured: InstrumentedDockerPort, port: FakeDockerPort, registry: CollectorRegistry
) -> None:
    inner = FakeEngineStream(
        [layer(B, "Downloading", 10, 100), layer(B, "Downloading", 20, 100)], block_at=1
    )
    port.pull_streams.append(inner)
    stream = measured.pull("team/app", "1", platform="", auth=None)
    next(stream)
    reader = threading.Thread(target=lambda: list(stream))
    reader.start()
    assert inner.blocked.wait(timeout=5)
    stream.close()
    reader.join(timeout=5)
    assert not reader.is_alive()
    stream.close()
    assert value(registry, "imagesvc_pulls_total", {"outcome": "canceled"}) == 1
    assert value(registry, "imagesvc_pulls_total", {"outcome": "success"}) == 0
    assert value(registry, "imagesvc_engine_streams_in_flight", {"operation": "pull"}) == 0
    assert calls(registry, "pull") == 1


def test_a_stream_never_read_counts_nothing(
    measured: InstrumentedDockerPort, port: FakeDockerPort, registry: CollectorRegistry
) -> None:
    port.pull_streams.append(FakeEngineStream([layer(B, "Downloading", 10, 100)]))
    stream = measured.pull("team/app", "1", platform="", auth=None)
    stream.close()
    for outcome in ("success", "failure", "canceled"):
        assert value(registry, "imagesvc_pulls_total", {"outcome": outcome}) == 0
    assert calls(registry, "pull") == 0
    assert value(registry, "imagesvc_engine_streams_in_flight", {"operation": "pull"}) == 0


def test_unfiltered_lists_set_the_image_gauges(
    measured: InstrumentedDockerPort,
    port: FakeDockerPort,
    registry: CollectorRegistry,
    clock: Clock,
) -> None:
    port.add(engine_image(1, tags=["a:1"], size=1000, labels={"team": "x"}))
    port.add(engine_image(2, tags=["b:1"], size=234))
    assert measured.image_stats_due(60)
    measured.list_images(all=False, filters={"label": ["team=x"]})  # filtered: not all images
    assert measured.image_stats_due(60)
    measured.list_images(all=True, filters={})  # intermediate images too: not comparable
    assert measured.image_stats_due(60)
    assert value(registry, "imagesvc_docker_images") == 0

    measured.list_images(all=False, filters={})
    assert value(registry, "imagesvc_docker_images") == 2
    assert value(registry, "imagesvc_docker_images_size_bytes") == 1234
    assert not measured.image_stats_due(60)
    clock.now += 59
    assert not measured.image_stats_due(60)
    clock.now += 1
    assert measured.image_stats_due(60)

    measured.refresh_image_stats()
    assert not measured.image_stats_due(60)
    measured.tag("a:1", "c", "1")  # a change made through this service
    assert measured.image_stats_due(60)
    measured.refresh_image_stats()
    measured.remove_image("b:1", force=False, no_prune=False)
    assert measured.image_stats_due(60)
    measured.refresh_image_stats()
    assert value(registry, "imagesvc_docker_images") == 1
    assert value(registry, "imagesvc_docker_images_size_bytes") == 1000


def test_refreshes_survive_a_daemon_that_is_down(
    measured: InstrumentedDockerPort, port: FakeDockerPort, registry: CollectorRegistry
) -> None:
    port.failures["list_images"] = UnavailableError("down", reason=Reason.DAEMON_UNAVAILABLE)
    port.failures["version"] = UnavailableError("down", reason=Reason.DAEMON_UNAVAILABLE)
    measured.refresh_image_stats()
    measured.refresh_engine_info()
    assert measured.image_stats_due(60)
    # No versions known yet: no series at all.
    assert not [s for f in registry.collect() for s in f.samples if s.name.endswith("engine_info")]
    errors = {"operation": "list_images", "reason": "DAEMON_UNAVAILABLE"}
    assert value(registry, "imagesvc_engine_call_errors_total", errors) == 1


def test_engine_info_carries_the_versions(
    measured: InstrumentedDockerPort, registry: CollectorRegistry
) -> None:
    measured.refresh_engine_info()
    measured.refresh_engine_info()  # the daemon came up again: still one series
    labels = {
        "version": "27.3.1",
        "api_version": "1.47",
        "min_api_version": "",
        "os": "linux",
        "arch": "amd64",
    }
    assert value(registry, "imagesvc_docker_engine_info", labels) == 1
    assert len([s for f in registry.collect() for s in f.samples if s.name.endswith("_info")]) == 1
