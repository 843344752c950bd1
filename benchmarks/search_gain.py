"""Does the two-step search earn its time? Searched against fixed settings at the same epochs, per model.

Runs (or resumes) ``dendriteseg reproduce`` and prints, per architecture, the
test IoU and BDE of the fixed-settings rows (noisy pretraining then exact
fine-tuning) and of the searched rows (the two-step search at the same epochs
per step), their difference, and the spread over seeds (standard deviation)
it is to be weighed against; and the paper's untuned-vs-searched comparison
beside it.

    python benchmarks/search_gain.py [OUT] [--budget cpu] [--seeds 3] [--data MANIFEST]
"""

from __future__ import annotations

import argparse

from dendriteseg.reproduce import reproduce
from dendriteseg.reproduce.plan import ARCHITECTURES
from dendriteseg.reproduce.report import summarise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="runs/study_cpu")
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--data", default=None)
    parser.add_argument(
        "--smoke", action="store_true", help="the tiny budget on tiny data: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        from _smoke import smoke_folder, tiny_dataset

        args.out, args.budget, args.seeds = str(smoke_folder() / "study"), "tiny", 1
        args.data = str(tiny_dataset() / "manifest.json")
    result = reproduce(args.out, budget=args.budget, seeds=args.seeds, data=args.data, on_progress=print)
    summary = summarise(result.rows)
    print(f"\n{'architecture':12s}{'rows':>22s}{'IoU':>18s}{'BDE px':>16s}{'seconds':>10s}")
    for arch in ARCHITECTURES:
        for kind in ("noisy", "fixed", "searched"):
            s = summary[f"{arch}_{kind}"]
            iou = f"{s.mean['iou']:.4f} ± {s.sd['iou']:.4f}"
            bde = f"{s.mean['bde']:.2f} ± {s.sd['bde']:.2f}"
            print(f"{arch:12s}{kind + f' ({s.n} seeds)':>22s}{iou:>18s}{bde:>16s}{s.mean['seconds']:>10.0f}")
        fixed, searched, noisy = (summary[f"{arch}_{k}"] for k in ("fixed", "searched", "noisy"))
        spread = max(fixed.sd["iou"], searched.sd["iou"])
        gain = searched.mean["iou"] - fixed.mean["iou"]
        paper = searched.mean["iou"] - noisy.mean["iou"]
        print(
            f"{arch:12s} searched - fixed IoU {gain:+.4f} (spread {spread:.4f}: "
            f"{'more' if abs(gain) > spread else 'less'} than the spread); "
            f"searched - noisy-only IoU {paper:+.4f}\n"
        )
    print(f"report: {result.files[-1]}")


if __name__ == "__main__":
    main()
