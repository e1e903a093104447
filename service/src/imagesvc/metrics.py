"""The service's own Prometheus metrics (prefix imagesvc_, base units) and the registry
they live on.

Each ImageServer has its own CollectorRegistry (never prometheus_client's global one),
so that several servers in one process (the tests) keep separate counts. Labels are
bounded sets only: an operation, an outcome, an error reason. Never an image name, a
tag, a registry, a user or a token.
"""

from __future__ import annotations

import threading

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from imagesvc.core.image_changes import ExpiryCause

# Engine calls range from a millisecond (inspect) to half an hour (a big pull or build).
ENGINE_CALL_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1200.0,
    1800.0,
)

# A wait for a concurrency slot is cut at --max-queue-wait-seconds (60 s by default).
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# The DockerPort methods, as the `operation` label names them.
ENGINE_OPERATIONS = (
    "ping",
    "version",
    "list_images",
    "inspect_image",
    "image_history",
    "pull",
    "push",
    "tag",
    "build",
    "load",
    "remove_image",
    "prune_images",
    "check_auth",
    "inspect_distribution",
    "export_images",
    "disk_usage",
)
STREAM_OPERATIONS = ("pull", "push", "build", "load")
ENGINE_INFO_LABELS = ("version", "api_version", "min_api_version", "os", "arch")
# How an Engine stream ended: to its end, with an error, or closed early by the service
# (the caller cancelled, its deadline passed, or the stream went silent too long).
STREAM_OUTCOMES = ("success", "failure", "canceled")
# The image index's states (core/image_index.py IndexState).
INDEX_STATES = ("starting", "live", "resyncing", "down", "stopped")
# The states of a kept image (core/kept_images.py, KeptState).
KEPT_IMAGE_STATES = ("present", "pulling", "failed")
# From the Engine's event to the index showing it: milliseconds, up to a slow refresh.
INDEX_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def new_registry() -> CollectorRegistry:
    """A registry with the process and platform collectors of the default one."""
    # Go's client exports no *_created series; neither do we (it would double the count
    # of series the start-up initialisation creates). Process-wide, read at exposition.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class ImagesvcMetrics:
    """Docker Engine calls, transfers and builds, and the daemon's state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._engine_info_lock = threading.Lock()
        self.engine_call_duration = Histogram(
            "imagesvc_engine_call_duration_seconds",
            "Duration of Docker Engine API calls; for pull, push and build the whole"
            " stream, from sending the request to its last message.",
            ("operation",),
            buckets=ENGINE_CALL_BUCKETS,
            registry=registry,
        )
        self.engine_call_errors = Counter(
            "imagesvc_engine_call_errors",
            "Docker Engine API calls that failed, by operation and error reason (the"
            " ErrorInfo reason callers get).",
            ("operation", "reason"),
            registry=registry,
        )
        self.pulled_bytes = Counter(
            "imagesvc_pulled_bytes",
            "Layer bytes downloaded from registries by pulls (layers already present count"
            " nothing).",
            registry=registry,
        )
        self.pushed_bytes = Counter(
            "imagesvc_pushed_bytes",
            "Layer bytes uploaded to registries by pushes (layers the registry already had"
            " count nothing).",
            registry=registry,
        )
        self.exported_bytes = Counter(
            "imagesvc_exported_bytes",
            "Bytes of image archives the Engine exported (ExportImages, like docker save).",
            registry=registry,
        )
        self.pulls = Counter(
            "imagesvc_pulls", "Pulls the Engine ran, by outcome.", ("outcome",), registry=registry
        )
        self.pushes = Counter(
            "imagesvc_pushes", "Pushes the Engine ran, by outcome.", ("outcome",), registry=registry
        )
        self.builds = Counter(
            "imagesvc_builds", "Builds the Engine ran, by outcome.", ("outcome",), registry=registry
        )
        self.loads = Counter(
            "imagesvc_image_loads",
            "Image archives the Engine loaded (ImportImages), by outcome.",
            ("outcome",),
            registry=registry,
        )
        self.build_duration = Histogram(
            "imagesvc_build_duration_seconds",
            "Duration of builds, from sending the context to the Engine's last message.",
            ("outcome",),
            buckets=ENGINE_CALL_BUCKETS,
            registry=registry,
        )
        self.streams_in_flight = Gauge(
            "imagesvc_engine_streams_in_flight",
            "Pulls, pushes and builds running on the Engine now.",
            ("operation",),
            registry=registry,
        )
        self.limit_queue_length = Gauge(
            "imagesvc_limit_queue_length",
            "Pulls, pushes and builds waiting now for a slot of their concurrency limit.",
            ("operation",),
            registry=registry,
        )
        self.limit_queue_wait = Histogram(
            "imagesvc_limit_queue_wait_seconds",
            "How long calls over a concurrency limit waited for a slot, whether they got one"
            " or not (the queue was full: no wait, not counted).",
            ("operation",),
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )
        self.pull_joins = Counter(
            "imagesvc_pull_joins",
            "Pulls that joined an identical pull already running (same image, platform and"
            " credentials) instead of making their own Engine pull.",
            registry=registry,
        )
        self.pull_flights = Gauge(
            "imagesvc_pull_flights",
            "Engine pulls running now for one or more callers (identical pulls join one).",
            registry=registry,
        )
        self.daemon_up = Gauge(
            "imagesvc_docker_daemon_up",
            "1 when the Docker daemon answered its last ping, else 0 (readiness).",
            registry=registry,
        )
        # A gauge at 1, like Go's *_info metrics, so there is no sample until the daemon
        # has answered (prometheus_client's Info would show one without labels).
        self.engine_info = Gauge(
            "imagesvc_docker_engine_info",
            "1, labelled with the Docker Engine's version, API versions, OS and architecture"
            " (as of the last time the daemon came up).",
            ENGINE_INFO_LABELS,
            registry=registry,
        )
        self.images = Gauge(
            "imagesvc_docker_images",
            "Images on the Docker daemon (as `docker image ls` counts them).",
            registry=registry,
        )
        self.images_size = Gauge(
            "imagesvc_docker_images_size_bytes",
            "Sum of the sizes of the images on the Docker daemon, as `docker image ls`"
            " reports them (layers shared by several images count once per image).",
            registry=registry,
        )
        self.image_watchers = Gauge(
            "imagesvc_image_watchers",
            "WatchImages streams open now.",
            registry=registry,
        )
        self.image_changes_published = Counter(
            "imagesvc_image_changes_published",
            "Changes the live image index applied and published to WatchImages (one per"
            " image added, changed or deleted).",
            registry=registry,
        )
        self.image_watch_expirations = Counter(
            "imagesvc_image_watch_expirations",
            "WatchImages calls ended or refused with WATCH_EXPIRED, by cause: a resume token"
            " of another generation or older than the changes kept, a watcher that fell"
            " behind them, or an index reset.",
            ("cause",),
            registry=registry,
        )
        for cause in ExpiryCause:
            self.image_watch_expirations.labels(str(cause))
        self.image_index_state = Gauge(
            "imagesvc_image_index_state",
            "1 for the image index's current state, 0 for the others: reads answer from"
            " memory only while it is `live` (else from the Docker daemon).",
            ("state",),
            registry=registry,
        )
        self.image_index_images = Gauge(
            "imagesvc_image_index_images",
            "Images in the image index (every image, intermediate ones included).",
            registry=registry,
        )
        self.image_index_events = Counter(
            "imagesvc_image_index_events_applied",
            "Image events of the Docker daemon the image index applied.",
            registry=registry,
        )
        self.image_index_resyncs = Counter(
            "imagesvc_image_index_resyncs",
            "Full image lists the image index checked itself against (on reconnecting to the"
            " daemon and periodically).",
            registry=registry,
        )
        self.image_index_corrections = Counter(
            "imagesvc_image_index_corrections",
            "Images a full list found different from the index with no event to explain it"
            " (missed events; should stay 0).",
            registry=registry,
        )
        self.image_index_lag = Histogram(
            "imagesvc_image_index_lag_seconds",
            "From an image event (the daemon's timestamp) to the index showing its effect.",
            buckets=INDEX_LAG_BUCKETS,
            registry=registry,
        )
        for state in INDEX_STATES:
            self.image_index_state.labels(state)
        self.kept_images = Gauge(
            "imagesvc_kept_images",
            "Images this node keeps present (--keep-images-file) by state; the reference is"
            " never a label (the log and ListNodes name it).",
            ("state",),
            registry=registry,
        )
        for state in KEPT_IMAGE_STATES:
            self.kept_images.labels(state)
        self.stream_outcomes = {
            "pull": self.pulls,
            "push": self.pushes,
            "build": self.builds,
            "load": self.loads,
        }
        for operation in ENGINE_OPERATIONS:
            self.engine_call_duration.labels(operation)
        for operation in STREAM_OPERATIONS:
            self.streams_in_flight.labels(operation)
            self.limit_queue_length.labels(operation)
            self.limit_queue_wait.labels(operation)
        for outcome in STREAM_OUTCOMES:
            for counter in self.stream_outcomes.values():
                counter.labels(outcome)
            self.build_duration.labels(outcome)

    # The QueueObserver of the concurrency limits (core/limits.py).
    def queue_length(self, operation: str, length: int) -> None:
        self.limit_queue_length.labels(operation).set(length)

    def queue_wait(self, operation: str, seconds: float) -> None:
        self.limit_queue_wait.labels(operation).observe(seconds)

    # The FlightObserver of identical pulls (core/pull_flights.py).
    def pull_joined(self) -> None:
        self.pull_joins.inc()

    def flights_running(self, count: int) -> None:
        self.pull_flights.set(count)

    # The WatchObserver of the change log behind WatchImages (core/image_changes.py).
    def watchers_open(self, count: int) -> None:
        self.image_watchers.set(count)

    def change_published(self) -> None:
        self.image_changes_published.inc()

    def watch_expired(self, cause: ExpiryCause) -> None:
        self.image_watch_expirations.labels(str(cause)).inc()

    # The IndexObserver of the image index (core/image_index.py).
    def index_state(self, state: str) -> None:
        for name in INDEX_STATES:
            self.image_index_state.labels(name).set(1 if name == state else 0)

    def index_images(self, count: int) -> None:
        self.image_index_images.set(count)

    def index_events_applied(self, count: int) -> None:
        self.image_index_events.inc(count)

    def index_resynced(self) -> None:
        self.image_index_resyncs.inc()

    def index_corrected(self, count: int) -> None:
        self.image_index_corrections.inc(count)

    def index_lag(self, seconds: float) -> None:
        self.image_index_lag.observe(seconds)

    def kept_image_states(self, counts: dict[str, int]) -> None:
        for state in KEPT_IMAGE_STATES:
            self.kept_images.labels(state).set(counts.get(state, 0))

    def set_engine_info(self, labels: dict[str, str]) -> None:
        """The one series of the info metric, replacing any other Engine version."""
        with self._engine_info_lock:
            self.engine_info.clear()
            self.engine_info.labels(
                **{name: labels.get(name, "") for name in ENGINE_INFO_LABELS}
            ).set(1)
