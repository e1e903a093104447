"""Helpers of the ExportImages tests: whether a thread still reads an export, and
waiting for a condition."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


def threads_reading_exports() -> list[str]:
    """Threads of this process blocked in (or running) an export's Engine read."""
    reading = []
    for thread_id, frame in sys._current_frames().items():
        current: Any = frame
        while current is not None:
            code = current.f_code
            if code.co_name == "read" and code.co_filename.endswith("docker_adapter.py"):
                reading.append(str(thread_id))
                break
            current = current.f_back
    return reading


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
