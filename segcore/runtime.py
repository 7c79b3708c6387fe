"""Process settings for running models on the CPU.

glibc's ``malloc`` serves allocations over its mmap threshold (128 KiB at first, raised
dynamically up to 32 MiB as such blocks are freed) with a fresh ``mmap`` and returns the
pages on ``free``: every batch then page-faults and zeroes the megabytes of its activations
again, and trims the heap top back to the kernel after it. :func:`keep_heap` serves blocks
up to 32 MiB (glibc's ceiling) from the heap and keeps up to 1 GiB of freed heap top, so a
steady inference loop reuses the same pages. On the demo model (batches of 8 frames at
320x240, two threads) it is 1.2 to 1.5 times faster than glibc's defaults; resident memory
stays at the loop's peak instead of falling between batches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_heap(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Tune glibc's malloc for a long-lived inference loop (see the module docstring).

    Returns whether both settings took effect: False off Linux or on a C library without
    ``mallopt`` (musl), where nothing is changed. Call it once, early in the process.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(M_TRIM_THRESHOLD, trim_threshold)
    )
