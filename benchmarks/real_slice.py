"""The real Mg-alloy slice (``../shared/real``, never trained on): how much each model calls dendrite.

The slice has no labels; what can be checked is where the models put
dendrite. Real petals cover a few per cent of the slice; everything beyond
the container wall (radius over 500 px from the centre) is not dendrite.
Each model segments the slice as a 2D image (as ``dendriteseg segment``
does), at each ``--scale`` (pixels binned per side before the network:
the slice's petals and pixel noise are far finer than our training
scans'; ``auto``, the default of ``segment``, picks the binning where the
network is surest and the table names it), with the sample region on
(``auto``, the default) and off; the table gives the share of the slice
called dendrite and the pixels called dendrite beyond the wall, for each ``--hysteresis`` rule
(0.5: every pixel above 0.5) and ``--tta`` choice (test-time flips: ``auto``, the default, flips a
slice this size; ``off``; ``on``), and an overlay PNG per model and setting shows where.

    python benchmarks/real_slice.py [MODEL ...] [--scale 1 3 auto] [--hysteresis 0.5 0.9] [--tta off auto]
        [--png-dir DIR] [--image ../shared/real/mg_dendrites_slice.tif]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import tifffile
import torch

from dendriteseg.infer import segment

WALL = 500  # px from the image centre: beyond it lies the container wall and the material outside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["unet3d_default", "unet2d_default"])
    parser.add_argument(
        "--image", default=str(Path(__file__).resolve().parents[1] / "../shared/real/mg_dendrites_slice.tif")
    )
    parser.add_argument("--png-dir", default=None)
    parser.add_argument(
        "--scale", nargs="*", default=["1", "3", "auto"], help="binnings to compare (or auto)"
    )
    parser.add_argument(
        "--hysteresis", nargs="*", type=float, default=[0.9], help="labelling rules to compare (0.5: p > 0.5)"
    )
    parser.add_argument(
        "--tta", nargs="*", default=["auto"], choices=["auto", "on", "off"], help="test-time flips to compare"
    )
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:  # a crop of the real slice (or a synthetic one where the checkout has none)
        args.models, args.scale = args.models[:1], ["1"]
    if args.threads:
        torch.set_num_threads(args.threads)
    if Path(args.image).is_file():
        image = tifffile.imread(args.image)
        if args.smoke:
            image = image[430:830, 430:830]  # the centre: the spot at the axis, petals, rings
    elif args.smoke:
        from dendriteseg.synth.scan import make_scan

        image = make_scan((1, 256, 256), preset="moderate", rng=9001)["image"][0].astype(np.float32)
        print(f"{args.image} is not in this checkout: a synthetic slice instead")
    else:
        parser.error(f"{args.image}: no such file (the real slice lies in ../shared/real/)")
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    beyond = np.hypot(yy - (image.shape[0] - 1) / 2, xx - (image.shape[1] - 1) / 2) > WALL
    print(f"{Path(args.image).name} {image.shape}: share called dendrite / pixels beyond r = {WALL} px")
    head = f"{'model':38s}{'hyst.':>6s}{'flips':>6s}{'scale':>8s}"
    print(head + f"{'sample mask auto':>24s}{'sample mask none':>24s}")
    for model in args.models:
        for scale, hysteresis, tta in itertools.product(args.scale, args.hysteresis, args.tta):
            cells, labels, shown = [], {}, scale
            for mask in ("auto", "none"):
                options = {"sample_mask": mask, "precision": "fp32", "scale": scale, "hysteresis": hysteresis}
                result = segment(image, model, tta=tta, **options)
                labels[mask] = result.labels.astype(bool)
                cells.append(f"{labels[mask].mean() * 100:8.1f} % / {int(labels[mask][beyond].sum()):7d}")
                if mask == "auto" and result.scale:
                    shown = f"auto={result.scale.scale}"
            row = f"{model[-38:]:38s}{hysteresis:6g}{tta:>6s}{shown:>8s}"
            print(row + "".join(f"{c:>24s}" for c in cells), flush=True)
            if args.png_dir:
                name = f"real_slice_{Path(model).stem}_scale{scale}_h{hysteresis:g}_tta{tta}.png"
                title = f"{model} (scale {scale}, hysteresis {hysteresis:g}, flips {tta})"
                _overlay(image, labels["auto"], Path(args.png_dir) / name, title)


def _overlay(image: np.ndarray, label: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dendriteseg.io.outputs import save_figure

    fig, ax = plt.subplots(figsize=(8, 8))
    lo, hi = np.percentile(image, [1, 99])
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
    ax.imshow(np.ma.masked_where(~label, label), cmap="autumn", alpha=0.45)
    ax.add_patch(
        plt.Circle(((image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2), WALL, fill=False, color="c", lw=0.8)
    )
    ax.set_title(f"{title}: {label.mean() * 100:.1f} % dendrite (sample mask auto)")
    ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=90)


if __name__ == "__main__":
    main()
