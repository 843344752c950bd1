"""kept_heap: within a training run, a freed block's pages serve the next block (no fresh page faults);
advise_huge_pages: torch's large blocks fault in 2 MB at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dendriteseg.heap import kept_heap


def _env(switch: str | None) -> dict[str, str]:
    """This environment with torch's huge-page switch (inherited from this process, which imported
    dendriteseg) set to ``switch``, or unset."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    return env if switch is None else {**env, "THP_MEM_ALLOC_ENABLE": switch}


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
    done = subprocess.run(  # counted in 4 KB pages: torch's huge-page advice off
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=_env("0")
    )
    kept, before, mapped_before, inside, mapped_inside, nested, mapped_after = done.stdout.split()
    pages = 4 * 2**26 // 4096  # of four tensors
    assert kept == "True"
    assert int(before) > 3 * pages // 4  # outside: every tensor faults its pages in anew
    assert int(inside) <= pages // 4 and int(nested) <= pages // 4  # the pages of one before (all but
    # at most one of four: where the heap's free blocks lie depends on what else the process holds)
    assert (mapped_before, mapped_inside, mapped_after) == ("True", "False", "True")  # glibc's own again


HUGE = """
import os, resource, sys
import dendriteseg
import torch
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = torch.ones(2**24)  # 64 MB, in fresh pages
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


def _huge(switch: str | None, code: str = HUGE) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env(switch)
    )
    return done.stdout.split()


def test_importing_dendriteseg_turns_on_torchs_huge_pages_unless_told_otherwise():
    assert _huge(None)[0] == "1"
    assert _huge("0")[0] == "0"  # the user's word stands
    late = "import os, torch, dendriteseg; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
    assert _huge(None, late) == ["None"]  # torch came first and has read it: not claimed


def test_with_huge_pages_a_fresh_block_faults_in_far_fewer_times():
    """Where the kernel gives huge pages on request only (``madvise``), torch's advice is what gets
    them; where it gives them always or never, the advice changes nothing and there is nothing to see."""
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not mode.exists() or "[madvise]" not in mode.read_text():
        pytest.skip("transparent huge pages are not given on request here")
    pages = 2**26 // 4096
    advised = int(_huge(None)[1])
    plain = int(_huge("0")[1])
    assert plain > 3 * pages // 4  # 4 KB at a time
    assert advised < pages // 8  # 2 MB at a time (some 4 KB ones where no huge page was free)
