"""Which tile depth should a 3D model trained on 4-slice patches see at inference?

Side by side in one run, on fresh synthetic scans (exact labels) that the
model never saw: IoU / BF1 / BDE and throughput for tile depths 4 (no z
overlap, the default), 4 with half-tile z overlap, 8 and 16.

    python benchmarks/tile_depth.py [--model M] [--scans 3] [--shape 32,192,192]
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--scans", type=int, default=3)
    parser.add_argument("--shape", default="32,192,192")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.scans, args.shape = 1, "16,64,64"

    from dendriteseg.scoring import score_model
    from dendriteseg.synth.scan import make_scan

    shape = tuple(int(s) for s in args.shape.split(","))
    scans = []
    for i in range(args.scans):
        preset = ("moderate", "hard", "easy")[i % 3]
        scan = make_scan(shape, preset=preset, vary=True, rng=args.seed + i)
        scans.append((preset, scan["image"], scan["label"]))
    settings = [
        ("4", (4, None), 0.0),
        ("4, z overlap 0.5", (4, None), 0.5),
        ("8", (8, None), 0.0),
        ("16", (16, None), 0.0),
    ]
    print(f"{'tile depth':18s} {'IoU':>7s} {'BF1':>7s} {'BDE':>7s} {'Mvox/s':>7s}")
    for name, (depth, _), overlap_z in settings:
        tile = (depth, shape[1], shape[2])
        pairs = [(image, label) for _, image, label in scans]
        s = score_model(args.model, pairs, device="cpu", tile=tile, overlap_z=overlap_z)
        rate = s.voxels_per_second / 1e6
        print(f"{name:18s} {s['iou']:7.4f} {s['bf1']:7.4f} {s['bde']:7.3f} {rate:7.3f}", flush=True)


if __name__ == "__main__":
    main()
