"""The grey window of scans cropped to squares of every size, side by side.

A user crops a scan to the sample, or to a square between the sample and
its bounding box that keeps air only in its corners. For squares of
half-side ``--fracs`` times the sample's radius (0.707: just inside the
sample; 1.0: its bounding box), centred on it, this segments each exact
volume with the model three ways and prints the mean IoU of each:

* ``graded``: the automatic window (``normalisation_window``): widened by
  up to half its width where the border of the crop holds little or no air,
  less the more of the border is dark;
* ``binary``: the rule before the grading: widened by half its width
  whenever the median of the border is not air (``dark_border`` set so
  that no border is dark enough to stop it);
* ``uncropped``: the window of the whole scan, which a user cannot know
  once the scan is cropped: the reference.

    python benchmarks/crop_window.py [--data runs/default/data] [--split test|all]
        [--fracs 0.707,0.76,0.8,0.85,0.9,1.0] [--threads N] [MODEL]

``--data`` may be given several times (e.g. the benchmark and a held-out
dataset); MODEL defaults to the shipped default.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from robustness import _scan_params, centred_square  # the sibling benchmark's helpers

from dendriteseg.data import read_manifest, select
from dendriteseg.io import read_volume
from dendriteseg.preprocess import normalisation_window
from dendriteseg.scoring import score_model

RULES = ("graded", "binary", "uncropped")


def windows(crop: np.ndarray, whole: tuple[float, float]) -> dict[str, tuple[float, float]]:
    binary = normalisation_window(crop, dark_border=(1.0, 2.0))  # never dark enough: always widened
    return {"graded": normalisation_window(crop), "binary": binary, "uncropped": whole}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=None)
    parser.add_argument("--data", action="append", default=None)
    parser.add_argument("--split", default="test", choices=["test", "all"])
    parser.add_argument("--fracs", default="0.707,0.76,0.8,0.85,0.9,1.0")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        from _smoke import tiny_dataset

        args.data, args.split, args.fracs = [str(tiny_dataset())], "all", "0.9"
    if args.threads:
        torch.set_num_threads(args.threads)
    fracs = [float(f) for f in args.fracs.split(",")]
    results: dict[float, list[dict[str, float]]] = {f: [] for f in fracs}
    for root in args.data or ["runs/default/data"]:
        split = "test" if args.split == "test" and root.rstrip("/").endswith("default/data") else None
        entries = select(read_manifest(f"{root}/manifest.json"), quality="exact", split=split)
        for entry in entries[:3] if args.smoke else entries:
            image = read_volume(entry.image).astype(np.float32)
            label = read_volume(entry.label)
            radius = _scan_params(entry).radius_fraction * min(image.shape[1:])
            whole = normalisation_window(image)
            for frac in fracs:
                half = int(radius * frac)
                if not 8 <= half < min(image.shape[1:]) // 2:
                    continue
                crop, truth = centred_square(image, label, half)
                row = {}
                for rule, window in windows(crop, whole).items():
                    row[rule] = score_model(args.model, [(crop, truth)], precision="fp32", window=window)[
                        "iou"
                    ]
                results[frac].append(row)
    print("crop half-side / sample radius: mean IoU per window rule (scans), graded / binary")
    print(f"{'half-side':>10s}" + "".join(f"{r:>12s}" for r in RULES) + f"{'scans':>7s}{'ratio':>8s}")
    for frac, rows in results.items():
        if not rows:
            continue
        mean = {r: float(np.nanmean([row[r] for row in rows])) for r in RULES}
        line = f"{frac:>10.3f}" + "".join(f"{mean[r]:>12.4f}" for r in RULES)
        print(line + f"{len(rows):>7d}{mean['graded'] / mean['binary']:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
