"""Property-based tests through the real server and engine: random and hostile
references, tags, build options and build contexts each end in a clean status (never
UNKNOWN or INTERNAL), the server keeps serving, and nothing outside the allowlist
(the open loopback registry) ever reaches the Engine: the server's Docker port refuses,
and records, any other reference before docker-py would send it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import IO

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from devtools.sandbox import BuiltImage, Engine, Registry
from imagesvc.core.models import RegistryAuth
from imagesvc.core.port import BuildRequest
from imagesvc.engine.docker_adapter import DockerAdapter, DockerEngineStream
from imagesvc.server import ThreadedServer
from imagesvc.v1 import image_service_pb2 as pb
from imagesvc.v1 import image_service_pb2_grpc
from tests.hostile_inputs import (
    ALLOWED_PREFIX,
    DrawnContext,
    Options,
    build_options,
    contexts,
    references,
)
from tests.integration.builds import build_requests, read_build
from tests.integration.conftest import server_settings

Stub = image_service_pb2_grpc.ImageServiceStub

CLEAN = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
}
BOUNDED = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class GuardedAdapter(DockerAdapter):
    """The real adapter, refusing (and recording) any reference outside `allowed`."""

    def __init__(self, docker_host: str, allowed: str) -> None:
        super().__init__(docker_host)
        self.allowed = allowed
        self.violations: list[str] = []
        self.built: list[str] = []
        self._lock = threading.Lock()

    def _guard(self, *references: str) -> None:
        outside = [r for r in references if not r.startswith(self.allowed)]
        if outside:
            with self._lock:
                self.violations += outside
            raise AssertionError(f"{outside} reached the Docker port")

    def pull(
        self, name: str, tag_or_digest: str, *, platform: str, auth: RegistryAuth | None
    ) -> DockerEngineStream:
        self._guard(name)
        return super().pull(name, tag_or_digest, platform=platform, auth=auth)

    def push(self, name: str, tag: str, *, auth: RegistryAuth | None) -> DockerEngineStream:
        self._guard(name)
        return super().push(name, tag, auth=auth)

    def tag(self, source: str, repository: str, tag: str) -> None:
        self._guard(repository)
        super().tag(source, repository, tag)
        with self._lock:
            self.built.append(f"{repository}:{tag}")

    def build(
        self, context: IO[bytes] | Iterator[bytes], *, gzip: bool, request: BuildRequest
    ) -> DockerEngineStream:
        self._guard(*request.tags)
        with self._lock:
            self.built += list(request.tags)
        return super().build(context, gzip=gzip, request=request)


@pytest.fixture(scope="module")
def guarded(engine: Engine, open_registry: Registry) -> Iterator[tuple[Stub, GuardedAdapter]]:
    allowed = f"{open_registry.address}/"
    adapter = GuardedAdapter(engine.host, allowed)
    server = ThreadedServer(
        server_settings(
            engine.host,
            pull_allowlist=f"{open_registry.address}/**",
            push_allowlist=f"{open_registry.address}/**",
            build_context_max_bytes=4 * 1024 * 1024,
        ),
        engine=adapter,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield image_service_pb2_grpc.ImageServiceStub(channel), adapter
    finally:
        server.stop()
        # Whatever the examples built or tagged on the allowed registry's names.
        for reference in adapter.built:
            engine.docker("image", "rm", "--force", reference, check=False)
        assert adapter.violations == []


def on_registry(text: str, registry: Registry) -> str:
    """The strategies' allowed registry (127.0.0.1:5000) is the open test registry here."""
    return text.replace(ALLOWED_PREFIX, f"{registry.address}/")


def failure(call: Callable[[], object]) -> grpc.RpcError | None:
    try:
        call()
    except grpc.RpcError as error:
        return error
    return None


def assert_clean(error: grpc.RpcError | None) -> None:
    """A call ended well or with a status a caller can act on, never UNKNOWN/INTERNAL."""
    if error is not None:
        assert isinstance(error, grpc.Call)
        assert error.code() in CLEAN, (error.code(), error.details())


def still_serving(stub: Stub, busybox: BuiltImage) -> None:
    assert stub.GetImage(pb.GetImageRequest(image=busybox.tag), timeout=10).image.id == busybox.id


@BOUNDED
@given(reference=references())
def test_pull_and_push_of_any_reference(
    guarded: tuple[Stub, GuardedAdapter],
    open_registry: Registry,
    busybox_image: BuiltImage,
    reference: str,
) -> None:
    stub, adapter = guarded
    reference = on_registry(reference, open_registry)
    pull = pb.PullImageRequest(reference=reference)
    assert_clean(failure(lambda: list(stub.PullImage(pull, timeout=30))))
    push = pb.PushImageRequest(reference=reference)
    assert_clean(failure(lambda: list(stub.PushImage(push, timeout=30))))
    assert adapter.violations == []
    still_serving(stub, busybox_image)


@BOUNDED
@given(target=references(), source=st.one_of(st.just(""), references()))
def test_tag_with_any_target(
    guarded: tuple[Stub, GuardedAdapter],
    open_registry: Registry,
    busybox_image: BuiltImage,
    target: str,
    source: str,
) -> None:
    stub, adapter = guarded
    request = pb.TagImageRequest(
        source=on_registry(source, open_registry) or busybox_image.tag,
        target=on_registry(target, open_registry),
    )
    assert_clean(failure(lambda: stub.TagImage(request, timeout=30)))
    assert adapter.violations == []
    still_serving(stub, busybox_image)


@BOUNDED
@given(drawn=build_options(), context=contexts(), chunk=st.sampled_from([100, 4096, 65536]))
def test_build_with_any_options_and_context(
    guarded: tuple[Stub, GuardedAdapter],
    open_registry: Registry,
    busybox_image: BuiltImage,
    drawn: Options,
    context: DrawnContext,
    chunk: int,
) -> None:
    stub, adapter = guarded
    options = pb.BuildOptions(
        tags=[on_registry(tag, open_registry) for tag in drawn.tags],
        network_mode=drawn.network_mode,
        build_args=drawn.build_args,
        dockerfile=drawn.dockerfile,
        target=drawn.target,
        platform=drawn.platform,
    )
    outcome = read_build(
        stub.BuildImage(iter(build_requests(options, context.data, chunk_size=chunk)), timeout=60)
    )
    assert_clean(outcome.error)
    assert adapter.violations == []
    still_serving(stub, busybox_image)


@BOUNDED
@given(context=contexts(), gzip_chunk=st.sampled_from([512, 65536]))
def test_build_of_any_context(
    guarded: tuple[Stub, GuardedAdapter],
    busybox_image: BuiltImage,
    context: DrawnContext,
    gzip_chunk: int,
) -> None:
    stub, adapter = guarded
    outcome = read_build(
        stub.BuildImage(
            iter(build_requests(pb.BuildOptions(), context.data, chunk_size=gzip_chunk)), timeout=60
        )
    )
    assert_clean(outcome.error)
    if outcome.result is not None:
        event("built")
        adapter.built.append(outcome.result.image_id)  # removed at the end
    assert adapter.violations == []
    still_serving(stub, busybox_image)
