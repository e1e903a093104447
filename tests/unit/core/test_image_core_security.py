"""The core applies the registry policy, build restrictions and limits before the Engine
is asked (a FakeDockerPort records every call)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from imagesvc.core.build_context import ContextLimits
from imagesvc.core.build_policy import BuildRestrictions, build_limits, parse_arg_patterns
from imagesvc.core.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    Reason,
    ResourceExhaustedError,
)
from imagesvc.core.identity import current_identity, current_origin
from imagesvc.core.image_core import CoreSettings, ImageCore
from imagesvc.core.limits import ConcurrencyLimit, Limits, RateLimiter
from imagesvc.core.models import BuildOptions, BuildResult, ImageFilter, PullResult, RegistryAuth
from imagesvc.core.registry_policy import RegistryPolicy
from tests.unit.aio import run, run_collect
from tests.unit.fakes import FakeDockerPort, FakeEngineStream, engine_image
from tests.unit.tarballs import ChunkSource, context_tar, make_tar, split

POLICY = RegistryPolicy.from_text("127.0.0.1:5000/**", "127.0.0.1:5000/team/*, imagesvc-test/*")
BUILD_ID = "sha256:" + "b" * 64


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="security-test")
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def make_core(port: FakeDockerPort, pool: ThreadPoolExecutor, **settings: Any) -> ImageCore:
    values: dict[str, Any] = {
        "build_context": ContextLimits(max_bytes=1 << 20, memory_bytes=4096),
        "progress_interval_seconds": 0.0,
        "registry_policy": POLICY,
    }
    values.update(settings)
    return ImageCore(port, pool, CoreSettings(**values))


def chunks(data: bytes) -> ChunkSource:
    return ChunkSource(split(data, 512))


def built() -> FakeEngineStream:
    return FakeEngineStream([{"stream": "Step 1/1 : FROM x\n"}, {"aux": {"ID": BUILD_ID}}])


# Registry policy ------------------------------------------------------------------------


def test_a_pull_outside_the_allowlist_never_reaches_the_engine(
    port: FakeDockerPort, pool: ThreadPoolExecutor
) -> None:
    core = make_core(port, pool)
    for reference in (
        "busybox",
        "ghcr.io/acme/app:1",
        "127.0.0.1:5001/team/app",
        "localhost:5000/a",
    ):
        with pytest.raises(PermissionDeniedError) as caught:
            run_collect(core.pull_image(reference, platform="", auth=None))
        assert caught.value.reason is Reason.REGISTRY_NOT_ALLOWED
        assert caught.value.message.startswith(f"pulling {reference!r}: ")
    assert port.calls == []


def test_an_allowed_pull_goes_ahead(port: FakeDockerPort, pool: ThreadPoolExecutor) -> None:
    port.add(engine_image(1, tags=["127.0.0.1:5000/x/y:1"]))
    port.pull_streams.append(FakeEngineStream([{"status": "Status: Downloaded"}]))
    items = run_collect(
        make_core(port, pool).pull_image("127.0.0.1:5000/x/y:1", platform="", auth=None)
    )
    assert isinstance(items[-1], PullResult)
    assert port.methods_called == ["pull", "inspect_image"]


def test_check_registry_auth_only_asks_registries_the_allowlists_name(
    port: FakeDockerPort, pool: ThreadPoolExecutor
) -> None:
    core = make_core(port, pool)
    for address in ("ghcr.io", "https://127.0.0.1:5001/v2/", "127.0.0.1:5000@evil.example"):
        auth = RegistryAuth(username="ci", password="hunter2", server_address=address)
        with pytest.raises((PermissionDeniedError, InvalidArgumentError)) as caught:
            run(core.check_registry_auth(auth))
        assert "hunter2" not in caught.value.message
    assert port.calls == []
    run(core.check_registry_auth(RegistryAuth(username="ci", server_address="127.0.0.1:5000")))
    assert port.methods_called == ["check_auth"]


def test_tag_and_push_targets_obey_the_push_allowlist(
    port: FakeDockerPort, pool: ThreadPoolExecutor
) -> None:
    port.add(engine_image(1, tags=["imagesvc-test/app:1"]))
    core = make_core(port, pool)
    with pytest.raises(PermissionDeniedError) as tagged:
        run(core.tag_image("imagesvc-test/app:1", "127.0.0.1:5000/other/app:1"))
    assert tagged.value.metadata == {"repository": "127.0.0.1:5000/other/app", "allowlist": "push"}
    with pytest.raises(PermissionDeniedError):
        run_collect(core.push_image("busybox:1", auth=None))
    assert port.calls == []
    run(core.tag_image("imagesvc-test/app:1", "127.0.0.1:5000/team/app:1"))
    assert port.methods_called == ["tag", "inspect_image"]


def test_build_tags_obey_the_push_allowlist_before_the_context_is_read(
    port: FakeDockerPort, pool: ThreadPoolExecutor
) -> None:
    source = chunks(context_tar())
    with pytest.raises(PermissionDeniedError) as caught:
        run_collect(
            make_core(port, pool).build_image(BuildOptions(tags=("ghcr.io/x/y:1",)), source)
        )
    assert caught.value.message.startswith("tagging the build as 'ghcr.io/x/y:1': ")
    assert source.taken == 0
    assert port.calls == []


@pytest.mark.parametrize(
    ("dockerfile", "build_args", "reason", "text"),
    [
        (b"FROM busybox:1.36\n", {}, Reason.REGISTRY_NOT_ALLOWED, "FROM on line 1"),
        (
            b"FROM 127.0.0.1:5000/base AS b\nFROM b\nCOPY --from=ghcr.io/x/y /a /b\n",
            {},
            Reason.REGISTRY_NOT_ALLOWED,
            "COPY --from on line 3",
        ),
        (
            b"ARG BASE=127.0.0.1:5000/base\nFROM ${BASE}\n",
            {"BASE": "docker.io/evil/base"},
            Reason.REGISTRY_NOT_ALLOWED,
            "docker.io/evil/base",
        ),
        (b"ARG BASE\nFROM $BASE\n", {}, Reason.BASE_IMAGE_UNRESOLVED, "$BASE is not set"),
        (
            b"FROM scratch\nADD https://example.com/x /x\n",
            {},
            Reason.BUILD_OPTION_NOT_ALLOWED,
            "ADD",
        ),
    ],
)
def test_a_build_whose_dockerfile_is_refused_never_reaches_the_engine(
    port: FakeDockerPort,
    pool: ThreadPoolExecutor,
    dockerfile: bytes,
    build_args: dict[str, str],
    reason: Reason,
    text: str,
) -> None:
    core = make_core(port, pool)
    options = BuildOptions(build_args=build_args)
    with pytest.raises(PermissionDeniedError) as caught:
        run_collect(core.build_image(options, chunks(make_tar({"Dockerfile": dockerfile}))))
    assert caught.value.reason is reason
    assert text in caught.value.message
    assert port.received_no_upload()


def test_an_allowed_multi_stage_build_goes_ahead_with_the_limits(
    port: FakeDockerPort, pool: ThreadPoolExecutor
) -> None:
    port.build_streams.append(built())
    limits = build_limits(memory_bytes=64 << 20, cpus=0.5, cpu_shares=0, cpuset_cpus="")
    core = make_core(port, pool, build_restrictions=BuildRestrictions(limits=limits))
    dockerfile = (
        b"ARG TAG=1\nFROM 127.0.0.1:5000/base:${TAG} AS b\nFROM scratch\nCOPY --from=b /a /a\n"
    )
    options = BuildOptions(tags=("imagesvc-test/app:1",), build_args={"TAG": "2"})
    items = run_collect(core.build_image(options, chunks(make_tar({"Dockerfile": dockerfile}))))
    assert items[-1] == BuildResult(image_id=BUILD_ID, tags=("imagesvc-test/app:1",))
    [build] = port.builds
    assert build.limits == limits
    assert build.limits.cpu_quota_us == 50_000


def test_build_restrictions_are_checked_before_the_context_is_read(
    port: FakeDockerPort, pool: ThreadPoolExecutor
) -> None:
    restrictions = BuildRestrictions(arg_denylist=parse_arg_patterns("*TOKEN*"))
    core = make_core(port, pool, build_restrictions=restrictions)
    for options in (BuildOptions(network_mode="host"), BuildOptions(build_args={"NPM_TOKEN": "s"})):
        source = chunks(context_tar())
        with pytest.raises(PermissionDeniedError) as caught:
            run_collect(core.build_image(options, source))
        assert caught.value.reason is Reason.BUILD_OPTION_NOT_ALLOWED
        assert source.taken == 0
    assert port.calls == []


# Build time limit -----------------------------------------------------------------------


def test_a_build_over_the_time_limit_is_stopped_on_the_engine(
    port: FakeDockerPort, pool: ThreadPoolExecutor
) -> None:
    stream = FakeEngineStream(
        [{"stream": "Step 1/2 : RUN sleep 60\n"}, {"stream": "never"}], block_at=1
    )
    port.build_streams.append(stream)
    core = make_core(port, pool, build_restrictions=BuildRestrictions(timeout_seconds=0.3))
    lines: list[object] = []

    async def consume() -> None:
        context = make_tar({"Dockerfile": b"FROM scratch\nRUN sleep 60\n"})
        async for item in core.build_image(BuildOptions(), chunks(context)):
            lines.append(item)

    with pytest.raises(DeadlineExceededError) as caught:
        run(consume())
    assert caught.value.reason is Reason.BUILD_TIMEOUT
    assert caught.value.metadata == {"limit_seconds": "0.3"}
    assert lines == ["Step 1/2 : RUN sleep 60\n"]
    assert stream.closed  # which aborts the build on the daemon
    assert port.build_files[0].closed


def test_a_context_upload_over_the_time_limit_is_stopped(
    port: FakeDockerPort, pool: ThreadPoolExecutor
) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield context_tar()[:512]
        await asyncio.sleep(30)
        yield b""

    core = make_core(port, pool, build_restrictions=BuildRestrictions(timeout_seconds=0.2))
    with pytest.raises(DeadlineExceededError) as caught:
        run_collect(core.build_image(BuildOptions(), trickle()))
    assert caught.value.reason is Reason.BUILD_TIMEOUT
    assert port.received_no_upload()


# Limits -----------------------------------------------------------------------------------


def test_concurrent_pulls_over_the_limit_are_refused_with_a_retry_delay(
    port: FakeDockerPort, pool: ThreadPoolExecutor
) -> None:
    first = FakeEngineStream([{"status": "Pulling"}, {"status": "Status: done"}], block_at=1)
    port.pull_streams += [first, FakeEngineStream([{"status": "Status: done"}])]
    port.add(engine_image(1, tags=["127.0.0.1:5000/a:latest"]))
    core = make_core(port, pool, limits=Limits(pulls=ConcurrencyLimit("pull", 1)))

    async def scenario() -> None:
        running = core.pull_image("127.0.0.1:5000/a", platform="", auth=None)
        await anext(running)  # holds the one slot
        with pytest.raises(ResourceExhaustedError) as caught:
            # Another image (a pull of the same one would join the running pull).
            await anext(core.pull_image("127.0.0.1:5000/b", platform="", auth=None))
        assert caught.value.reason is Reason.CONCURRENCY_LIMIT
        assert caught.value.retry_after_seconds is not None
        first.close()
        async for _ in running:
            pass
        # The slot is free again.
        items = [item async for item in core.pull_image("127.0.0.1:5000/a", platform="", auth=None)]
        assert isinstance(items[-1], PullResult)

    run(scenario())
    assert port.methods_called.count("pull") == 2


def test_a_pull_over_the_limit_waits_and_a_cancelled_waiter_makes_no_engine_call(
    port: FakeDockerPort, pool: ThreadPoolExecutor
) -> None:
    first = FakeEngineStream([{"status": "Pulling"}, {"status": "Status: done"}], block_at=1)
    port.pull_streams += [first, FakeEngineStream([{"status": "Status: done"}])]
    port.add(engine_image(1, tags=["127.0.0.1:5000/a:latest", "127.0.0.1:5000/a:2"]))
    limit = ConcurrencyLimit("pull", 1, max_queued=4, max_wait_seconds=30)
    core = make_core(port, pool, limits=Limits(pulls=limit))

    async def drain(reference: str) -> list[object]:
        return [item async for item in core.pull_image(reference, platform="", auth=None)]

    async def scenario() -> None:
        running = core.pull_image("127.0.0.1:5000/a", platform="", auth=None)
        await anext(running)  # holds the one slot
        # Other images (pulls of the same one would join the running pull).
        cancelled = asyncio.create_task(drain("127.0.0.1:5000/b"))
        waiting = asyncio.create_task(drain("127.0.0.1:5000/a:2"))
        for _ in range(5):  # both reach the queue without an Engine call
            await asyncio.sleep(0)
        assert limit.queued == 2
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert limit.queued == 1
        first.close()
        async for _ in running:
            pass
        items = await asyncio.wait_for(waiting, 10)
        assert isinstance(items[-1], PullResult)
        assert (limit.running, limit.queued) == (0, 0)

    run(scenario())
    # The first pull and the one that waited its turn; the cancelled one never ran.
    assert port.methods_called.count("pull") == 2


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def unauthenticated() -> Iterator[None]:
    """A caller no edge authenticated, whatever an earlier test left in the context."""
    identity, origin = current_identity.set(None), current_origin.set(None)
    yield
    current_origin.reset(origin)
    current_identity.reset(identity)


@pytest.mark.usefixtures("unauthenticated")
def test_every_operation_counts_against_the_callers_rate(
    port: FakeDockerPort, pool: ThreadPoolExecutor
) -> None:
    clock = Clock()
    core = make_core(port, pool, limits=Limits(rate=RateLimiter(1.0, 2, clock=clock)))
    run(core.list_images(ImageFilter(), all=False, page_size=0, page_token=""))
    with pytest.raises(PermissionDeniedError):  # counted although it is refused later
        run_collect(core.pull_image("busybox", platform="", auth=None))
    with pytest.raises(ResourceExhaustedError) as caught:
        run(core.get_image("busybox"))
    assert caught.value.reason is Reason.TOO_MANY_REQUESTS
    assert caught.value.retry_after_seconds == pytest.approx(1.0)
    assert caught.value.metadata["caller"] == "anonymous"
    assert port.methods_called == ["list_images"]
    clock.now += 1.0
    with pytest.raises(NotFoundError):  # admitted again: the fake Engine has no such image
        run(core.get_image("busybox"))
