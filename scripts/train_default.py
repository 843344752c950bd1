"""Train the shipped default model, reproducibly, the paper's two-step way.

1. make the benchmark dataset (``dendriteseg synth dataset``, preset small,
   seed 0) and, for variety, more datasets from other seeds (``--extra-seeds``,
   like the benchmark; ``--wide-seeds``, of the ``wide`` variety: more
   air, larger and smaller dendrites, more noise and contrast; and
   ``--holder-seeds``, wide with a holder tube around most samples;
   ``--image-seeds``, painted in the image domain by a second generator);
2. pretrain a residual 3D U-Net on the noisy-label scans of all of them;
3. fine-tune it on the exact groups (the benchmark's train split plus every
   exact group of the extra seeds), validating on the benchmark's exact val
   groups;
4. score the benchmark's exact test groups (never trained on) and write the
   model to ``src/dendriteseg/weights/unet3d_default.safetensors`` with the
   scores in its provenance and in ``unet3d_default.json``.

    python scripts/train_default.py [--work runs/default] [--minutes 40] [--model unet3d]
    python scripts/train_default.py --model unet2d --no-ship   # the 2D baseline, same budget

The shipped models (``--model unet3d | unet2d | fcdense3d``; each JSON beside
the weights lists the exact commands) were trained this way, with
``--no-ship`` and then ``--ship-from WORK/<model>_ft/best.safetensors``;
``--pretrained FT_MODEL --work OTHER`` fine-tunes a fine-tuned model further;
``--init MODEL --pretrain-lr 1e-3`` continues both steps from a trained
model (how the current unet3d and unet2d defaults were made from the
previous ones once the wide datasets existed; their JSON files say so).
``--set KEY=VALUE`` changes a training setting of both steps (e.g.
``augment.curve=0.5``), ``--finetune-set KEY=VALUE`` of fine-tuning only.
Commands recorded before the image-domain datasets existed (the older
models in the JSON files' ``init_model`` chains) repeat with
``--image-seeds`` given no seeds.

Everything is seeded; the same command on the same machine gives the same
weights. ``--minutes`` is a wall-clock budget split 80/20 between the two
steps (steps per second are probed first); ``--pretrain-steps`` and
``--finetune-steps`` fix the step counts instead. Every model sees the same
voxels per step (8 patches of 4 x 96 x 96, or 32 slices of 96 x 96 for 2D
models), and the learning rate follows a cosine schedule in each step.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dendriteseg.data import LabelledVolume, read_manifest, select
from dendriteseg.io import write_text_atomic
from dendriteseg.metrics import score_slices, summarize
from dendriteseg.models.files import ModelInfo, load_model, read_model_info, save_model
from dendriteseg.synth.dataset import build_dataset
from dendriteseg.train import train
from dendriteseg.train.config import config_from_dict

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "dendriteseg" / "weights"


def steps_for(minutes: float, seconds_per_step: float) -> int:
    return max(1, int(minutes * 60 / seconds_per_step))


def time_one_step(settings: dict, manifest: Path, work: Path, overrides: list[str]) -> float:
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
            },
            overrides,
        )
        start = time.perf_counter()
        train(probe, resume=False)
        times.append(time.perf_counter() - start)
        shutil.rmtree(probe.out, ignore_errors=True)
    return max((times[1] - times[0]) / 10, 0.05)


def merged_manifest(
    work: Path,
    seeds: list[int],
    preset: str,
    wide_seeds: list[int] = (),
    holder_seeds: list[int] = (),
    image_seeds: list[int] = (),
) -> tuple[Path, Path]:
    """The benchmark manifest (seed 0) and a training manifest that adds other seeds' scans.

    Extra seeds add their noisy scans to the noisy train split and all their
    exact groups to the exact train split; the benchmark's exact val and
    test groups stay as they are, so scores stay comparable. ``wide_seeds``
    do the same with datasets of the ``wide`` variety (more air, dendrite
    sizes, noise and contrast than the benchmark), ``holder_seeds`` with
    a holder tube around 60 % of the samples as well, ``image_seeds`` with
    scans painted in the image domain (a second generator).
    """
    bench = build_dataset(work / "data", preset=preset, seed=0)
    entries = [_relative(e, bench.parent, work) for e in json.loads(bench.read_text())["entries"]]
    extras = [(f"data_seed{s}", f"s{s}", s, "standard", 0.0, "ct") for s in seeds]
    extras += [(f"data_wide{s}", f"w{s}", s, "wide", 0.0, "ct") for s in wide_seeds]
    extras += [(f"data_holder{s}", f"h{s}", s, "wide", 0.6, "ct") for s in holder_seeds]
    extras += [(f"data_image{s}", f"i{s}", s, "standard", 0.0, "image") for s in image_seeds]
    for folder, prefix, seed, variety, holder, generator in extras:
        extra = build_dataset(
            work / folder, preset=preset, seed=seed, variety=variety, holder=holder, generator=generator
        )
        for entry in json.loads(extra.read_text())["entries"]:
            entry = _relative(entry, extra.parent, work)
            entry.update(name=f"{prefix}_{entry['name']}", split="train", group=None)
            entries.append(entry)
    path = work / "manifest_train.json"
    write_text_atomic(path, json.dumps({"entries": entries}, indent=2) + "\n")
    return bench, path


def _relative(entry: dict, folder: Path, work: Path) -> dict:
    prefix = folder.relative_to(work)
    paths = ("image", "label", "meta", "exact_label")
    return {k: (str(prefix / v) if k in paths else v) for k, v in entry.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/default"))
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--model", default="unet3d", choices=["unet3d", "unet2d", "fcdense3d"])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3, help="poolings (3 = a 4-level U-Net)")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="instead of the 80%% share")
    parser.add_argument("--finetune-steps", type=int, default=None, help="instead of the 20%% share")
    for flag, seeds, what in (
        ("--extra-seeds", [1, 2], "extra datasets like the benchmark"),
        ("--wide-seeds", [3, 4], "extra datasets of the wide variety"),
        ("--holder-seeds", [5, 6], "extra wide datasets with a holder tube around 60 %% of the samples"),
        (
            "--image-seeds",
            [8, 9],
            "extra datasets painted in the image domain (synth dataset --generator image)",
        ),
    ):
        parser.add_argument(flag, type=int, nargs="*", default=seeds, help=what)
    parser.add_argument(
        "--no-ship", action="store_true", help="write the model and scores to WORK only (comparisons)"
    )
    parser.add_argument(
        "--ship-from",
        type=Path,
        default=None,
        help="skip training: score and ship this fine-tuned model (e.g. WORK/unet2d_ft/best.safetensors)",
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start pretraining from this model's weights (e.g. a shipped model) instead of at random",
    )
    parser.add_argument("--pretrain-lr", type=float, default=2e-3, help="peak learning rate of pretraining")
    for flag, dest, what in (
        ("--set", "overrides", "a setting of both steps, as in `dendriteseg train --set`"),
        ("--finetune-set", "finetune_overrides", "a setting of fine-tuning only, applied after --set"),
    ):
        parser.add_argument(flag, dest=dest, action="append", default=[], metavar="KEY=VALUE", help=what)
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
    bench, manifest = merged_manifest(
        args.work, args.extra_seeds, args.preset, args.wide_seeds, args.holder_seeds, args.image_seeds
    )
    if args.ship_from is not None:
        parent_file = read_model_info(args.ship_from).provenance.get("parent", {}).get("file")
        finish(args, bench, args.ship_from, Path(parent_file) if parent_file else args.ship_from, None)
        return
    model_args = (
        {"base": args.base, "depth": args.depth}
        if args.model != "fcdense3d"
        else {"base": args.base, "growth": 8}
    )
    patch = [4, 96, 96] if args.model != "unet2d" else [1, 96, 96]
    batch = 8 if args.model != "unet2d" else 32  # the same voxels per step
    common = {
        "model": args.model,
        "model_args": model_args,
        "patch": patch,
        "batch": batch,
        "foreground": 0.6,
        "boundary_weight": 1.0,
        "seed": 0,
    }
    per_step = None
    if args.pretrain_steps is None or args.finetune_steps is None:
        per_step = time_one_step(common, manifest, args.work, args.overrides)
    total = steps_for(args.minutes, per_step * 1.1) if per_step else 0
    pre_steps = args.pretrain_steps or int(total * 0.8)
    ft_steps = args.finetune_steps or max(1, int(total * 0.2))
    epochs_pre, epochs_ft = 8, 4
    probe = f"{per_step:.2f} s/step -> " if per_step else ""
    print(f"{probe}pretrain {pre_steps} steps, fine-tune {ft_steps} steps", flush=True)

    def stage(name: str, quality: str, lr: float, epochs: int, steps: int, warmup: int, overrides: list):
        return config_from_dict(
            {
                **common,
                "data": str(manifest),
                "out": str(args.work / f"{args.model}_{name}"),
                "train_quality": quality,
                "lr": lr,
                "lr_schedule": "cosine",
                "warmup_steps": warmup,
                "epochs": epochs,
                "steps_per_epoch": math.ceil(steps / epochs),
            },
            overrides,
        )

    pre_warmup = min(200, pre_steps // 10)
    pre = stage("pre", "noisy", args.pretrain_lr, epochs_pre, pre_steps, pre_warmup, args.overrides)
    if args.pretrained is None:
        best_pre = train(
            pre, parent=args.init, on_epoch=lambda e, r: print(f"pretrain {e}: {r['val']}", flush=True)
        )
    else:
        best_pre = args.pretrained
    ft_overrides = args.overrides + args.finetune_overrides
    ft = stage("ft", "exact", 5e-4, epochs_ft, ft_steps, min(50, ft_steps // 10), ft_overrides)
    best_ft = train(ft, parent=best_pre, on_epoch=lambda e, r: print(f"finetune {e}: {r['val']}", flush=True))
    finish(args, bench, best_ft, best_pre, per_step)


def finish(
    args: argparse.Namespace, bench: Path, best_ft: Path, best_pre: Path, per_step: float | None
) -> None:
    """Score the benchmark's exact test groups; ship the model (float16 where labels agree)."""
    model, info = load_model(best_ft)
    tests = select(read_manifest(bench), quality="exact", split="test")
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
        pretrain_best_epoch=_best_epoch(parent),
        finetune_best_epoch=_best_epoch(info.provenance),
        minutes=args.minutes if args.ship_from is None else None,
        preset=args.preset,
        extra_seeds=args.extra_seeds,
        wide_seeds=args.wide_seeds,
        holder_seeds=args.holder_seeds,
        image_seeds=args.image_seeds,
        init=str(args.init) if args.init else parent.get("parent", {}).get("file"),
        settings=args.overrides,
        finetune_settings=args.finetune_overrides,
        threads=torch.get_num_threads(),
        inference="dendriteseg.infer.segment, default tiles",
        command="python scripts/train_default.py " + " ".join(sys.argv[1:]),
    )
    print("exact test groups:", json.dumps(result), flush=True)
    if args.no_ship:
        write_text_atomic(args.work / f"{args.model}_result.json", json.dumps(result, indent=2) + "\n")
        return
    provenance = {**info.provenance, "test_scores": result, "script": "scripts/train_default.py"}
    name = f"{info.architecture}_default"
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
    write_text_atomic(WEIGHTS / f"{name}.json", json.dumps(result, indent=2) + "\n")


def _steps_run(provenance: dict) -> int:
    """Steps the whole stage ran (its log), not only those up to the kept checkpoint."""
    config = provenance.get("config", {})
    log = Path(config.get("out", "")) / "log.jsonl"
    epochs = len(log.read_text().splitlines()) if log.is_file() else len(provenance.get("history", []))
    return int(config.get("steps_per_epoch", 0)) * epochs


def _best_epoch(provenance: dict) -> int:
    return len(provenance.get("history", []))


def _seconds_per_step(provenance: dict) -> float:
    """Measured training seconds per step (from the per-epoch patches/s in the history)."""
    batch = int(provenance.get("config", {}).get("batch", 1))
    rates = [h["patches_per_second"] for h in provenance.get("history", []) if h.get("patches_per_second")]
    return float(np.mean([batch / r for r in rates])) if rates else float("nan")


def _labels(model_file: Path, volumes: list) -> list:
    from dendriteseg.infer import segment

    # the images are already normalised (window 0..1), as in validation
    return [
        segment(v.image, model_file, window=(0.0, 1.0), device="cpu", precision="fp32", compile=False).labels
        for v in volumes
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
