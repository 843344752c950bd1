"""What real scans show, one mechanism a row: how the models hold up, side by side.

Each row takes scans of the CT forward model (``moderate`` preset, seeds
9000+, never used for training) and adds one thing real reconstructions
have (``../shared/REAL-SCANS.md``):

* ``as generated``: the reference;
* ``phase-contrast fringes``: strong edge fringes (``phase_contrast=0.8``
  in the forward model, both dark and bright at every interface);
* ``masked exterior``: everything outside the reconstruction circle set to
  one grey (0, the scan's mean, or its maximum, in turn);
* ``textured band``: a band around the sample of grainy material (a
  container wall or packing, melt-like grey with dark and bright grains),
  label 0;
* ``broad rings``: rings 8 to 30 px wide about the rotation axis, full and
  partial, both signs, as strong as the dendrite contrast;
* ``512-px slices``: larger slices (the generator runs out of memory well
  before 1280 px: a limit of its own to lift);
* ``large arms``: the structure drawn 3x larger (zoom 4.5);
* ``weak contrast``: solid only 10 % darker than the melt;
* ``grainy band, constant exterior``: a dark edge line at the sample's
  surface, a band of grains (mean near the melt's) out to 1.12 x its
  radius, then one grey (as real Al-Zn reconstructions are masked);
* ``under 1 % solid``: scans of one to three dendrites that leave less than
  1 % of the volume solid (the first scans of a series);
* ``all melt``: no solid at all; the cell is the share called dendrite;
* ``faint dendrites``: solid only 4 % darker than the melt;
* ``correlated noise``: noise smoothed over 1.5 px (phase retrieval,
  binning), 8 % of the melt's attenuation;
* ``2D slices``, ``2D slices, under 1 % solid``, ``2D slices, all melt``,
  ``2D slices, grainy band``: the middle slice of such scans, alone (as a user segments one slice: a 3D
  model sees it repeated along z, its noise the same in every slice).

Every model segments every scan through :func:`dendriteseg.scoring.score_model`
(the sample mask off, so the rows measure the model) at each ``--scale``
(1: as the pixels are; ``auto``: ``segment``'s default, the binning where
the network is surest, tried on slices of 192 px and more) and each
``--hysteresis`` (0.5: every voxel above 0.5 is dendrite; 0.9, the default:
only pieces holding a voxel of 0.9, see ``dendriteseg.infer.hysteresis``);
and each ``--edge-rim`` rule (``drop``, the default: a thin rim along the
sample region's edge dropped, see ``dendriteseg.infer.edge_rim``; ``keep``)
and ``--tta`` choice (``auto``, the default: flips on these sizes; ``off``; ``on``: the four in-plane flips
averaged, four network passes);
the table gives IoU / BF1 / BDE per row, model, scale and rules.

    python benchmarks/real_like.py [MODEL ...] [--scans 4] [--scale 1 auto] [--sample-mask none]
        [--hysteresis 0.5 0.9] [--edge-rim keep drop] [--tta off auto on] [--rows ...] [--threads N] [--smoke]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))

from dendriteseg.scoring import score_model
from dendriteseg.synth.scan import make_scan

SHAPE = (8, 192, 192)


def _radius(shape: tuple[int, ...]) -> np.ndarray:
    ny, nx = shape[-2:]
    yy, xx = np.ogrid[:ny, :nx]
    return np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2)


def masked_exterior(image: np.ndarray, label: np.ndarray, i: int, gen: np.random.Generator) -> tuple:
    fill = [0.0, float(image.mean()), float(image.max())][i % 3]
    out = image.copy()
    out[:, _radius(image.shape) > 0.48 * image.shape[-1]] = fill
    return out, label


def textured_band(image: np.ndarray, label: np.ndarray, i: int, gen: np.random.Generator) -> tuple:
    """Grainy material from just outside the sample (the label's extent) to the slice's edge."""
    r = _radius(image.shape)
    inner = max(
        np.hypot(*(np.argwhere(label.any(0)) - (np.array(label.shape[1:]) - 1) / 2).T).max() + 4,
        0.4 * r.max(),
    )
    band = (r > inner) & (r < 0.5 * image.shape[-1])
    inside = image[:, r < inner]
    melt, spread = np.percentile(inside, 90), np.percentile(inside, 90) - np.percentile(inside, 10)
    grains = ndimage.gaussian_filter(gen.standard_normal(image.shape), (0.8, 1.5, 1.5))
    texture = melt - 0.3 * spread + spread * 1.5 * grains / grains.std()
    out = image.copy()
    out[:, band] = texture[:, band]
    return out, label


def broad_rings(image: np.ndarray, label: np.ndarray, i: int, gen: np.random.Generator) -> tuple:
    r = _radius(image.shape)
    contrast = (
        np.percentile(image[label > 0], 50) - np.percentile(image[label == 0], 60) if label.any() else 1.0
    )
    centre = ((np.array(image.shape[1:]) - 1) / 2)[:, None, None]
    angle = np.arctan2(*(np.mgrid[: image.shape[1], : image.shape[2]] - centre))
    out = image.astype(np.float32).copy()
    for _ in range(4):
        centre, width = gen.uniform(10, 0.45 * image.shape[-1]), gen.uniform(8, 30)
        ring = np.exp(-0.5 * ((r - centre) / (width / 2.355)) ** 2) * gen.choice([-1, 1]) * abs(contrast)
        if gen.random() < 0.5:  # a partial ring: an arc
            ring = ring * (np.cos(angle - gen.uniform(0, 2 * np.pi)) > gen.uniform(-0.5, 0.5))
        out += ring[None].astype(np.float32)
    return out, label


def grainy_band(image: np.ndarray, label: np.ndarray, i: int, gen: np.random.Generator) -> tuple:
    """A dark edge line at the sample's surface, grains out to 1.12 x its radius, then one grey."""
    from trust_calibration import banded

    return banded(image, label, 0.4 * image.shape[-1], gen, dark=bool(i % 2))


def middle_slice(image: np.ndarray, label: np.ndarray, i: int, gen: np.random.Generator) -> tuple:
    """The scan's middle slice alone, as a one-slice volume."""
    z = image.shape[0] // 2
    return image[z : z + 1], label[z : z + 1]


ROWS = {
    "as generated": ({}, None, SHAPE),
    "phase-contrast fringes": ({"phase_contrast": 0.8}, None, SHAPE),
    "masked exterior": ({}, masked_exterior, SHAPE),
    "textured band": ({}, textured_band, SHAPE),
    "broad rings": ({}, broad_rings, SHAPE),
    "512-px slices": ({}, None, (4, 512, 512)),
    "large arms": ({"zoom": 4.5}, None, SHAPE),
    "weak contrast": ({"solid_ratio": 0.9, "solid_ratio_spread": 0.0}, None, SHAPE),
    "grainy band, constant exterior": ({"radius_fraction": 0.4}, grainy_band, SHAPE),
    "under 1 % solid": ({"seeds": 2}, None, SHAPE),
    "all melt": ({"solid_ratio": 1.0, "solid_ratio_spread": 0.0}, None, SHAPE),
    "faint dendrites": ({"solid_ratio": 0.96, "solid_ratio_spread": 0.0}, None, SHAPE),
    "correlated noise": ({"correlated_noise": 0.08, "noise_correlation": 1.5}, None, SHAPE),
    "2D slices": ({}, middle_slice, SHAPE),
    "2D slices, under 1 % solid": ({"seeds": 2}, middle_slice, SHAPE),
    "2D slices, all melt": ({"solid_ratio": 1.0, "solid_ratio_spread": 0.0}, middle_slice, SHAPE),
    "2D slices, grainy band": (
        {"radius_fraction": 0.4},
        lambda image, label, i, gen: middle_slice(*grainy_band(image, label, i, gen), i, gen),
        SHAPE,
    ),
}
SPARSE = ("under 1 % solid", "2D slices, under 1 % solid")


def scans_for(
    row: str, count: int, shape: tuple[int, int, int] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    overrides, change, row_shape = ROWS[row]
    shape = shape or row_shape
    scans, seed = [], 9000
    while len(scans) < count and seed < 9200:
        scan = make_scan(shape, preset="moderate", rng=seed, **overrides)
        seed += 1
        image, label = scan["image"].astype(np.float32), scan["label"]
        if row.endswith("all melt"):
            label = np.zeros_like(label)
        elif row in SPARSE and not 0 < label.mean() < 0.01:
            continue  # a seed that left the view empty, or more than 1 % solid
        elif row in SPARSE and change is not None and not label[shape[0] // 2].any():
            continue  # its middle slice empty
        if change is not None:
            image, label = change(image, label, len(scans), np.random.default_rng(9100 + len(scans)))
        scans.append((image, label))
    return scans


def cell(
    model: str,
    scans: list,
    scale: str,
    mask: str,
    hysteresis: float = 0.9,
    rim: str = "drop",
    tta: str = "auto",
) -> str:
    """IoU / BF1 / BDE of ``model`` on ``scans``; where nothing is to be found, the share called."""
    common = {
        "precision": "fp32",
        "sample_mask": mask,
        "scale": scale,
        "hysteresis": hysteresis,
        "edge_rim": rim == "drop",
        "tta": tta,
    }
    if not any(label.any() for _, label in scans):
        s = score_model(model, scans, keep_labels=True, **common)
        called = np.mean([p.mean() for p in s.labels])
        return f"{100 * called:.3f} % called"
    s = score_model(model, scans, **common)
    return f"{s['iou']:.3f} / {s['bf1']:.3f} / {s['bde']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["unet3d_default", "unet2d_default"])
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--rows", nargs="*", default=list(ROWS))
    parser.add_argument("--scale", nargs="*", default=["1", "auto"], help="binnings to compare (or auto)")
    parser.add_argument("--sample-mask", default="none", help="none measures the model; auto as segment does")
    parser.add_argument(
        "--hysteresis", nargs="*", type=float, default=[0.9], help="labelling rules to compare (0.5: p > 0.5)"
    )
    parser.add_argument(
        "--edge-rim", nargs="*", default=["drop"], choices=["drop", "keep"], help="edge rim rules to compare"
    )
    parser.add_argument(
        "--tta", nargs="*", default=["auto"], choices=["auto", "off", "on"], help="test-time flips to compare"
    )
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="one 4 x 64 x 64 scan per row, one model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = (4, 64, 64) if args.smoke else None
    models = args.models[:1] if args.smoke else args.models
    scales = args.scale[:1] if args.smoke else args.scale
    print(f"IoU / BF1 / BDE (px) per mechanism; sample mask {args.sample_mask}")
    columns = list(itertools.product(models, scales, args.hysteresis, args.edge_rim, args.tta))
    print(
        f"{'mechanism':32s}"
        + "".join(
            f"{m[-14:] + ' @' + s + ' h' + f'{h:g}' + ' ' + r + ('' if a == 'auto' else ' tta ' + a):>34s}"
            for m, s, h, r, a in columns
        )
    )
    for row in args.rows:
        start = time.perf_counter()
        scans = scans_for(row, 1 if args.smoke else args.scans, shape)
        cells = [cell(model, scans, scale, args.sample_mask, h, r, a) for model, scale, h, r, a in columns]
        print(
            f"{row:32s}" + "".join(f"{c:>34s}" for c in cells) + f"   ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
