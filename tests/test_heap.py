"""kept_heap: within a run, a freed block's pages serve the next block (no fresh page faults)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dendriteseg.infer.heap import kept_heap

PROBE = """
import resource, torch
from dendriteseg.infer.heap import kept_heap

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

seen = [faults()]
with kept_heap() as kept:
    seen.append(faults())
    with kept_heap():  # nested (a series of runs): one setting
        pass
    seen.append(faults())  # still in force after the inner one left
seen.append(faults())  # glibc's defaults again
print(kept, *seen)
"""


def test_within_a_run_freed_memory_is_reused_and_after_it_is_given_back():
    """Measured in a fresh process: the heap's layout depends on everything the process did before."""
    with kept_heap() as kept:
        if not kept:
            pytest.skip("kept_heap does nothing where the C library is not glibc")
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    kept, before, inside, nested, after = done.stdout.split()
    pages = 4 * 2**26 // 4096  # of four tensors
    assert kept == "True"
    assert int(before) > pages // 2 and int(after) > pages // 2  # every tensor faults its pages in anew
    assert int(inside) < pages // 10 and int(nested) < pages // 10  # the pages of the one before


def test_segment_keeps_the_heap_only_while_it_runs():
    from dendriteseg.infer import heap, segment

    seen = []

    def model(batch):
        seen.append(heap._depth)
        return batch - 0.5

    segment(np.random.default_rng(0).random((5, 33, 34), dtype=np.float32), model, window=(0.0, 1.0))
    assert seen and all(depth == 1 for depth in seen) and heap._depth == 0
