"""Assembles the service: a grpc.aio server with ImageService, health and reflection, and
beside it the HTTP port (REST gateway and operational endpoints) in the same event loop;
docker-py calls run in bounded thread pools.

`ImageServer` is the factory tests use (bind port 0, read `.port` and `.http_port`);
`serve()` is what `imagesvc serve` runs, with SIGTERM handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from starlette.middleware import Middleware

from imagesvc.config import Settings, SettingsError
from imagesvc.core.build_context import ContextLimits, check_spool_dir
from imagesvc.core.errors import Reason, UnavailableError
from imagesvc.core.image_changes import ImageChangeLog, Snapshot
from imagesvc.core.image_core import CoreSettings, ImageCore
from imagesvc.core.image_entries import ChangeSinks
from imagesvc.core.image_filters import select_images
from imagesvc.core.image_index import ImageIndex, IndexSettings
from imagesvc.core.models import ImageFilter
from imagesvc.core.port import DockerPort
from imagesvc.core.pull_flights import PullFlights
from imagesvc.engine.instrumented import InstrumentedDockerPort
from imagesvc.metrics import ImagesvcMetrics, new_registry
from imagesvc.native_threads import name_native_thread
from imagesvc.server_fleet import ServerFleet
from imagesvc.server_kept_images import ServerKeptImages
from imagesvc.server_policy import ServerPolicy
from imagesvc.server_security import ServerSecurity
from imagesvc.transport.access_guard import GuardedServicer
from imagesvc.transport.grpc.connections import ConnectionBounds
from imagesvc.transport.grpc.drain import Drain
from imagesvc.transport.grpc.fleet_servicer import FLEET_SERVICE_NAME
from imagesvc.transport.grpc.interceptor import CallLifecycleInterceptor
from imagesvc.transport.grpc.metrics import GrpcMetricsInterceptor, GrpcServerMetrics
from imagesvc.transport.grpc.servicer import SERVICE_NAME, ImageServiceServicer
from imagesvc.transport.grpc.wire_coding import WireEncodingInterceptor
from imagesvc.transport.http.app import create_http_app
from imagesvc.transport.http.auth import HttpAuthentication
from imagesvc.transport.http.metrics import HttpMetrics
from imagesvc.transport.http.metrics_route import metrics_routes
from imagesvc.transport.http.observability import HttpObservability
from imagesvc.transport.http.ops import ops_routes
from imagesvc.transport.http.server import HttpServer
from imagesvc.transport.rest.gateway import rest_routes
from imagesvc.v1 import (
    fleet_service_pb2,
    fleet_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# gRPC health names: "" and imagesvc.v1.ImageService follow the Docker daemon (readiness);
# LIVENESS_SERVICE answers SERVING while the process serves, so a Kubernetes gRPC liveness
# probe can name it and a daemon outage does not restart the pod.
LIVENESS_SERVICE = "liveness"

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# Every service the gRPC server registers: reflection lists them, metrics start at zero.
_SERVICES = (
    image_service_pb2.DESCRIPTOR.services_by_name["ImageService"],
    fleet_service_pb2.DESCRIPTOR.services_by_name["FleetService"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
)


def _docker_engine(settings: Settings) -> DockerPort:
    # Imported here so that unit tests with a fake engine never load docker-py.
    from imagesvc.engine.docker_adapter import DockerAdapter

    return DockerAdapter(
        settings.docker_host,
        timeout=settings.docker_timeout_seconds,
        stream_idle_timeout=settings.stream_idle_timeout_seconds or None,
        ping_timeout=settings.health_timeout_seconds,
        # One connection per thread that may use it at once.
        max_pool_size=settings.docker_workers + settings.stream_workers + 1,
    )


def _pool(workers: int, prefix: str) -> ThreadPoolExecutor:
    """A pool whose threads carry their name in the kernel too (``docker_3``)."""
    return ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix=prefix, initializer=name_native_thread
    )


class ImageServer:
    """One gRPC server in the running event loop. `start()`, then `stop()`."""

    def __init__(
        self,
        settings: Settings,
        engine: DockerPort | None = None,
        *,
        image_snapshot: Snapshot | None = None,
    ) -> None:
        """`engine`: the Docker Engine to manage (default: docker-py's, at
        settings.docker_host); `.port` and `.http_port` are the TCP ports once started.
        `image_snapshot`: a stand-in for the live image index's entries as WatchImages'
        source (tests; see `image_changes` below)."""
        self.settings = settings
        # First: refuses unusable security settings before anything is started.
        self.security = ServerSecurity(settings)
        self.policy = ServerPolicy(settings)
        try:
            check_spool_dir(settings.build_spool_dir)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
        # Per server, not prometheus_client's global registry: tests run several at once.
        self.registry = new_registry()
        self.metrics = ImagesvcMetrics(self.registry)
        self.policy.limits.observe(self.metrics)
        self._grpc_metrics = GrpcServerMetrics(self.registry)
        self._docker = InstrumentedDockerPort(
            engine if engine is not None else _docker_engine(settings), self.metrics
        )
        self._executors = (
            _pool(settings.docker_workers, "docker"),
            _pool(settings.stream_workers, "docker-stream"),
            _pool(1, "docker-ping"),
            # The image index's reader of the Engine's event stream (blocks while it lasts).
            _pool(1, "docker-events"),
        )
        unary, streams, pings, events = self._executors
        # The change feed of WatchImages: the live image index publishes to it every
        # change it applies, the corrections of a resync included (so watchers go on
        # through a resync). A given `image_snapshot` stands in for the index as the
        # feed's source (tests publish their own changes); the index then tells it nothing.
        self.image_changes = ImageChangeLog(observer=self.metrics)
        self.index: ImageIndex | None = None
        # Whom the index tells of its changes: WatchImages' log, and the kept images.
        index_sinks = ChangeSinks()
        if image_snapshot is None:
            index_sinks.add(self.image_changes)
        if not settings.disable_image_index:
            self.index = ImageIndex(
                self._docker,
                unary,
                events,
                settings=IndexSettings(
                    reconcile_interval_seconds=settings.image_index_reconcile_seconds
                ),
                sink=index_sinks,
                observer=self.metrics,
            )
            if image_snapshot is None:
                image_snapshot = self.index.live_entries
        self.core = ImageCore(
            self._docker,
            unary,
            CoreSettings(
                build_context=ContextLimits(
                    max_bytes=settings.build_context_max_bytes,
                    memory_bytes=settings.build_context_memory_bytes,
                    spool_dir=settings.build_spool_dir,
                ),
                import_archive=ContextLimits(
                    max_bytes=settings.import_max_bytes,
                    memory_bytes=settings.build_context_memory_bytes,
                    spool_dir=settings.build_spool_dir,
                ),
                progress_interval_seconds=settings.progress_interval_seconds,
                transfer_stall_timeout_seconds=settings.transfer_stall_timeout_seconds,
                registry_policy=self.policy.registry,
                build_restrictions=self.policy.build,
                limits=self.policy.limits,
                pull_flights=PullFlights(self.metrics),
            ),
            stream_executor=streams,
            health_executor=pings,
            image_changes=self.image_changes,
            image_snapshot=image_snapshot,
            index=self.index,
        )
        self.health = health.aio.HealthServicer()
        # Kept images (--keep-images-file): brought back on the index's changes.
        self.kept_images = ServerKeptImages(settings, self.core, self.metrics, self.health)
        if self.kept_images.keeper is not None:
            index_sinks.add(self.kept_images.keeper)
        # gRPC and the REST gateway both call this one: authorization and audit in one place.
        self.servicer = GuardedServicer(ImageServiceServicer(self.core))
        # FleetService: this node locally, its peers over gRPC (authorized and audited there).
        self.fleet = ServerFleet(
            settings,
            self.core,
            self._docker,
            unary,
            lambda: self.daemon_up,
            kept_images=self.kept_images.images,
        )
        self._server: grpc.aio.Server | None = None
        self._http: HttpServer | None = None
        self._drain = Drain()
        self._health_task: asyncio.Task[None] | None = None
        self._index_task: asyncio.Task[None] | None = None
        self._daemon_up: bool | None = None
        self._refreshing: dict[str, asyncio.Future[None]] = {}
        self.port = 0
        self.http_port = 0

    @property
    def daemon_up(self) -> bool:
        """Whether the Docker daemon answered its last ping (readiness)."""
        return bool(self._daemon_up)

    async def start(self) -> int:
        options = [
            ("grpc.max_receive_message_length", self.settings.max_message_bytes),
            ("grpc.max_send_message_length", self.settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
            *ConnectionBounds(
                max_idle=self.settings.grpc_max_connection_idle_seconds,
                max_age=self.settings.grpc_max_connection_age_seconds,
                max_age_grace=self.settings.grpc_max_connection_age_grace_seconds,
                min_ping_interval=self.settings.grpc_min_ping_interval_seconds,
            ).channel_options(),
        ]
        interceptors = [
            GrpcMetricsInterceptor(self._grpc_metrics),  # first: sees the final status
            CallLifecycleInterceptor(
                frozenset({SERVICE_NAME, FLEET_SERVICE_NAME}),
                self.security.authenticator,
                drain=self._drain,
            ),
            WireEncodingInterceptor(),  # last: the others keep the serializer it sets
        ]
        server = grpc.aio.server(interceptors=interceptors, options=options)
        image_service_pb2_grpc.add_ImageServiceServicer_to_server(self.servicer, server)
        fleet_service_pb2_grpc.add_FleetServiceServicer_to_server(self.fleet.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(tuple(s.full_name for s in _SERVICES), server)
        self._grpc_metrics.initialize(_SERVICES)
        self.security.log_startup()
        self.policy.log_startup()
        self.port = self.security.add_grpc_port(server, self.settings.grpc_address)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.settings.grpc_address}")
        self.fleet.bind(self.port)
        await self.health.set(LIVENESS_SERVICE, _SERVING)
        await self._set_health(await self.core.ping())
        routes = [
            *rest_routes(
                self.servicer,
                max_body_bytes=self.settings.max_message_bytes,
                fleet_servicer=self.fleet.servicer,
            ),
            *ops_routes(lambda: self.daemon_up),
            *metrics_routes(self.registry),
        ]
        middleware = [
            Middleware(HttpObservability, metrics=HttpMetrics(self.registry)),
            Middleware(
                HttpAuthentication,
                authenticator=self.security.authenticator,
                # Without authentication the server is on loopback: refuse re-bound names.
                loopback_hosts_only=not self.security.authenticator.enabled
                and not self.settings.insecure_allow_unauthenticated,
            ),
        ]
        http = HttpServer(
            create_http_app(routes, middleware),
            self.settings.http_address,
            shutdown_grace_seconds=self.settings.shutdown_grace_seconds,
            header_timeout_seconds=self.settings.http_header_timeout_seconds,
            keepalive_timeout_seconds=self.settings.http_keepalive_timeout_seconds,
            max_connections=self.settings.http_max_connections,
            tls=self.security.certificate,
        )
        await server.start()
        self._server = server
        self.http_port = await http.start()
        self._http = http
        self._health_task = asyncio.create_task(self._watch_daemon(), name="daemon-health")
        if self.index is not None:
            self._index_task = asyncio.create_task(self.index.run(), name="image-index")
        # After the index: a kept image removed from now on is noticed by its events.
        await self.kept_images.start()
        log.info(
            "serving",
            extra={
                "grpc_address": self.settings.grpc_address,
                "grpc_port": self.port,
                "http_address": self.settings.http_address,
                "http_port": self.http_port,
                "docker_host": self.settings.docker_host,
            },
        )
        return self.port

    async def _set_health(self, up: bool) -> None:
        if up != self._daemon_up:
            log.log(
                logging.INFO if up else logging.WARNING,
                "docker daemon is up" if up else "docker daemon is not answering ping",
                extra={"docker_host": self.settings.docker_host},
            )
            if up:  # it may have been upgraded while it was away
                self._refresh_gauges("engine_info", self._docker.refresh_engine_info)
        self._daemon_up = up
        self.metrics.daemon_up.set(1 if up else 0)
        status = _SERVING if up else _NOT_SERVING
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)

    def _refresh_gauges(self, what: str, refresh: Callable[[], None]) -> None:
        """Runs an Engine call for the gauges in the pool of quick calls, unless the last
        one of its kind still runs. Never awaited: a slow daemon must not delay health."""
        running = self._refreshing.get(what)
        if running is None or running.done():
            loop = asyncio.get_running_loop()
            self._refreshing[what] = loop.run_in_executor(self._executors[0], refresh)

    async def _watch_daemon(self) -> None:
        """Readiness follows the daemon's ping."""
        while True:
            await asyncio.sleep(self.settings.health_interval_seconds)
            await self._set_health(await self.core.ping())
            if self.index is not None and self.index.live:
                self._count_indexed_images()
            elif self._daemon_up and self._docker.image_stats_due(
                self.settings.image_stats_interval_seconds
            ):
                self._refresh_gauges("images", self._docker.refresh_image_stats)

    def _count_indexed_images(self) -> None:
        """The image gauges from the live index: no Engine list (on the containerd store
        one costs seconds at a few hundred images)."""
        assert self.index is not None
        listed = select_images(self.index.entries(), ImageFilter(), all=False)
        self.metrics.images.set(len(listed))
        self.metrics.images_size.set(sum(entry.image.size for entry in listed))

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first, then refuse new calls (UNAVAILABLE) while running ones get
        up to `grace` seconds to finish, then stop the ports."""
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        for refreshing in self._refreshing.values():
            refreshing.cancel()
        await self.kept_images.stop()
        await self._stop_index()
        await self.health.enter_graceful_shutdown()
        # Watches never end by themselves: end them now, so that their clients resume
        # elsewhere at once instead of holding the drain for the whole grace period.
        self.image_changes.close(
            UnavailableError(
                "imagesvc is shutting down; watch again (on another replica: list first,"
                " resume tokens are per server)",
                reason=Reason.SHUTTING_DOWN,
            )
        )
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        stopping: list[Coroutine[Any, Any, Any]] = []
        if self._server is not None:
            stopping.append(self._stop_grpc(self._server, grace))
        if self._http is not None:
            stopping.append(self._http.stop(grace))
        await asyncio.gather(*stopping)
        await self.fleet.close()
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)
        close = getattr(self._docker, "close", None)
        if callable(close):
            close()

    async def _stop_index(self) -> None:
        """Closes the event stream (its reader thread ends) and ends the index's task.
        Reads go to the Engine from here on."""
        if self.index is None or self._index_task is None:
            return
        self.index.stop()
        try:
            async with asyncio.timeout(5):
                await asyncio.shield(self._index_task)
        except TimeoutError:
            self._index_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._index_task
        self._index_task = None

    async def _stop_grpc(self, server: grpc.aio.Server, grace: float) -> None:
        started = time.monotonic()
        await self._drain.start(grace)
        # What is left (health watches, reflection, a call that outlived the grace) gets
        # the rest of the grace period.
        await server.stop(max(grace - (time.monotonic() - started), 0.0))

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def serve(settings: Settings) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    server = ImageServer(settings)
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    log.info("shutting down", extra={"grace_seconds": settings.shutdown_grace_seconds})
    await server.stop()
    log.info("stopped")


class ThreadedServer:
    """An ImageServer on its own event loop in a background thread, for sync callers
    (tests, benchmarks). `port` and `http_port` are the bound ports; `stop()` shuts it down."""

    def __init__(
        self,
        settings: Settings,
        engine: DockerPort | None = None,
        *,
        image_snapshot: Snapshot | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="imagesvc", daemon=True)
        self._thread.start()
        try:
            self.server = self._run(self._create(settings, engine, image_snapshot))
        except BaseException:
            self._close_loop()
            raise
        self.port = self._run(self.server.start())
        self.http_port = self.server.http_port

    async def _create(
        self, settings: Settings, engine: DockerPort | None, image_snapshot: Snapshot | None
    ) -> ImageServer:
        return ImageServer(settings, engine, image_snapshot=image_snapshot)

    def run_on_loop(self, callback: Callable[[], object]) -> None:
        """Runs `callback` on the server's event loop and waits for it (e.g. publishing
        a change to `server.image_changes`, which only the loop may do)."""

        async def run() -> None:
            callback()

        self._run(run())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def stop(self, grace: float = 0.0) -> None:
        self._run(self.server.stop(grace))
        self._close_loop()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
