"""The services' allocator tuning (shared/service.py, tune_allocator): a big block freed
goes back to the system, instead of the next big ones coming from a heap that keeps them."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

# In a process of its own: whether a block is mapped depends on everything freed before.
PROBE = """
import ctypes, sys
from shared.service import tune_allocator
if sys.argv[1] == "tuned":
    tune_allocator()

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
first = bytearray(8 << 20)
del first  # glibc, untuned, now takes blocks up to 8 MiB from the heap
before = mallinfo2().hblks
second = bytearray(6 << 20)
print(mallinfo2().hblks - before)
"""


def mapped_after_a_big_free(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True
    )
    return int(done.stdout)


def has_mallinfo2() -> bool:
    return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "mallinfo2")


@pytest.mark.skipif(not has_mallinfo2(), reason="glibc 2.33 or later only")
def test_a_big_block_after_a_big_free_is_still_mapped_on_its_own() -> None:
    assert mapped_after_a_big_free("untuned") == 0  # what the tuning is for
    assert mapped_after_a_big_free("tuned") == 1
