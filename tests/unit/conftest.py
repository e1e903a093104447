from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from imagesvc.core.build_context import ContextLimits
from imagesvc.core.identity import credential_problem, current_identity, current_origin
from imagesvc.core.image_core import CoreSettings, ImageCore
from tests.unit.fakes import FakeDockerPort

CONTEXT_LIMIT = 64 * 1024


@pytest.fixture(autouse=True)
def _no_caller_between_tests() -> Iterator[None]:
    """Tests that play a caller set these context variables; none may leak into the next."""
    identity, problem, origin = (
        current_identity.set(None),
        credential_problem.set(None),
        current_origin.set(None),
    )
    yield
    current_origin.reset(origin)
    credential_problem.reset(problem)
    current_identity.reset(identity)


@pytest.fixture
def port() -> FakeDockerPort:
    return FakeDockerPort()


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="core-test")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def settings() -> CoreSettings:
    # Interval 0: every Engine message yields progress, which keeps counts exact.
    return CoreSettings(
        build_context=ContextLimits(max_bytes=CONTEXT_LIMIT, memory_bytes=4096),
        progress_interval_seconds=0.0,
    )


@pytest.fixture
def core(port: FakeDockerPort, executor: ThreadPoolExecutor, settings: CoreSettings) -> ImageCore:
    return ImageCore(port, executor, settings)
