"""The registry SIGKILLed in the middle of a pull and of a push: each call ends
UNAVAILABLE / REGISTRY_UNAVAILABLE with a message naming the registry (host:port, as the
reference wrote it).

The registry is the module's own, behind a throttling proxy (so both transfers are
under way when it dies), and so are the Engine and the server. The Engine retries a
dropped transfer with growing back-off before it gives up: a push about 50 s on Engine
20.10, a pull five times (about 115 s), so this Engine makes one download attempt
(`max-download-attempts`, about 5 s) and both calls run at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from devtools.sandbox import (
    DOCKER_SYSTEM,
    DockerKind,
    Engine,
    Registry,
    build_busybox_image,
)
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.conftest import BUSYBOX_TAG, engine_of_its_own, server_settings
from tests.integration.rpc_errors import error_info
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import (
    build_big_image,
    local_image,
    push_big_image,
    remove_local,
    unique,
)

Stub = image_service_pb2_grpc.ImageServiceStub

LAYER_MIB = 8
SLOW_RATE = 100 * 1024  # bytes a second, each way: a layer would take ~80 s
# The Engine's retries of the push with back-off, and a margin for a busy machine.
GIVES_UP_WITHIN = 120.0


@dataclass(frozen=True)
class _OneDownloadAttempt(DockerKind):
    def daemon_config(self) -> dict[str, object]:
        return {**super().daemon_config(), "max-download-attempts": 1}


@pytest.fixture(scope="module")
def quick_engine() -> Iterator[Engine]:
    kind = _OneDownloadAttempt(DOCKER_SYSTEM.name, DOCKER_SYSTEM.version_prefix)
    with engine_of_its_own(lambda base: Engine(base, kind=kind), prefix="isv-quick-") as engine:
        build_busybox_image(engine, BUSYBOX_TAG)
        yield engine


@pytest.fixture(scope="module")
def stub(quick_engine: Engine) -> Iterator[Stub]:
    server = ThreadedServer(server_settings(quick_engine.host))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield image_service_pb2_grpc.ImageServiceStub(channel)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def own_registry() -> Iterator[Registry]:
    base = Path(tempfile.mkdtemp(prefix="isv-reg-", dir="/tmp"))
    registry = Registry(base)
    registry.start()
    yield registry
    registry.stop()
    shutil.rmtree(base)


@pytest.fixture
def proxy(own_registry: Registry) -> Iterator[ThrottleProxy]:
    with ThrottleProxy(own_registry.address, rate=SLOW_RATE, upload_rate=SLOW_RATE) as running:
        yield running


def _drain(call: Iterator[object], errors: list[grpc.RpcError], ended: list[float]) -> None:
    try:
        for _ in call:
            pass
    except grpc.RpcError as error:
        errors.append(error)
    ended.append(time.monotonic())


def test_registry_killed_mid_pull_and_mid_push(
    stub: Stub, quick_engine: Engine, own_registry: Registry, proxy: ThrottleProxy
) -> None:
    engine = quick_engine
    # In the registry, directly: the image to pull.
    pulled = f"{unique('faults/pulled-')}:1"
    push_big_image(engine, f"{own_registry.address}/{pulled}", mib=LAYER_MIB)
    # On the Engine only: the image to push.
    pushed = f"{proxy.address}/{unique('faults/pushed-')}:1"
    build_big_image(engine, pushed, mib=LAYER_MIB)
    pull_reference = f"{proxy.address}/{pulled}"
    try:
        pull = stub.PullImage(pb.PullImageRequest(reference=pull_reference), timeout=300)
        for message in pull:
            if any(layer.state == "Downloading" for layer in message.progress.layers):
                break
        push = stub.PushImage(pb.PushImageRequest(reference=pushed), timeout=300)
        for push_message in push:
            if any(layer.state == "Pushing" for layer in push_message.progress.layers):
                break

        pid = own_registry._running_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        pull_errors: list[grpc.RpcError] = []
        push_errors: list[grpc.RpcError] = []
        pull_ended: list[float] = []
        push_ended: list[float] = []
        threads = [
            threading.Thread(target=_drain, args=(pull, pull_errors, pull_ended)),
            threading.Thread(target=_drain, args=(push, push_errors, push_ended)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=GIVES_UP_WITHIN)
        took = time.monotonic() - killed
        assert not any(thread.is_alive() for thread in threads), f"still running after {took}s"
        for call, errors, ended in (
            ("PullImage", pull_errors, pull_ended),
            ("PushImage", push_errors, push_ended),
        ):
            assert errors, f"{call} succeeded though its registry was killed"
            error = errors[0]
            after = ended[0] - killed
            print(f"\n{call}: {error.code().name} {after:.1f}s after the kill: {error.details()}")
            assert error.code() is grpc.StatusCode.UNAVAILABLE, error.details()
            assert error_info(error).reason == "REGISTRY_UNAVAILABLE"
            assert f"the registry {proxy.address} is unavailable" in str(error.details())
        assert local_image(engine, pull_reference) is None
    finally:
        own_registry.stop()
        remove_local(engine, pushed)
        remove_local(engine, pull_reference)
