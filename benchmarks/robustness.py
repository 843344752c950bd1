"""How a model's scores hold up on scans our generator does not make.

Side by side in one run, for each model: IoU and BDE on the exact test
groups of a synthetic dataset as they are, and after shifts a user's data
may bring: the scan cropped to the sample (no air left) or to a square
that keeps air only in its corners, more air around
the sample, dendrites 2x larger or 0.7x smaller (in-plane zoom), stronger
noise, and a non-linear grey scale (gamma 2). Prints each shift's IoU as a
ratio of the unshifted one, and, where scans have a holder tube, how many
voxels of its walls each model called dendrite.

    python benchmarks/robustness.py [--data runs/default/data] [--split test|val|all]
        [--unshifted-only] [MODEL ...]

MODEL: a ``.safetensors`` file or a shipped model name (default: the
shipped default). The dataset is built (preset ``small``, seed 0) if the
folder has no manifest. ``--data`` may name another dataset, e.g. one of
the ``wide`` variety from a seed no model was trained on
(``dendriteseg synth dataset held/ --seed 7 --variety wide``), scored on
all its exact groups with ``--split all``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from dendriteseg.data import read_manifest, select
from dendriteseg.io import read_volume
from dendriteseg.scoring import score_model
from dendriteseg.synth.ct import ScanParams, holder_ring
from dendriteseg.synth.dataset import build_dataset


def _air_pad(image: np.ndarray, label: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A wider field of view: ``width`` more pixels of air (the corner's statistics) on each side."""
    corner = image[:, :8, :8]
    rng = np.random.default_rng(0)
    shape = (image.shape[0], image.shape[1] + 2 * width, image.shape[2] + 2 * width)
    padded = rng.normal(float(corner.mean()), float(corner.std()), shape).astype(np.float32)
    padded[:, width:-width, width:-width] = image
    return padded, np.pad(label, ((0, 0), (width, width), (width, width)))


Pair = tuple[np.ndarray, np.ndarray]  # image, label


def _crop_to_sample(image: np.ndarray, label: np.ndarray, params: ScanParams) -> Pair:
    """The square inside the cylindrical sample (for wide samples, inside a radius of 0.38)."""
    n = min(image.shape[1:])
    return centred_square(image, label, int(n * min(params.radius_fraction, 0.38) / np.sqrt(2)) - 1)


def centred_square(image: np.ndarray, label: np.ndarray, half: int) -> Pair:
    """The slices' central square of side ``2 * half`` (a user's crop around a centred sample)."""
    cy, cx = image.shape[1] // 2, image.shape[2] // 2
    box = (slice(None), slice(cy - half, cy + half), slice(cx - half, cx + half))
    return image[box], label[box]


def _crop_with_corners(image: np.ndarray, label: np.ndarray, params: ScanParams) -> Pair:
    """A square of half-side 0.88 of the sample's radius: air only in its corners (about 6 % of it)."""
    n = min(image.shape[1:])
    return centred_square(image, label, min(int(n * params.radius_fraction * 0.88), n // 2 - 1))


def _zoom(factor: float):
    def apply(image: np.ndarray, label: np.ndarray, _params: ScanParams) -> Pair:
        zoomed = ndimage.zoom(image, (1, factor, factor), order=1)
        return zoomed, ndimage.zoom(label, (1, factor, factor), order=0)

    return apply


def _noise(image: np.ndarray, label: np.ndarray, _params: ScanParams) -> Pair:
    lo, hi = np.percentile(image, (1, 99))
    rng = np.random.default_rng(1)
    return (image + rng.normal(0, 0.15 * (hi - lo), image.shape)).astype(np.float32), label


def _gamma(image: np.ndarray, label: np.ndarray, _params: ScanParams) -> Pair:
    return ((image - image.min()) ** 2).astype(np.float32), label


UNSHIFTED = "as generated"
SHIFTS = {  # (image, label, the scan's parameters) -> (image, label)
    UNSHIFTED: lambda image, label, _params: (image, label),
    "cropped to the sample": _crop_to_sample,
    "air in the corners only": _crop_with_corners,
    "more air (+32 px)": lambda image, label, _params: _air_pad(image, label, 32),
    "dendrites 2x larger": _zoom(2.0),
    "dendrites 0.7x": _zoom(0.7),
    "noise +15 %": _noise,
    "gamma 2": _gamma,
}


Volumes = list[tuple[np.ndarray, np.ndarray, ScanParams]]  # image, label, the scan's parameters


def _scan_params(entry) -> ScanParams:
    """A synthetic scan's parameters from its meta.json (defaults for other data)."""
    meta = Path(entry.image).parent / "meta.json"
    scan = json.loads(meta.read_text()).get("scan", {}) if meta.is_file() else {}
    known = {f.name for f in fields(ScanParams)}
    return ScanParams(**{k: v for k, v in scan.items() if k in known})


def scores(model: str | None, volumes: Volumes, shift, count_walls: bool) -> tuple[float, float, int]:
    """Mean IoU and BDE, and (``count_walls``: unshifted scans) the dendrite voxels in holder walls."""
    shifted = [shift(image, label, params) for image, label, params in volumes]
    scored = score_model(model, shifted, precision="fp32", keep_labels=count_walls)
    in_walls = 0
    for pred, (_, _, params) in zip(scored.labels, volumes, strict=False):
        if pred.shape[1] == pred.shape[2]:
            in_walls += int(pred[:, holder_ring(pred.shape[1], params)].sum())
    return scored["iou"], scored["bde"], in_walls


def model_label(model: str | None) -> str:
    """A short column name: the shipped name, a file's stem, or its folder for best/last checkpoints."""
    if not model:
        return "shipped default"
    path = Path(model)
    return path.parent.name if path.stem in ("best", "last") and path.parent.name else path.stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=[None])
    parser.add_argument("--data", type=Path, default=Path("runs/default/data"))
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--unshifted-only", action="store_true", help="only the 'as generated' row (scores on held-out data)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        from _smoke import tiny_dataset

        args.data, args.split = tiny_dataset(), "test"
    if args.threads:
        torch.set_num_threads(args.threads)
    manifest = args.data / "manifest.json"
    if not manifest.exists():
        args.data.parent.mkdir(parents=True, exist_ok=True)
        manifest = build_dataset(args.data, preset="small", seed=0)
    split = None if args.split == "all" else args.split
    entries = select(read_manifest(manifest), quality="exact", split=split)
    volumes = [
        (read_volume(e.image).astype(np.float32), read_volume(e.label), _scan_params(e)) for e in entries
    ]
    print(f"{len(volumes)} exact {args.split} volumes of {manifest}; IoU, BDE (px), IoU / unshifted IoU")
    print(f"{'shift':24s}" + "".join(f"{model_label(m):>30s}" for m in args.models))
    base: dict[int, float] = {}
    walls: dict[int, int] = {}
    shifts = {UNSHIFTED: SHIFTS[UNSHIFTED]} if args.unshifted_only else SHIFTS
    for shift_name, shift in shifts.items():
        row = f"{shift_name:24s}"
        unshifted = shift_name == UNSHIFTED
        for i, model in enumerate(args.models):
            iou, bde, in_walls = scores(model, volumes, shift, count_walls=unshifted)
            base.setdefault(i, iou)
            if unshifted:
                walls[i] = in_walls
            row += f"{f'{iou:.4f} {bde:5.2f} x{iou / base[i]:.2f}':>30s}"
        print(row, flush=True)
    holders = sum(params.holder_thickness > 0 for _, _, params in volumes)
    if holders:
        print(f"{f'dendrite voxels in the holder walls ({holders} scans)':24s}")
        print(f"{'':24s}" + "".join(f"{walls[i]:>30d}" for i in range(len(args.models))))


if __name__ == "__main__":
    main()
