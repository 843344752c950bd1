"""Is the synthetic benchmark hard enough? Classical methods vs a tiny U-Net.

Makes ``realistic`` scans (4 to train, 2 held out), segments the held-out
ones with every classical baseline (the random forest trained on a training
scan) and with a tiny 2D U-Net trained from scratch for a few CPU minutes
on random patches of the training scans, and prints IoU / BF1 / BDE side by
side with the two checks of the synthetic-data issue:
Otsu IoU < 0.7, and the best classical method >= 0.05 IoU below the U-Net.

    python benchmarks/synth_difficulty.py [--minutes 4] [--shape 16 160 160]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F


def normalise(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image[:: max(1, image.shape[0] // 8)], (1, 99))
    return ((image - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def train_unet(images, labels, minutes: float, seed: int = 0):
    from dendriteseg.models import build_model

    torch.manual_seed(seed)
    gen = np.random.default_rng(seed)
    model = build_model("unet2d", base=8, depth=3)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    patch, batch = 96, 16
    deadline = time.perf_counter() + minutes * 60
    steps = 0
    model.train()
    while time.perf_counter() < deadline:
        xs, ys = [], []
        for _ in range(batch):
            k = gen.integers(len(images))
            z = gen.integers(images[k].shape[0])
            y0 = gen.integers(images[k].shape[1] - patch + 1)
            x0 = gen.integers(images[k].shape[2] - patch + 1)
            x = images[k][z, y0 : y0 + patch, x0 : x0 + patch]
            y = labels[k][z, y0 : y0 + patch, x0 : x0 + patch]
            if gen.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
            rot = gen.integers(4)
            xs.append(np.rot90(x, rot).copy())
            ys.append(np.rot90(y, rot).copy())
        x = torch.from_numpy(np.stack(xs))[:, None]
        y = torch.from_numpy(np.stack(ys)).long()
        logits = model(x)
        prob = logits.softmax(1)[:, 1]
        dice = 1 - (2 * (prob * y).sum() + 1) / (prob.sum() + y.sum() + 1)
        loss = F.cross_entropy(logits, y) + dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    model.eval()
    return model, steps


@torch.inference_mode()
def predict(model, image: np.ndarray) -> np.ndarray:
    out = np.empty(image.shape, np.uint8)
    for z0 in range(0, image.shape[0], 8):
        logits = model(torch.from_numpy(image[z0 : z0 + 8])[:, None])
        out[z0 : z0 + 8] = (logits[:, 1] > logits[:, 0]).numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--shape", type=int, nargs=3, default=[16, 160, 160])
    parser.add_argument("--preset", default="realistic")
    args = parser.parse_args()
    torch.set_num_threads(2)

    from dendriteseg.baselines import segment_with_baseline
    from dendriteseg.evaluation import evaluate
    from dendriteseg.synth.scan import make_scan

    shape = tuple(args.shape)
    start = time.perf_counter()
    train = [make_scan(shape, preset=args.preset, rng=100 + i) for i in range(4)]
    test = [make_scan(shape, preset=args.preset, rng=200 + i) for i in range(2)]
    cnr = ", ".join(f"{s['meta']['cnr']:.2f}" for s in test)
    made = time.perf_counter() - start
    print(f"{args.preset} scans {shape}: 4 train, 2 test, made in {made:.0f} s; test CNR {cnr}")
    rows: dict[str, list] = {}
    for method in ("otsu", "kmeans", "emmpm", "forest"):
        extra = (
            {"train_image": train[0]["image"], "train_label": train[0]["label"]} if method == "forest" else {}
        )
        rows[method] = [
            evaluate(segment_with_baseline(method, s["image"], rng=0, **extra), s["label"]) for s in test
        ]
    model, steps = train_unet(
        [normalise(s["image"]) for s in train], [s["label"] for s in train], args.minutes
    )
    rows[f"tiny U-Net ({args.minutes:g} min, {steps} steps)"] = [
        evaluate(predict(model, normalise(s["image"])), s["label"]) for s in test
    ]
    print(f"{'method':34s} {'IoU %':>7s} {'BF1 %':>7s} {'BDE px':>7s}")
    iou = {}
    for name, results in rows.items():
        iou[name] = float(np.mean([r.iou for r in results]))
        bf1 = float(np.mean([r.bf1 for r in results]))
        bde = float(np.mean([r.bde for r in results]))
        print(f"{name:34s} {100 * iou[name]:7.2f} {100 * bf1:7.2f} {bde:7.3f}")
    unet = iou[list(rows)[-1]]
    best = max(v for k, v in iou.items() if "U-Net" not in k)
    print(
        f"Otsu IoU < 0.7: {iou['otsu'] < 0.7}; best classical {best:.3f} vs U-Net {unet:.3f}: "
        f"gap {unet - best:+.3f} (>= 0.05: {unet - best >= 0.05})"
    )


if __name__ == "__main__":
    main()
