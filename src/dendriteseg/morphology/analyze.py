"""The quantities of a solidifying microstructure, from labels, with units.

``analyze_labels`` returns a dict whose keys carry the quantity's name
(units in ``UNITS``): ``solid_fraction``, ``solid_volume`` (um^3, voxel
count times voxel volume), ``interface_area`` (um^2, of the smoothed
surface without the caps where the solid meets the volume's edge),
``interface_area_per_volume`` (S_v, 1/um, per volume of the whole box),
``mean_curvature`` (1/um, area-weighted over the interface away from the
volume's edge, positive where the solid is convex), histograms of mean and Gaussian curvature (the
interfacial shape distribution), ``components`` (26-connected solid
pieces) and how many touch the volume's edge, and arm statistics of the
solid's skeleton (skan): branch count and lengths, and the median length
of the branches between two junctions as an estimate of the secondary arm
spacing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

from dendriteseg.errors import InputError
from dendriteseg.morphology.surface import _spacing, surface_mesh

ASSUMED_VOXEL = "assumed: 1 um (none given, none in the file)"
UNITS = {
    "solid_fraction": "1",
    "solid_volume": "um^3",
    "interface_area": "um^2",
    "interface_area_per_volume": "1/um",
    "mean_curvature": "1/um",
    "components": "1",
    "components_touching_edge": "1",
    "branches": "1",
    "branch_length_mean": "um",
    "branch_length_median": "um",
    "secondary_arm_spacing": "um",
}
SERIES_FIELDS = [
    "time_index",
    "input",
    "solid_fraction",
    "interface_area_per_volume",
    "mean_curvature",
    "components",
    "flag",
]


def _histogram(values: np.ndarray, weights: np.ndarray, bins: int = 40) -> dict[str, list[float]]:
    """Interface area (um^2) per curvature bin, over the 1st to 99th percentile of the curvature."""
    finite = np.isfinite(values) & (weights > 0)
    if not finite.any():
        return {"bin_edges": [], "area": []}
    lo, hi = np.percentile(values[finite], (1, 99))
    counts, edges = np.histogram(
        values[finite], bins=bins, range=(lo, hi if hi > lo else lo + 1e-9), weights=weights[finite]
    )
    return {"bin_edges": edges.tolist(), "area": counts.tolist()}


def _components(solid: np.ndarray) -> tuple[int, int]:
    labels, count = ndimage.label(solid, structure=np.ones((3, 3, 3)))
    edge = np.zeros(solid.shape, bool)
    for axis in range(3):
        index = [slice(None)] * 3
        for end in (0, -1):
            index[axis] = end
            edge[tuple(index)] = True
    touching = np.unique(labels[edge & solid])
    return int(count), int((touching > 0).sum())


def arm_statistics(solid: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """Branch count and lengths of the solid's skeleton (skan), and junction-to-junction spacing."""
    try:
        from skan import Skeleton, summarize
        from skimage.morphology import skeletonize
    except ImportError:
        raise InputError("arm statistics need skan: pip install 'dendriteseg[morphology]'") from None
    skeleton = skeletonize(solid)
    nan = {
        "branches": 0,
        "branch_length_mean": math.nan,
        "branch_length_median": math.nan,
        "secondary_arm_spacing": math.nan,
    }
    if skeleton.sum() < 2:
        return nan
    try:
        table = summarize(Skeleton(skeleton, spacing=spacing), separator="_")
    except (ValueError, IndexError):  # a skeleton of isolated points
        return nan
    lengths = table["branch_distance"].to_numpy()
    between = lengths[table["branch_type"].to_numpy() == 2]  # junction to junction
    return {
        "branches": int(len(lengths)),
        "branch_length_mean": float(np.mean(lengths)) if len(lengths) else math.nan,
        "branch_length_median": float(np.median(lengths)) if len(lengths) else math.nan,
        "secondary_arm_spacing": float(np.median(between)) if len(between) else math.nan,
    }


def analyze_labels(
    labels: Any, voxel_size: Any = None, *, arms: bool = True, sigma: float = 1.0
) -> dict[str, Any]:
    """Every quantity of the module notes for a ``(z, y, x)`` label volume (1 = solid)."""
    from dendriteseg.io import as_volume
    from dendriteseg.io.labels import as_binary_labels

    with as_volume(labels, "labels") as volume:
        if volume.ndim != 3:
            raise InputError(f"{volume.source}: analysis needs a (z, y, x) volume, got shape {volume.shape}")
        solid = as_binary_labels(volume.read(), volume.source).astype(bool)
        in_file = volume.voxel_size is not None
        size_from = "given" if voxel_size is not None else "the file's" if in_file else ASSUMED_VOXEL
        voxel_size = voxel_size if voxel_size is not None else volume.voxel_size
    spacing = _spacing(voxel_size)
    voxel = float(np.prod(spacing))
    box = solid.size * voxel
    result: dict[str, Any] = {
        "voxel_size_um": list(spacing),
        "voxel_size_from": size_from,
        "solid_fraction": float(solid.mean()),
        "solid_volume": float(solid.sum() * voxel),
    }
    if solid.any():
        surface = surface_mesh(solid, spacing, sigma=sigma)
        area = surface.interface_area
        weights = surface.curvature_weight
        result.update(
            interface_area=area,
            interface_area_per_volume=area / box,
            mean_curvature=float((surface.mean_curvature * weights).sum() / max(weights.sum(), 1e-12)),
            mean_curvature_histogram=_histogram(surface.mean_curvature, weights),
            gaussian_curvature_histogram=_histogram(surface.gaussian_curvature, weights),
        )
    else:
        result.update(interface_area=0.0, interface_area_per_volume=0.0, mean_curvature=math.nan)
    result["components"], result["components_touching_edge"] = _components(solid)
    if arms:
        result.update(arm_statistics(solid, spacing))
    result["units"] = {k: v for k, v in UNITS.items() if k in result}
    return result


def analyze_series(
    specs: list[str],
    voxel_size: Any = None,
    *,
    jump: float = 0.05,
    arms: bool = False,
    on_volume: Callable[[int, int, str], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per time step (``SERIES_FIELDS``); ``flag`` marks a solid fraction that moves by more
    than ``jump`` (absolute) from both neighbours', or from its one neighbour at the series' ends."""
    if not (isinstance(jump, (int, float)) and math.isfinite(jump) and jump >= 0):
        raise InputError(f"jump: a change of solid fraction >= 0, got {jump!r}")
    from dendriteseg.infer.series import expand_inputs

    inputs = expand_inputs(specs)
    rows = []
    for t, spec in enumerate(inputs):
        if on_volume:
            on_volume(t, len(inputs), spec)
        values = analyze_labels(spec, voxel_size, arms=arms)
        rows.append(
            {
                "time_index": t,
                "input": spec,
                **{k: values.get(k) for k in SERIES_FIELDS[2:6]},
                "flag": "",
                "voxel_size_from": values["voxel_size_from"],
            }
        )
    fractions = [r["solid_fraction"] for r in rows]
    for t, row in enumerate(rows):
        steps = [abs(fractions[t] - fractions[n]) for n in (t - 1, t + 1) if 0 <= n < len(rows)]
        if steps and min(steps) > jump:
            row["flag"] = f"solid fraction jumps by {min(steps):.3f}"
    return rows


def plot_series(rows: list[dict[str, Any]], path: Any) -> None:
    """Solid fraction, S_v and mean curvature over time in one PNG (flagged steps marked)."""

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from dendriteseg.io.outputs import save_figure

    t = [r["time_index"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    titles = ("solid fraction", "S_v (1/um)", "mean curvature (1/um)")
    for ax, key, label in zip(axes, SERIES_FIELDS[2:5], titles, strict=True):
        ax.plot(t, [r[key] for r in rows], "o-")
        flagged = [(r["time_index"], r[key]) for r in rows if r["flag"]]
        if flagged:
            ax.plot(*zip(*flagged, strict=True), "rx", markersize=10, label="jump")
            ax.legend()
        ax.set_xlabel("time step")
        ax.set_title(label, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def series_table(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The rows of a series as text, one tuple per time step (``SERIES_FIELDS`` but the input)."""
    keys = SERIES_FIELDS[2:5]
    return [
        (str(r["time_index"]), *(f"{r[k]:.4g}" for k in keys), str(r["components"]), r["flag"]) for r in rows
    ]


def analysis_table(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(quantity, value, unit) rows of :func:`analyze_labels`'s result."""
    return [(key, f"{result[key]:.5g}", unit) for key, unit in result["units"].items()]


def write_results(result: Any, *, json_path: Any = None, csv_path: Any = None, plot_path: Any = None) -> None:
    """Write an analysis (a dict) or a series (a list of rows) as JSON and CSV, and a series' plot."""
    import csv
    import io
    import json

    from dendriteseg.io import write_text_atomic

    rows = result if isinstance(result, list) else [{k: result[k] for k in result["units"]}]
    if json_path:
        write_text_atomic(json_path, json.dumps(result, indent=2, default=float) + "\n")
    if csv_path:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(csv_path, buffer.getvalue())
    if plot_path:
        if not isinstance(result, list):
            raise InputError("--plot: needs a series (--series)")
        plot_series(rows, plot_path)
