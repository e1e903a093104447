"""Identical pulls at once make ONE Engine pull, and every caller gets its result.

32 clients pull one image while its registry is stalled behind a proxy, on a server
allowing one pull at a time; once all have joined, the registry resumes. The Engine
requests are counted by a unix socket proxy in front of the Engine's socket: exactly
one ``POST /images/create``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import pytest

from devtools.sandbox import BuiltImage, Registry, SandboxEngine, build_busybox_image
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.integration.conftest import server_settings
from tests.integration.engine_proxy import EngineRequestCounter
from tests.integration.throttle_proxy import ThrottleProxy
from tests.integration.transfers import local_id, read_pull, remove_local, unique
from tests.scrape import scrape

# The API contract: runs once per engine kind (tests/integration/conftest.py).
pytestmark = pytest.mark.contract

CALLERS = 32


@dataclass(frozen=True)
class Served:
    server: ThreadedServer
    stub: image_service_pb2_grpc.ImageServiceStub
    engine_pulls: EngineRequestCounter


@pytest.fixture(scope="module")
def served(engine: SandboxEngine) -> Iterator[Served]:
    """A server allowing one pull at a time, whose Engine requests are counted."""
    with EngineRequestCounter(engine.host, request="POST /images/create") as counter:
        server = ThreadedServer(server_settings(counter.host, max_concurrent_pulls=1))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                yield Served(server, image_service_pb2_grpc.ImageServiceStub(channel), counter)
        finally:
            server.stop()


@pytest.fixture
def proxy(open_registry: Registry) -> Iterator[ThrottleProxy]:
    with ThrottleProxy(open_registry.address, rate=None) as running:
        yield running


@pytest.fixture
def image(
    engine: SandboxEngine, proxy: ThrottleProxy, busybox_image: BuiltImage
) -> Iterator[tuple[str, str]]:
    """(reference, image id) of an image with a random layer in the open registry
    (through the proxy), not on the Engine."""
    reference = f"{proxy.address}/{unique('team/flight-')}:1"
    image_id = build_busybox_image(
        engine, reference, extra_lines=["RUN dd if=/dev/urandom of=/blob bs=64k count=4"]
    )
    engine.docker("push", reference)
    remove_local(engine, reference)
    yield reference, image_id
    remove_local(engine, reference)


def test_identical_pulls_make_one_engine_pull_and_all_get_the_result(
    served: Served, engine: SandboxEngine, proxy: ThrottleProxy, image: tuple[str, str]
) -> None:
    reference, image_id = image
    http_port = served.server.http_port
    joins_before = scrape(http_port).value_or_zero("imagesvc_pull_joins_total")
    pulls_before = served.engine_pulls.count

    def pull() -> tuple[list[object], pb.PullImageResult]:
        request = pb.PullImageRequest(reference=reference)
        progress, result = read_pull(served.stub.PullImage(request, timeout=120))
        return list(progress), result

    proxy.set_rate(0)  # the registry stalls: the first pull waits for it
    with ThreadPoolExecutor(max_workers=CALLERS) as pool:
        pulls = [pool.submit(pull) for _ in range(CALLERS)]
        deadline = time.monotonic() + 60
        while (
            scrape(http_port).value_or_zero("imagesvc_pull_joins_total") - joins_before
            < CALLERS - 1
        ):
            assert time.monotonic() < deadline, "the pulls did not all join"
            assert not any(p.done() for p in pulls), [p.exception() for p in pulls if p.done()]
            time.sleep(0.05)
        assert scrape(http_port).value("imagesvc_pull_flights") == 1
        proxy.set_rate(None)
        results = [p.result(timeout=90)[1] for p in pulls]

    assert served.engine_pulls.count - pulls_before == 1
    assert {result.image_id for result in results} == {image_id}
    assert local_id(engine, reference) == image_id
    assert len({(r.digest, r.reference, r.status) for r in results}) == 1
    after = scrape(http_port)
    assert after.value("imagesvc_pull_joins_total") - joins_before == CALLERS - 1
    assert after.value("imagesvc_pull_flights") == 0
