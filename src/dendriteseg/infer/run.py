"""One entry point for everything ``dendriteseg segment`` can be asked to do.

:func:`segment_inputs` takes the inputs as a user names them (files,
globs, ``file.h5:/dataset``) and an output, and chooses: one volume into
one output (:func:`~dendriteseg.infer.segment`), one volume on a Dask
cluster (:func:`~dendriteseg.infer.distributed.segment_dask`), or many
volumes (or an output folder) into a folder with resume and a summary CSV
(:func:`~dendriteseg.infer.series.segment_series`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dendriteseg.errors import InputError
from dendriteseg.infer.segment import SegmentResult, segment
from dendriteseg.infer.series import expand_inputs, segment_series
from dendriteseg.infer.settings import InferenceSettings
from dendriteseg.io import parse_location

FLIPS_HINT = (
    "segmented in one pass: --tta (four in-plane flips averaged) calls less noise dendrite where there "
    "is little to find"
)


@dataclass
class SegmentRun:
    """What :func:`segment_inputs` did: one volume's result, or a series' summary rows."""

    output: str
    result: SegmentResult | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: Path | None = None

    @property
    def is_series(self) -> bool:
        return self.result is None

    def describe(self) -> str:
        """One line on what was written: the series' counts, or the volume's shape, share and speed."""
        if self.result is None:
            done = sum(r["status"] == "done" for r in self.rows)
            return f"{done} segmented, {len(self.rows) - done} already done; summary {self.summary}"
        r = self.result
        in_region = r.trust.measures.get("dendrite_share") if r.trust and r.sample_region else None
        return (
            f"wrote {self.output}"
            + (f" ({Path(r.model).stem})" if r.model else "")
            + f": {'x'.join(str(s) for s in r.shape)}, "
            f"dendrite {100 * r.dendrite_fraction:.2f} % of the volume"
            + (f" ({100 * in_region:.2f} % of the sample region)" if in_region is not None else "")
            + f", grey window {r.window[0]:.4g} to {r.window[1]:.4g}, "
            f"{r.seconds:.1f} s ({r.voxels_per_second / 1e6:.2f} Mvoxels/s)"
            + ("; averaged over 4 in-plane flips" if r.flips else "")
            + (f"; {r.sample_region.describe()}" if r.sample_region is not None else "")
            + (f"; {r.scale.describe()}" if r.scale is not None and r.scale.entropies else "")
            + (f"\n{r.trust.describe()}" if r.trust is not None else "")
            + (f"\n{FLIPS_HINT}" if r.trust is not None and r.trust.trust == "low" and not r.flips else "")
        )


def writes_folder(inputs: list[str], expanded: list[str], output: str) -> bool:
    """Whether ``output`` is a folder of outputs: several inputs, a glob, or a folder path."""
    as_folder = output.endswith(("/", os.sep)) or (
        Path(output).is_dir() and parse_location(output, for_writing=True).format == "tiff-dir"
    )
    globbed = any(s != e for s, e in zip(inputs, expanded, strict=False))
    return len(expanded) > 1 or as_folder or globbed


def segment_inputs(
    inputs: list[str],
    output: str,
    model: Any = None,
    *,
    settings: InferenceSettings | None = None,
    probabilities: str | None = None,
    fmt: str = "tif",
    summary: str = "summary.csv",
    dask: str | None = None,
    threads: int | None = None,
    on_volume: Callable[[int, int, str, str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    report: str | None = None,
) -> SegmentRun:
    """Segment what the user named; see the module notes for the three cases.

    ``settings`` holds every inference setting (:class:`~dendriteseg.infer.settings.InferenceSettings`);
    ``threads`` sets torch's thread count (per worker with ``dask``). ``report``: the trust report's
    JSON file (one volume; for several, their verdicts go into the summary CSV).
    """
    settings = settings or InferenceSettings()
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads: must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    expanded = expand_inputs(inputs)
    if writes_folder(inputs, expanded, output):
        if dask:
            raise InputError("--dask takes one input volume at a time")
        if report:
            raise InputError(
                "--report takes one input volume; with several, the summary CSV holds each trust"
            )
        rows = segment_series(
            expanded,
            output,
            model,
            fmt=fmt,
            probabilities=probabilities,
            summary=summary,
            settings=settings,
            on_volume=on_volume,
            progress=progress,
        )
        return SegmentRun(output, rows=rows, summary=Path(output) / summary)
    parse_location(output, for_writing=True)  # fail on a bad suffix before any work
    if probabilities:
        parse_location(probabilities, for_writing=True)
    if dask:
        from dendriteseg.infer.distributed import segment_dask

        if probabilities or report:
            raise InputError("--probabilities and --report are not available with --dask")
        result = segment_dask(
            expanded[0], output, model, scheduler=dask, threads=threads, settings=settings, progress=progress
        )
    else:
        result = segment(
            expanded[0],
            model,
            output=output,
            probabilities=probabilities,
            settings=settings,
            progress=progress,
            report=report,
        )
    return SegmentRun(output, result=result)
