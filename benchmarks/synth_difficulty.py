"""Is the synthetic benchmark hard enough? Classical methods vs a tiny U-Net.

Makes ``realistic`` scans (4 to train, 2 held out), segments the held-out
ones with every classical baseline (the random forest trained on a training
scan) and with a tiny 2D U-Net trained from scratch by
:func:`dendriteseg.train.train` for ``--steps`` steps on the training scans,
scores everything with :mod:`dendriteseg.scoring`, and prints IoU / BF1 /
BDE side by side with the two checks of the synthetic-data issue: Otsu IoU
< 0.7, and the best classical method >= 0.05 IoU below the U-Net.

    python benchmarks/synth_difficulty.py [--steps 600] [--shape 16 160 160]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from dendriteseg.baselines import segment_with_baseline
from dendriteseg.scoring import score_model, score_predictions
from dendriteseg.synth.dataset import write_scan
from dendriteseg.synth.scan import make_scan
from dendriteseg.train import train
from dendriteseg.train.config import config_from_dict


def train_unet(scans: list[dict], steps: int, work: Path) -> Path:
    """A tiny 2D U-Net trained on ``scans`` (exact labels) for ``steps`` steps; returns its file."""
    entries = []
    for i, scan in enumerate(scans):
        write_scan(work / f"train{i}", scan)
        entries.append(
            {
                "name": f"train{i}",
                "image": f"train{i}/image.tif",
                "label": f"train{i}/label.tif",
                "quality": "exact",
                "split": "train",
            }
        )
    (work / "manifest.json").write_text(json.dumps({"entries": entries}))
    epochs = 4
    config = config_from_dict(
        {
            "data": str(work / "manifest.json"),
            "out": str(work / "unet"),
            "model": "unet2d",
            "model_args": {"base": 8, "depth": 3},
            "train_quality": "exact",
            "patch": [1, 96, 96],
            "batch": 16,
            "epochs": epochs,
            "steps_per_epoch": max(1, steps // epochs),
            "lr": 2e-3,
        }
    )
    return train(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--shape", type=int, nargs=3, default=[16, 160, 160])
    parser.add_argument("--preset", default="realistic")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.shape = 4, [8, 96, 96]
    torch.set_num_threads(2)
    shape = tuple(args.shape)
    start = time.perf_counter()
    train_scans = [make_scan(shape, preset=args.preset, rng=100 + i) for i in range(4)]
    test = [
        (s["image"], s["label"])
        for s in (make_scan(shape, preset=args.preset, rng=200 + i) for i in range(2))
    ]
    made = time.perf_counter() - start
    print(f"{args.preset} scans {shape}: 4 train, 2 test, made in {made:.0f} s")
    rows = {}
    for method in ("otsu", "kmeans", "emmpm", "forest"):
        first = train_scans[0]
        extra = {"train_image": first["image"], "train_label": first["label"]} if method == "forest" else {}
        rows[method] = score_predictions(
            [(segment_with_baseline(method, im, rng=0, **extra), lab) for im, lab in test]
        )
    with tempfile.TemporaryDirectory(prefix="dseg-difficulty-") as work:
        model = train_unet(train_scans, args.steps, Path(work))
        rows[f"tiny U-Net ({args.steps} steps)"] = score_model(model, test, precision="fp32")
    print(f"{'method':34s} {'IoU %':>7s} {'BF1 %':>7s} {'BDE px':>7s}")
    for name, s in rows.items():
        print(f"{name:34s} {100 * s['iou']:7.2f} {100 * s['bf1']:7.2f} {s['bde']:7.3f}")
    unet = rows[list(rows)[-1]]["iou"]
    best = max(s["iou"] for k, s in rows.items() if "U-Net" not in k)
    otsu = rows["otsu"]["iou"]
    print(
        f"Otsu IoU < 0.7: {otsu < 0.7}; best classical {best:.3f} vs U-Net {unet:.3f}: "
        f"gap {unet - best:+.3f} (>= 0.05: {unet - best >= 0.05})"
    )


if __name__ == "__main__":
    main()
