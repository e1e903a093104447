"""Pool threads carry their Python name in the kernel (what /proc, top -H and the leak
tests see)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imagesvc.native_threads import name_native_thread


def _comm() -> str:
    return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()


def test_a_pool_thread_is_named_in_the_kernel() -> None:
    with ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="docker-stream", initializer=name_native_thread
    ) as pool:
        assert pool.submit(_comm).result() == "docker-stream_0"


def test_a_long_name_is_cut_to_the_kernel_s_limit() -> None:
    with ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="a-very-long-pool-name", initializer=name_native_thread
    ) as pool:
        assert pool.submit(_comm).result() == "a-very-long-poo"
