"""Fine-tuning on a few labelled slices of a scan from a generator no training data came from.

For each scan of the skeleton generator (``benchmarks/unseen_generator.py``),
each count of labelled slices (1, 3, 8: evenly spread, centred) and each kind
of label (``whole``: the slices' exact labels; ``scribbles``: strokes as a user
paints them in napari, 3 px wide along the middle of about half of the
dendrite arms and of the background between them, the rest unlabelled;
``corrections``: strokes as a user paints them over the starting model's
segmentation, along every piece it got wrong that is wide enough to paint,
and over a quarter of the rest), side by side:

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
each method's mean and its IoU gain over ``before``. With ``--errors``, each
cell also gives where the errors lie: the pixels missed and called in
excess within 2 px of the true boundary (in the slice's plane) and beyond.

    python benchmarks/few_shot.py [--model unet3d_default] [--minutes 5] [--scans 2] [--counts 1,3,8]
        [--labels whole,scribbles] [--finish all-labels|continue|refit] [--methods fixed,searched]
        [--errors]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.morphology import skeletonize
from unseen_generator import unseen_scan

from dendriteseg.data import UNLABELLED
from dendriteseg.models.files import read_model_info
from dendriteseg.preprocess import normalisation_window, normalise
from dendriteseg.scoring import score_model
from dendriteseg.tune.finetune import finetune_on_labels
from dendriteseg.tune.labels import UserScan

NEAR = 2  # px from the true boundary: a boundary error; further: a piece missed or made up


def _scores(model, image: np.ndarray, truth: np.ndarray) -> tuple[dict, np.ndarray]:
    """A cell's scores (the mean scores and :func:`boundary_errors`) and the labels they were made from."""
    scored = score_model(model, [(image, truth)], window=(0.0, 1.0), precision="fp32", keep_labels=True)
    return {**scored.mean, **boundary_errors(scored.labels[0], truth)}, scored.labels[0]


def boundary_errors(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Pixels missed and called in excess within ``NEAR`` px of the true boundary (in each slice's
    plane) and beyond, over the slices ``truth`` labels."""
    out = dict.fromkeys(("missed_near", "excess_near", "missed_far", "excess_far"), 0)
    for p, t in zip(pred, truth, strict=True):
        if (t == UNLABELLED).all():
            continue
        solid = t == 1
        near = np.where(solid, ndimage.distance_transform_edt(solid), ndimage.distance_transform_edt(~solid))
        for kind, wrong in (("missed", solid & (p == 0)), ("excess", ~solid & (p == 1))):
            out[f"{kind}_near"] += int(np.count_nonzero(wrong & (near <= NEAR)))
            out[f"{kind}_far"] += int(np.count_nonzero(wrong & (near > NEAR)))
    return out


def _strokes(out: np.ndarray, region: np.ndarray, value: int, gen: np.random.Generator, share: float) -> None:
    """Paint ``value`` into ``out`` in 3-px strokes along the middle of about ``share`` of the pieces of
    ``region``'s skeleton (cut at its branch points), never outside ``region``; at least one stroke
    where there is a piece."""
    around = np.ones((3, 3), bool)
    middle = skeletonize(ndimage.binary_erosion(region, iterations=1))
    neighbours = ndimage.convolve(middle.astype(np.int32), around.astype(np.int32), mode="constant") - 1
    pieces, count = ndimage.label(middle & (neighbours <= 2), around)
    keep = gen.random(count + 1) < share
    keep[0] = False
    if count and not keep.any():
        keep[1 + int(np.argmax(np.bincount(pieces.ravel())[1:]))] = True
    out[ndimage.binary_dilation(keep[pieces], iterations=1) & region] = value


def scribbles(truth: np.ndarray, gen: np.random.Generator, share: float = 0.5) -> np.ndarray:
    """Strokes on one slice's exact label, as a user paints them: 3 px wide along the middle of about
    ``share`` of the dendrite's arms (1) and of the background's channels (0), never across the
    boundary; everything else :data:`UNLABELLED`."""
    out = np.full(truth.shape, UNLABELLED, np.uint8)
    for value in (0, 1):
        _strokes(out, truth == value, value, gen, share)
    return out


def corrections(truth: np.ndarray, predicted: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """Strokes a user paints to correct a segmentation of one slice: along every piece it got wrong
    that is wide enough to paint (dendrite called in the background: 0; dendrite missed: 1), and
    :func:`scribbles` over a quarter of the rest."""
    out = scribbles(truth, gen, share=0.25)
    for value, wrong in ((0, (predicted == 1) & (truth == 0)), (1, (predicted == 0) & (truth == 1))):
        _strokes(out, wrong, value, gen, share=1.0)
    return out


def _fine_tunes(
    args: argparse.Namespace,
    methods: list[str],
    image: np.ndarray,
    label: np.ndarray,
    i: int,
    count: int,
    kind: str,
) -> tuple[dict[str, dict], list[str]]:
    """Scores before and after each fine-tune on ``count`` slices of scan ``i`` labelled as ``kind``
    says (on the slices nobody labelled), and what each fine-tune kept."""
    chosen = ((np.arange(count) + 0.5) * label.shape[0] / count).astype(int)  # centred, evenly spread
    train_label = np.full(label.shape, UNLABELLED, np.uint8)
    gen = np.random.default_rng([args.seed, i, count])
    truth = label.copy()
    truth[chosen] = UNLABELLED  # scored only where nobody labelled
    before, before_labels = _scores(args.model, image, truth)
    for z in chosen:
        if kind == "whole":
            train_label[z] = label[z]
        elif kind == "scribbles":
            train_label[z] = scribbles(label[z], gen)
        else:
            train_label[z] = corrections(label[z], before_labels[z], gen)
    scan = UserScan(f"scan{i}", image, train_label, False)
    cells, kept = {"before": before}, []
    with tempfile.TemporaryDirectory() as work:
        for method in methods:
            out = Path(work) / f"{method}.safetensors"
            run = finetune_on_labels(
                [scan],
                out,
                start=args.model,
                minutes=args.minutes,
                search=method == "searched",
                finish=args.finish,
                budget=args.budget,
            )
            cells[method] = _scores(out, image, truth)[0]
            selection = read_model_info(out).provenance["finetune"].get("selections")
            kept.append(f"{method}: kept {run.kept} {run.chosen} of {len(run.trials)} trial(s); {selection}")
    return cells, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet3d_default")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--scans", type=int, default=2)
    parser.add_argument("--counts", default="1,3,8")
    parser.add_argument("--labels", default="whole", help="whole, scribbles, corrections (comma-separated)")
    parser.add_argument("--shape", default="24,160,160")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--finish", default="all-labels", help="what follows the search: all-labels, continue or refit"
    )
    parser.add_argument("--methods", default="fixed,searched", help="which fine-tunes to run (default both)")
    parser.add_argument("--budget", default="cpu", help="trial sizes: cpu, paper or tiny")
    parser.add_argument(
        "--errors", action="store_true", help="where the errors lie: near the true boundary or beyond"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.minutes, args.scans, args.counts, args.shape, args.methods = 0.1, 1, "1", "8,64,64", "fixed"
        args.labels = "whole,scribbles,corrections"
        args.errors = True
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
    kinds = args.labels.split(",")
    print(f"{'scan':>4} {'slices':>6} {'labels':>9}" + "".join(f"{m:>26s}" for m in ("before", *methods)))
    rows = {(k, m): [] for k in kinds for m in ("before", *methods)}
    for i, count, kind in ((i, c, k) for i in range(args.scans) for c in counts for k in kinds):
        raw, label, _ = unseen_scan(shape, args.seed, i)
        cells, kept = _fine_tunes(
            args, methods, normalise(raw, normalisation_window(raw)), label, i, count, kind
        )
        for m, scores in cells.items():
            rows[kind, m].append(scores)
        print(
            f"{i:>4} {count:>6} {kind:>9}"
            + "".join(f"{c['iou']:>10.3f} /{c['bf1']:6.3f} /{c['bde']:6.2f}" for c in cells.values()),
            flush=True,
        )
        if args.errors:
            print(
                "            missed / excess px, near the boundary | beyond: "
                + "; ".join(
                    f"{m} {c['missed_near']} / {c['excess_near']} | {c['missed_far']} / {c['excess_far']}"
                    for m, c in cells.items()
                ),
                flush=True,
            )
        print("            " + "; ".join(kept), flush=True)
    for (kind, m), scores in rows.items():
        base = np.mean([r["iou"] for r in rows[kind, "before"]])
        iou = np.mean([s["iou"] for s in scores])
        print(
            f"mean {kind:>9} {m:>9}: IoU {iou:.3f} (x{iou / base:.2f} of before), BF1 "
            f"{np.nanmean([s['bf1'] for s in scores]):.3f}, BDE {np.nanmean([s['bde'] for s in scores]):.2f}"
        )


if __name__ == "__main__":
    main()
