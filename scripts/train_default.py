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
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dendriteseg.data import LabelledVolume, read_manifest, select
from dendriteseg.metrics import score_slices, summarize
from dendriteseg.models.files import ModelInfo, load_model, read_model_info, save_model
from dendriteseg.synth.dataset import build_dataset
from dendriteseg.train import train
from dendriteseg.train.config import config_from_dict

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "dendriteseg" / "weights"


def steps_for(minutes: float, seconds_per_step: float) -> int:
    return max(1, int(minutes * 60 / seconds_per_step))


def time_one_step(settings: dict, manifest: Path, work: Path) -> float:
    """Seconds per training step, without the per-epoch validation and saving."""
    times = []
    for steps in (3, 13):
        probe = config_from_dict(
            {
                **settings,
                "data": str(manifest),
                "out": tempfile.mkdtemp(prefix="probe", dir=work),
                "epochs": 1,
                "steps_per_epoch": steps,
            }
        )
        start = time.perf_counter()
        train(probe, resume=False)
        times.append(time.perf_counter() - start)
        shutil.rmtree(probe.out, ignore_errors=True)
    return max((times[1] - times[0]) / 10, 0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/default"))
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--model", default="unet3d", choices=["unet3d", "unet2d", "fcdense3d"])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3, help="poolings (3 = a 4-level U-Net)")
    parser.add_argument("--finetune-steps", type=int, default=None, help="override the 20%% share")
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
    if args.finetune_steps:
        ft_steps = args.finetune_steps
    epochs_pre, epochs_ft = 8, 4
    print(f"{per_step:.2f} s/step -> pretrain {pre_steps} steps, fine-tune {ft_steps} steps", flush=True)

    def stage(name: str, quality: str, lr: float, epochs: int, steps: int):
        return config_from_dict(
            {
                **common,
                "data": str(manifest),
                "out": str(args.work / f"{args.model}_{name}"),
                "train_quality": quality,
                "lr": lr,
                "epochs": epochs,
                "steps_per_epoch": math.ceil(steps / epochs),
            }
        )

    pre = stage("pre", "noisy", 2e-3, epochs_pre, pre_steps)
    if args.pretrained is None:
        best_pre = train(pre, on_epoch=lambda e, r: print(f"pretrain {e}: {r['val']}", flush=True))
    else:
        best_pre = args.pretrained
    ft = stage("ft", "exact", 3e-4, epochs_ft, ft_steps)
    best_ft = train(ft, parent=best_pre, on_epoch=lambda e, r: print(f"finetune {e}: {r['val']}", flush=True))
    model, info = load_model(best_ft)
    tests = select(read_manifest(manifest), quality="exact", split="test")
    volumes = [LabelledVolume.from_entry(entry) for entry in tests]
    result = score(best_ft, volumes)
    parent = read_model_info(best_pre).provenance
    result.update(
        test_groups=len(tests),
        seconds_per_step_probe=per_step,
        seconds_per_step_pretrain=_seconds_per_step(parent),
        seconds_per_step_finetune=_seconds_per_step(info.provenance),
        pretrain_steps=_steps_run(parent),
        finetune_steps=_steps_run(info.provenance),
        minutes=args.minutes,
        preset=args.preset,
        inference="dendriteseg.infer.segment, default tiles",
    )
    print("exact test groups:", json.dumps(result), flush=True)
    provenance = {**info.provenance, "test_scores": result, "script": "scripts/train_default.py"}
    name = f"{args.model}_default"
    target = WEIGHTS / f"{name}.safetensors"
    final_info = ModelInfo(info.architecture, info.arguments, info.normalisation, provenance)
    save_model(target, model, final_info, half=True)
    half = score(target, volumes)
    agree = _agreement(best_ft, target, volumes)
    print(f"float16 file: IoU {half['iou']:.4f} (float32 {result['iou']:.4f}); labels agree {agree:.5f}")
    if agree < 0.999:  # keep float32 if half precision storage changes the labels noticeably
        save_model(target, model, final_info)
    result["stored_as"] = "float16" if agree >= 0.999 else "float32"
    result["float16_label_agreement"] = agree
    (WEIGHTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


def _steps_run(provenance: dict) -> int:
    config = provenance.get("config", {})
    return int(config.get("steps_per_epoch", 0)) * len(provenance.get("history", []))


def _seconds_per_step(provenance: dict) -> float:
    """Measured training seconds per step (from the per-epoch patches/s in the history)."""
    batch = int(provenance.get("config", {}).get("batch", 1))
    rates = [h["patches_per_second"] for h in provenance.get("history", []) if h.get("patches_per_second")]
    return float(np.mean([batch / r for r in rates])) if rates else float("nan")


def _labels(model_file: Path, volumes: list) -> list:
    from dendriteseg.infer import segment

    # the images are already normalised (window 0..1), as in validation
    return [
        segment(v.image, model_file, window=(0.0, 1.0), device="cpu", compile=False).labels for v in volumes
    ]


def score(model_file: Path, volumes: list) -> dict:
    predictions = _labels(model_file, volumes)
    scores = [summarize(score_slices(p, v.label)) for p, v in zip(predictions, volumes, strict=True)]
    return {k: float(np.nanmean([getattr(s, k) for s in scores])) for k in ("accuracy", "iou", "bf1", "bde")}


def _agreement(a: Path, b: Path, volumes: list) -> float:
    pairs = zip(_labels(a, volumes), _labels(b, volumes), strict=True)
    same = sum(int((x == y).sum()) for x, y in pairs)
    return same / sum(v.label.size for v in volumes)


if __name__ == "__main__":
    main()
