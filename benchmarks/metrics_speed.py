"""Speed of the per-slice metrics on a 250 x 852 x 852 pair, side by side.

(a) ``dendriteseg.evaluation.evaluate`` (vectorised boundaries, distance
transforms cropped to the boundaries' bounding box, slices on threads);
(b) a straightforward reference: ``scipy.ndimage.binary_erosion`` and a
full-slice ``distance_transform_edt`` per slice, one thread. Both must give
the same numbers; prints times and the speed-up.

    python benchmarks/metrics_speed.py [--depth 250] [--size 852]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import ndimage


def make_pair(depth: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Dendrite-like random masks: smooth noise thresholded, plus a perturbed copy."""
    rng = np.random.default_rng(seed)
    gt = np.empty((depth, size, size), bool)
    pred = np.empty_like(gt)
    yy, xx = np.ogrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.46 * size) ** 2
    for z in range(depth):
        field = ndimage.gaussian_filter(rng.standard_normal((size, size), np.float32), 8)
        noise = ndimage.gaussian_filter(rng.standard_normal((size, size), np.float32), 2)
        gt[z] = (field > 0.02) & disc
        pred[z] = (field + 0.15 * noise > 0.02) & disc
    return pred, gt


def reference(pred: np.ndarray, gt: np.ndarray, tolerance: float = 4.0) -> dict[str, float]:
    cross = ndimage.generate_binary_structure(2, 1)
    acc, ious, bf1s, bdes = [], [], [], []
    for p, g in zip(pred, gt, strict=True):
        acc.append(np.mean(p == g))
        union = (p | g).sum()
        ious.append((p & g).sum() / union if union else math.nan)
        bp = p & ~ndimage.binary_erosion(p, cross, border_value=0)
        bg = g & ~ndimage.binary_erosion(g, cross, border_value=0)
        if not bp.any() or not bg.any():
            bf1s.append(math.nan if not (bp.any() or bg.any()) else 0.0)
            bdes.append(math.nan)
            continue
        dp = ndimage.distance_transform_edt(~bg)[bp]
        dg = ndimage.distance_transform_edt(~bp)[bg]
        pr, rc = np.mean(dp < tolerance), np.mean(dg < tolerance)
        bf1s.append(0.0 if pr + rc == 0 else 2 * pr * rc / (pr + rc))
        bdes.append((dp.mean() + dg.mean()) / 2)
    return {
        k: float(np.nanmean(v)) for k, v in (("accuracy", acc), ("iou", ious), ("bf1", bf1s), ("bde", bdes))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=250)
    parser.add_argument("--size", type=int, default=852)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.depth, args.size = 8, 96

    from dendriteseg.evaluation import evaluate

    pred, gt = make_pair(args.depth, args.size)
    print(f"pair: {args.depth} x {args.size} x {args.size}, dendrite fraction {gt.mean():.3f}")
    start = time.perf_counter()
    ours = evaluate(pred, gt)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    ref = reference(pred, gt)
    t_ref = time.perf_counter() - start
    worst = max(abs(getattr(ours, k) - ref[k]) for k in ref)
    print(
        f"dendriteseg evaluate : {t_ours:7.2f} s  "
        f"(acc {ours.accuracy:.6f} iou {ours.iou:.6f} bf1 {ours.bf1:.6f} bde {ours.bde:.6f})"
    )
    print(
        f"scipy reference      : {t_ref:7.2f} s  "
        f"(acc {ref['accuracy']:.6f} iou {ref['iou']:.6f} bf1 {ref['bf1']:.6f} bde {ref['bde']:.6f})"
    )
    print(f"speed-up {t_ref / t_ours:.2f}x; largest difference {worst:.2e}; under a minute: {t_ours < 60}")


if __name__ == "__main__":
    main()
