"""How often the trust report is right: ``trust`` against IoU < 0.70, on scans with known answers.

The scans span where the default model is right and where it is wrong,
none of them from a dataset it trained on (seeds 9100 and up):

* ``benchmark``: the CT forward model's ``moderate`` preset;
* ``real`` / ``field``: that model with the ``real`` or ``field`` variety drawn;
* ``band``: 2D slices with a dark edge line, a grainy band and a constant
  or dark exterior around the sample (as real Al-Zn reconstructions are);
* ``faint``: the solid 3-5 % darker than the melt;
* ``weak``: the solid 10 % darker (the pores, darker than any solid, are
  then the grey levels' only clear dark mode);
* ``rings``: broad rings and arcs as strong as the dendrite contrast
  (``real_like.py``'s row);
* ``melt``: no solid at all (right when at most 0.05 % is called dendrite);
* ``other`` / ``unseen``: the image-domain generator and the skeleton
  generator of ``other_generator.py`` and ``unseen_generator.py``;
* ``gamma``: benchmark scans through a grey-scale curve (gamma 0.4 and 2.5).

Every scan is segmented with the defaults (``segment``; 2D slices as 2D
images). The table gives each scan's IoU, verdict and measures; last the
confusion of ``trust == "low"`` against ``IoU < 0.70`` (a scan with nothing
to find counts as wrong where more than 0.05 % is called).

    python benchmarks/trust_calibration.py [--model M] [--count 2] [--hysteresis 0.9] [--save runs/trust.json]
        [--smoke]
    python benchmarks/trust_calibration.py --again runs/trust.json   # the verdicts of saved measures,
                                                                     # under today's limits
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from other_generator import other_scan  # noqa: E402
from real_like import broad_rings  # noqa: E402
from unseen_generator import unseen_scan  # noqa: E402

from dendriteseg.infer import segment  # noqa: E402
from dendriteseg.infer.trust import HISTOGRAM_BIMODAL, reasons_for  # noqa: E402
from dendriteseg.metrics import score_slices, summarize  # noqa: E402
from dendriteseg.synth.scan import make_scan  # noqa: E402

LOW_IOU = 0.70
EMPTY_CALLED = 0.0005


def banded(
    image: np.ndarray, label: np.ndarray, radius: float, gen: np.random.Generator, dark: bool
) -> tuple:
    """A dark edge line at ``radius``, grains out to 1.12 x it (mean near the melt's), then one grey."""
    ny, nx = image.shape[-2:]
    r = np.hypot(*(np.mgrid[:ny, :nx] - np.array([(ny - 1) / 2, (nx - 1) / 2])[:, None, None]))
    inside = image[..., r < 0.8 * radius]
    melt, spread = np.percentile(inside, 80), np.percentile(inside, 90) - np.percentile(inside, 10)
    out = image.astype(np.float32).copy()
    out[..., (r >= radius) & (r < radius + 1.5)] = melt - spread
    grains = ndimage.gaussian_filter(gen.standard_normal(image.shape), gen.uniform(1.0, 2.5))
    band = (r >= radius + 1.5) & (r < 1.12 * radius + 2)
    out[..., band] = (melt + spread * 1.2 * grains / grains.std())[..., band]
    out[..., r >= 1.12 * radius + 2] = 0.0 if dark else melt
    label = label.copy()
    label[..., r >= radius] = 0
    return out, label


def cases(count: int, size: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    shape = (8, size, size)
    out = []
    for i in range(count):
        s = make_scan(shape, preset="moderate", rng=9100 + i)
        out.append(("benchmark", s["image"], s["label"]))
        image = s["image"] - s["image"].min()
        for gamma in (0.4, 2.5):
            out.append((f"gamma {gamma}", (image / image.max()) ** gamma, s["label"]))
        for variety in ("real", "field"):
            s = make_scan(shape, preset="moderate", vary=True, variety=variety, rng=9200 + i)
            out.append((variety, s["image"], s["label"]))
        s = make_scan(shape, preset="moderate", rng=9300 + i, radius_fraction=0.4)
        gen = np.random.default_rng(9300 + i)
        for dark in (False, True):
            image, label = banded(s["image"], s["label"], 0.4 * size, gen, dark)
            out.append((f"band {'dark' if dark else 'grey'} (2D)", image[4], label[4]))
        s = make_scan(shape, preset="moderate", rng=9400 + i, solid_ratio=0.96, solid_ratio_spread=0.0)
        out.append(("faint", s["image"], s["label"]))
        s = make_scan(shape, preset="moderate", rng=9500 + i, solid_ratio=1.0, solid_ratio_spread=0.0)
        out.append(("melt", s["image"], np.zeros_like(s["label"])))
        s = make_scan(shape, preset="moderate", rng=9800 + i, solid_ratio=0.9, solid_ratio_spread=0.0)
        out.append(("weak", s["image"], s["label"]))
        s = make_scan(shape, preset="moderate", rng=9900 + i)
        out.append(("rings", *broad_rings(s["image"], s["label"], i, np.random.default_rng(9900 + i))))
        image, label, _ = other_scan(shape, 9600, i)
        out.append(("other", image, label))
        image, label, _ = unseen_scan(shape, 9700, i)
        out.append(("unseen", image, label))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--count", type=int, default=2, help="scans of each kind")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--hysteresis", type=float, default=0.9, help="the labelling rule (0.5: p > 0.5)")
    parser.add_argument("--save", type=Path, default=None, help="write every scan's measures here (JSON)")
    parser.add_argument("--smoke", action="store_true", help="one scan of each kind, 64 px")
    parser.add_argument("--again", type=Path, default=None, help="judge the measures saved by --save")
    args = parser.parse_args()
    if args.again:
        rows = json.loads(args.again.read_text())
        for r in rows:
            m = dict(r["measures"])
            m["histogram_share"] = (
                m["histogram_share"] if m["histogram_bimodality"] >= HISTOGRAM_BIMODAL else 0.0
            )
            r["trust"] = "low" if reasons_for(m) else "ok"
            reasons = "; ".join(reasons_for(m))
            print(f"{r['scan']:22s} {r['iou']:6.3f} {100 * r['called']:6.2f}% {r['trust']:>5s}  {reasons}")
        confusion(rows)
        return
    count, size = (1, 64) if args.smoke else (args.count, args.size)
    rows = []
    print(f"{'scan':22s} {'IoU':>6s} {'called':>7s} {'trust':>5s}  reasons")
    for name, image, label in cases(count, size):
        start = time.perf_counter()
        result = segment(image.astype(np.float32), args.model, hysteresis=args.hysteresis)
        pred = result.labels if result.labels.ndim == 3 else result.labels[None]
        truth = label if label.ndim == 3 else label[None]
        iou = summarize(score_slices(pred, truth)).iou if truth.any() else float("nan")
        wrong = (pred.mean() > EMPTY_CALLED) if not truth.any() else iou < LOW_IOU
        trust = result.trust
        rows.append(
            {
                "scan": name,
                "iou": iou,
                "called": float(pred.mean()),
                "wrong": bool(wrong),
                "trust": trust.trust,
                "measures": trust.measures,
            }
        )
        reasons = "; ".join(trust.reasons)
        print(
            f"{name:22s} {iou:6.3f} {100 * pred.mean():6.2f}% {trust.trust:>5s}  {reasons}"
            f"  ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    confusion(rows)
    if args.save:
        args.save.write_text(json.dumps(rows, indent=1))


def confusion(rows: list[dict]) -> None:
    low = np.array([r["trust"] == "low" for r in rows])
    wrong = np.array([r["wrong"] for r in rows])
    print(
        f"\nverdict right on {int((low == wrong).sum())} of {len(rows)} scans: "
        f"low where wrong {int((low & wrong).sum())}/{int(wrong.sum())}, "
        f"ok where right {int((~low & ~wrong).sum())}/{int((~wrong).sum())}"
    )


if __name__ == "__main__":
    main()
