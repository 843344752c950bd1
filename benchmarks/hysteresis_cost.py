"""What labels by hysteresis cost: ``segment`` with ``--hysteresis 0.9`` (the default) against 0.5.

Both runs segment the same synthetic volume (the CT forward model's
``moderate`` preset, its slices tiled to the plane asked for) with the
shipped default model, in one process, each after a warm-up; the table
gives the seconds of each and their ratio, and the labelling step alone
(``hysteresis_labels`` over the run's probabilities) in milliseconds a slice.

    python benchmarks/hysteresis_cost.py [--shape 32,852,852] [--threads 2] [--smoke]
"""

from __future__ import annotations

import dendriteseg  # noqa: F401 - before torch, which reads its huge-page switch once (dendriteseg.heap)

# isort: split

import argparse
import time

import numpy as np
import torch

from dendriteseg.infer import segment
from dendriteseg.infer.hysteresis import hysteresis_labels
from dendriteseg.synth.scan import make_scan


def volume_of(shape: tuple[int, int, int]) -> np.ndarray:
    """A scan of ``shape``: one moderate scan, tiled in-plane."""
    z, y, x = shape
    side = min(256, y, x)
    scan = make_scan((z, side, side), preset="moderate", rng=9800)["image"].astype(np.float32)
    reps = (1, -(-y // side), -(-x // side))
    return np.ascontiguousarray(np.tile(scan, reps)[:, :y, :x])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="32,852,852")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="8 x 64 x 64, a check that it runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = (8, 64, 64) if args.smoke else tuple(int(s) for s in args.shape.split(","))
    volume = volume_of(shape)
    common = {"scale": 1, "sample_mask": "none", "compile": False}
    segment(volume[: min(8, shape[0])], **common)  # warm-up: model load, first calls
    seconds = {}
    for h in (0.5, 0.9, 0.5, 0.9):  # alternated, each counted at its best
        start = time.perf_counter()
        result = segment(volume, hysteresis=h, probabilities=True, **common)
        seconds[h] = min(seconds.get(h, np.inf), time.perf_counter() - start)
    logits = np.log(np.clip(result.probabilities.astype(np.float32), 1e-6, 1 - 1e-6))
    logits -= np.log1p(-np.clip(result.probabilities.astype(np.float32), 1e-6, 1 - 1e-6))
    start = time.perf_counter()
    for _ in hysteresis_labels(((z, z + 4, logits[z : z + 4]) for z in range(0, shape[0], 4)), 0.9):
        pass
    per_slice = (time.perf_counter() - start) / shape[0] * 1000
    print(f"segment {shape}, scale 1, {torch.get_num_threads()} threads (best of two runs each)")
    print(f"  hysteresis 0.5 (p > 0.5): {seconds[0.5]:7.2f} s")
    print(f"  hysteresis 0.9 (default): {seconds[0.9]:7.2f} s   x{seconds[0.9] / seconds[0.5]:.3f}")
    print(f"  the labelling alone:      {per_slice:7.1f} ms a slice")


if __name__ == "__main__":
    main()
