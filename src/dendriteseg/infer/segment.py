"""Whole-volume segmentation: one volume, from its file (or array) to labels.

:func:`segment` checks the volume, finds where the sample is
(:mod:`dendriteseg.sample_region`), makes the predictor once
(:func:`~dendriteseg.infer.predictor.resolve_predictor`), measures the grey
window once, chooses the binning (:mod:`dendriteseg.infer.scale_choice`),
lays out the tiles and streams them through the core
(:mod:`dendriteseg.infer.stream`) into the outputs, which are written slab
by slab and appear under their names only when complete. Every setting
comes from one :class:`~dendriteseg.infer.settings.InferenceSettings`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.errors import InputError
from dendriteseg.infer.edge_rim import EdgeRim
from dendriteseg.infer.hysteresis import hysteresis_labels
from dendriteseg.infer.predictor import (
    BinnedPredictor,
    FlippedPredictor,
    Predictor,
    flips,
    resolve_predictor,
    with_flips,
)
from dendriteseg.infer.scale_choice import ScaleChoice, choose_scale, probe_is_whole
from dendriteseg.infer.settings import (
    DEFAULT_OVERLAP,
    InferenceSettings,
    check_scale_fits,
    settings_from,
)
from dendriteseg.infer.stream import iter_logits, plan_tiling, sigmoid
from dendriteseg.infer.tiling import Tiling
from dendriteseg.infer.trust import HISTOGRAM_SLICES, TrustMeter, TrustReport, suggested_share, trust_report
from dendriteseg.io import Location, SliceStack, Volume, VolumeWriter, as_volume, write_text_atomic
from dendriteseg.io.outputs import check_distinct, check_target, resolve_output
from dendriteseg.models.files import DEFAULT_MODEL_2D, default_model_name
from dendriteseg.preprocess import FiniteVolume, nonfinite_warning, sample_slices, window_for
from dendriteseg.sample_region import SampleRegion, sample_region_for

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

IMAGE_2D_WARNING = (
    "%s: a 2D image; the 3D model sees it repeated to %d slices "
    "(a 2D model, such as unet2d_default, is made for single slices)"
)
IMAGE_2D_DEFAULT = (
    "%s: a 2D image; segmented with %s (no model named; the 3D default sees a single slice "
    "repeated along z, its pixel noise the same in every slice, and calls more of it dendrite)"
)


@dataclass
class SegmentResult:
    """What :func:`segment` did (and the Dask path, :func:`~dendriteseg.infer.distributed.segment_dask`)."""

    shape: tuple[int, ...]
    seconds: float
    dendrite_fraction: float
    tile: tuple[int, int, int]
    work_ratio: float
    window: tuple[float, float]
    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    output: Path | None = None
    probabilities_output: Path | None = None
    nonfinite_voxels: int = 0  # replaced by the window's ends (counted once each)
    sample_region: SampleRegion | None = None  # where dendrites were allowed; None: anywhere
    scale: ScaleChoice | None = None  # the binning "auto" chose; None when it was given
    trust: TrustReport | None = None  # whether to trust the labels, what to label next (infer/trust.py)
    blocks: int = 0  # Dask blocks (0: one process)
    model: str | None = None  # the model file or shipped name used (None: a module, predictor or callable)
    flips: bool = False  # whether each tile was averaged over its four in-plane flips (settings.tta)

    @property
    def voxels_per_second(self) -> float:
        return float(np.prod(self.shape)) / max(self.seconds, 1e-9)


def check_volume(volume: Volume) -> None:
    if volume.ndim != 3:
        raise InputError(f"{volume.source}: expected a 3D (z, y, x) volume, got shape {volume.shape}")
    if volume.dtype.kind not in "uif":
        raise InputError(f"{volume.source}: cannot segment voxels of type {volume.dtype}")


def segment(
    volume: Any,
    model: Any = None,
    *,
    output: str | Path | Location | None = None,
    probabilities: str | Path | Location | bool | None = None,
    settings: InferenceSettings | None = None,
    progress: Progress | None = None,
    report: str | Path | None = None,
    **changes: Any,
) -> SegmentResult:
    """Segment a whole volume with a network, tile by tile, streaming to disk.

    Parameters
    ----------
    volume : path, Location, Volume or array-like
        A (z, y, x) volume or a 2D image; files are read lazily, slab by slab.
    model : None, path, shipped model name, torch.nn.Module, predictor or callable
        None: the shipped default model (``unet2d_default`` for a 2D image). A callable gets float32 batches
        ``(B, Z, Y, X)`` of normalised intensities and returns dendrite
        logits of the same shape (see :mod:`dendriteseg.infer.predictor`).
        A predictor keeps its own device, precision, TTA and compile settings.
    output : path, optional
        Where to write the uint8 labels (1 = dendrite), in any format
        ``write_volume`` supports, written slab by slab and renamed into
        place when complete. Without it the labels are returned in memory.
    probabilities : path or True, optional
        Also write (or, with True, return) float16 dendrite probabilities.
    settings : InferenceSettings, optional
        Every other setting (tile, overlap, batch size, TTA, device,
        precision, compile, window, compression, sample mask, scale);
        the defaults where not given.
    progress : callable(done_voxels, total_voxels), optional
    report : path, optional
        Also write the trust report (:mod:`dendriteseg.infer.trust`; always in
        ``SegmentResult.trust``) as JSON, when the labels are complete.
    **changes
        Settings by name, applied over ``settings`` and checked
        (``segment(vol, batch_size=4, scale=1)``).

    Returns
    -------
    SegmentResult
    """
    settings = settings_from(settings, changes)
    check_distinct(
        [volume, settings.sample_mask], {"output": output, "probabilities": probabilities, "report": report}
    )
    started = time.perf_counter()
    owned = not isinstance(volume, Volume)
    vol = as_volume(volume)
    image2d = vol.ndim == 2  # a 2D image: segmented as one slice, written and returned as 2D
    if image2d:
        vol = SliceStack(vol)
    try:
        check_volume(vol)  # before loading a model
        report_path = _check_report(report)
        region = sample_region_for(vol, settings.sample_mask)
        model, model_name = _default_for(model, image2d, vol.source)
        single, predictor = _predictors(model, settings, vol, image2d)
        sample = sample_slices(vol, HISTOGRAM_SLICES)  # read once: the window, the trust histogram
        window = settings.window or window_for_volume(sample, predictor, region)
        probe = probe_predictor(vol, single, predictor)
        scaled, choice = predictor_at_scale(vol, predictor, settings.scale, window, region, probe=probe)
        plan = plan_volume(vol, scaled, settings, window)
        shape = plan.shape[1:] if image2d else plan.shape
        meter = TrustMeter(
            plan.shape[0], None if region is None else region.mask, choice.scale if choice else 1
        )
        source = FiniteVolume(vol, plan.window)  # NaN and infinities: counted, read as the window's ends
        reused, run = _probe_logits(choice, settings, probe, predictor, scaled)
        with _Outputs(shape, vol.voxel_size, output, probabilities, settings.compression, region) as outputs:
            scale = choice.scale if choice else int(settings.scale)
            dendrite = _stream(source, run, plan, outputs, meter, settings, progress, reused, scale)
        if warning := nonfinite_warning(source):
            log.warning(warning)
        labels, probs = outputs.in_memory(squeeze=image2d)
        trust = _trust(meter, sample, region, vol, outputs, model, report_path)
        return SegmentResult(
            shape=shape,
            seconds=time.perf_counter() - started,
            dendrite_fraction=dendrite / int(np.prod(plan.shape)),
            tile=plan.tiling.tile,
            work_ratio=plan.tiling.work_ratio(),
            window=plan.window,
            labels=labels,
            probabilities=probs,
            output=outputs.labels_out.final if outputs.labels_out else None,
            probabilities_output=outputs.probs_out.final if outputs.probs_out else None,
            nonfinite_voxels=source.nonfinite,
            sample_region=region,
            scale=choice,
            trust=trust,
            model=model_name,
            flips=flips(predictor),
        )
    finally:
        if owned:
            vol.close()


def _predictors(
    model: Any, settings: InferenceSettings, vol: Volume, image2d: bool
) -> tuple[Predictor, Predictor]:
    """The predictor for ``model`` as ``settings`` ask, one pass a tile, and the same with test-time flips
    where they are wanted for a volume of this size (what the run runs). A scale probe that sees part of
    the volume runs the first, at a quarter of the flips' cost; one that sees all of it runs the second,
    and its logits at the binning chosen are the run's."""
    single = resolve_predictor(model, **settings.predictor_options)
    if image2d and single.tile_depth:
        log.warning(IMAGE_2D_WARNING, vol.source, single.tile_depth)
    return single, with_flips(single, settings.tta, int(np.prod(vol.shape)))


def probe_predictor(vol: Volume, single: Predictor, predictor: Predictor) -> Predictor:
    """What the scale probe runs: the run's ``predictor`` where the probe sees the whole volume (its
    logits then are the run's), else ``single`` (one pass a tile); shared with the Dask path."""
    return predictor if probe_is_whole(vol.shape, int(predictor.tile_depth or 1)) else single


def _default_for(model: Any, image2d: bool, source: Any) -> tuple[Any, str | None]:
    """The model to run (the 2D default for a 2D image where none is named) and its name (None for a
    module, predictor or callable)."""
    if model is None:
        name = default_model_name(image2d=image2d)
        if name != DEFAULT_MODEL_2D:
            return None, name  # the 3D default, as resolve_predictor takes it (and says if it is missing)
        log.info(IMAGE_2D_DEFAULT, source, name)
        return name, name
    return model, str(model) if isinstance(model, (str, Path)) else None


def _trust(
    meter: TrustMeter,
    sample: np.ndarray,
    region: SampleRegion | None,
    vol: Volume,
    outputs: _Outputs,
    model: Any,
    report_path: Path | None,
) -> TrustReport:
    """The run's trust report (written to ``report_path`` where one was asked for)."""
    trust = trust_report(
        meter,
        suggested=suggested_share(sample, None if region is None else region.core),
        region=region,
        source=str(vol.source),
        output=None if outputs.labels_out is None else str(outputs.labels_out.final),
        model=None if model is None or not isinstance(model, (str, Path)) else str(model),
    )
    if report_path is not None:
        write_text_atomic(report_path, json.dumps(trust.to_dict(), indent=1) + "\n")
    return trust


def _check_report(report: str | Path | None) -> Path | None:
    """The trust report's path, refused before any work where it could not be written."""
    if report is None:
        return None
    path = resolve_output(Path(report))
    if not path.parent.is_dir():
        raise InputError(f"{report}: folder {path.parent} does not exist")
    check_target(path, folder=False)
    return path


def predictor_at_scale(
    vol: Volume,
    predictor: Predictor,
    scale: int | str,
    window: tuple[float, float],
    region: SampleRegion | None,
    probe: Predictor | None = None,
) -> tuple[Predictor, ScaleChoice | None]:
    """``predictor`` binned as ``scale`` says ("auto": as :func:`choose_scale` finds best, running
    ``probe``, default ``predictor``) and the choice (None unless "auto"); shared by :func:`segment` and
    the Dask path. The probe runs before the whole volume's plan, which may compile the network. Where
    ``probe`` is not ``predictor`` (one pass where the run flips), the choice keeps its logits only as the
    run's unflipped pass (:func:`_probe_logits`)."""
    if scale == "auto":
        choice = choose_scale(vol, probe or predictor, window, region)
        if probe is not None and probe is not predictor and not _passes_of(probe, predictor):
            choice = dataclasses.replace(choice, logits=None)
        return (BinnedPredictor(predictor, choice.scale) if choice.scale > 1 else predictor), choice
    check_scale_fits(int(scale), vol.shape, vol.source)
    return (BinnedPredictor(predictor, int(scale)) if int(scale) > 1 else predictor), None


def _passes_of(probe: Predictor, predictor: Predictor) -> bool:
    """Whether ``probe`` is the unflipped pass of ``predictor`` (its logits one of the run's passes)."""
    return isinstance(predictor, FlippedPredictor) and predictor.inner is probe and () in predictor.flips


def _probe_logits(
    choice: ScaleChoice | None,
    settings: InferenceSettings,
    probe: Predictor,
    predictor: Predictor,
    scaled: Predictor,
) -> tuple[tuple[np.ndarray, float] | None, Predictor]:
    """The scale probe's logits where they are the whole run's or one pass of it (the probe covered the
    whole volume at the binning chosen, and the run cuts the probe's tiles: the default tile and
    overlaps), with their share of the run's mean (1, or 1/4 for the unflipped pass of a flipping run);
    and what the run still runs: ``scaled``, or the flipped passes alone (binned as ``scaled``)."""
    if choice is None or choice.logits is None:
        return None, scaled
    if settings.tile is not None or settings.overlap != DEFAULT_OVERLAP or settings.overlap_z is not None:
        return None, scaled
    if probe is predictor:
        return (choice.logits, 1.0), scaled
    others = predictor.flipped_only()  # type: ignore[attr-defined]  (_passes_of holds)
    share = 1.0 / len(predictor.flips)  # type: ignore[attr-defined]
    return (choice.logits, share), (BinnedPredictor(others, choice.scale) if choice.scale > 1 else others)


def _stream(
    source: Volume,
    predictor: Predictor,
    plan: VolumePlan,
    outputs: _Outputs,
    meter: TrustMeter,
    settings: InferenceSettings,
    progress: Progress | None,
    reused: tuple[np.ndarray, float] | None = None,
    scale: int = 1,
) -> int:
    """Run every tile row through the predictor into ``outputs`` (and ``meter``); returns the dendrite
    voxel count and commits the outputs. ``reused``: the whole volume's logits, already computed (the
    scale probe's), and their share of the run's mean: 1, streamed instead; less, averaged in with
    ``predictor``'s (the run's other passes; tiles blend linearly).
    Labelled by ``settings.hysteresis`` (:mod:`.hysteresis`), without a rim along the sample region's
    edge (:mod:`.edge_rim`; ``scale``: the binning the predictor sees)."""
    total = int(np.prod(plan.shape))
    done = dendrite = 0
    logits0, share = reused if reused is not None else (None, 0.0)
    if logits0 is not None and share == 1.0:
        source.read(0, plan.shape[0])  # non-finite voxels counted, as a run reading them would
        slabs = iter([(0, plan.shape[0], logits0)])
    else:
        slabs = iter_logits(source, predictor, plan.tiling, plan.window, batch_size=settings.batch_size)
    if logits0 is not None and share < 1.0:
        slabs = ((z0, z1, share * logits0[z0:z1] + (1 - share) * out) for z0, z1, out in slabs)
    inside = ((z0, z1, outputs.inside_region(z0, z1, logits)) for z0, z1, logits in slabs)
    rim = EdgeRim(outputs.region if settings.edge_rim else None, scale)
    for z0, z1, logits, vouched in hysteresis_labels(inside, settings.hysteresis):
        labels = rim(z0, vouched)
        dendrite += outputs.write(z0, z1, logits, labels)
        meter.add(z0, logits, labels, vouched)
        done += (z1 - z0) * plan.shape[1] * plan.shape[2]
        if progress:
            progress(done, total)
    outputs.commit()
    return dendrite


@dataclass
class VolumePlan:
    """What a volume's segmentation is laid out as: its shape, tile grid and grey window."""

    shape: tuple[int, int, int]
    tiling: Tiling
    window: tuple[float, float]


def plan_volume(
    volume: Volume, predictor: Predictor, settings: InferenceSettings, window: tuple[float, float]
) -> VolumePlan:
    """Tell the predictor the volume's size and lay out the tiles (shared by :func:`segment` and the
    Dask path, so both cut the same tiles)."""
    shape = tuple(int(s) for s in volume.shape)
    predictor.prepare(int(np.prod(shape)))
    tiling = plan_tiling(shape, predictor, settings.tile, settings.overlap, settings.overlap_z)
    return VolumePlan(shape, tiling, (float(window[0]), float(window[1])))  # type: ignore[arg-type]


class _Outputs:
    """Where :func:`segment` puts labels and probabilities: files written slab by slab, or memory.
    Used as a context manager: any error (or interrupt) from the first file opened until the commit
    aborts them, so nothing half-written stays."""

    def __init__(
        self,
        shape: tuple[int, ...],
        voxel_size: Any,
        output: Any,
        probabilities: Any,
        compression: Any,
        region: SampleRegion | None = None,
    ):
        self.labels_out = self.probs_out = None
        self.labels_mem = self.probs_mem = None
        self.region = None if region is None else region.mask
        stack = shape if len(shape) == 3 else (1, *shape)  # memory holds a 2D image as one slice
        self.writers: list[VolumeWriter] = []
        try:
            if output is not None:
                self.labels_out = VolumeWriter(
                    output, shape, np.uint8, voxel_size=voxel_size, compression=compression
                )
                self.writers.append(self.labels_out)
            else:
                self.labels_mem = np.zeros(stack, np.uint8)
            if probabilities is True:
                self.probs_mem = np.zeros(stack, np.float16)
            elif probabilities:
                self.probs_out = VolumeWriter(
                    probabilities, shape, np.float16, voxel_size=voxel_size, compression=compression
                )
                self.writers.append(self.probs_out)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> _Outputs:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is not None:
            self.abort()  # a committed writer ignores it

    def inside_region(self, z0: int, z1: int, logits: np.ndarray) -> np.ndarray:
        return inside_region(self.region, z0, z1, logits)

    def write(self, z0: int, z1: int, logits: np.ndarray, labels: np.ndarray) -> int:
        """Store slices ``z0:z1``; returns their dendrite voxel count."""
        if self.labels_out is not None:
            self.labels_out.write(labels, z0)
        else:
            self.labels_mem[z0:z1] = labels
        if self.probs_out is not None or self.probs_mem is not None:
            probs = sigmoid(logits).astype(np.float16)
            if self.probs_out is not None:
                self.probs_out.write(probs, z0)
            else:
                self.probs_mem[z0:z1] = probs
        return int(labels.sum(dtype=np.int64))

    def commit(self) -> None:
        for writer in self.writers:
            writer.commit()

    def in_memory(self, *, squeeze: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The labels and probabilities held in memory (a 2D image's with ``squeeze``)."""
        arrays = (self.labels_mem, self.probs_mem)
        return tuple(a[0] if squeeze and a is not None else a for a in arrays)  # type: ignore[return-value]

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()


def inside_region(region: np.ndarray | None, z0: int, z1: int, logits: np.ndarray) -> np.ndarray:
    """``logits`` of slices ``z0:z1`` with nothing dendrite outside ``region`` (a (y, x) or (z, y, x)
    mask; None: anywhere)."""
    if region is None:
        return logits
    inside = region[None] if region.ndim == 2 else region[z0:z1]
    return np.where(inside, logits, np.float32(-30.0))


def window_for_volume(
    volume: Volume, predictor: Predictor, region: SampleRegion | None = None
) -> tuple[float, float]:
    """The grey window the predictor's normalisation asks for, measured on ``volume`` (its high end
    inside the sample ``region`` where there is one)."""
    return window_for(volume, predictor.normalisation, None if region is None else region.core)
