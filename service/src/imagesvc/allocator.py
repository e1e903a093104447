"""Keeps glibc's malloc from handing the memory of streamed chunks back to the kernel
between one chunk and the next.

Uploads and exports pass through the server as 1 MiB buffers. With glibc's defaults a
buffer that size sits on the mmap threshold and heaps are trimmed once 2 MiB at their
top are free, so the few MiB in flight were unmapped and mapped again all the time: a
third of the server's CPU in a 300 MiB build went to page faults and zeroing fresh pages
(perf, docs/development.md). Fixed thresholds keep a stream's buffers reused: requests
up to `MMAP_THRESHOLD_BYTES` come from the heap, and a heap gives back what is free at
its top only past `TRIM_THRESHOLD_BYTES`. Setting either also turns off glibc's dynamic
adjustment of both, which is what moved them around. Every heap (arena) keeps up to that
much, so the threads share `MAX_ARENAS` of them instead of one per thread up to 8 per
core. A 300 MiB and then a 1 GiB build, server peak RSS and CPU: these thresholds with
an arena per thread 108 MiB and 2.7 s; with two arenas 91 MiB and 2.3 s; with both
thresholds fixed at glibc's starting value (128 KiB) 91 MiB and 8.3 s.

Other C libraries (musl) and platforms are left alone.
"""

from __future__ import annotations

import ctypes
import logging
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 8 * 1024 * 1024
MAX_ARENAS = 2

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
    done = all(
        mallopt(option, value)
        for option, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
            (_M_ARENA_MAX, MAX_ARENAS),
        )
    )
    if not done:
        _log.warning("could not set malloc's thresholds; streaming will cost more CPU")
    return done
