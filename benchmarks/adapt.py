"""Where adapting to the scan without labels helps and where it hurts: plain ``segment`` beside
``segment --adapt`` (:mod:`dendriteseg.tune.adapt`), one row per kind of scan.

Rows: the benchmark's generator as is; its scans through a grey-scale curve (gamma 2.5); the
``real`` and ``field`` varieties; a grainy band inside a constant exterior (2D slices); faint
dendrites; the skeleton-drawn generator of ``unseen_generator.py``. Seeds 9800 and up, no model
trained on them. Each cell is IoU / BF1 / BDE over the row's scans, with the defaults of
``segment`` otherwise, and the seconds the row took.

    python benchmarks/adapt.py [--model M] [--scans 2] [--minutes 1] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from trust_calibration import banded  # noqa: E402
from unseen_generator import unseen_scan  # noqa: E402

from dendriteseg.infer import segment  # noqa: E402
from dendriteseg.metrics import score_slices, summarize  # noqa: E402
from dendriteseg.scoring import mean_scores  # noqa: E402
from dendriteseg.synth.scan import make_scan  # noqa: E402
from dendriteseg.tune.adapt import adapt_to_scan  # noqa: E402


def rows(count: int, size: int) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    shape = (8, size, size)
    out: dict[str, list] = {
        k: [] for k in ("benchmark", "gamma 2.5", "real", "field", "band (2D)", "faint", "unseen")
    }
    for i in range(count):
        s = make_scan(shape, preset="moderate", rng=9800 + i)
        out["benchmark"].append((s["image"], s["label"]))
        image = s["image"] - s["image"].min()
        out["gamma 2.5"].append(((image / image.max()) ** 2.5, s["label"]))
        for variety in ("real", "field"):
            v = make_scan(shape, preset="moderate", vary=True, variety=variety, rng=9810 + i)
            out[variety].append((v["image"], v["label"]))
        b = make_scan(shape, preset="moderate", rng=9820 + i, radius_fraction=0.4)
        image, label = banded(b["image"], b["label"], 0.4 * size, np.random.default_rng(i), dark=bool(i % 2))
        out["band (2D)"].append((image[4], label[4]))
        f = make_scan(shape, preset="moderate", rng=9830 + i, solid_ratio=0.94, solid_ratio_spread=0.0)
        out["faint"].append((f["image"], f["label"]))
        image, label, _ = unseen_scan(shape, 9840, i)
        out["unseen"].append((image, label))
    return out


def scores(pairs: list[tuple[np.ndarray, np.ndarray]], model: object, minutes: float) -> tuple[str, float]:
    start, evaluations = time.perf_counter(), []
    for image, label in pairs:
        image = image.astype(np.float32)
        net = adapt_to_scan(image, model, minutes=minutes).model if minutes else model
        pred = segment(image, net).labels
        pred, truth = (pred, label) if pred.ndim == 3 else (pred[None], label[None])
        evaluations.append(summarize(score_slices(pred, truth)))
    m = mean_scores(evaluations)
    return f"{m['iou']:.3f} / {m['bf1']:.3f} / {m['bde']:.2f}", time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--scans", type=int, default=2)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--smoke", action="store_true", help="one 64 px scan per row, 0.1 minutes")
    args = parser.parse_args()
    count, size, minutes = (1, 64, 0.1) if args.smoke else (args.scans, args.size, args.minutes)
    print(f"IoU / BF1 / BDE: plain segment | segment --adapt {minutes:g} (seconds per row)")
    for name, pairs in rows(count, size).items():
        plain, t0 = scores(pairs, args.model, 0.0)
        adapted, t1 = scores(pairs, args.model, minutes)
        print(f"{name:12s} {plain:>22s} ({t0:4.0f} s) | {adapted:>22s} ({t1:4.0f} s)", flush=True)


if __name__ == "__main__":
    main()
