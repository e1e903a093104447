from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from imagesvc.core.build_context import ContextLimits
from imagesvc.core.service import CoreSettings, ImageCore
from tests.unit.fakes import FakeDockerPort

CONTEXT_LIMIT = 64 * 1024


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
