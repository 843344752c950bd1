"""The study's figures, from the files its steps left: overlays and x-z sections per method (the
paper's Figures 1 and 4-6), a mesh of a segmented volume (Figure 7), learning curves, the searches'
histories and their parameters' importances."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.io.outputs import save_figure
from dendriteseg.report.overlay import confusion_rgb, to_grey
from dendriteseg.reproduce.plan import ARCHITECTURES, BASELINES

log = logging.getLogger(__name__)
FIGURES_DIR = "figures"


def methods_drawn() -> list[str]:
    """Every method of the table, in its order (seed 0's labels are drawn)."""
    cnn = [f"{a}_{kind}" for a in ARCHITECTURES for kind in ("noisy", "fixed", "searched")]
    return [*BASELINES, *cnn]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def draw_figures(study: Any) -> list[Path]:
    """Draw every figure into ``OUT/figures/``; returns the files written."""
    folder = study.out / FIGURES_DIR
    folder.mkdir(exist_ok=True)
    test = study.tests()[0]
    labels = {m: np.load(study.out / "labels" / f"{m}.npy") for m in methods_drawn() if _has(study, m)}
    files = [
        _overlays(test, labels, folder / "overlays.png"),
        _sections(test, labels, folder / "xz_sections.png"),
    ]
    files.append(_curves(study, folder / "learning_curves.png"))
    files.append(_history(study, folder / "search_history.png"))
    files.append(_importances(study, folder / "importances.png"))
    mesh = _mesh(study, folder / "mesh.png")
    return [f for f in [*files, mesh] if f is not None]


def _has(study: Any, method: str) -> bool:
    return (study.out / "labels" / f"{method}.npy").exists()


def _overlays(test: Any, labels: dict[str, np.ndarray], path: Path) -> Path:
    """One test slice: the image, its true label, and each method's labels in the paper's colours."""
    plt = _plt()
    z = test.image.shape[0] // 2
    panels = [("image", np.repeat(to_grey(test.image[z], (0.0, 1.0))[..., None], 3, -1))]
    panels.append(("true label", confusion_rgb(test.label[z] > 0, test.label[z] > 0)))
    panels += [(m, confusion_rgb(lab[z] > 0, test.label[z] > 0)) for m, lab in labels.items()]
    cols = 5
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows))
    for ax, (title, rgb) in zip(axes.flat, panels, strict=False):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(
        f"{test.name}, slice {z}: true positive white, true negative black, "
        "false positive green, false negative pink"
    )
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def _sections(test: Any, labels: dict[str, np.ndarray], path: Path) -> Path:
    """An x-z section through the test group per method: smoothness across slices (Figures 5-6)."""
    plt = _plt()
    y = test.image.shape[1] // 2
    truth = test.label[:, y] > 0
    panels = [("image", np.repeat(to_grey(test.image[:, y], (0.0, 1.0))[..., None], 3, -1))]
    panels += [(m, confusion_rgb(lab[:, y] > 0, truth)) for m, lab in labels.items()]
    depth, width = truth.shape
    aspect = max(1.0, width / depth / 8)  # the thin groups stretched in z to stay readable
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 0.9 * len(panels) * aspect * depth / 8 + 0.5))
    for ax, (title, rgb) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(rgb, interpolation="nearest", aspect=aspect)
        ax.set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{test.name}: x-z section at y = {y} (z stretched {aspect:.1f}x)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def _step(study: Any, name: str) -> dict[str, Any] | None:
    path = study.out / "steps" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _log(folder: Path) -> list[dict[str, Any]]:
    path = folder / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _curve(ax, records: list[dict], offset: int, style: str, **kwargs) -> int:
    """Plot validation IoU of ``records`` (one per epoch) from epoch ``offset`` on; the next offset."""
    ax.plot([offset + r["epoch"] for r in records], [r["val"]["iou"] for r in records], style, **kwargs)
    return offset + len(records)


def _curves(study: Any, path: Path) -> Path:
    """Validation IoU against epochs trained (seed 0): fixed runs, and every trial of the search then its
    winner's continuation, on one epoch axis: both use the same number of epochs."""
    from dendriteseg.tune.search import open_study

    plt = _plt()
    fig, axes = plt.subplots(1, len(ARCHITECTURES), figsize=(5 * len(ARCHITECTURES), 4), squeeze=False)
    for ax, arch in zip(axes[0], ARCHITECTURES, strict=True):
        work = study.out / "work"
        offset = 0
        for part in ("pretrain", "finetune"):
            label = "fixed settings" if part == "pretrain" else None
            offset = _curve(
                ax, _log(work / f"{arch}_fixed_s0" / part), offset, "o-", color="tab:blue", label=label
            )
        searched, offset = work / f"{arch}_searched_s0", 0
        if (searched / "study.journal").exists():
            for part in ("pretrain", "finetune"):
                for trial in open_study(searched, part).get_trials():
                    records = _log(searched / part / f"trial_{trial.number:04d}")
                    offset = _curve(ax, records, offset, ".-", color="tab:orange", alpha=0.6)
                label = "search winner trained on" if part == "pretrain" else None
                offset = _curve(
                    ax, _log(searched / f"{part}_winner"), offset, "s-", color="tab:red", label=label
                )
        ax.plot([], [], ".-", color="tab:orange", label="search trials")
        ax.set_title(f"{arch} (seed 0)")
        ax.set_xlabel("epochs trained (pretraining, then fine-tuning)")
        ax.set_ylabel("validation IoU")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def _history(study: Any, path: Path) -> Path:
    """Each search's trials (seed 0): score by trial, pruned ones marked, best so far as a line."""
    import optuna

    from dendriteseg.tune.search import open_study

    plt = _plt()
    fig, axes = plt.subplots(2, len(ARCHITECTURES), figsize=(5 * len(ARCHITECTURES), 7), squeeze=False)
    for col, arch in enumerate(ARCHITECTURES):
        work = study.out / "work" / f"{arch}_searched_s0"
        for row, part in enumerate(("pretrain", "finetune")):
            ax = axes[row][col]
            ax.set_title(f"{arch}: {part} search (seed 0)")
            if not (work / "study.journal").exists():
                continue
            trials = open_study(work, part).get_trials()
            best, xs, ys, colours = -np.inf, [], [], []
            for t in trials:
                values = t.intermediate_values
                value = t.value if t.value is not None else (values[max(values)] if values else np.nan)
                xs.append(t.number)
                ys.append(value)
                colours.append("tab:green" if t.state == optuna.trial.TrialState.COMPLETE else "tab:grey")
            ax.scatter(xs, ys, c=colours, zorder=3)
            running = []
            for v in ys:
                best = max(best, v if np.isfinite(v) else -np.inf)
                running.append(best)
            ax.step(xs, running, where="post", color="tab:red", label="best so far")
            ax.set_xlabel("trial (green: completed, grey: pruned)")
            ax.set_ylabel("validation score")
            ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def importances(study_folder: Path, part: str) -> dict[str, float]:
    """Optuna's fANOVA importances of a search's parameters; empty where too few trials finished."""
    import optuna

    from dendriteseg.tune.search import open_study

    if not (study_folder / "study.journal").exists():
        return {}
    try:
        with warnings.catch_warnings():  # too few trials: Optuna warns and calls every setting equal
            warnings.simplefilter("error", UserWarning)
            return dict(optuna.importance.get_param_importances(open_study(study_folder, part)))
    except UserWarning:
        return {}
    except (RuntimeError, ValueError, ZeroDivisionError):  # fewer than two finished trials, or no spread
        return {}


def _importances(study: Any, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(2, len(ARCHITECTURES), figsize=(5 * len(ARCHITECTURES), 6), squeeze=False)
    for col, arch in enumerate(ARCHITECTURES):
        for row, part in enumerate(("pretrain", "finetune")):
            ax = axes[row][col]
            found = importances(study.out / "work" / f"{arch}_searched_s0", part)
            ax.set_title(f"{arch}: {part} (seed 0)")
            if found:
                names = list(found)
                ax.barh(names, [found[n] for n in names], color="tab:purple")
                ax.invert_yaxis()
                ax.set_xlabel("importance (fANOVA)")
            else:
                ax.text(0.5, 0.5, "too few finished trials", ha="center", va="center")
                ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def best_3d(study: Any) -> tuple[str, Path] | None:
    """The 3D row (seed 0) with the best test IoU and its model file."""
    best = None
    for arch in ("unet3d", "fcdense3d"):
        for kind in ("fixed", "searched"):
            step = _step(study, f"{arch}_{kind}_s0")
            if step is None:
                continue
            row = next(r for r in step["rows"] if r["method"] == f"{arch}_{kind}")
            model = (
                study.out / step["finetune"]["model"]
                if kind == "searched"
                else study.out / "work" / f"{arch}_fixed_s0" / "finetune" / "best.safetensors"
            )
            if best is None or row["iou"] > best[0]:
                best = (row["iou"], f"{arch}_{kind}", model)
    return None if best is None else best[1:]


def _mesh(study: Any, path: Path) -> Path | None:
    """The best 3D model's segmentation of a noisy-label test scan, meshed (Figure 7)."""
    try:
        import trimesh  # noqa: F401
    except ImportError:
        log.warning("the mesh figure needs the 'morphology' extra: pip install 'dendriteseg[morphology]'")
        return None
    from dendriteseg.data import read_manifest, select
    from dendriteseg.infer import segment
    from dendriteseg.io import open_volume
    from dendriteseg.morphology.render import render_png
    from dendriteseg.morphology.surface import surface_mesh

    found = best_3d(study)
    entries = select(read_manifest(study.manifest), quality="noisy", split="test")
    if found is None or not entries:
        return None
    method, model = found
    with open_volume(entries[0].image) as volume:
        image = volume.read(0, volume.shape[0])
    labels = segment(image, model, precision="fp32").labels
    if not labels.any():
        return None
    surface = surface_mesh(labels, sigma=1.0)
    return render_png(
        surface.mesh, path, title=f"{method}: {entries[0].name} segmented, {labels.shape} voxels"
    )
