"""Peak memory of reading a 250 x 852 x 852 uint16 TIFF stack lazily vs eagerly.

Writes the stack once (page by page, so writing it needs little memory
either), then reads it in fresh subprocesses: (a) dendriteseg's lazy reader
in z-slabs of 16 slices, computing a checksum, and (b) ``tifffile.imread``
of the whole file. Prints each peak RSS and their ratio.

    python benchmarks/lazy_read_memory.py [--depth 250] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
import numpy as np
path, mode = sys.argv[1], sys.argv[2]
start = time.perf_counter()
total = 0
if mode == "lazy":
    from dendriteseg.io import open_volume
    with open_volume(path) as vol:
        for _, _, slab in vol.iter_slabs(16):
            total += int(slab.sum(dtype=np.uint64))
else:
    import tifffile
    total = int(tifffile.imread(path).sum(dtype=np.uint64))
seconds = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"mode": mode, "peak_mb": peak_mb, "seconds": seconds, "checksum": total}))
"""


def measure(path: Path, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), mode], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=250)
    parser.add_argument("--size", type=int, default=852)
    parser.add_argument("--keep", type=Path, default=None, help="folder to keep the stack in")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.depth, args.size = 16, 96

    from dendriteseg.io import VolumeWriter

    folder = args.keep or Path(tempfile.mkdtemp(prefix="dendriteseg-bench-"))
    path = folder / f"stack_{args.depth}x{args.size}x{args.size}.tif"
    shape = (args.depth, args.size, args.size)
    if not path.exists():
        rng = np.random.default_rng(0)
        with VolumeWriter(path, shape, np.uint16) as out:
            for z in range(args.depth):
                out.write(rng.integers(0, 4096, (1, args.size, args.size), dtype=np.uint16), z)
    gb = np.prod(shape) * 2 / 2**30
    print(f"stack: {path} ({shape[0]} x {shape[1]} x {shape[2]} uint16, {gb:.2f} GiB)")
    lazy = measure(path, "lazy")
    eager = measure(path, "eager")
    assert lazy["checksum"] == eager["checksum"]
    print(f"lazy  (open_volume, 16-slice slabs): peak RSS {lazy['peak_mb']:7.0f} MB, {lazy['seconds']:.2f} s")
    print(
        f"eager (tifffile.imread)            : peak RSS {eager['peak_mb']:7.0f} MB, {eager['seconds']:.2f} s"
    )
    print(
        f"ratio eager/lazy peak RSS: {eager['peak_mb'] / lazy['peak_mb']:.2f}x; "
        f"lazy under 1 GB: {lazy['peak_mb'] < 1024}"
    )
    if args.keep is None:
        path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
