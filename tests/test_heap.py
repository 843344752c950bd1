"""kept_heap: within a training run, a freed block's pages serve the next block (no fresh page faults)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dendriteseg.heap import kept_heap

PROBE = """
import ctypes, resource, torch
from dendriteseg.heap import kept_heap

class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2: ten size_t fields
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2

def faults(count=4, before=8):  # of count 64 MB tensors (above glibc's largest mmap threshold), made and
    # freed one after another, after `before` made the same way (the heap settles into its layout)
    for _ in range(before):
        block = torch.ones(2**24)
        del block
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(count):
        block = torch.ones(2**24)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

def mapped(floats):  # whether a block larger than any freed before is served by its own mmap
    held = libc.mallinfo2().hblks
    block = torch.ones(floats)
    return libc.mallinfo2().hblks > held

seen = [faults(), mapped(2**25)]
with kept_heap() as kept:
    seen += [faults(), mapped(2**26)]
    with kept_heap():  # nested (a search's trials): one setting
        pass
    seen.append(faults())  # still in force after the inner one left
seen.append(mapped(2**27))  # glibc's defaults again
print(kept, *seen)
"""


def test_within_a_run_freed_memory_is_reused_and_after_it_is_given_back():
    """Measured in a fresh process: the heap's layout depends on everything the process did before."""
    with kept_heap() as kept:
        if not kept:
            pytest.skip("kept_heap does nothing where the C library is not glibc")
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    kept, before, mapped_before, inside, mapped_inside, nested, mapped_after = done.stdout.split()
    pages = 4 * 2**26 // 4096  # of four tensors
    assert kept == "True"
    assert int(before) > 3 * pages // 4  # outside: every tensor faults its pages in anew
    assert int(inside) <= pages // 4 and int(nested) <= pages // 4  # the pages of one before (all but
    # at most one of four: where the heap's free blocks lie depends on what else the process holds)
    assert (mapped_before, mapped_inside, mapped_after) == ("True", "False", "True")  # glibc's own again
