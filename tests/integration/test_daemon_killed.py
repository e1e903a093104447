"""dockerd SIGKILLed in the middle of a call: the call ends UNAVAILABLE within 2 s of the
kill, health goes NOT_SERVING, and once dockerd is back on the same socket the same
server (not restarted) serves again.

On Engine 20.10, 26 and 26 with the containerd image store (each selected kind), each
test kills the module's own dockerd (never the shared pool's) while one call is
under way: a pull slowed by a throttling proxy in front of the registry, a push whose
registry answers are held back, a build whose RUN step sleeps, and a list the daemon
cannot answer because it is frozen (SIGSTOP) when the kill comes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.engine_kinds import kinds_named
from devtools.sandbox import BuiltImage, Engine, Registry, build_busybox_image
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.builds import build_requests, dockerfile, make_tar
from tests.integration.conftest import BUSYBOX_TAG, engine_of_its_own, server_settings
from tests.integration.rpc_errors import error_info
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import push_big_image, remove_local, unique

Stub = image_service_pb2_grpc.ImageServiceStub

DOCKER_KINDS = ["docker-20.10", "docker-26", "docker-26-containerd"]
# The bound: from the kill to the caller's status.
STATUS_WITHIN = 2.0
# The server pings every 0.2 s (server_settings); a flip may take a few pings.
HEALTH_FLIP_WITHIN = 5.0
LAYER_MIB = 8
SLOW_RATE = 100 * 1024  # bytes a second: the layer would take ~80 s


@pytest.fixture(
    scope="module",
    params=[pytest.param(name, marks=pytest.mark.engine_kinds(name)) for name in DOCKER_KINDS],
)
def own_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A dockerd of this kind for the module alone, which its tests kill."""
    (kind,) = kinds_named([request.param])

    def make(base: Path) -> Engine:
        engine = kind.make(base)
        assert isinstance(engine, Engine)
        return engine

    with engine_of_its_own(make, prefix="isv-kill-") as engine:
        yield engine


@pytest.fixture(scope="module")
def own_busybox(own_engine: Engine) -> BuiltImage:
    return BuiltImage(BUSYBOX_TAG, build_busybox_image(own_engine, BUSYBOX_TAG))


@pytest.fixture(scope="module")
def own_server(own_engine: Engine) -> Iterator[ThreadedServer]:
    server = ThreadedServer(server_settings(own_engine.host))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_channel(own_server: ThreadedServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{own_server.port}") as channel:
        yield channel


@pytest.fixture(scope="module")
def own_stub(own_channel: grpc.Channel) -> Stub:
    return image_service_pb2_grpc.ImageServiceStub(own_channel)


@pytest.fixture(scope="module")
def big_repository(own_engine: Engine, own_busybox: BuiltImage, open_registry: Registry) -> str:
    """A repository in the open registry holding an image with an 8 MiB random layer."""
    repository = unique("faults/big-")
    push_big_image(own_engine, f"{open_registry.address}/{repository}:1", mib=LAYER_MIB)
    return repository


@pytest.fixture
def proxy(open_registry: Registry) -> Iterator[ThrottleProxy]:
    with ThrottleProxy(open_registry.address, rate=SLOW_RATE) as running:
        yield running


def _health(channel: grpc.Channel) -> int:
    stub: object = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service="imagesvc.v1.ImageService")
    status: int = stub.Check(request, timeout=5).status  # type: ignore[attr-defined]
    return status


def _wait_for(condition: Callable[[], bool], within: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, f"{what} not within {within}s"
        time.sleep(0.05)
    return time.monotonic() - started


def _kill(engine: Engine) -> float:
    """SIGKILLs dockerd; returns when (monotonic)."""
    pid = engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def _assert_unavailable_soon(error: grpc.RpcError, killed: float, ended: float, call: str) -> None:
    after = ended - killed
    print(f"\n{call}: {error.code().name} {after:.3f}s after the kill: {error.details()}")
    assert error.code() is grpc.StatusCode.UNAVAILABLE, error.details()
    assert error_info(error).reason == "DAEMON_UNAVAILABLE"
    assert "Docker daemon" in str(error.details())
    assert after < STATUS_WITHIN, f"{call} ended {after:.2f}s after the kill"


def _restart_and_check(engine: Engine, channel: grpc.Channel, stub: Stub) -> None:
    """Health NOT_SERVING while dockerd is down; it comes back on the same socket, health
    goes SERVING and calls succeed on the same server."""
    not_serving = _wait_for(
        lambda: _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING,
        HEALTH_FLIP_WITHIN,
        "NOT_SERVING",
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListImages(pb.ListImagesRequest(), timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    engine.stop()  # reaps the killed dockerd and ends what it left (containerd, shims)
    engine.start()
    serving = _wait_for(
        lambda: _health(channel) == health_pb2.HealthCheckResponse.SERVING,
        HEALTH_FLIP_WITHIN,
        "SERVING",
    )
    listed = stub.ListImages(pb.ListImagesRequest(), timeout=10)
    assert BUSYBOX_TAG in {tag for image in listed.images for tag in image.repo_tags}
    assert stub.GetImage(pb.GetImageRequest(image=BUSYBOX_TAG), timeout=10).image.id
    print(f"NOT_SERVING after {not_serving:.2f}s; SERVING {serving:.2f}s after the restart")


def test_pull(
    own_engine: Engine,
    own_channel: grpc.Channel,
    own_stub: Stub,
    proxy: ThrottleProxy,
    big_repository: str,
) -> None:
    reference = f"{proxy.address}/{big_repository}:1"
    call = own_stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60)
    for message in call:
        if any(layer.state == "Downloading" for layer in message.progress.layers):
            break
    killed = _kill(own_engine)
    with pytest.raises(grpc.RpcError) as caught:
        for _ in call:
            pass
    _assert_unavailable_soon(caught.value, killed, time.monotonic(), "PullImage")
    _restart_and_check(own_engine, own_channel, own_stub)
    # The pull itself now works, through the same server.
    proxy.set_rate(None)
    messages = list(own_stub.PullImage(pb.PullImageRequest(reference=reference), timeout=60))
    assert messages[-1].WhichOneof("kind") == "result"
    remove_local(own_engine, reference)


def test_push(
    own_engine: Engine,
    own_channel: grpc.Channel,
    own_stub: Stub,
    own_busybox: BuiltImage,
    proxy: ThrottleProxy,
) -> None:
    reference = f"{proxy.address}/{unique('faults/push-')}:1"
    own_engine.docker("tag", BUSYBOX_TAG, reference)
    proxy.set_rate(0)  # the registry's answers are held back: the push waits on them
    call = own_stub.PushImage(pb.PushImageRequest(reference=reference), timeout=60)
    first = next(call)
    assert first.WhichOneof("kind") == "progress"
    assert proxy.wait_for(lambda: proxy.connections_opened >= 1, timeout=10)
    time.sleep(0.3)  # the daemon is now waiting on the registry
    killed = _kill(own_engine)
    with pytest.raises(grpc.RpcError) as caught:
        for _ in call:
            pass
    _assert_unavailable_soon(caught.value, killed, time.monotonic(), "PushImage")
    _restart_and_check(own_engine, own_channel, own_stub)
    proxy.set_rate(None)
    messages = list(own_stub.PushImage(pb.PushImageRequest(reference=reference), timeout=60))
    assert messages[-1].WhichOneof("kind") == "result"
    remove_local(own_engine, reference)


def test_build(
    own_engine: Engine, own_channel: grpc.Channel, own_stub: Stub, own_busybox: BuiltImage
) -> None:
    context = make_tar(
        {"Dockerfile": dockerfile(f"FROM {BUSYBOX_TAG}", "RUN echo sleeping && sleep 60")}
    )
    tag = f"{unique('faults/build-')}:1"
    options = pb.BuildOptions(tags=[tag], no_cache=True, network_mode="none")
    call = own_stub.BuildImage(iter(build_requests(options, context)), timeout=90)
    seen = ""
    for message in call:
        seen += message.log
        if "sleeping" in seen:
            break
    assert "sleeping" in seen
    killed = _kill(own_engine)
    with pytest.raises(grpc.RpcError) as caught:
        for _ in call:
            pass
    _assert_unavailable_soon(caught.value, killed, time.monotonic(), "BuildImage")
    _restart_and_check(own_engine, own_channel, own_stub)


def test_list(own_engine: Engine, own_channel: grpc.Channel, own_stub: Stub) -> None:
    # A list the Engine answers: with the live image index a list answers from memory
    # and never waits on the daemon.
    engine_lists = ThreadedServer(server_settings(own_engine.host, disable_image_index=True))
    pid = own_engine.pid
    assert pid is not None
    with grpc.insecure_channel(f"127.0.0.1:{engine_lists.port}") as channel:
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        # Frozen, the daemon takes the connection (the kernel accepts it) but never
        # answers: the list is under way, waiting on it, when the kill comes.
        os.kill(pid, signal.SIGSTOP)
        outcome: list[grpc.RpcError | pb.ListImagesResponse] = []
        ended: list[float] = []

        def list_images() -> None:
            try:
                outcome.append(stub.ListImages(pb.ListImagesRequest(), timeout=30))
            except grpc.RpcError as error:
                outcome.append(error)
            ended.append(time.monotonic())

        thread = threading.Thread(target=list_images)
        thread.start()
        time.sleep(1.0)
        assert not outcome, "the list ended while the daemon was frozen"
        killed = _kill(own_engine)
        thread.join(timeout=30)
    engine_lists.stop()
    assert outcome, "the list did not end after the kill"
    assert isinstance(outcome[0], grpc.RpcError), outcome
    _assert_unavailable_soon(outcome[0], killed, ended[0], "ListImages")
    _restart_and_check(own_engine, own_channel, own_stub)
