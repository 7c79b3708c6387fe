"""segcore.runtime.keep_heap: large blocks come from the heap and freed memory is kept.

Each case runs in a fresh interpreter (malloc settings are per process) and reads glibc's
own accounting (mallinfo2) around a 16 MiB allocation.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, json, sys

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
tuned = None
if sys.argv[1] == "tuned":
    from segcore.runtime import keep_heap
    tuned = keep_heap()
before = libc.mallinfo2()
block = libc.malloc(16 << 20)
during = libc.mallinfo2()
ctypes.memset(block, 1, 16 << 20)
libc.free(block)
after = libc.mallinfo2()
print(json.dumps({
    "tuned": tuned,
    "mmapped": during.hblkhd - before.hblkhd,
    "heap_used": during.uordblks - before.uordblks,
    "heap_grew": during.arena - before.arena,
    "heap_kept": after.arena - before.arena,
}))
"""


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _glibc(),
    reason="keep_heap tunes glibc's malloc (Linux, glibc 2.33+ for mallinfo2)",
)


def probe(mode: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_default_malloc_maps_large_blocks() -> None:
    """The control: without keep_heap a 16 MiB block is a fresh mapping, returned on free."""
    result = probe("default")
    assert result["mmapped"] >= 16 << 20
    assert result["heap_used"] < 1 << 20
    assert result["heap_kept"] < 1 << 20


def test_keep_heap_serves_large_blocks_from_the_heap_and_keeps_them() -> None:
    result = probe("tuned")
    assert result["tuned"] is True
    assert result["mmapped"] == 0
    assert result["heap_used"] >= 16 << 20
    assert result["heap_grew"] >= 15 << 20  # what the heap had free before, plus growth
    # not trimmed back to the kernel after free
    assert result["heap_kept"] >= result["heap_grew"]
