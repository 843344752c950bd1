"""What synthetic data costs on this machine.

(a) the phase-field model: ms per step and seconds per whole structure
    (default step count, 25 steps per voxel of side) at 128^3 and 192^3;
(b) one simulated scan of 128 slices of 256 x 256 (moderate preset), with
    astra-toolbox's CPU projector, and the scikit-image fallback on a few
    slices for the ratio.

    python benchmarks/synth_cost.py [--sizes 128 192] [--steps N]
"""

from __future__ import annotations

import argparse
import time


def phase_field(side: int, steps: int | None) -> tuple[float, float, int, float]:
    from dendriteseg.synth.phasefield import grow_dendrites

    grow_dendrites((16, 16, 16), steps=2, rng=0)  # compile outside the timing
    probe = 30
    start = time.perf_counter()
    grow_dendrites((side,) * 3, n_seeds=3, steps=probe, rng=0)
    per_step = (time.perf_counter() - start) / probe
    steps = steps or 25 * side
    start = time.perf_counter()
    result = grow_dendrites((side,) * 3, n_seeds=3, steps=steps, rng=0)
    return per_step * 1e3, time.perf_counter() - start, steps, float(result.label.mean())


def scan(depth: int, side: int, projector: str) -> float:
    from dendriteseg.synth import procedural_dendrites
    from dendriteseg.synth.ct import ScanParams, simulate_scan
    from dendriteseg.synth.scan import PRESETS
    from dendriteseg.synth.structure import grow_phase

    _, phase = procedural_dendrites((depth, side, side), n_seeds=12, rng=0)
    params = ScanParams(**PRESETS["moderate"]["scan"], projector=projector)
    start = time.perf_counter()
    simulate_scan(phase, phase_end=grow_phase(phase, 1.0), params=params, rng=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 192])
    parser.add_argument("--steps", type=int, default=None, help="steps per structure")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.steps = [32], 20
    print("phase field (3 seeds):")
    for side in args.sizes:
        ms, total, steps, fraction = phase_field(side, args.steps)
        print(
            f"  {side}^3: {ms:6.1f} ms/step, {steps} steps in {total:7.1f} s "
            f"({total / 60:.1f} min), solid fraction {fraction:.3f}"
        )
    depth, side, few = (4, 64, 2) if args.smoke else (128, 256, 8)
    print(f"CT scan, {side} x {side} slices, moderate preset (360 views, growth during scan):")
    t_astra = scan(depth, side, "astra")
    print(f"  astra   : {depth} slices in {t_astra:6.1f} s ({t_astra / depth * 1e3:.0f} ms/slice)")
    t_sk = scan(few, side, "skimage")
    print(
        f"  skimage : {few:3d} slices in {t_sk:6.1f} s ({t_sk / few * 1e3:.0f} ms/slice); "
        f"astra is {t_sk / few / (t_astra / depth):.1f}x faster per slice"
    )


if __name__ == "__main__":
    main()
