"""How torch gets its memory on Linux: in huge pages (:func:`advise_huge_pages`), and during training
from a heap kept for the next step instead of given back to the kernel (:func:`kept_heap`, glibc).

A network's activations and gradients are blocks of tens to hundreds of
MB. glibc's ``malloc`` serves every block above 32 MB (its largest mmap
threshold) with a fresh ``mmap`` and unmaps it when freed, so each layer of
each step faults its output in anew, 4 KB at a time, zeroed by the kernel,
which can take as long as the convolutions themselves. :func:`kept_heap`
turns that off for the length of a training run (``fit``,
``finetune_on_labels``, ``adapt_to_scan``): blocks come from the heap and
stay there when freed (``mallopt(M_MMAP_MAX, 0)``, a high
``M_TRIM_THRESHOLD``), so the next step reuses the last one's pages; what
the run freed goes back to the kernel when it ends (``malloc_trim``), and
the settings return to glibc's defaults (the mmap threshold that glibc
would otherwise have raised on its own stays where it was).
``benchmarks/train_throughput.py`` measures steps both ways side by side.

Not used by ``segment``: a run's heap, never trimmed, grew with the depth of
HDF5 and TIFF inputs (the reader's buffers and the network's blocks
interleave), where inference must stay flat in depth. Elsewhere (macOS,
Windows, musl) it does nothing, and so it does where the environment sets
``DENDRITESEG_KEEP_HEAP=0``.

What ``segment`` does instead: importing ``dendriteseg`` sets torch's own
``THP_MEM_ALLOC_ENABLE=1`` (unless the environment sets it already), so
torch advises the kernel to back each of its blocks of 2 MB and more with
transparent huge pages (``madvise(MADV_HUGEPAGE)``): a fresh block then
faults in 2 MB at a time, 512 times fewer faults, and glibc's own choices of
heap and mmap, and so the memory of a run, stay as they are. Torch reads the
variable once, at its first allocation: where torch was imported before
``dendriteseg``, set it in the environment instead. Where the kernel's huge
pages are ``never`` (``/sys/kernel/mm/transparent_hugepage/enabled``) it
changes nothing. ``benchmarks/inference.py`` measures the whole volume with
it and without it, side by side.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
DEFAULT_MMAP_MAX = 65536  # glibc's defaults, restored after a run
DEFAULT_TRIM_THRESHOLD = 128 * 1024
KEPT_TRIM_THRESHOLD = 2**31 - 1  # the largest mallopt takes: in effect, no trimming during a run

ENV = "DENDRITESEG_KEEP_HEAP"  # "0": leave glibc's settings alone
# torch's switch (c10/core/alloc_cpu.cpp), read at its first allocation
TORCH_HUGE_PAGES = "THP_MEM_ALLOC_ENABLE"

_lock = threading.Lock()
_depth = 0


def advise_huge_pages() -> None:
    """Ask torch to advise huge pages for its large blocks (see the module notes), unless the
    environment says otherwise or torch is imported already (it has read the switch by then)."""
    if TORCH_HUGE_PAGES not in os.environ and "torch" not in sys.modules:
        os.environ[TORCH_HUGE_PAGES] = "1"


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library where it is glibc (which has ``mallopt`` and ``malloc_trim``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (present in glibc only)
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def _set(libc: ctypes.CDLL, mmap_max: int, trim_threshold: int) -> bool:
    return bool(libc.mallopt(M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))


@contextmanager
def kept_heap() -> Iterator[bool]:
    """Within it, freed blocks stay in the heap for reuse (see the module notes); yields whether that
    is in force (False where the C library is not glibc). Nested and concurrent uses share one setting:
    the outermost sets it and the last to leave restores glibc's defaults and trims."""
    global _depth
    libc = _glibc()  # loaded on first use, not at import
    if libc is None or os.environ.get(ENV, "1").strip() == "0":
        yield False
        return
    with _lock:
        if _depth == 0 and not _set(libc, 0, KEPT_TRIM_THRESHOLD):
            log.debug("mallopt refused; freed memory is unmapped as glibc chooses")
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set(libc, DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)
