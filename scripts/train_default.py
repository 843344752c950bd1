"""Rebuild a shipped model from its recipe, from an empty folder, the paper's two-step way.

    python scripts/train_default.py recipes/unet3d_default.yaml [--work runs/unet3d_default]
        [--init MODEL] [--scale 1.0] [--preset tiny] [--threads N] [--ship]

1. build the recipe's datasets (the benchmark, seed 0, and the extra ones);
2. pretrain on the noisy labels of all of them, fine-tune on the exact
   groups (the benchmark's train split and every exact group of the extras),
   validating on the benchmark's exact val groups;
3. with the recipe's ``wise``, keep the weight interpolation between the
   starting and the continued model that the benchmark's val groups allow;
4. score the benchmark's exact test groups (never trained on).

A recipe that continues another (``init_recipe``) builds that one first;
``--init MODEL`` starts from a model file instead (how a shipped model is
continued from the one it replaces).

Everything is seeded and the step counts are fixed, so the same command on
the same machine gives the same weights; a killed run resumes when started
again with the same ``--work``. ``--scale 0.05 --preset tiny`` runs the
whole recipe end to end in minutes (fewer steps and datasets, tiny scans):
a check that it runs, not a model to ship. ``--ship`` writes the model to
``src/dendriteseg/weights/<name>.safetensors`` (float16 where that leaves
the labels as they are) and updates ``<name>.json``: the test scores, the
recipe and the command; every other key (held-out scores measured by the
benchmarks) is kept. It refuses a model whose IoU on the benchmark's exact
test groups falls more than ``SHIP_TOLERANCE`` below the model it replaces,
and prints the same over the test scans whose dendrites show
(``dendriteseg.train.recipe.score_test_groups``); ``--force REASON`` ships anyway
and records the reason in the JSON. A new default must also lead on the
mechanism rows of ``benchmarks/real_like.py``, which this script does not
run. The history of earlier models is in
``src/dendriteseg/weights/CHANGELOG.md``.
"""

from __future__ import annotations

import dendriteseg  # noqa: F401 - before torch, which reads its huge-page switch once (dendriteseg.heap)

# isort: split

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dendriteseg.io import write_text_atomic
from dendriteseg.models.files import WEIGHTS, ModelInfo, load_model, save_model
from dendriteseg.scoring import score_model
from dendriteseg.train.recipe import exact_volumes, load_recipe, recipe_to_dict, run_recipe, score_test_groups

SHIP_TOLERANCE = 0.01
"""How much IoU on the benchmark's exact test groups a new model may lose to the one it replaces."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--work", type=Path, default=None, help="default: runs/<recipe name>")
    parser.add_argument("--init", type=Path, default=None, help="start from this model file")
    parser.add_argument("--scale", type=float, default=1.0, help="share of steps and extra datasets")
    parser.add_argument("--preset", default=None, help="dataset size preset instead of the recipe's")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--ship", action="store_true", help="write the model and its JSON into the package")
    parser.add_argument("--force", metavar="REASON", help="ship where the rule refuses, and why")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    if args.scale != 1.0 or args.preset:
        recipe = recipe.scaled(args.scale, args.preset)
    work = args.work or Path("runs") / recipe.name
    started = time.perf_counter()
    result = run_recipe(
        recipe,
        work,
        on_epoch=lambda stage, epoch, record: print(f"{stage} {epoch}: val {record['val']}", flush=True),
        init=args.init,
    )
    minutes = (time.perf_counter() - started) / 60
    summary = {
        **result.test_scores,
        "minutes": round(minutes, 1),
        "threads": torch.get_num_threads(),
        "recipe_file": str(args.recipe),
        "recipe": recipe_to_dict(recipe),
        "command": "python scripts/train_default.py " + " ".join(sys.argv[1:]),
    }
    if result.wise is not None:
        summary["wise_ft"] = {
            "alpha": result.wise.alpha,
            "val_iou_by_alpha": result.wise.val_iou,
            "rule": "the largest alpha whose exact val IoU is within the recipe's tolerance of alpha 0's",
        }
        print(f"wise: alpha {result.wise.alpha:g}; val IoU by alpha {result.wise.val_iou}", flush=True)
    print("exact test groups:", json.dumps(result.test_scores), f"({minutes:.1f} min)", flush=True)
    write_text_atomic(work / "result.json", json.dumps(summary, indent=2) + "\n")
    if args.ship:
        ship(result.model, result.benchmark, recipe.name, summary, force=args.force)


def ship(best: Path, bench: Path, name: str, summary: dict, *, force: str | None = None) -> None:
    """Write the model into the package (float16 where labels agree) and update its JSON; refuse
    (exit 1) a model that loses more than ``SHIP_TOLERANCE`` IoU on the exact test groups to the
    model shipped under that name today, unless ``force`` gives the reason to ship it anyway."""
    target = WEIGHTS / f"{name}.safetensors"
    if target.is_file():
        today = score_test_groups(target, bench)
        rule = {
            "rule": f"exact test groups' IoU at most {SHIP_TOLERANCE} below the model replaced",
            "replaced": {"iou": today["iou"], "shown_iou": today["shown"]["iou"]},
            "new": {"iou": summary["iou"], "shown_iou": summary["shown"]["iou"]},
        }
        print(
            f"{name} today -> new: test groups {today['iou']:.4f} -> {summary['iou']:.4f}, scans whose "
            f"dendrites show {today['shown']['iou']:.4f} -> {summary['shown']['iou']:.4f}",
            flush=True,
        )
        if summary["iou"] < today["iou"] - SHIP_TOLERANCE:
            if not force:
                raise SystemExit(f"not shipped: more than {SHIP_TOLERANCE} below the model replaced")
            rule["shipped_anyway_because"] = force
        summary = {**summary, "shipping_rule": rule}
    model, info = load_model(best)
    tests = exact_volumes(bench, "test")
    provenance = {**info.provenance, "test_scores": summary, "script": "scripts/train_default.py"}
    final = ModelInfo(info.architecture, info.arguments, info.normalisation, provenance)
    save_model(target, model, final, half=True)
    options = {"window": (0.0, 1.0), "device": "cpu", "precision": "fp32", "keep_labels": True}
    full, half = score_model(best, tests, **options), score_model(target, tests, **options)
    agree = sum(int((a == b).sum()) for a, b in zip(full.labels, half.labels, strict=True))
    agree /= sum(v.label.size for v in tests)
    if agree < 0.999:  # keep float32 if half-precision storage changes the labels noticeably
        save_model(target, model, final)
    path = WEIGHTS / f"{name}.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    record.update(
        summary, stored_as="float16" if agree >= 0.999 else "float32", float16_label_agreement=agree
    )
    write_text_atomic(path, json.dumps(record, indent=2, default=float) + "\n")
    print(f"shipped {target} (float16 labels agree {agree:.5f}, IoU {np.round(half['iou'], 4)})")


if __name__ == "__main__":
    main()
