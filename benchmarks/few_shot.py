"""Fine-tuning on a few labelled slices of a scan from a generator no training data came from.

For each scan of the skeleton generator (``benchmarks/unseen_generator.py``)
and each count of labelled slices (1, 3, 8: evenly spread, centred), side by side:

* ``before``: the starting model as shipped;
* ``fixed``: one fine-tune at fixed settings (lr 3e-4, standard
  augmentations) for as many epochs as the budget allows, keeping its
  best epoch on the held-out labels (``finetune_on_labels(search=False)``);
* ``searched``: ``dendriteseg finetune`` in the same budget: its search
  (learning rate, epochs, augmentations, frozen encoder; ASHA; the best
  trial kept over the plain one only when ahead by more than one standard
  error; no search with one labelled slice), its winner then
  trained on from its best checkpoint for the time left on every label, the
  held-out ones included (``--finish all-labels``, the default), or on the
  training labels and averaged with the other trials (``--finish continue``),
  or refit on every label (``--finish refit``).

Scores are IoU (pooled over voxels), BF1 and BDE on the slices nobody
labelled, via :func:`dendriteseg.scoring.score_model`; the last lines give
each method's mean and its IoU gain over ``before``.

    python benchmarks/few_shot.py [--model unet3d_default] [--minutes 5] [--scans 2] [--counts 1,3,8]
        [--finish all-labels|continue|refit] [--methods fixed,searched]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from unseen_generator import unseen_scan

from dendriteseg.data import UNLABELLED
from dendriteseg.models.files import read_model_info
from dendriteseg.preprocess import normalisation_window, normalise
from dendriteseg.scoring import score_model
from dendriteseg.tune.finetune import finetune_on_labels
from dendriteseg.tune.labels import UserScan


def _scores(model, image: np.ndarray, truth: np.ndarray) -> dict:
    return score_model(model, [(image, truth)], window=(0.0, 1.0), precision="fp32").mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet3d_default")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--scans", type=int, default=2)
    parser.add_argument("--counts", default="1,3,8")
    parser.add_argument("--shape", default="24,160,160")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--finish", default="all-labels", help="what follows the search: all-labels, continue or refit"
    )
    parser.add_argument("--methods", default="fixed,searched", help="which fine-tunes to run (default both)")
    parser.add_argument("--budget", default="cpu", help="trial sizes: cpu, paper or tiny")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.minutes, args.scans, args.counts, args.shape, args.methods = 0.1, 1, "1", "8,64,64", "fixed"
        args.budget = "tiny"
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    counts = [int(c) for c in args.counts.split(",")]
    print(
        f"{args.model}; {args.minutes:g} min per fine-tune; skeleton-generator scans {shape}, "
        f"seed {args.seed}; searched then {args.finish}"
    )
    methods = [m for m in ("fixed", "searched") if m in args.methods.split(",")]
    print(f"{'scan':>4} {'slices':>6}" + "".join(f"{m:>26s}" for m in ("before", *methods)))
    rows = {m: [] for m in ("before", *methods)}
    for i in range(args.scans):
        raw, label, _ = unseen_scan(shape, args.seed, i)
        image = normalise(raw, normalisation_window(raw))
        for count in counts:
            chosen = ((np.arange(count) + 0.5) * shape[0] / count).astype(int)  # centred, evenly spread
            train_label = np.full(label.shape, UNLABELLED, np.uint8)
            train_label[chosen] = label[chosen]
            truth = label.copy()
            truth[chosen] = UNLABELLED  # scored only where nobody labelled
            scan = UserScan(f"scan{i}", image, train_label, False)
            cells, kept = {"before": _scores(args.model, image, truth)}, []
            with tempfile.TemporaryDirectory() as work:
                for method in methods:
                    search = method == "searched"
                    out = Path(work) / f"{method}.safetensors"
                    run = finetune_on_labels(
                        [scan],
                        out,
                        start=args.model,
                        minutes=args.minutes,
                        search=search,
                        finish=args.finish,
                        budget=args.budget,
                    )
                    cells[method] = _scores(out, image, truth)
                    selection = read_model_info(out).provenance["finetune"].get("selections")
                    kept.append(
                        f"{method}: kept {run.kept} {run.chosen} of {len(run.trials)} trial(s); {selection}"
                    )
            for m, s in cells.items():
                rows[m].append(s)
            print(
                f"{i:>4} {count:>6}"
                + "".join(f"{s['iou']:>10.3f} /{s['bf1']:6.3f} /{s['bde']:6.2f}" for s in cells.values()),
                flush=True,
            )
            print("            " + "; ".join(kept), flush=True)
    base = np.mean([r["iou"] for r in rows["before"]])
    for m, scores in rows.items():
        iou = np.mean([s["iou"] for s in scores])
        print(
            f"mean {m:>9}: IoU {iou:.3f} (x{iou / base:.2f} of before), BF1 "
            f"{np.nanmean([s['bf1'] for s in scores]):.3f}, BDE {np.nanmean([s['bde'] for s in scores]):.2f}"
        )


if __name__ == "__main__":
    main()
