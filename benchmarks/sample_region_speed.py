"""Finding the sample's region: the radial ellipse residual against scikit-image's geometric one.

``detect_sample`` fits an ellipse to the sample's own edge with RANSAC
(``sample_region._inside_edge``). scikit-image's ``EllipseModel`` measures a
point's residual as its geometric distance to the ellipse, one small
optimisation per point and trial; the points lie on rays from the sample's
centre, so ``_radial_ellipse_model`` measures it along that ray instead, in
a few array operations. Every ``segment`` call, every training dataset
entry and every validation pass finds the region, so this is paid often.

For each volume this times ``detect_sample`` both ways (best of
``--repeat``) and checks that the two regions agree, then prints the total
time of each and the ratio:

* two scans of the ``real_like`` row with a grainy band between a constant
  exterior and the sample's edge (the case the own edge is for);
* the volumes of a ``tiny`` synthetic dataset (what the test suite trains on);
* the real Mg slice in ``../shared/real/`` where it is present.

    python benchmarks/sample_region_speed.py [--repeat 3] [--smoke]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tifffile
from _smoke import tiny_dataset
from real_like import scans_for

from dendriteseg import sample_region
from dendriteseg.data import read_manifest
from dendriteseg.io import read_volume

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "mg_dendrites_slice.tif"


def geometric_model() -> type:
    from skimage.measure import EllipseModel

    return EllipseModel


def timed_region(image: np.ndarray, model: object, repeat: int) -> tuple[float, np.ndarray | None]:
    """Best time of ``detect_sample`` with ``model`` as the ellipse RANSAC fits, and its region mask."""
    sample_region._radial_ellipse_model = model  # the one rule that differs between the two
    best, region = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        found = sample_region.detect_sample(image)
        best = min(best, time.perf_counter() - start)
        region = None if found is None else found.mask
    return best, region


def volumes(smoke: bool) -> list[tuple[str, np.ndarray]]:
    shape = (4, 96, 96) if smoke else None
    out = [
        (f"grainy band {i}", image)
        for i, (image, _) in enumerate(scans_for("grainy band, constant exterior", 2, shape))
    ]
    entries = read_manifest(tiny_dataset() / "manifest.json")[: 3 if smoke else None]
    out += [(f"tiny dataset {e.name}", read_volume(e.image).astype(np.float32)) for e in entries]
    if REAL.is_file():
        out.append(("real Mg slice", tifffile.imread(REAL).astype(np.float32)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    repeat = 1 if args.smoke else args.repeat
    radial = sample_region._radial_ellipse_model
    totals, agree = {"geometric": 0.0, "radial": 0.0}, []
    print(f"{'volume':40s} {'shape':>16s} {'geometric s':>12s} {'radial s':>9s} {'region IoU':>10s}")
    for name, image in volumes(args.smoke):
        tg, rg = timed_region(image, geometric_model, repeat)
        tr, rr = timed_region(image, radial, repeat)
        totals["geometric"] += tg
        totals["radial"] += tr
        if rg is None or rr is None:
            same = 1.0 if rg is None and rr is None else 0.0
        else:
            same = float((rg & rr).sum() / max((rg | rr).sum(), 1))
        agree.append(same)
        shape = "x".join(map(str, image.shape))
        print(f"{name[:40]:40s} {shape:>16s} {tg:12.3f} {tr:9.3f} {same:10.4f}")
    sample_region._radial_ellipse_model = radial
    ratio = totals["geometric"] / max(totals["radial"], 1e-9)
    print(
        f"total: geometric {totals['geometric']:.2f} s, radial {totals['radial']:.2f} s: "
        f"x{ratio:.1f} faster; regions agree (IoU) at least {min(agree):.4f}"
    )


if __name__ == "__main__":
    main()
