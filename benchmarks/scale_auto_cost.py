"""What ``--scale auto`` costs: the same volume segmented at ``scale=1`` and ``scale="auto"``, side by side.

``auto`` segments a probe (the central 8 slices, whole in-plane) at each
binning that leaves 96 px a side, then the whole volume at the binning it
chose. It prints each run's seconds, the ratio, the binning chosen and
the IoU of each run against the scan's exact label.

    python benchmarks/scale_auto_cost.py [--shape 24,512,512] [--model unet3d_default] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dendriteseg.infer import segment
from dendriteseg.synth.scan import make_scan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="24,512,512")
    parser.add_argument("--model", default="unet3d_default")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.shape = "4,192,192"
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    scan = make_scan(shape, preset="moderate", rng=9000)
    image, label = scan["image"].astype(np.float32), scan["label"].astype(bool)
    segment(image[:4, :256, :256], args.model, precision="fp32", scale=1)  # warm-up: load, first call
    runs = {}
    for scale in (1, "auto"):
        start = time.perf_counter()
        result = segment(image, args.model, precision="fp32", scale=scale, compile=False)
        runs[scale] = (time.perf_counter() - start, result)
    (t1, plain), (ta, auto) = runs[1], runs["auto"]
    choice = auto.scale
    print(f"{args.model} on a {'x'.join(map(str, shape))} synthetic scan (moderate preset, seed 9000)")
    print(f"scale 1:    {t1:7.1f} s")
    print(f"scale auto: {ta:7.1f} s   x{ta / t1:.2f} of scale 1; {choice.describe()}")
    for name, result in (("scale 1", plain), ("scale auto", auto)):
        pred = result.labels.astype(bool)
        print(
            f"IoU against the exact label, {name}: {(pred & label).sum() / max((pred | label).sum(), 1):.3f}"
        )


if __name__ == "__main__":
    main()
