"""Peak memory of ``dendriteseg segment`` against the input's depth, per input format, side by side.

For each format (TIFF, Zarr, HDF5, ``.npy``) a volume of ``--plane`` x ``--plane`` slices is
written slab by slab at two depths (``--depths``, default 128 and 1000); each is segmented with
the defaults (``--scale auto``, ``--sample-mask auto``, on the CPU) in a fresh process, to an
output of the same format, with ``torch.compile`` the same at both depths (``--compile``, default
on): the defaults compile from 64 M voxels, so a shallow volume would run eager and a deep one
compiled, and the compiler's own memory (a fixed cost, not one that grows with depth) would read
as growth; ``--compile auto`` measures the defaults as they are. Likewise the flips (``--tta``,
default off at both depths): the defaults flip volumes up to 2^25 voxels, so a shallow volume
would hold four passes' logits and a deep one one, and that would read as less growth than there
is; off is what deep volumes run with by default. Printed per run: seconds, peak
RSS and peak anonymous memory (``RssAnon``, sampled every 50 ms: what a scheduler's memory limit
kills for; RSS also counts the input's memory-mapped file pages). Then per format the growth of
each from the shallow to the deep volume (the goal: anonymous memory under 10 % growth).

    python benchmarks/depth_memory.py [--plane 852] [--depths 128,1000] [--formats tiff,zarr,h5,npy]
        [--compile on|off|auto] [--tta off|on|auto] [--work DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import child_peak_rss, segment_command  # noqa: E402

SUFFIX = {"tiff": ".tif", "zarr": ".zarr", "h5": ".h5", "npy": ".npy"}
SLAB = 16


def slabs(depth: int, plane: int, seed: int = 0) -> Iterator[np.ndarray]:
    """uint16 slabs of ``SLAB`` slices: dark smooth blobs (dendrite-like) in a brighter noisy melt."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.standard_normal((SLAB, plane, plane)).astype(np.float32), (1, 6, 6))
    base = np.where(base > 0.02, 30000.0, 22000.0).astype(np.float32)
    for z in range(0, depth, SLAB):
        n = min(SLAB, depth - z)
        yield np.clip(base[:n] + rng.normal(0, 1500, (n, plane, plane)), 0, 65535).astype(np.uint16)


def write_volume(path: Path, fmt: str, depth: int, plane: int) -> None:
    """Write the test volume to ``path`` in ``fmt``, slab by slab (little memory to write)."""
    shape = (depth, plane, plane)
    if fmt == "tiff":
        import tifffile

        with tifffile.TiffWriter(path, bigtiff=True) as tif:
            for slab in slabs(depth, plane):
                for page in slab:
                    tif.write(page, contiguous=True)
    elif fmt == "zarr":
        import zarr

        array = zarr.create_array(str(path), shape=shape, chunks=(SLAB, plane, plane), dtype="uint16")
        for i, slab in enumerate(slabs(depth, plane)):
            array[i * SLAB : i * SLAB + len(slab)] = slab
    elif fmt == "h5":
        import h5py

        with h5py.File(path, "w") as f:
            data = f.create_dataset("exchange/data", shape, "uint16", chunks=(min(SLAB, depth), plane, plane))
            for i, slab in enumerate(slabs(depth, plane)):
                data[i * SLAB : i * SLAB + len(slab)] = slab
    else:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=shape)
        for i, slab in enumerate(slabs(depth, plane)):
            out[i * SLAB : i * SLAB + len(slab)] = slab
        out.flush()
        del out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plane", type=int, default=852)
    parser.add_argument("--depths", default="128,1000", help="the shallow and the deep volume's slices")
    parser.add_argument("--formats", default="tiff,zarr,h5,npy")
    parser.add_argument("--model", default=None, help="model name or file (default: the shipped default)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument(
        "--compile", default="on", choices=("on", "off", "auto"), help="torch.compile at both depths"
    )
    parser.add_argument(
        "--tta", default="off", choices=("on", "off", "auto"), help="in-plane flips at both depths"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny volumes (a check that it runs)")
    args = parser.parse_args()
    depths = tuple(int(d) for d in args.depths.split(","))
    plane, depths = (48, (8, 24)) if args.smoke else (args.plane, depths)
    compile_ = "off" if args.smoke else args.compile  # compiling alone takes half a minute
    formats = args.formats.split(",")
    unknown = sorted(set(formats) - set(SUFFIX))
    if unknown:
        parser.error(f"unknown formats {unknown}; choose from {sorted(SUFFIX)}")
    work = Path(args.work or tempfile.mkdtemp(prefix="dseg-depth-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"plane": plane, "depths": list(depths), "compile": compile_, "tta": args.tta, "runs": []}
    flips = {"on": ["--tta"], "off": ["--no-tta"], "auto": []}[args.tta]
    try:
        for fmt in formats:
            rows = []
            for depth in depths:
                src = work / f"vol_{depth}x{plane}{SUFFIX[fmt]}"
                if not src.exists():
                    write_volume(src, fmt, depth, plane)
                out = work / f"seg_{depth}x{plane}{SUFFIX[fmt]}"
                if out.is_dir():
                    shutil.rmtree(out)
                out.unlink(missing_ok=True)
                cmd = segment_command(src, out, "--device", "cpu", "--compile", compile_, *flips)
                cmd[cmd.index("--scale") + 1] = "auto"  # the defaults, as a user runs them
                if args.model:
                    cmd += ["--model", args.model]
                seconds, rss, anon = child_peak_rss(cmd)
                rows.append((depth, seconds, rss, anon))
                run = {"format": fmt, "depth": depth, "seconds": seconds, "peak_rss_mb": rss}
                results["runs"].append({**run, "peak_anon_mb": anon})
                print(
                    f"{fmt:>4} {depth:>5} x {plane} x {plane}: {seconds:6.1f} s, peak RSS {rss:6.0f} MB, "
                    f"peak anonymous {anon:6.0f} MB",
                    flush=True,
                )
            (d0, _, rss0, anon0), (d1, _, rss1, anon1) = rows[0], rows[-1]
            print(
                f"{fmt:>4} {d0} -> {d1} slices: peak anonymous memory {100 * (anon1 / anon0 - 1):+.1f} %, "
                f"peak RSS {100 * (rss1 / rss0 - 1):+.1f} % "
                f"(compile {compile_}, flips {args.tta}; goal: anonymous under +10 %)",
                flush=True,
            )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
