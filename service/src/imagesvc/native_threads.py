"""Gives a pool thread its Python name in the kernel too (Linux), so that
/proc/<pid>/task/*/comm, `top -H` and the leak tests tell the Engine thread pools
(bounded; they never shrink) from every other thread of the process."""

from __future__ import annotations

import ctypes
import sys
import threading

_PR_SET_NAME = 15
_MAX_NAME_BYTES = 15  # the kernel's limit, without the terminating NUL


def name_native_thread() -> None:
    """A ThreadPoolExecutor initializer: the calling thread's name, as far as it fits."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    name = threading.current_thread().name.encode(errors="replace")[:_MAX_NAME_BYTES]
    libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
