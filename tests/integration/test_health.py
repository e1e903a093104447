"""grpc.health.v1, /readyz and the daemon-up gauge follow the daemon (/healthz does not);
server reflection lists the services."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from devtools.sandbox import Engine
from imagesvc.server import LIVENESS_SERVICE, ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.conftest import server_settings
from tests.integration.rpc_errors import error_info
from tests.scrape import scrape

SERVICE = "imagesvc.v1.ImageService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# How long a flip of the daemon may take to show (the server pings every 0.2 s).
FLIP_WITHIN = 5.0


def health_stub(channel: grpc.Channel) -> Any:
    """A Health client (typed Any: the types-grpcio-health-checking stub has no methods)."""
    return health_pb2_grpc.HealthStub(channel)


def check(channel: grpc.Channel, service: str) -> int:
    status: int = (
        health_stub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
    )
    return status


def probes(server: ThreadedServer) -> tuple[int, int, float]:
    """(/healthz status, /readyz status, imagesvc_docker_daemon_up) over HTTP."""
    base = f"http://127.0.0.1:{server.http_port}"
    return (
        httpx.get(f"{base}/healthz", timeout=5).status_code,
        httpx.get(f"{base}/readyz", timeout=5).status_code,
        scrape(server.http_port).value("imagesvc_docker_daemon_up"),
    )


def wait_for(condition: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until ``condition()`` held; fails after ``within`` seconds."""
    started = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - started
        assert elapsed < within, f"{what} did not happen within {within}s"
        time.sleep(0.02)
    return time.monotonic() - started


# The session server ----------------------------------------------------------------------


def test_health_is_serving_while_the_daemon_answers(channel: grpc.Channel, engine: Engine) -> None:
    assert engine.ping()
    # Health follows the daemon one ping later, and a ping hung over a restart of the
    # session engine (test_harness stops and starts it) ends only at the ping timeout (5 s).
    wait_for(
        lambda: check(channel, "") == SERVING and check(channel, SERVICE) == SERVING,
        within=8.0,
        what="health SERVING while the daemon answers",
    )


def test_health_of_an_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        check(channel, "no.such.Service")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {SERVICE, "grpc.health.v1.Health"} <= services
    # The descriptors it serves are complete enough for a generic client (grpcurl).
    pool = descriptor_pool.DescriptorPool(database)
    build = pool.FindServiceByName(SERVICE).methods_by_name["BuildImage"]
    assert build.input_type.full_name == "imagesvc.v1.BuildImageRequest"
    assert build.client_streaming
    assert build.server_streaming
    assert {"ListImages", "PullImage", "PushImage", "CheckRegistryAuth"} <= set(
        pool.FindServiceByName(SERVICE).methods_by_name
    )
    assert "Check" in pool.FindServiceByName("grpc.health.v1.Health").methods_by_name


# A server whose daemon goes away and comes back --------------------------------------------


class Watcher:
    """Collects what a health Watch stream reports, on a thread of its own."""

    def __init__(self, channel: grpc.Channel, service: str) -> None:
        self.statuses: list[int] = []
        self._call = health_stub(channel).Watch(
            health_pb2.HealthCheckRequest(service=service), timeout=120
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for response in self._call:
                self.statuses.append(response.status)
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(timeout=5)


def test_health_follows_the_daemon_down_and_up(own_engine: Engine) -> None:
    server = ThreadedServer(server_settings(own_engine.host, health_interval_seconds=0.2))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = image_service_pb2_grpc.ImageServiceStub(channel)
            assert check(channel, "") == SERVING
            assert check(channel, SERVICE) == SERVING
            assert check(channel, LIVENESS_SERVICE) == SERVING
            assert probes(server) == (200, 200, 1)
            stub.ListImages(pb.ListImagesRequest(), timeout=10)
            watcher = Watcher(channel, SERVICE)
            try:
                wait_for(lambda: watcher.statuses == [SERVING], 5, "the first Watch message")

                stop_began = time.monotonic()
                own_engine.stop()
                assert not own_engine.ping()
                flipped = wait_for(
                    lambda: check(channel, SERVICE) == NOT_SERVING, FLIP_WITHIN, "NOT_SERVING"
                )
                print(
                    f"NOT_SERVING {flipped:.2f}s after dockerd was gone"
                    f" ({time.monotonic() - stop_began:.2f}s after stop began)"
                )
                assert check(channel, "") == NOT_SERVING
                # Readiness follows the daemon; liveness does not (no restart loop).
                assert check(channel, LIVENESS_SERVICE) == SERVING
                assert probes(server) == (200, 503, 0)
                with pytest.raises(grpc.RpcError) as caught:
                    stub.ListImages(pb.ListImagesRequest(), timeout=10)
                assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
                assert error_info(caught.value).reason == "DAEMON_UNAVAILABLE"
                assert "DOCKER_HOST" in (caught.value.details() or "")

                own_engine.start()
                back = wait_for(
                    lambda: check(channel, SERVICE) == SERVING, FLIP_WITHIN, "SERVING again"
                )
                print(f"SERVING {back:.2f}s after dockerd answered again")
                assert check(channel, "") == SERVING
                assert probes(server) == (200, 200, 1)
                # Same server, same channel: calls work again.
                reply = stub.ListImages(pb.ListImagesRequest(), timeout=10)
                assert reply.total_size >= 0
                wait_for(
                    lambda: watcher.statuses == [SERVING, NOT_SERVING, SERVING],
                    5,
                    f"Watch to report the transitions (saw {watcher.statuses})",
                )
            finally:
                watcher.close()
    finally:
        server.stop()


def test_a_hung_daemon_is_not_ready(own_engine: Engine) -> None:
    """A daemon that still accepts connections but answers nothing (here: dockerd
    stopped with SIGSTOP) is down once a ping takes longer than the health timeout:
    readiness fails, liveness holds, and all of it comes back when the daemon does."""
    server = ThreadedServer(
        server_settings(own_engine.host, health_interval_seconds=0.2, health_timeout_seconds=0.5)
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            assert check(channel, SERVICE) == SERVING
            pid = own_engine.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                flipped = wait_for(
                    lambda: check(channel, SERVICE) == NOT_SERVING, FLIP_WITHIN, "NOT_SERVING"
                )
                print(f"NOT_SERVING {flipped:.2f}s after dockerd froze")
                assert check(channel, "") == NOT_SERVING
                assert check(channel, LIVENESS_SERVICE) == SERVING
                assert probes(server) == (200, 503, 0)
            finally:
                os.kill(pid, signal.SIGCONT)
            wait_for(lambda: check(channel, SERVICE) == SERVING, FLIP_WITHIN, "SERVING again")
            assert probes(server) == (200, 200, 1)
    finally:
        server.stop()
