"""How models do on scans from a generator they were not trained on.

The shipped models learn from the CT forward model (projections, filtered
back-projection, phase-field and procedural structures). Here each scan is
painted in the image domain instead (``synth.paint_image_scan``: white noise,
Gaussian blur, rings on the rotation axis, a drift along z) over procedural
capsule dendrites, with its settings drawn per scan over wide ranges
(contrast, air level, noise, blur, sample radius, dendrite thickness), and
stored as uint16 with a random gain and offset as a detector would, so the
models' own normalisation is part of the test. Side by side in one run:
IoU, BF1 and BDE per model, each scan's IoU, and each model's IoU as a
ratio of the first model's.

    python benchmarks/other_generator.py [--scans 8] [--shape 24,160,160] [--seed 0] [MODEL ...]

MODEL: a ``.safetensors`` file or a shipped model name (default: the three
shipped models).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from robustness import model_label  # the sibling benchmark's column names

from dendriteseg.scoring import score_model
from dendriteseg.synth import paint_image_scan, procedural_dendrites


def other_scan(shape: tuple[int, int, int], seed: int, index: int) -> tuple[np.ndarray, np.ndarray, str]:
    """One uint16 image, its label and a short description of its settings."""
    gen = np.random.default_rng([seed, index])
    size = min(shape[1:])
    radius_fraction = gen.uniform(0.3, 0.48)
    label, phase = procedural_dendrites(
        shape,
        n_seeds=int(gen.integers(2, 7)),
        arm_radius=size * gen.uniform(0.02, 0.055),
        interface_width=gen.uniform(0.6, 1.5),
        rng=gen,
    )
    settings = {
        "solid": gen.uniform(0.45, 0.85),
        "air": gen.uniform(0.0, 0.3),
        "noise": gen.uniform(0.02, 0.14),
        "blur": gen.uniform(0.4, 1.6),
        "rings": gen.uniform(0.0, 0.05),
        "drift": gen.uniform(-0.15, 0.15),
    }
    image, sample = paint_image_scan(phase, radius_fraction=radius_fraction, rng=gen, **settings)
    gain, offset = gen.uniform(4000, 20000), gen.uniform(500, 12000)
    stored = np.clip(image * gain + offset, 0, 65535).astype(np.uint16)
    label = (label * sample[None]).astype(np.uint8)
    text = " ".join(f"{k} {v:.2f}" for k, v in settings.items()) + f" radius {radius_fraction:.2f}"
    return stored, label, text


def parse_args(description: str, extra=None) -> tuple[argparse.Namespace, tuple[int, int, int]]:
    """The scan benchmarks' command line (``extra(parser)`` adds options); sets torch's threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "models", nargs="*", default=["unet3d_default", "unet2d_default", "fcdense3d_default"]
    )
    parser.add_argument("--scans", type=int, default=8)
    parser.add_argument("--shape", default="24,160,160", help="z,y,x of each scan")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    if extra:
        extra(parser)
    args = parser.parse_args()
    if args.smoke:
        args.models, args.scans, args.shape = args.models[:1], 1, "8,64,64"
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, tuple(int(s) for s in args.shape.split(","))


def main() -> None:
    args, shape = parse_args(__doc__.splitlines()[0])
    scans = [other_scan(shape, args.seed, i) for i in range(args.scans)]
    print(f"{args.scans} scans of {shape} from the image-domain generator (seed {args.seed}); IoU per scan")
    compare(args.models, scans)


def compare(models: list[str], scans: list[tuple[np.ndarray, np.ndarray, str]]) -> None:
    """Print each scan's settings, then each model's IoU, BF1, BDE and per-scan IoU on them."""
    for i, (_, label, text) in enumerate(scans):
        print(f"  scan {i}: {text}, dendrite {label.mean():.1%}")
    print(f"{'model':24s}{'IoU':>8s}{'BF1':>8s}{'BDE':>8s}  {'IoU / first':>11s}  per scan")
    first = None
    for model in models:
        scored = score_model(model, [(image, label) for image, label, _ in scans], precision="fp32")
        results = scored.volumes
        iou, bf1, bde = (scored[k] for k in ("iou", "bf1", "bde"))
        first = iou if first is None else first
        per_scan = " ".join(f"{r.iou:.3f}" for r in results)
        print(
            f"{model_label(model):24s}{iou:8.4f}{bf1:8.4f}{bde:8.3f}  {iou / first:11.3f}  {per_scan}",
            flush=True,
        )


if __name__ == "__main__":
    main()
