"""What ``--scale auto`` costs, side by side in one run.

1. A synthetic volume (``--shape``) segmented at ``scale=1`` and at
   ``scale="auto"``: seconds, ratio, the binning chosen, IoU of each against
   the scan's exact label.
2. A single large slice (the real Mg slice in ``../shared/real`` where the
   checkout has it, else a synthetic 1260 x 1260 slice): the defaults
   (``auto``) against the binning they choose forced (each the faster of two
   runs: the first of a new shape pays one-off kernel set-up), the probe's own time
   against the final pass, with and without its coarsest look (which the run
   takes over where it chose that binning), and the per-voxel rate at
   ``scale=1`` (network voxels, each flip a pass) against a ``32 x Y x X``
   volume's (``--rate-side``, default 852).
3. The probe's share of a whole run on a ``--deep`` volume (default
   250 x 852 x 852; ``--deep 0`` skips it): the probe (``choose_scale``)
   timed alone against the run at the binning it chose.

    python benchmarks/scale_auto_cost.py [--shape 24,512,512] [--model unet3d_default] [--threads N]
        [--image PATH] [--deep 250,852,852]
"""

from __future__ import annotations

import dendriteseg  # noqa: F401 - before torch, which reads its huge-page switch once (dendriteseg.heap)

# isort: split

import argparse
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from dendriteseg.infer import segment
from dendriteseg.infer.predictor import resolve_predictor
from dendriteseg.infer.scale_choice import choose_scale
from dendriteseg.io import as_volume
from dendriteseg.preprocess import sample_slices
from dendriteseg.sample_region import sample_region_for
from dendriteseg.synth.scan import make_scan

REAL = Path(__file__).resolve().parents[1] / "../shared/real/mg_dendrites_slice.tif"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def best_of_two(fn, *args, **kwargs):
    """The faster of two calls: the first of a new shape also pays one-off kernel set-up."""
    (t1, out), (t2, _) = timed(fn, *args, **kwargs), timed(fn, *args, **kwargs)
    return min(t1, t2), out


def probe_seconds(image: np.ndarray, model: str):
    """The probe alone, as ``segment`` runs it: its seconds and choice, and the seconds of its coarsest
    look alone (the look a run at that binning takes over from the probe where it covered whole planes)."""
    from dendriteseg.infer.scale_choice import candidates_for, probe_logits, probe_plan
    from dendriteseg.infer.segment import window_for_volume

    vol = as_volume(image if image.ndim == 3 else image[None])
    region = sample_region_for(vol, "auto")
    predictor = resolve_predictor(model, precision="fp32", compile=False)
    window = window_for_volume(sample_slices(vol), predictor, region)
    seconds, choice = timed(choose_scale, vol, predictor, window, region)
    scales = candidates_for(vol.shape)
    depth, _ = probe_plan(vol.shape, int(predictor.tile_depth or 1), scales)
    z0 = (vol.shape[0] - depth) // 2
    slab = np.asarray(vol.read(z0, z0 + depth), np.float32)
    coarse, _ = timed(probe_logits, slab, predictor, window, max(scales))
    return seconds, choice, coarse


def iou(pred: np.ndarray, label: np.ndarray) -> float:
    return float((pred & label).sum() / max((pred | label).sum(), 1))


def volume_part(args) -> None:
    shape = tuple(int(s) for s in args.shape.split(","))
    scan = make_scan(shape, preset="moderate", rng=9000)
    image, label = scan["image"].astype(np.float32), scan["label"].astype(bool)
    t1, plain = timed(segment, image, args.model, precision="fp32", scale=1, compile=False)
    ta, auto = timed(segment, image, args.model, precision="fp32", scale="auto", compile=False)
    print(f"1. {args.model} on a {'x'.join(map(str, shape))} synthetic scan (moderate preset, seed 9000)")
    print(f"   scale 1:    {t1:7.1f} s   IoU {iou(plain.labels.astype(bool), label):.3f}")
    found = iou(auto.labels.astype(bool), label)
    print(f"   scale auto: {ta:7.1f} s   IoU {found:.3f}   x{ta / t1:.2f} of scale 1")
    print(f"   {auto.scale.describe()}")


def slice_part(args) -> None:
    if Path(args.image).is_file():
        image, name = tifffile.imread(args.image).astype(np.float32), Path(args.image).name
    else:
        side = 192 if args.smoke else 1260
        image = make_scan((1, side, side), preset="moderate", rng=9001)["image"][0].astype(np.float32)
        name = f"synthetic {side} x {side} slice"
    if args.smoke:
        image = image[:192, :192]
    ta, auto = best_of_two(segment, image, args.model, precision="fp32", compile=False)
    chosen = auto.scale.scale if auto.scale else 1
    tf, _ = best_of_two(segment, image, args.model, precision="fp32", compile=False, scale=chosen)
    probes = [probe_seconds(image, args.model) for _ in range(2)]
    tp, tc = min(p[0] for p in probes), min(p[2] for p in probes)
    t1, first = timed(segment, image, args.model, precision="fp32", compile=False, scale=1)
    depth_z, side = (8, 192) if args.smoke else (32, args.rate_side)
    # simulating 32 slices of 852^2 takes longer than the whole benchmark: 8 simulated, repeated (the rate
    # does not depend on what the slices hold)
    made = make_scan((min(depth_z, 8), side, side), preset="moderate", rng=9002)["image"]
    deep = np.resize(np.asarray(made, np.float32), (depth_z, side, side))
    td, run = timed(segment, deep, args.model, precision="fp32", compile=False, scale=1)
    depth = resolve_predictor(args.model).tile_depth or 1  # the 3D model sees a 2D image as this many slices
    passes = [4 if result.flips else 1 for result in (first, run)]  # test-time flips: four passes a tile
    rate1 = image.size * depth * passes[0] / t1 / 1e6
    rated = deep.size * passes[1] / td / 1e6
    print(f"2. {name} {image.shape}, {args.model}, defaults (auto) chose scale {chosen}")
    print(f"   defaults:                 {ta:7.2f} s   x{ta / tf:.2f} of scale {chosen} forced (goal <= 1.5)")
    print(f"   scale {chosen} forced:         {tf:7.2f} s")
    print(f"   the probe alone:          {tp:7.2f} s   x{tp / tf:.2f} of the final pass")
    print(
        f"   less its coarsest look:   {tp - tc:7.2f} s   x{(tp - tc) / tf:.2f} (the look, {tc:.2f} s, "
        f"is the run's where it chose that binning; defaults to the forced run: +{ta - tf:.2f} s)"
    )
    print(f"   {auto.scale.describe() if auto.scale else 'scale 1'}")
    print(
        f"   scale 1: {t1:.2f} s, {rate1:.2f} M network voxels/s; "
        f"{depth_z} x {side} x {side} volume: {td:.2f} s, {rated:.2f} M/s; "
        f"ratio {rate1 / rated:.2f} (goal >= 0.5)"
    )


def deep_part(args) -> None:
    shape = tuple(int(s) for s in args.deep.split(","))
    # simulating 250 slices of 852^2 takes longer than the run it times: 32 simulated slices, repeated
    made = make_scan((min(shape[0], 32), *shape[1:]), preset="moderate", rng=9003)["image"]
    image = np.resize(np.asarray(made, np.float32), shape)
    tp, choice, _ = probe_seconds(image, args.model)
    tr, _ = timed(segment, image, args.model, precision="fp32", compile=False, scale=choice.scale)
    size = "x".join(map(str, shape))
    print(f"3. {size} synthetic volume: probe {tp:.1f} s, run at scale {choice.scale} {tr:.1f} s")
    print(f"   the probe's share of an auto run: {tp / (tp + tr):.3f} (goal < 0.10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="24,512,512")
    parser.add_argument("--model", default="unet3d_default")
    parser.add_argument("--image", default=str(REAL))
    parser.add_argument("--rate-side", type=int, default=852)
    parser.add_argument("--deep", default="250,852,852", help="z,y,x of part 3 (0: skip it)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.shape, args.deep = "4,160,160", "8,160,160"
    if args.threads:
        torch.set_num_threads(args.threads)
    segment(np.zeros((4, 128, 128), np.float32), args.model, precision="fp32", scale=1)  # warm-up
    volume_part(args)
    slice_part(args)
    if args.deep != "0":
        deep_part(args)


if __name__ == "__main__":
    main()
