"""``dendriteseg mesh`` and ``dendriteseg analyze``: surfaces and quantities from labels."""

from __future__ import annotations

import math
from pathlib import Path

from typer import Argument as Arg
from typer import Option as Opt

from dendriteseg.cli.common import _fail, _say, _table, command

UNKNOWN_SIZE = "{}: no voxel size in the file and none given (--voxel-size): 1 um assumed, lengths in voxels"


def _say_assumed(names: list[str]) -> None:
    """Say that 1 um was assumed for ``names`` (the first, and how many more), if any."""
    if names:
        more = f" and {len(names) - 1} more" if len(names) > 1 else ""
        _say(UNKNOWN_SIZE.format(names[0] + more), err=True)


def _voxel_size(text: str | None) -> float | tuple[float, ...] | None:
    if not text:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        _fail(f"--voxel-size: one number or Z,Y,X in micrometres, got {text!r}")
    if len(values) not in (1, 3) or not all(math.isfinite(v) and v > 0 for v in values):
        _fail(f"--voxel-size: one or three numbers greater than 0 (micrometres), got {text!r}")
    return values[0] if len(values) == 1 else values


@command()
def mesh(
    labels: str = Arg(..., help="Label volume (1 = dendrite), any supported format."),
    out: Path = Opt(..., "--out", "-o", help="Mesh file: .stl, .ply, .obj or .glb."),
    voxel_size: str | None = Opt(None, help="UM or Z,Y,X in micrometres (default: the file's, else 1)."),
    smooth: int = Opt(0, help="Taubin smoothing iterations, 0-200 (the enclosed volume is restored)."),
    decimate: float | None = Opt(None, help="Keep this share of the faces, e.g. 0.2."),
    largest: int | None = Opt(None, help="Only the K largest solid pieces."),
    png: Path | None = Opt(None, help="Also render the surface to this PNG (headless)."),
) -> None:
    """Mesh the solid as a closed surface in micrometres (capped where it meets the volume's edge)."""
    from dendriteseg.io import open_volume
    from dendriteseg.io.labels import as_binary_labels
    from dendriteseg.io.outputs import check_distinct
    from dendriteseg.morphology import surface_mesh, write_mesh

    check_distinct([labels], {"-o": out, "--png": png})
    with open_volume(labels) as volume:
        solid = as_binary_labels(volume.read(), volume.source)
        size = _voxel_size(voxel_size) or volume.voxel_size
    surface = surface_mesh(solid, size, smooth=smooth, decimate=decimate, largest=largest)
    write_mesh(surface, out)
    _say_assumed([labels] if size is None else [])  # once the options are known good: bad input gets one line
    m = surface.mesh
    _say(
        f"wrote {out}: {len(m.faces):,} faces, closed: {m.is_watertight}, enclosed volume {m.volume:.4g} um^3"
    )
    if png:
        from dendriteseg.morphology.render import render_png

        _say(f"wrote {render_png(m, png, title=Path(labels).name)}")


@command()
def analyze(
    labels: list[str] = Arg(..., help="Label volume(s); with --series, a time series (globs allowed)."),
    voxel_size: str | None = Opt(None, help="UM or Z,Y,X in micrometres (default: the file's, else 1)."),
    json_path: Path | None = Opt(None, "--json", help="Write every quantity (with units) as JSON."),
    csv: Path | None = Opt(None, help="Write the quantities as CSV (one row per time step with --series)."),
    series: bool = Opt(False, "--series", help="One row per volume, in time order; flag jumps."),
    plot: Path | None = Opt(None, help="With --series: plot the evolution to this PNG."),
    jump: float = Opt(0.05, help="With --series: flag a solid fraction moving more than this."),
    arms: bool = Opt(True, help="Skeleton arm statistics (slower)."),
) -> None:
    """Solid fraction and volume, interface area, S_v, curvature, components, arms (with units)."""
    from dendriteseg.infer.series import expand_inputs
    from dendriteseg.io.outputs import check_distinct
    from dendriteseg.morphology import analyze as quantities

    check_distinct(expand_inputs(labels), {"--json": json_path, "--csv": csv, "--plot": plot})
    size = _voxel_size(voxel_size)
    if series or len(labels) > 1 or any(ch in "".join(labels) for ch in "*?["):
        progress = lambda i, n, spec: _say(f"- {spec} ({i + 1}/{n})", err=True)  # noqa: E731
        result = quantities.analyze_series(labels, size, jump=jump, on_volume=progress)
        _say_assumed([r["input"] for r in result if r["voxel_size_from"] == quantities.ASSUMED_VOXEL])
        columns = (quantities.SERIES_FIELDS[0], *quantities.SERIES_FIELDS[2:])
        _table("evolution", columns, quantities.series_table(result))
    else:
        result = quantities.analyze_labels(labels[0], size, arms=arms)
        _say_assumed(labels[:1] if result["voxel_size_from"] == quantities.ASSUMED_VOXEL else [])
        _table(labels[0], ("quantity", "value", "unit"), quantities.analysis_table(result))
    quantities.write_results(result, json_path=json_path, csv_path=csv, plot_path=plot)
