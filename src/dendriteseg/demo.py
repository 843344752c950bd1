"""The built-in demo: a synthetic scan, segmented, scored and drawn.

``run_demo(out_dir)`` simulates a realistic XCT scan of dendrites (the
CT forward model of :mod:`dendriteseg.synth`), segments it with the
classical baselines (the random forest trained on a second, independent
scan) and with the shipped default network (``unet3d``, through
:func:`dendriteseg.infer.segment`), evaluates each against the exact label
and writes overlays of the best one, a metrics table (Markdown and JSON)
and the volumes themselves.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dendriteseg.baselines import segment_with_baseline
from dendriteseg.errors import InputError
from dendriteseg.evaluation import evaluate, format_table
from dendriteseg.io import write_text_atomic, write_volume
from dendriteseg.report import write_overlays
from dendriteseg.synth.scan import make_scan

log = logging.getLogger(__name__)

DEMO_SHAPE = (40, 192, 192)
DEMO_METHODS = ("otsu", "kmeans", "emmpm", "forest", "unet3d")


def _scan(shape: tuple[int, int, int], seed: int) -> tuple[Any, Any]:
    scan = make_scan(shape, preset="realistic", rng=seed)
    return scan["image"], scan["label"]


def run_demo(
    out_dir: str | Path,
    *,
    shape: tuple[int, int, int] = DEMO_SHAPE,
    seed: int = 0,
    methods: tuple[str, ...] = DEMO_METHODS,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the demo and return ``{method: metrics dict}``; files go to ``out_dir``.

    Written: ``image.tif``, ``label.tif``, ``pred_<method>.tif``,
    ``metrics.md``, ``metrics.json`` and ``overlays/*.png``.
    """
    step = on_step or (lambda message: log.info(message))
    out = Path(out_dir)
    if not out.parent.is_dir():
        raise InputError(f"{out}: folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    step(f"making a {shape[0]} x {shape[1]} x {shape[2]} synthetic scan")
    image, label = _scan(shape, seed)
    train_image, train_label = _scan(shape, seed + 1)
    write_volume(out / "image.tif", image)
    write_volume(out / "label.tif", label)
    results: dict[str, Any] = {}
    predictions = {}
    for method in methods:
        step(f"segmenting with {method}")
        start = time.perf_counter()
        if method == "unet3d":  # the shipped default model
            from dendriteseg.infer import segment

            pred = segment(image).labels
        else:
            extra = {"train_image": train_image, "train_label": train_label} if method == "forest" else {}
            pred = segment_with_baseline(method, image, rng=seed, **extra)
        seconds = time.perf_counter() - start
        write_volume(out / f"pred_{method}.tif", pred)
        scores = evaluate(pred, label)
        results[method] = {**scores.to_dict(per_slice=False), "seconds": round(seconds, 3)}
        predictions[method] = (pred, scores)
    best = max(predictions, key=lambda m: predictions[m][1].iou)
    step(f"drawing overlays of the best method ({best})")
    write_overlays(
        image,
        predictions[best][0],
        label,
        out / "overlays",
        names=("image.tif", f"pred_{best}.tif", "label.tif"),
    )
    lines = [
        f"# dendriteseg demo: {shape[0]} x {shape[1]} x {shape[2]} synthetic scan (seed {seed})",
        "",
        "| method | "
        + " | ".join(name for name, _ in format_table(predictions[best][1])[:4])
        + " | seconds |",
        "|---|" + "---|" * 5,
    ]
    for method, (_, scores) in predictions.items():
        cells = [value for _, value in format_table(scores)[:4]]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {results[method]['seconds']:.2f} |")
    lines += ["", f"Overlays of `{best}` in `overlays/` (white TP, black TN, green FP, pink FN)."]
    write_text_atomic(out / "metrics.md", "\n".join(lines) + "\n")
    write_text_atomic(out / "metrics.json", json.dumps(results, indent=2) + "\n")
    return results
