"""Keeps glibc's malloc from handing the memory of streamed chunks back to the kernel
between one chunk and the next.

Uploads and exports pass through the server as 1 MiB buffers. With glibc's defaults a
buffer that size sits on the mmap threshold and heaps are trimmed once 2 MiB at their
top are free, so the few MiB in flight were unmapped and mapped again all the time: a
third of the server's CPU in a 300 MiB build went to page faults and zeroing fresh pages
(perf, docs/development.md). Fixed thresholds keep a stream's buffers reused: requests
up to `MMAP_THRESHOLD_BYTES` come from the heap, and a heap gives back what is free at
its top only past `TRIM_THRESHOLD_BYTES`. Setting either also turns off glibc's dynamic
adjustment of both, which is what moved them around.

Other C libraries (musl) and platforms are left alone.
"""

from __future__ import annotations

import ctypes
import logging
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 16 * 1024 * 1024

_log = logging.getLogger(__name__)


def tune_allocator() -> bool:
    """Sets the thresholds where the C library is glibc; True when it did."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it; musl's mallopt is a stub)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if not done:
        _log.warning("could not set malloc's thresholds; streaming will cost more CPU")
    return done
