"""Models alone and averaged (``--model A+B``), side by side: accuracy and whole-volume time.

Accuracy: IoU, BF1 and BDE of each model and of their ensemble (the mean
of their dendrite probabilities: each model runs once and the two
probability volumes are averaged, where ``--model A+B`` averages per
tile before blending; on the test groups both gave IoU 0.8683) on

* the exact test groups of the benchmark (``runs/default/data``, built if missing);
* ``--fresh`` new scans of the benchmark's own generator (test-group
  presets: moderate and hard, procedural and phase-field; seeds 5000+);
* ``--heldout`` datasets (all their exact groups), when given;
* ``--unseen`` scans of ``benchmarks/unseen_generator.py`` (a generator no
  training data came from).

Speed: ``dendriteseg segment`` end to end (a fresh process: start, model
load, read, write Zarr) on a ``--depth`` x 852 x 852 float32 volume, per
model and for the ensemble; the ensemble's time as a ratio of each model's.

    python benchmarks/ensemble.py [--models unet3d_default unet2d_default] [--fresh 16]
        [--unseen 8] [--heldout runs/heldout_wide7] [--depth 250] [--skip-speed] [--threads N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from inference import child_peak_rss, make_big_volume, segment_command  # the sibling benchmark's helpers
from unseen_generator import unseen_scan

from dendriteseg.data import LabelledVolume, read_manifest, select
from dendriteseg.infer.segment import segment
from dendriteseg.scoring import score_predictions
from dendriteseg.synth.dataset import build_dataset
from dendriteseg.synth.scan import make_scan

Scans = list[tuple[np.ndarray, np.ndarray]]


def fresh_scans(n: int) -> Scans:
    scans = []
    for i in range(n):
        preset = "hard" if i % 4 == 3 else "moderate"
        structure = "phasefield" if i % 4 == 1 else "procedural"
        scan = make_scan((8, 128, 128), preset=preset, structure=structure, vary=True, rng=5000 + i)
        scans.append((scan["image"], scan["label"]))
    return scans


def exact_scans(manifest: Path, split: str | None) -> Scans:
    volumes = [
        LabelledVolume.from_entry(e) for e in select(read_manifest(manifest), quality="exact", split=split)
    ]
    return [(v.image, v.label) for v in volumes]


def accuracy(models: list[str], scans: Scans) -> dict[str, tuple[float, float, float]]:
    """Mean IoU, BF1, BDE of each model and of the ensemble (the mean of their probabilities)."""
    ensemble = "+".join(models)
    pairs: dict[str, list] = {m: [] for m in [*models, ensemble]}
    for image, label in scans:
        image = np.asarray(image, np.float32)
        probs = [segment(image, m, precision="fp32", probabilities=True).probabilities for m in models]
        mean = np.mean([p.astype(np.float32) for p in probs], axis=0)
        for name, p in [*zip(models, probs, strict=True), (ensemble, mean)]:
            pairs[name].append(((p.astype(np.float32) > 0.5).astype(np.uint8), label))
    scores = {name: score_predictions(p) for name, p in pairs.items()}
    return {name: (s["iou"], s["bf1"], s["bde"]) for name, s in scores.items()}


def _cell(scores: tuple[float, float, float]) -> str:
    iou, bf1, bde = scores
    return f"{iou:.4f} / {bf1:.4f} / {bde:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["unet3d_default", "unet2d_default"])
    parser.add_argument("--data", type=Path, default=Path("runs/default/data"))
    parser.add_argument("--fresh", type=int, default=16)
    parser.add_argument("--unseen", type=int, default=8)
    parser.add_argument("--heldout", type=Path, action="append", default=[])
    parser.add_argument("--depth", type=int, default=250)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        from _smoke import tiny_dataset

        args.data, args.fresh, args.unseen, args.skip_speed = tiny_dataset(), 0, 1, True
    if args.threads:
        torch.set_num_threads(args.threads)
    ensemble = "+".join(args.models)
    names = [*args.models, ensemble]
    if not args.skip_accuracy:
        manifest = args.data / "manifest.json"
        if not manifest.exists():
            args.data.parent.mkdir(parents=True, exist_ok=True)
            manifest = build_dataset(args.data, preset="small", seed=0)
        sets = {"benchmark test groups": lambda: exact_scans(manifest, "test")}
        if args.fresh:
            sets[f"{args.fresh} fresh scans, benchmark generator"] = lambda: fresh_scans(args.fresh)
        for held in args.heldout:
            sets[f"held-out {held.name}"] = lambda held=held: exact_scans(held / "manifest.json", None)
        if args.unseen:
            sets[f"{args.unseen} unseen-generator scans"] = lambda: [
                unseen_scan((24, 160, 160), 0, i, (-0.02, 0.1))[:2] for i in range(args.unseen)
            ]
        print("IoU / BF1 / BDE (px); last column: the ensemble's IoU / the best single model's")
        print(f"{'scans':40s}" + "".join(f"{n:>34s}" for n in names) + f"{'ratio':>8s}")
        for title, make in sets.items():
            result = accuracy(args.models, make())
            best = max(result[m][0] for m in args.models)
            cells = "".join(f"{_cell(result[n]):>34s}" for n in names)
            print(f"{title:40s}{cells}{result[ensemble][0] / best:8.3f}", flush=True)
    if not args.skip_speed:
        work = Path(tempfile.mkdtemp(prefix="dseg-ensemble-"))
        src = work / "volume.npy"
        make_big_volume(src, args.depth, 852)
        seconds = {}
        for name in names:
            out = work / f"{name.replace('+', '_')}.zarr"
            seconds[name], rss = child_peak_rss(segment_command(src, out, "--model", name))
            print(
                f"{args.depth} x 852 x 852 with {name}: {seconds[name]:.1f} s, peak RSS {rss:.0f} MB",
                flush=True,
            )
        for m in args.models:
            print(f"ensemble time / {m} time: {seconds[ensemble] / seconds[m]:.2f}")
        shutil.rmtree(work)  # the volume and the labels: a few GB


if __name__ == "__main__":
    main()
