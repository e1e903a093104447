"""Build restrictions on the real engine: host networking and secret-looking build
arguments are refused before a build starts; the memory and CPU limits reach the RUN
containers' cgroups (and a step needing more memory fails); a build over the time limit
is stopped and its container removed."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

from devtools.sandbox import BuiltImage, Engine
from imagesvc.v1 import image_service_pb2 as pb
from tests.integration.builds import dockerfile, make_tar, run_build, unique_repo
from tests.integration.local_images import cli_list_ids
from tests.integration.policy.conftest import Running, running
from tests.integration.rpc_errors import error_info
from tests.integration.transfers import local_image

MEMORY_LIMIT = 32 * 1024 * 1024
# Held in a shell variable by the RUN step: twice the memory limit.
ALLOCATE = "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo allocated ${#x}"
_RUNNING_IN = re.compile(r"Running in ([0-9a-f]{12})")


@pytest.fixture(scope="module")
def limited(engine: Engine) -> Iterator[Running]:
    """Builds limited to 32 MiB, half a CPU and 4 seconds."""
    with running(
        engine, build_memory_bytes=MEMORY_LIMIT, build_cpus=0.5, build_timeout_seconds=4
    ) as server:
        yield server


@pytest.fixture
def tag(engine: Engine) -> Iterator[str]:
    name = f"{unique_repo('restricted')}:1"
    yield name
    engine.docker("image", "rm", "--force", name, check=False)


def _context(busybox: BuiltImage, *steps: str) -> bytes:
    return make_tar({"Dockerfile": dockerfile(f"FROM {busybox.tag}", *steps)})


def _containers(engine: Engine) -> list[str]:
    return engine.docker("ps", "--all", "--quiet", "--no-trunc").stdout.split()


@pytest.mark.parametrize("mode", ["host", "bridge", "container:imagesvc", "some-network"])
def test_networks_other_than_default_and_none_are_refused(
    limited: Running, engine: Engine, busybox_image: BuiltImage, tag: str, mode: str
) -> None:
    images_before = cli_list_ids(engine, all=True)
    outcome = run_build(
        limited.stub,
        pb.BuildOptions(tags=[tag], network_mode=mode),
        _context(busybox_image, "RUN true"),
    )
    error = outcome.failed()
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    info = error_info(error)
    assert info.reason == "BUILD_OPTION_NOT_ALLOWED"
    assert info.metadata["field"] == "network_mode"
    assert outcome.logs == []
    assert cli_list_ids(engine, all=True) == images_before


@pytest.mark.parametrize("mode", ["", "default", "none"])
def test_default_network_and_none_are_allowed(
    limited: Running, busybox_image: BuiltImage, tag: str, mode: str
) -> None:
    outcome = run_build(
        limited.stub,
        pb.BuildOptions(tags=[tag], network_mode=mode),
        _context(busybox_image, "RUN echo network-ok"),
    )
    outcome.succeeded()
    assert "network-ok" in outcome.text


def test_secret_looking_build_arguments_are_refused(
    limited: Running, busybox_image: BuiltImage, tag: str
) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    outcome = run_build(
        limited.stub,
        pb.BuildOptions(tags=[tag], build_args={"NPM_TOKEN": secret}),
        _context(busybox_image, "ARG NPM_TOKEN", "RUN true"),
    )
    error = outcome.failed()
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(error).reason == "BUILD_OPTION_NOT_ALLOWED"
    assert "NPM_TOKEN" in (error.details() or "")
    assert secret not in (error.details() or "")


def test_memory_and_cpu_limits_reach_the_run_containers(
    limited: Running, busybox_image: BuiltImage, tag: str
) -> None:
    outcome = run_build(
        limited.stub,
        pb.BuildOptions(tags=[tag], no_cache=True),
        _context(
            busybox_image,
            "RUN cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
            " /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
            " /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us",
        ),
    )
    outcome.succeeded()
    # Memory and memory+swap are the same: no swap beyond the limit. Half a CPU.
    assert f"{MEMORY_LIMIT}\n{MEMORY_LIMIT}\n50000\n100000\n" in outcome.text


def test_a_step_needing_more_memory_than_the_limit_fails(
    limited: Running, engine: Engine, busybox_image: BuiltImage, tag: str
) -> None:
    outcome = run_build(
        limited.stub, pb.BuildOptions(tags=[tag]), _context(busybox_image, f"RUN {ALLOCATE}")
    )
    error = outcome.failed()
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "BUILD_FAILED"
    assert "returned a non-zero code: 137" in (error.details() or "")  # killed: out of memory
    assert local_image(engine, tag) is None
    # The same step passes under the default limit (2 GiB): the limit made the difference.
    with running(engine) as default:
        control = run_build(
            default.stub, pb.BuildOptions(tags=[tag]), _context(busybox_image, f"RUN {ALLOCATE}")
        )
    control.succeeded()
    assert "allocated 67108864" in control.text


def test_a_build_over_the_time_limit_is_stopped_and_its_container_removed(
    limited: Running, engine: Engine, busybox_image: BuiltImage, tag: str
) -> None:
    marker = f"slow-{uuid.uuid4().hex}"
    started = time.monotonic()
    outcome = run_build(
        limited.stub,
        pb.BuildOptions(tags=[tag]),
        _context(busybox_image, f"RUN echo {marker} && sleep 60", "RUN echo never"),
        timeout=60,
    )
    elapsed = time.monotonic() - started
    error = outcome.failed()
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    info = error_info(error)
    assert info.reason == "BUILD_TIMEOUT"
    assert info.metadata["limit_seconds"] == "4"
    assert 4 <= elapsed < 15, elapsed
    assert marker in outcome.text  # it was running when it was stopped
    match = _RUNNING_IN.search(outcome.text)
    assert match is not None, outcome.text
    # The Engine aborted the build (as for a client that went away): the container goes.
    deadline = time.monotonic() + 10
    while any(c.startswith(match.group(1)) for c in _containers(engine)):
        assert time.monotonic() < deadline, "the build container is still there"
        time.sleep(0.1)
    assert local_image(engine, tag) is None
