"""Overlays of a segmentation on its CT image, as PNG files.

Colours follow the paper's figures: true positive white, true negative
black, false positive green, false negative pink. Without a ground truth
the predicted label's outline is drawn over the grey image.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.errors import InputError
from dendriteseg.io import Volume, as_stack, as_volume
from dendriteseg.io.labels import as_binary_labels
from dendriteseg.io.outputs import save_figure
from dendriteseg.metrics import boundary, score_slice
from dendriteseg.preprocess import evenly_spaced, finite_volume, nonfinite_warning

TP = (255, 255, 255)
TN = (0, 0, 0)
FP = (0, 200, 0)
FN = (255, 105, 180)
OUTLINE = (255, 200, 0)

log = logging.getLogger(__name__)


def robust_window(
    volume: Any, *, percentiles: tuple[float, float] = (0.5, 99.5), max_samples: int = 2_000_000
) -> tuple[float, float]:
    """Intensity window from robust percentiles of (a sample of) the volume.

    Reads at most ~16 evenly spaced slices, so it is cheap on lazy volumes.
    """
    if volume.ndim == 2:
        sample = np.asarray(volume[:] if isinstance(volume, Volume) else volume)
    else:
        idx = evenly_spaced(volume.shape[0], 16)
        sample = np.stack([np.asarray(volume[int(i)]) for i in idx])
    sample = sample.astype(np.float32, copy=False).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    if sample.size > max_samples:
        sample = sample[:: sample.size // max_samples + 1]
    lo, hi = np.percentile(sample, percentiles)
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
        if not hi > lo:
            hi = lo + 1.0
    return float(lo), float(hi)


def to_grey(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Window an image to uint8 grey."""
    lo, hi = window
    scaled = (np.asarray(image, np.float32) - lo) / (hi - lo)
    return (np.clip(np.nan_to_num(scaled), 0, 1) * 255).astype(np.uint8)


def confusion_rgb(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """RGB image: TP white, TN black, FP green, FN pink."""
    rgb = np.zeros((*pred.shape, 3), np.uint8)
    rgb[pred & gt] = TP
    rgb[~pred & ~gt] = TN
    rgb[pred & ~gt] = FP
    rgb[~pred & gt] = FN
    return rgb


def outline_rgb(grey: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The grey image in RGB with the label's inner boundary drawn on it."""
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[boundary(pred)] = OUTLINE
    return rgb


def _even(n: int, count: int) -> list[int]:
    if n <= 0:
        return []
    count = min(count, n)
    # evenly spaced, avoiding the very first and last slices
    return sorted({int(round((i + 1) * n / (count + 1))) for i in range(count)} - {n} or {0})


def _xz_sections(volume: Any, y_list: list[int], slab: int = 32) -> np.ndarray:
    """``volume[:, y]`` for each y, as (len(y_list), z, x), reading z-slabs once."""
    if not isinstance(volume, Volume):
        return np.moveaxis(np.asarray(volume)[:, y_list], 1, 0)
    parts = [
        volume.read(z0, min(z0 + slab, volume.shape[0]))[:, y_list] for z0 in range(0, volume.shape[0], slab)
    ]
    return np.moveaxis(np.concatenate(parts, 0), 1, 0)


def _save_figure(
    path: Path,
    panels: list[tuple[str, np.ndarray]],
    title: str,
    aspect: float,
    legend: list[tuple[str, tuple[int, int, int]]],
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    h, w = panels[0][1].shape[:2]
    scale = 6.0 / max(w, h * aspect)
    fig_w = max(4.0, len(panels) * w * scale + 0.4)
    fig_h = max(2.5, h * aspect * scale + 1.1)
    fig, axes = plt.subplots(1, len(panels), figsize=(fig_w, fig_h), squeeze=False)
    for ax, (name, image) in zip(axes[0], panels, strict=False):
        ax.imshow(
            image,
            cmap="gray" if image.ndim == 2 else None,
            vmin=0,
            vmax=255,
            interpolation="nearest",
            aspect=aspect,
        )
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    if legend:
        handles = [Patch(facecolor=np.array(c) / 255, edgecolor="0.5", label=n) for n, c in legend]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07 if legend else 0, 1, 0.95))
    save_figure(fig, path, dpi=150)


def _draw(
    path: Path, tag: str, grey: np.ndarray, p: np.ndarray, g: np.ndarray | None, gt_name: str, aspect: float
) -> None:
    """One overlay figure: the grey image beside the confusion colours (or the label's outline)."""
    if g is not None:
        g = as_binary_labels(g, gt_name)
        s = score_slice(p, g)
        bits = [
            f"IoU {100 * s.iou:.2f}%" if not math.isnan(s.iou) else "IoU n/a",
            f"BF1 {100 * s.bf1:.2f}%" if not math.isnan(s.bf1) else "BF1 n/a",
            f"BDE {s.bde:.2f} px" if not math.isnan(s.bde) else "BDE n/a",
        ]
        title = f"{tag}: " + ", ".join(bits)
        panels = [("CT image", grey), ("prediction vs truth", confusion_rgb(p, g))]
        legend = [
            ("true positive", TP),
            ("true negative", TN),
            ("false positive", FP),
            ("false negative", FN),
        ]
    else:
        title = f"{tag}: dendrite fraction {100 * p.mean():.1f}%"
        panels = [("CT image", grey), ("label outline", outline_rgb(grey, p))]
        legend = [("dendrite boundary", OUTLINE)]
    _save_figure(path, panels, title, aspect, legend)


def write_overlay_files(
    image: str | Path,
    pred: str | Path,
    gt: str | Path | None = None,
    out_dir: str | Path = "overlays",
    **options: Any,
) -> list[Path]:
    """:func:`write_overlays` of volume files, read lazily; x-z sections get the image's voxel size."""
    from dendriteseg.io import open_volume

    with open_volume(image) as img, open_volume(pred) as prd:
        gtv = open_volume(gt) if gt else None
        try:
            names = (str(image), str(pred), str(gt or "gt"))
            return write_overlays(img, prd, gtv, out_dir, voxel_size=img.voxel_size, names=names, **options)
        finally:
            if gtv is not None:
                gtv.close()


def write_overlays(
    image: Any,
    pred: Any,
    gt: Any = None,
    out_dir: str | Path = "overlays",
    *,
    z: Sequence[int] | None = None,
    y: Sequence[int] | None = None,
    window: tuple[float, float] | None = None,
    voxel_size: Sequence[float] | None = None,
    names: tuple[str, str, str] = ("image", "pred", "gt"),
) -> list[Path]:
    """Write PNG overlays of z-slices and x-z cross-sections.

    Parameters
    ----------
    image, pred, gt : Volume or array_like, shape (z, y, x)
        The CT image, the predicted labels, and optionally the true labels.
    out_dir : path
        Created if missing (its parent must exist).
    z, y : sequences of int, optional
        Slices to draw (z-slices at these z; x-z sections at these y).
        Default: 3 evenly spaced z-slices and 1 x-z section at mid-y.
    window : (low, high), optional
        Grey window; default from the 0.5/99.5 percentiles.
    voxel_size : (z, y, x), optional
        Sets the aspect ratio of x-z sections.

    Returns
    -------
    list of Path
        The written files (``z0012.png``, ``xz_y0100.png``, ...).
    """
    image_name, pred_name, gt_name = names
    if image.shape != pred.shape or (gt is not None and gt.shape != image.shape):
        shapes = ", ".join(
            f"{n} {v.shape}"
            for n, v in ((image_name, image), (pred_name, pred), (gt_name, gt))
            if v is not None
        )
        raise InputError(f"{pred_name}: shapes differ: {shapes}")
    image2d = len(image.shape) == 2  # a 2D image: its one overlay, no x-z section
    if image2d:
        image, pred = as_stack(image, image_name), as_stack(pred, pred_name)
        gt = None if gt is None else as_stack(gt, gt_name)
    nz, ny, _ = image.shape
    z_list = list(z) if z else _even(nz, 3)
    y_list = list(y) if y else ([] if image2d else [ny // 2])
    for value, n, axis in [(v, nz, "z") for v in z_list] + [(v, ny, "y") for v in y_list]:
        if not 0 <= value < n:
            raise InputError(f"{image_name}: --{axis} {value} outside 0..{n - 1}")
    out = Path(out_dir)
    if not out.parent.is_dir():
        raise InputError(f"{out}: folder {out.parent} does not exist")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; overlays go into a folder")
    _check_labels(pred, pred_name)  # every slice, before anything is written
    if gt is not None:
        _check_labels(gt, gt_name)
    image = finite_volume(image if isinstance(image, Volume) else np.asarray(image))
    window = window or robust_window(image)
    aspect = 1.0
    if voxel_size is not None and voxel_size[2] > 0:
        aspect = float(voxel_size[0]) / float(voxel_size[2])
    created = not out.exists()
    out.mkdir(exist_ok=True)
    written: list[Path] = []
    try:
        _draw_all(image, pred, gt, out, z_list, y_list, window, aspect, names, written)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    if warning := nonfinite_warning(image):
        log.warning(warning)
    return written


def _check_labels(labels: Any, name: str) -> None:
    """Refuse labels other than 0/1 (or 0/255) anywhere in the volume, reading it slab by slab."""
    volume = labels if isinstance(labels, Volume) else as_volume(np.asarray(labels), name)
    for _, _, slab in volume.iter_slabs(32):
        as_binary_labels(slab, name)


def _draw_all(
    image: Any,
    pred: Any,
    gt: Any,
    out: Path,
    z_list: list[int],
    y_list: list[int],
    window: tuple[float, float],
    aspect: float,
    names: tuple[str, str, str],
    written: list[Path],
) -> None:
    """Draw the z-slices and x-z sections, appending each file to ``written`` as it is made."""
    _, pred_name, gt_name = names

    def draw(tag: str, img: np.ndarray, p: np.ndarray, g: np.ndarray | None, asp: float) -> None:
        path = out / f"{tag.replace(' ', '').replace('=', '')}.png"
        written.append(path)
        _draw(path, tag, to_grey(img, window), as_binary_labels(p, pred_name), g, gt_name, asp)

    for zi in z_list:
        draw(
            f"z{zi:04d}",
            np.asarray(image[zi]),
            np.asarray(pred[zi]),
            None if gt is None else np.asarray(gt[zi]),
            1.0,
        )
    if y_list:
        # x-z sections need every slice: read the volumes once, slab by slab
        img_rows, pred_rows = _xz_sections(image, y_list), _xz_sections(pred, y_list)
        gt_rows = None if gt is None else _xz_sections(gt, y_list)
        for k, yi in enumerate(y_list):
            draw(f"xz_y{yi:04d}", img_rows[k], pred_rows[k], None if gt_rows is None else gt_rows[k], aspect)
