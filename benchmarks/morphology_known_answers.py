"""Surface area, volume and mean curvature of shapes whose answers are known, per resolution.

Balls (area 4 pi R^2, volume 4/3 pi R^3, mean curvature 1/R), cylinders
through the volume (lateral area 2 pi R L, curvature 1/(2R)) and prolate
ellipsoids (area by Knud Thomsen's formula, about 1 % off; volume exact),
at radii of 5 to 40 voxels; the relative error of each quantity from
:func:`dendriteseg.morphology.analyze_labels`, and the time it took.

    python benchmarks/morphology_known_answers.py [--radii 5 10 20 40]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from dendriteseg.morphology import analyze_labels


def shape(kind: str, r: float) -> tuple[np.ndarray, dict[str, float]]:
    n = int(2 * r * (1.6 if kind == "ellipsoid" else 1.0) + 12)
    zz, yy, xx = np.mgrid[:n, :n, :n] - (n - 1) / 2
    if kind == "ball":
        truth = {"volume": 4 / 3 * math.pi * r**3, "area": 4 * math.pi * r * r, "curvature": 1 / r}
        return (zz**2 + yy**2 + xx**2 <= r * r), truth
    if kind == "cylinder":
        return (yy**2 + xx**2 <= r * r), {
            "volume": math.pi * r * r * n,
            "area": 2 * math.pi * r * n,
            "curvature": 1 / (2 * r),
        }
    a, b = 1.5 * r, r  # prolate: semi-axes a (z), b, b
    p = 1.6075
    area = 4 * math.pi * ((2 * (a * b) ** p + b ** (2 * p)) / 3) ** (1 / p)
    return ((zz / a) ** 2 + (yy / b) ** 2 + (xx / b) ** 2 <= 1), {
        "volume": 4 / 3 * math.pi * a * b * b,
        "area": area,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--radii", type=float, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.radii = [5.0]
    print(f"{'shape':10s}{'R vox':>7s}{'volume err':>12s}{'area err':>10s}{'H err':>9s}{'seconds':>9s}")
    for kind in ("ball", "cylinder", "ellipsoid"):
        for r in args.radii:
            solid, truth = shape(kind, r)
            start = time.perf_counter()
            got = analyze_labels(solid.astype(np.uint8), 1.0, arms=False)
            seconds = time.perf_counter() - start
            errors = [got["solid_volume"] / truth["volume"] - 1, got["interface_area"] / truth["area"] - 1]
            curvature = got["mean_curvature"] / truth["curvature"] - 1 if "curvature" in truth else math.nan
            cells = "".join(f"{100 * e:+11.2f}%" for e in errors[:1]) + f"{100 * errors[1]:+9.2f}%"
            print(f"{kind:10s}{r:7.0f}{cells}{100 * curvature:+8.2f}%{seconds:9.2f}", flush=True)


if __name__ == "__main__":
    main()
