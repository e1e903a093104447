"""A DockerPort around another one that measures every Engine call (imagesvc.metrics).

The core keeps no metric code: it talks to this decorator as to any DockerPort. Unary
calls are timed and their failures counted by reason. A pull, push or build is measured
as a whole stream, from its first read (when the request goes out) to its end: the
layer bytes it moved, whether it succeeded, failed or was closed early, and how many
run at once.

The image gauges cost no Engine call of their own per scrape: every unfiltered list
(ListImages without filters, as most dashboards and pre-pullers call it) refreshes
them, and the server's health loop refreshes them after this service changed the
images (pull, build, tag, remove, prune) or when they are older than a set age.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO

from imagesvc.core.errors import ImageServiceError, Reason
from imagesvc.core.models import RegistryAuth
from imagesvc.core.port import (
    BuildRequest,
    DockerPort,
    EngineBytes,
    EngineStream,
    EventStream,
    JsonDocument,
)
from imagesvc.core.progress import TransferTracker
from imagesvc.metrics import ImagesvcMetrics

log = logging.getLogger(__name__)


class InstrumentedStream:
    """An EngineStream that reports how it went when it ends (once, whichever way)."""

    def __init__(self, operation: str, inner: EngineStream, engine: InstrumentedDockerPort) -> None:
        self._operation = operation
        self._inner = inner
        self._engine = engine
        self._metrics = engine.metrics
        self._lock = threading.Lock()
        self._started_at: float | None = None
        self._closing = False
        self._finished = False
        self._transfer = (
            TransferTracker(pushing=operation == "push") if operation in ("pull", "push") else None
        )
        self._bytes_counted = 0

    def __iter__(self) -> InstrumentedStream:
        return self

    def __next__(self) -> JsonDocument:
        with self._lock:
            if self._started_at is None and not self._finished:
                self._started_at = time.perf_counter()
                self._metrics.streams_in_flight.labels(self._operation).inc()
        try:
            message = next(self._inner)
        except StopIteration:
            self._finish()
            raise
        except ImageServiceError as error:
            self._finish(str(error.reason))
            raise
        except Exception:
            self._finish(str(Reason.INTERNAL))
            raise
        self._observe(message)
        return message

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._inner.close()
        self._finish()

    def _observe(self, message: JsonDocument) -> None:
        if self._transfer is None:
            return
        self._transfer.feed(message)
        moved = self._transfer.bytes_done - self._bytes_counted
        if moved > 0:
            self._bytes_counted += moved
            counter = (
                self._metrics.pushed_bytes
                if self._operation == "push"
                else self._metrics.pulled_bytes
            )
            counter.inc(moved)

    def _finish(self, reason: str | None = None) -> None:
        with self._lock:
            if self._finished or self._started_at is None:
                self._finished = True
                return
            self._finished = True
            seconds = time.perf_counter() - self._started_at
            if reason is not None:
                outcome = "failure"
            elif self._closing:
                outcome = "canceled"
            else:
                outcome = "success"
        metrics = self._metrics
        metrics.engine_call_duration.labels(self._operation).observe(seconds)
        metrics.stream_outcomes[self._operation].labels(outcome).inc()
        if reason is not None:
            metrics.engine_call_errors.labels(self._operation, reason).inc()
        if self._operation == "build":
            metrics.build_duration.labels(outcome).observe(seconds)
        # Last: a scrape that no longer counts the stream in flight finds its outcome.
        metrics.streams_in_flight.labels(self._operation).dec()
        if self._operation != "push":
            self._engine.images_changed()


class InstrumentedBytes:
    """An export's EngineBytes, timed from its first read to its end, bytes counted."""

    def __init__(self, operation: str, inner: EngineBytes, metrics: ImagesvcMetrics) -> None:
        self._operation = operation
        self._inner = inner
        self._metrics = metrics
        self._started_at: float | None = None
        self._finished = False

    async def read(self) -> bytes:
        if self._started_at is None:
            self._started_at = time.perf_counter()
        try:
            chunk = await self._inner.read()
        except ImageServiceError as error:
            self._metrics.engine_call_errors.labels(self._operation, str(error.reason)).inc()
            self._finish()
            raise
        if chunk:
            self._metrics.exported_bytes.inc(len(chunk))
        else:
            self._finish()
        return chunk

    def _finish(self) -> None:
        if self._finished or self._started_at is None:
            return
        self._finished = True
        seconds = time.perf_counter() - self._started_at
        self._metrics.engine_call_duration.labels(self._operation).observe(seconds)

    def close(self) -> None:
        self._inner.close()


class InstrumentedDockerPort:
    """DockerPort decorator: every call of `engine`, measured into `metrics`."""

    def __init__(
        self,
        engine: DockerPort,
        metrics: ImagesvcMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self.metrics = metrics
        self._clock = clock
        self._stats_lock = threading.Lock()
        self._images_stale = True
        self._images_counted_at = float("-inf")

    @property
    def wrapped(self) -> DockerPort:
        """The Engine whose calls this one measures."""
        return self._engine

    @contextlib.contextmanager
    def _measured(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except ImageServiceError as error:
            self.metrics.engine_call_errors.labels(operation, str(error.reason)).inc()
            raise
        finally:
            self.metrics.engine_call_duration.labels(operation).observe(
                time.perf_counter() - started
            )

    def _stream(self, operation: str, start: Callable[[], EngineStream]) -> InstrumentedStream:
        try:
            inner = start()
        except ImageServiceError as error:
            self.metrics.engine_call_errors.labels(operation, str(error.reason)).inc()
            self.metrics.stream_outcomes[operation].labels("failure").inc()
            raise
        return InstrumentedStream(operation, inner, self)

    # DockerPort ------------------------------------------------------------------------

    def ping(self) -> bool:
        with self._measured("ping"):
            return self._engine.ping()

    def version(self) -> JsonDocument:
        with self._measured("version"):
            return self._engine.version()

    def list_images(self, *, all: bool, filters: Mapping[str, list[str]]) -> list[JsonDocument]:
        with self._measured("list_images"):
            images = self._engine.list_images(all=all, filters=filters)
        if not all and not filters:
            self._count_images(images)
        return images

    def inspect_image(self, image: str) -> JsonDocument:
        with self._measured("inspect_image"):
            return self._engine.inspect_image(image)

    def image_history(self, image: str) -> list[JsonDocument]:
        with self._measured("image_history"):
            return self._engine.image_history(image)

    def pull(
        self, name: str, tag_or_digest: str, *, platform: str, auth: RegistryAuth | None
    ) -> EngineStream:
        return self._stream(
            "pull", lambda: self._engine.pull(name, tag_or_digest, platform=platform, auth=auth)
        )

    def push(self, name: str, tag: str, *, auth: RegistryAuth | None) -> EngineStream:
        return self._stream("push", lambda: self._engine.push(name, tag, auth=auth))

    def tag(self, source: str, repository: str, tag: str) -> None:
        try:
            with self._measured("tag"):
                self._engine.tag(source, repository, tag)
        finally:
            self.images_changed()

    def build(
        self, context: IO[bytes] | Iterator[bytes], *, gzip: bool, request: BuildRequest
    ) -> EngineStream:
        return self._stream(
            "build", lambda: self._engine.build(context, gzip=gzip, request=request)
        )

    def load(self, archive: IO[bytes] | Iterator[bytes]) -> EngineStream:
        return self._stream("load", lambda: self._engine.load(archive))

    def remove_image(self, image: str, *, force: bool, no_prune: bool) -> list[JsonDocument]:
        try:
            with self._measured("remove_image"):
                return self._engine.remove_image(image, force=force, no_prune=no_prune)
        finally:
            self.images_changed()

    def prune_images(self, filters: Mapping[str, list[str]]) -> JsonDocument:
        try:
            with self._measured("prune_images"):
                return self._engine.prune_images(filters)
        finally:
            self.images_changed()

    def check_auth(self, auth: RegistryAuth) -> JsonDocument:
        with self._measured("check_auth"):
            return self._engine.check_auth(auth)

    def export_images(self, images: Sequence[str], *, chunk_size: int) -> EngineBytes:
        inner = self._engine.export_images(images, chunk_size=chunk_size)
        return InstrumentedBytes("export_images", inner, self.metrics)

    def disk_usage(self) -> JsonDocument:
        with self._measured("disk_usage"):
            return self._engine.disk_usage()

    def image_events(self, *, since: str = "") -> EventStream:
        # Not timed: it lasts as long as the service runs. The image index reports on it.
        return self._engine.image_events(since=since)

    def close(self) -> None:
        close = getattr(self._engine, "close", None)
        if callable(close):
            close()

    # Daemon state for the gauges -------------------------------------------------------

    def images_changed(self) -> None:
        """This service changed the daemon's images: the gauges are due for a refresh."""
        with self._stats_lock:
            self._images_stale = True

    def _count_images(self, images: list[JsonDocument]) -> None:
        with self._stats_lock:
            self._images_stale = False
            self._images_counted_at = self._clock()
        self.metrics.images.set(len(images))
        self.metrics.images_size.set(sum(int(image.get("Size") or 0) for image in images))

    def image_stats_due(self, max_age: float) -> bool:
        with self._stats_lock:
            return self._images_stale or self._clock() - self._images_counted_at >= max_age

    def refresh_image_stats(self) -> None:
        """One unfiltered list (blocking); a failure leaves the gauges as they were."""
        with contextlib.suppress(ImageServiceError):  # counted by _measured; retried later
            self.list_images(all=False, filters={})

    def refresh_engine_info(self) -> None:
        """The Engine's versions into the info metric (blocking), e.g. when it came up."""
        try:
            version = self.version()
        except ImageServiceError:
            log.debug("docker engine version not available", exc_info=True)
            return
        self.metrics.set_engine_info(
            {
                "version": str(version.get("Version") or ""),
                "api_version": str(version.get("ApiVersion") or ""),
                "min_api_version": str(version.get("MinAPIVersion") or ""),
                "os": str(version.get("Os") or ""),
                "arch": str(version.get("Arch") or ""),
            }
        )

    # Registry inspection (issue 16) -----------------------------------------------------

    def inspect_distribution(self, name: str, *, auth: RegistryAuth | None) -> JsonDocument:
        with self._measured("inspect_distribution"):
            return self._engine.inspect_distribution(name, auth=auth)
