"""Train the shipped default model, reproducibly, the paper's two-step way.

1. make a synthetic dataset (``dendriteseg synth dataset``, preset small);
2. pretrain a residual 3D U-Net on the noisy-label scans;
3. fine-tune it on the exact groups (train split), validating on the exact
   val groups;
4. score the exact test groups and write the model to
   ``src/dendriteseg/weights/unet3d_default.safetensors`` with the scores
   in its provenance and in ``unet3d_default.json``.

    python scripts/train_default.py [--work runs/default] [--minutes 40] [--model unet3d]

Everything is seeded; the same command on the same machine gives the same
weights. Times are wall-clock budgets split 80/20 between the two steps.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from dendriteseg.data import LabelledVolume, read_manifest, select
from dendriteseg.metrics import score_slices, summarize
from dendriteseg.models.files import ModelInfo, load_model, save_model
from dendriteseg.synth.dataset import build_dataset
from dendriteseg.train import predict_labels, train
from dendriteseg.train.config import config_from_dict

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "dendriteseg" / "weights"


def steps_for(minutes: float, seconds_per_step: float) -> int:
    return max(1, int(minutes * 60 / seconds_per_step))


def time_one_step(settings: dict, manifest: Path, work: Path) -> float:
    """Seconds per training step, without the per-epoch validation and saving."""
    times = []
    for steps in (2, 6):
        probe = config_from_dict(
            {
                **settings,
                "data": str(manifest),
                "out": str(work / f"probe{steps}"),
                "epochs": 1,
                "steps_per_epoch": steps,
            }
        )
        start = time.perf_counter()
        train(probe, resume=False)
        times.append(time.perf_counter() - start)
    return max((times[1] - times[0]) / 4, 0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/default"))
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--model", default="unet3d", choices=["unet3d", "unet2d", "fcdense3d"])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3, help="poolings (3 = a 4-level U-Net)")
    parser.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        help="skip pretraining: fine-tune this model (e.g. WORK/unet3d_pre/best.safetensors)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = build_dataset(args.work / "data", preset=args.preset, seed=0)
    model_args = (
        {"base": args.base, "depth": args.depth}
        if args.model != "fcdense3d"
        else {"base": args.base, "growth": 8}
    )
    patch = [4, 96, 96] if args.model != "unet2d" else [1, 96, 96]
    batch = 8 if args.model != "unet2d" else 16
    common = {
        "model": args.model,
        "model_args": model_args,
        "patch": patch,
        "batch": batch,
        "foreground": 0.6,
        "boundary_weight": 1.0,
        "seed": 0,
    }
    per_step = time_one_step(common, manifest, args.work)
    total = steps_for(args.minutes, per_step * 1.1)
    pre_steps, ft_steps = int(total * 0.8), max(1, int(total * 0.2))
    epochs_pre, epochs_ft = 8, 4
    print(f"{per_step:.2f} s/step -> pretrain {pre_steps} steps, fine-tune {ft_steps} steps", flush=True)
    pre = config_from_dict(
        {
            **common,
            "data": str(manifest),
            "out": str(args.work / f"{args.model}_pre"),
            "train_quality": "noisy",
            "lr": 2e-3,
            "epochs": epochs_pre,
            "steps_per_epoch": math.ceil(pre_steps / epochs_pre),
        }
    )
    if args.pretrained is None:
        best_pre = train(pre, on_epoch=lambda e, r: print(f"pretrain {e}: {r['val']}", flush=True))
    else:
        best_pre = args.pretrained
    ft = config_from_dict(
        {
            **common,
            "data": str(manifest),
            "out": str(args.work / f"{args.model}_ft"),
            "train_quality": "exact",
            "lr": 3e-4,
            "epochs": epochs_ft,
            "steps_per_epoch": math.ceil(ft_steps / epochs_ft),
        }
    )
    best_ft = train(ft, parent=best_pre, on_epoch=lambda e, r: print(f"finetune {e}: {r['val']}", flush=True))
    model, info = load_model(best_ft)
    tests = select(read_manifest(manifest), quality="exact", split="test")
    scores = []
    for entry in tests:
        vol = LabelledVolume.from_entry(entry)
        pred = predict_labels(model, vol.image, depth=patch[0] if patch[0] > 1 else 4)
        scores.append(summarize(score_slices(pred, vol.label)))
    result = {
        k: float(np.nanmean([getattr(s, k) for s in scores])) for k in ("accuracy", "iou", "bf1", "bde")
    }
    result.update(
        test_groups=len(tests),
        seconds_per_step=per_step,
        pretrain_steps=pre_steps,
        finetune_steps=ft_steps,
        minutes=args.minutes,
        preset=args.preset,
    )
    print("exact test groups:", json.dumps(result), flush=True)
    provenance = {**info.provenance, "test_scores": result, "script": "scripts/train_default.py"}
    name = f"{args.model}_default"
    save_model(
        WEIGHTS / f"{name}.safetensors",
        model,
        ModelInfo(info.architecture, info.arguments, info.normalisation, provenance),
    )
    (WEIGHTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
