"""glibc's malloc, set for the archive commands (save, load, build) of this program only.

gRPC hands each 1 MiB message over as a fresh buffer, allocated in its reading thread and
copied into a new bytes object. With glibc's sliding thresholds those buffers are mapped
and unmapped again and again: an `imagesvc-cli save` of 1 GiB took 90,000 page faults
and 0.95 s of CPU; with the thresholds fixed, 9,000 faults and 0.70 s (bench.save).
A library must not change its host process's allocator, so `ImageClient` leaves it as
it is; this program is ours. Other C libraries (musl) are left alone.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt's parameter numbers (malloc.h) and the values: a 1 MiB message stays on the
# heap, and a heap keeps up to a few messages' worth of free memory at its top.
_SETTINGS = ((-3, 4 * 1024 * 1024), (-1, 8 * 1024 * 1024))  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


def keep_transfer_buffers() -> bool:
    """True when glibc took the settings."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl's mallopt does nothing)
    except (OSError, AttributeError):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return all(mallopt(parameter, value) == 1 for parameter, value in _SETTINGS)
