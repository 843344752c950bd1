"""How much IoU a sub-pixel boundary error costs on the benchmark's exact groups.

For each exact group of a dataset (default: the test groups of
``runs/default/data``), the exact label is grown by the background pixels
within ``d`` px of it, or shrunk by its pixels within ``d`` px of the
background (in-plane Euclidean distances; d = 1 is the smallest error a
pixel grid allows), and scored against the label itself with the
benchmark's IoU. A model whose boundaries are off by that much everywhere
scores about these numbers; the group's contrast-to-noise ratio (from its
meta.json) is printed beside them.

    python benchmarks/label_ceiling.py [--data runs/default/data] [--split test|val|all]
        [--shifts 1,2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from dendriteseg.data import LabelledVolume, read_manifest, select
from dendriteseg.metrics import score_slices, summarize


def distances(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-plane distance of each pixel to the nearest pixel of the other class: (inside, outside)."""
    inside = np.stack([ndimage.distance_transform_edt(s) for s in label])
    outside = np.stack([ndimage.distance_transform_edt(1 - s) for s in label])
    return inside, outside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/default/data"))
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    parser.add_argument("--shifts", default="1,2")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        from _smoke import tiny_dataset

        args.data, args.split = tiny_dataset(), "all"
    shifts = [float(s) for s in args.shifts.split(",")]
    entries = select(
        read_manifest(args.data / "manifest.json"),
        quality="exact",
        split=None if args.split == "all" else args.split,
    )
    print("IoU of the exact label grown / shrunk by d px; CNR from the scan's meta.json")
    print(f"{'group':10s}{'dendrite':>9s}{'CNR':>7s}" + "".join(f"{f'd={d}':>16s}" for d in shifts))
    rows = []
    for entry in entries:
        label = LabelledVolume.from_entry(entry).label
        meta = Path(entry.image).parent / "meta.json"
        cnr = json.loads(meta.read_text()).get("cnr", float("nan")) if meta.is_file() else float("nan")
        inside, outside = distances(label)
        row = []
        for d in shifts:
            grown = summarize(score_slices(((label > 0) | (outside <= d)).astype(np.uint8), label)).iou
            shrunk = summarize(score_slices(((label > 0) & (inside > d)).astype(np.uint8), label)).iou
            row.append((grown, shrunk))
        rows.append(row)
        cells = "".join(f"{f'{g:.3f} / {s:.3f}':>16s}" for g, s in row)
        print(f"{entry.name:10s}{label.mean():9.3f}{cnr:7.2f}{cells}")
    mean = np.mean(rows, axis=0)
    print(f"{'mean':26s}" + "".join(f"{f'{g:.3f} / {s:.3f}':>16s}" for g, s in mean))


if __name__ == "__main__":
    main()
