"""Property-based tests of the core's security checks over a recording fake Engine:
random and hostile references, tags, build options, Dockerfiles and build contexts
only ever end in a clean error (INVALID_ARGUMENT, PERMISSION_DENIED, RESOURCE_EXHAUSTED,
or NOT_FOUND from the fake Engine), and no reference outside the allowlist, which
admits only 127.0.0.1:5000, ever reaches the Engine."""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from imagesvc.core.build_context import ContextLimits, check_context
from imagesvc.core.build_policy import (
    DEFAULT_BUILD_ARG_DENYLIST,
    BuildRestrictions,
    parse_arg_patterns,
)
from imagesvc.core.errors import (
    ImageServiceError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
)
from imagesvc.core.image_core import CoreSettings, ImageCore
from imagesvc.core.models import BuildOptions, RegistryAuth
from imagesvc.core.port import BuildRequest
from imagesvc.core.registry_policy import RegistryPolicy
from tests.hostile_inputs import (
    ALLOWED_PREFIX,
    BaseCase,
    DrawnContext,
    Options,
    base_cases,
    build_options,
    contexts,
    is_allowed_repository,
    references,
)
from tests.unit.aio import run, run_collect
from tests.unit.fakes import FakeDockerPort, FakeEngineStream, engine_image
from tests.unit.tarballs import ChunkSource, make_tar, split

CLEAN = (InvalidArgumentError, PermissionDeniedError, ResourceExhaustedError, NotFoundError)
BOUNDED = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIMITS = ContextLimits(max_bytes=4 * 1024 * 1024, memory_bytes=64 * 1024)


class AnsweringPort(FakeDockerPort):
    """Answers every pull, push and build with a short successful stream."""

    def pull(
        self, name: str, tag_or_digest: str, *, platform: str, auth: RegistryAuth | None
    ) -> FakeEngineStream:
        self.pull_streams.append(FakeEngineStream([{"status": "Status: Downloaded"}]))
        return super().pull(name, tag_or_digest, platform=platform, auth=auth)

    def push(self, name: str, tag: str, *, auth: RegistryAuth | None) -> FakeEngineStream:
        self.push_streams.append(
            FakeEngineStream([{"aux": {"Tag": tag, "Digest": "sha256:" + "d" * 64, "Size": 1}}])
        )
        return super().push(name, tag, auth=auth)

    def build(
        self, context: IO[bytes] | Iterator[bytes], *, gzip: bool, request: BuildRequest
    ) -> FakeEngineStream:
        self.build_streams.append(FakeEngineStream([{"aux": {"ID": "sha256:" + "b" * 64}}]))
        return super().build(context, gzip=gzip, request=request)


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="property-test")
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def make_core(port: FakeDockerPort, pool: ThreadPoolExecutor, **overrides: Any) -> ImageCore:
    values: dict[str, Any] = {
        "build_context": LIMITS,
        "progress_interval_seconds": 0.0,
        "registry_policy": RegistryPolicy.from_text("127.0.0.1:5000/**", "127.0.0.1:5000/**"),
        "build_restrictions": BuildRestrictions(
            arg_denylist=parse_arg_patterns(DEFAULT_BUILD_ARG_DENYLIST)
        ),
    }
    values.update(overrides)
    return ImageCore(port, pool, CoreSettings(**values))


def outcome(run_it: Callable[[], object]) -> ImageServiceError | None:
    """None on success, else the error, which must be a clean one."""
    error: ImageServiceError | None = None
    try:
        run_it()
    except ImageServiceError as raised:
        error = raised
    assert error is None or isinstance(error, CLEAN), f"{type(error).__name__}: {error}"
    return error


def assert_only_loopback_reached_the_engine(port: FakeDockerPort) -> None:
    for call in port.calls:
        if call.method in ("pull", "push"):
            assert is_allowed_repository(call.args[0]), call
        elif call.method == "tag":
            assert is_allowed_repository(call.args[1]), call
    for build in port.builds:
        for tag in build.tags:
            assert is_allowed_repository(tag), build.tags


@BOUNDED
@given(reference=references(), platform=st.sampled_from(["", "linux/amd64", "bad platform"]))
def test_pull_of_any_reference(pool: ThreadPoolExecutor, reference: str, platform: str) -> None:
    port = AnsweringPort()
    core = make_core(port, pool)
    error = outcome(lambda: run_collect(core.pull_image(reference, platform=platform, auth=None)))
    assert_only_loopback_reached_the_engine(port)
    if not reference.startswith(ALLOWED_PREFIX):
        assert error is not None
        assert not port.calls


@BOUNDED
@given(reference=references())
def test_push_of_any_reference(pool: ThreadPoolExecutor, reference: str) -> None:
    port = AnsweringPort()
    core = make_core(port, pool)
    outcome(lambda: run_collect(core.push_image(reference, auth=None)))
    assert_only_loopback_reached_the_engine(port)


@BOUNDED
@given(source=references(), target=references())
def test_tag_with_any_source_and_target(pool: ThreadPoolExecutor, source: str, target: str) -> None:
    port = AnsweringPort()
    port.add(engine_image(1, tags=["127.0.0.1:5000/a/b:1"]))
    core = make_core(port, pool)
    outcome(lambda: run(core.tag_image(source, target)))
    assert_only_loopback_reached_the_engine(port)


def _options(drawn: Options, build_args: dict[str, str] | None = None) -> BuildOptions:
    return BuildOptions(
        tags=drawn.tags,
        network_mode=drawn.network_mode,
        build_args=dict(drawn.build_args if build_args is None else build_args),
        dockerfile=drawn.dockerfile,
        target=drawn.target,
        platform=drawn.platform,
    )


@BOUNDED
@given(drawn=build_options(), case=base_cases())
def test_build_with_any_options_and_base_image(
    pool: ThreadPoolExecutor, drawn: Options, case: BaseCase
) -> None:
    check_build(pool, _options(drawn, {**drawn.build_args, **case.build_args}), case)


@BOUNDED
@given(case=base_cases(), tags=st.lists(st.sampled_from(["127.0.0.1:5000/team/app:1"]), max_size=1))
def test_build_of_any_base_image(pool: ThreadPoolExecutor, case: BaseCase, tags: list[str]) -> None:
    check_build(pool, BuildOptions(tags=tuple(tags), build_args=case.build_args), case)


def check_build(pool: ThreadPoolExecutor, options: BuildOptions, case: BaseCase) -> None:
    port = AnsweringPort()
    core = make_core(port, pool)
    context = make_tar({"Dockerfile": case.dockerfile.encode()})
    chunks = ChunkSource(split(context, 700))
    error = outcome(lambda: run_collect(core.build_image(options, chunks)))
    assert_only_loopback_reached_the_engine(port)
    event("built" if port.builds else f"refused: {type(error).__name__}")
    if port.builds:
        assert error is None
        # The image the Engine will use for FROM is on the allowed registry (or none).
        assert case.effective is None or case.effective.startswith(ALLOWED_PREFIX), case
        [build] = port.builds
        assert build.network_mode in ("", "default", "none")


def assert_stays_inside_the_context(member: tarfile.TarInfo) -> None:
    """An oracle independent of the service's checks, by the lexical rules of Python's
    `tarfile.data_filter` (which is also asked where the interpreter has it: 3.11.4 and
    later, not Debian 12's 3.11.2): only files, directories and links, no absolute
    path, nothing and no link leading out of the context."""
    assert member.isreg() or member.isdir() or member.issym() or member.islnk(), member.type
    assert not member.name.startswith("/"), member.name
    assert ".." not in member.name.split("/"), member.name
    if member.issym() or member.islnk():
        assert not member.linkname.startswith("/"), member.linkname
        base = posixpath.dirname(member.name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, member.linkname))
        assert target.split("/")[0] != "..", (member.name, member.linkname)
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is not None:
        data_filter(member, "/nonexistent-context-root")


@BOUNDED
@given(context=contexts())
def test_any_build_context_is_rewritten_or_refused_cleanly(
    pool: ThreadPoolExecutor, context: DrawnContext
) -> None:
    try:
        checked = check_context(io.BytesIO(context.data), "", LIMITS)
    except (InvalidArgumentError, ResourceExhaustedError) as error:
        event(f"refused: {error.reason}")
        return
    event("rewritten")
    try:
        with tarfile.open(fileobj=checked.file, mode="r:") as rewritten:
            for member in rewritten:
                assert_stays_inside_the_context(member)
    finally:
        checked.close()
    # What reaches the Engine is never larger than the cap, whatever the download was.
    assert checked.size <= LIMITS.max_bytes


@BOUNDED
@given(context=contexts(), chunk=st.integers(min_value=1, max_value=4096))
def test_any_build_context_through_the_core(
    pool: ThreadPoolExecutor, context: DrawnContext, chunk: int
) -> None:
    port = AnsweringPort()
    core = make_core(port, pool, registry_policy=RegistryPolicy())
    chunks = ChunkSource(split(context.data, chunk))
    outcome(lambda: run_collect(core.build_image(BuildOptions(), chunks)))
    for file in port.build_files:
        assert file.closed
