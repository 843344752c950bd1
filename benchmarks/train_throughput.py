"""Training throughput (voxels/s, forward + backward + optimiser step) of each model.

Side by side in one run: fp32 eager vs bf16 autocast (+ channels_last_3d
for 3D models), on 4 x 128 x 128 patches (1 x 128 x 128 for 2D models),
batch 4, default model arguments; and fp32 as ``fit`` runs it, with freed
memory kept for the next step (``dendriteseg.heap``; the others leave
glibc's settings alone). Prints the bf16/fp32 and kept/fp32 ratios.

    python benchmarks/train_throughput.py [--steps 5] [--batch 4] [--size 128]
"""

from __future__ import annotations

import dendriteseg  # noqa: F401 - before torch, which reads its huge-page switch once (dendriteseg.heap)

# isort: split

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from dendriteseg.heap import kept_heap


def measure(name: str, *, bf16: bool, steps: int, batch: int, size: int) -> float:
    from dendriteseg.models import build_model

    torch.manual_seed(0)
    model = build_model(name)
    two_d = name.endswith("2d")
    shape = (batch, 1, size, size) if two_d else (batch, 1, 4, size, size)
    x = torch.randn(shape)
    y = (torch.rand(shape[:1] + shape[2:]) > 0.7).long()
    if bf16 and not two_d:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)

    def step() -> None:
        with ctx:
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return x.numel() / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--models", nargs="+", default=["unet2d", "unet3d", "fcdense2d", "fcdense3d"])
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "kept", "bf16"], choices=["fp32", "kept", "bf16"]
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.batch, args.size, args.models, args.precisions = 1, 1, 32, ["unet3d"], ["fp32"]
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, {args.size}^2 in-plane")
    heads = ("fp32 vox/s", "kept heap", "bf16 vox/s")
    print(f"{'model':10s} " + " ".join(f"{h:>12s}" for h in heads) + f" {'kept':>6s} {'bf16':>6s}")
    for name in args.models:
        rate = {}
        for p in args.precisions:
            with kept_heap() if p == "kept" else contextlib.nullcontext():
                rate[p] = measure(name, bf16=p == "bf16", steps=args.steps, batch=args.batch, size=args.size)
        fp32, kept, bf16 = (rate.get(p, float("nan")) for p in ("fp32", "kept", "bf16"))
        print(f"{name:10s} {fp32:12,.0f} {kept:12,.0f} {bf16:12,.0f} {kept / fp32:6.2f} {bf16 / fp32:6.2f}")


if __name__ == "__main__":
    main()
