"""Whole-volume segmentation by blended tiles, streamed slab by slab.

Data flow (one way): lazy volume -> z-rows of tiles (read and normalised in
a background thread) -> predictor in batches -> Gaussian-weighted sum into
a rolling accumulator one tile deep -> finished slices divided by the weight
sum -> labels (and probabilities) written slab by slab. Memory holds one
z-row of input, one of accumulated logits and one batch of network
activations, whatever the depth of the volume.

Tiles: 3D models see tiles as deep as their training patches (4 slices for
the shipped model; deeper tiles feed its z-pooled layers context they never
saw in training), consecutive in z without overlap by default; 2D models see
slabs of whole slices. In-plane, a slice up to ``MAX_PLANE`` voxels a side is
one tile (no in-plane seams and no repeated work); a longer side is cut into
the fewest tiles of at most ``MAX_PLANE`` that overlap by ``overlap``
(the largest plane tile whose activations keep the shipped model within a
2 GB budget; ``benchmarks/inference.py`` measures the peak memory).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.errors import InputError
from dendriteseg.infer.predictor import BinnedPredictor, TorchPredictor, load_predictor
from dendriteseg.infer.scale_choice import choose_scale
from dendriteseg.infer.tiling import Tiling, alignment
from dendriteseg.io import Location, SliceStack, Volume, VolumeWriter, as_volume
from dendriteseg.preprocess import FiniteVolume, nonfinite_warning, window_for
from dendriteseg.sample_region import sample_region_for

log = logging.getLogger(__name__)

MAX_PLANE = 896  # in-plane tile sides are at most this (memory; see the module notes)
SLAB_2D = 8  # slices per z-row for 2D models

Progress = Callable[[int, int], None]


@dataclass
class SegmentResult:
    """What :func:`segment` did."""

    shape: tuple[int, int, int]
    seconds: float
    dendrite_fraction: float
    tile: tuple[int, int, int]
    work_ratio: float
    window: tuple[float, float]
    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    output: Path | None = None
    probabilities_output: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def voxels_per_second(self) -> float:
        return float(np.prod(self.shape)) / max(self.seconds, 1e-9)


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _plane_tile(length: int, overlap: float) -> int:
    """The smallest tile side that covers ``length`` with the fewest tiles of at most MAX_PLANE."""
    count = 1
    while True:
        side = math.ceil(length / (count - (count - 1) * overlap))
        if side <= MAX_PLANE:
            return side
        count += 1


def choose_tile(
    shape: tuple[int, int, int],
    predictor: Any,
    tile: tuple[int, ...] | None = None,
    overlap: float = 0.25,
) -> tuple[int, int, int]:
    """The (z, y, x) tile size for a volume; see the module notes for the defaults.

    ``tile`` may give (y, x) or (z, y, x); a 3D model's z is its tile depth
    unless given. Sizes are rounded up to the network's alignment and
    capped at the volume (rounded up the same way).
    """
    nz, ny, nx = shape
    depth = getattr(predictor, "tile_depth", None)
    tz = depth if depth else SLAB_2D
    if tile is not None:
        tile = tuple(int(t) for t in tile)
        if len(tile) == 3:
            tz, ty, tx = tile
        elif len(tile) == 2:
            ty, tx = tile
        else:
            raise InputError(f"tile: give Y,X or Z,Y,X, got {tile}")
        if min(tz, ty, tx) < 1:
            raise InputError(f"tile: sizes must be >= 1, got {tile}")
        if depth and tz != depth:
            log.warning(
                "tile: %d slices deep, where this 3D model was trained for %d; its deepest layers then see "
                "other depths than in training and its labels change (benchmarks/tile_depth.py)",
                tz,
                depth,
            )
    else:
        ty, tx = (_plane_tile(n, overlap) for n in (ny, nx))
    size = []
    for t, n, m in zip((tz, ty, tx), shape, alignment(predictor), strict=True):
        size.append(min(_round_up(t, m), _round_up(n, m)))
    return tuple(size)  # type: ignore[return-value]


def plan_tiling(
    shape: tuple[int, int, int],
    predictor: Any,
    tile: tuple[int, ...] | None,
    overlap: float,
    overlap_z: float | None,
) -> Tiling:
    """The tile grid :func:`segment` (and the Dask path) uses for a volume."""
    overlaps = (overlap_z or 0.0, overlap, overlap)
    return Tiling.build(shape, choose_tile(shape, predictor, tile, overlap), overlaps, alignment(predictor))


def _pad_to(block: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Pad a tile cut at the volume's end to full size (reflect, like the networks' own padding)."""
    pads = [(0, t - b) for b, t in zip(block.shape, shape, strict=True)]
    if not any(p for _, p in pads):
        return block
    mode = "reflect" if all(p < b for (_, p), b in zip(pads, block.shape, strict=True)) else "edge"
    return np.pad(block, pads, mode=mode)


def iter_logits(
    volume: Volume,
    predictor: Callable[[np.ndarray], np.ndarray],
    tiling: Tiling,
    window: tuple[float, float],
    *,
    batch_size: int = 1,
    z_range: tuple[int, int] | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(z0, z1, logits)`` for consecutive finished slabs of the volume (whose voxels are
    finite: wrap it in a :class:`~dendriteseg.preprocess.FiniteVolume`).

    ``logits`` are the blended dendrite log-odds of slices ``z0:z1``. With
    ``z_range`` only the slabs inside that range are computed and yielded,
    bit-identical to the same slices of a run over the whole volume (the
    same tiles, batches and summation order), which is what lets blocks be
    computed on different machines.
    """
    nz, ny, nx = volume.shape
    tz, ty, tx = tiling.tile
    c0, c1 = z_range if z_range else (0, nz)
    rows = [s for s in tiling.z.starts if s < c1 and s + tz > c0]
    if not rows:
        return
    weights = tiling.tile_weights()
    plane_total = tiling.plane_total()
    plane_starts = tiling.plane_starts()
    lo, hi = window
    scale = 1.0 / (hi - lo)

    def read_row(z: int) -> np.ndarray:
        data = np.asarray(volume.read(z, min(z + tz, nz)), np.float32)  # finite: a FiniteVolume
        return (data - lo) * scale

    acc = np.zeros((tz, ny, nx), np.float32)
    base = rows[0]  # slice index of acc[0]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dendriteseg-read") as pool:
        pending = pool.submit(read_row, rows[0])
        for i, zs in enumerate(rows):
            slab = pending.result()
            if i + 1 < len(rows):
                pending = pool.submit(read_row, rows[i + 1])
            off = zs - base
            for b0 in range(0, len(plane_starts), batch_size):
                group = plane_starts[b0 : b0 + batch_size]
                batch = np.stack([_pad_to(slab[:, y : y + ty, x : x + tx], (tz, ty, tx)) for y, x in group])
                out = np.asarray(predictor(batch), np.float32)
                if out.shape != batch.shape:
                    raise InputError(f"predictor returned shape {out.shape} for a batch of {batch.shape}")
                for (y, x), logits in zip(group, out, strict=True):
                    dz, dy, dx = min(tz, nz - zs), min(ty, ny - y), min(tx, nx - x)
                    acc[off : off + dz, y : y + dy, x : x + dx] += (logits * weights)[:dz, :dy, :dx]
            done = rows[i + 1] if i + 1 < len(rows) else min(zs + tz, nz)
            k = done - base
            finished = acc[:k] / (tiling.z.total[base:done, None, None] * plane_total[None])
            e0, e1 = max(base, c0), min(done, c1)
            if e1 > e0:
                yield e0, e1, finished[e0 - base : e1 - base]
            acc[: tz - k] = acc[k:]
            acc[tz - k :] = 0.0
            base = done


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)


IMAGE_2D_WARNING = (
    "%s: a 2D image; the 3D model sees it repeated to %d slices "
    "(a 2D model, such as unet2d_default, is made for single slices)"
)


def as_predictor(model: Any, *, scale: int = 1, **kwargs: Any) -> Any:
    """A predictor from a model file or name (None: the default), a torch module, or a callable;
    with ``scale`` > 1 it sees its tiles binned (:class:`~dendriteseg.infer.predictor.BinnedPredictor`)."""
    if scale != 1:
        return BinnedPredictor(as_predictor(model, **kwargs), scale)
    if model is None or isinstance(model, (str, Path)):
        return load_predictor(model, **kwargs)
    if _is_module(model):
        return TorchPredictor(model, **kwargs)
    if callable(model):
        return model
    kind = type(model).__name__
    raise InputError(f"model: expected a model file, a torch module or a callable, got {kind}")


def check_scale(scale: Any) -> int | str:
    """A ``scale`` setting as given ("auto" or a whole number >= 1, also as text); a clear error otherwise."""
    if isinstance(scale, str):
        if scale == "auto":
            return scale
        scale = int(scale) if scale.strip().isdigit() else scale
    if isinstance(scale, (int, np.integer)) and not isinstance(scale, bool) and scale >= 1:
        return int(scale)
    raise InputError(f"scale: 'auto' or a whole number of pixels per binned pixel (1, 2, ...), got {scale!r}")


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
    tile: tuple[int, ...] | None = None,
    overlap: float = 0.25,
    overlap_z: float | None = None,
    batch_size: int = 1,
    tta: bool = False,
    device: str = "auto",
    precision: str = "auto",
    compile: bool | str = "auto",
    window: tuple[float, float] | None = None,
    compression: str | None = None,
    progress: Progress | None = None,
    sample_mask: Any = "auto",
    scale: int | str = "auto",
) -> SegmentResult:
    """Segment a whole volume with a network, tile by tile, streaming to disk.

    Parameters
    ----------
    volume : path, Location, Volume or array-like
        A (z, y, x) volume; files are read lazily, slab by slab.
    model : None, path, shipped model name, torch.nn.Module or callable
        None: the shipped default model. A callable gets float32 batches
        ``(B, Z, Y, X)`` of normalised intensities and returns dendrite
        logits of the same shape (see :mod:`dendriteseg.infer.predictor`).
    output : path, optional
        Where to write the uint8 labels (1 = dendrite), in any format
        ``write_volume`` supports, written slab by slab and renamed into
        place when complete. Without it the labels are returned in memory.
    probabilities : path or True, optional
        Also write (or, with True, return) float16 dendrite probabilities.
    tile : (y, x) or (z, y, x), optional
        Tile size; see :func:`choose_tile` for the default.
    overlap, overlap_z : float
        Overlap of neighbouring tiles in-plane and along z (default 0), as a fraction of the tile.
    batch_size : int
        Tiles per network call.
    tta : bool
        Test-time augmentation (four in-plane flips), torch models only.
    device, precision, compile
        See :class:`~dendriteseg.infer.predictor.TorchPredictor`.
    window : (low, high), optional
        Intensities mapped to 0 and 1; default: the model's percentile
        window measured on this volume.
    progress : callable(done_voxels, total_voxels), optional
    sample_mask : "auto", "none", a file or an array
        Where dendrites may be (:mod:`dendriteseg.sample_region`): "auto"
        detects the sample; a 0/1 file or array gives it; "none": anywhere.
    scale : int or "auto"
        The network sees ``scale`` x ``scale`` binned pixels (1: as they are), for scans much
        finer than its training data (:class:`~dendriteseg.infer.predictor.BinnedPredictor`);
        "auto" (the default) picks the binning at which the network is surest
        (:mod:`dendriteseg.infer.scale_choice`; slices under 192 px a side are never binned).

    Returns
    -------
    SegmentResult
    """
    started = time.perf_counter()
    owned = not isinstance(volume, Volume)
    vol = as_volume(volume)
    image2d = vol.ndim == 2  # a 2D image: segmented as one slice, written and returned as 2D
    if image2d:
        vol = SliceStack(vol)
    try:
        check_volume(vol)  # before loading a model
        region = sample_region_for(vol, sample_mask)
        options = dict(device=device, precision=precision, tta=tta, compile=compile)
        predictor, window, choice = predictor_at_scale(
            vol, model, scale, window, region, image2d=image2d, **options
        )
        plan = plan_volume(vol, predictor, tile, overlap, overlap_z, window)
        shape = plan.shape[1:] if image2d else plan.shape
        outputs = _Outputs(shape, vol.voxel_size, output, probabilities, compression, region)
        source = FiniteVolume(vol, plan.window)  # NaN and infinities: counted, read as the window's ends
        dendrite = _stream(source, predictor, plan, outputs, batch_size, progress)
        if warning := nonfinite_warning(source):
            log.warning(warning)
        labels, probs = outputs.in_memory(squeeze=image2d)
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
            extra={"nonfinite_voxels": source.nonfinite, "sample_region": region, "scale": choice},
        )
    finally:
        if owned:
            vol.close()


def predictor_at_scale(
    vol: Volume, model: Any, scale: Any, window: Any, region: Any, *, image2d: bool = False, **options: Any
) -> tuple[Any, Any, Any]:
    """The predictor at ``scale`` (binned as :func:`choose_scale` finds best for "auto"), the window
    and the choice (None unless "auto"); shared by :func:`segment` and the Dask path. The probe runs
    before the whole volume's plan, which may compile the network."""
    scale = check_scale(scale)
    predictor = as_predictor(model, scale=1 if scale == "auto" else scale, **options)
    if image2d and getattr(predictor, "tile_depth", None):
        log.warning(IMAGE_2D_WARNING, vol.source, predictor.tile_depth)
    if scale != "auto":
        return predictor, window, None
    window = window or window_for_volume(vol, predictor)
    choice = choose_scale(vol, predictor, window, region)
    return (BinnedPredictor(predictor, choice.scale) if choice.scale > 1 else predictor), window, choice


def _stream(
    source: Volume, predictor: Any, plan: Any, outputs: Any, batch_size: int, progress: Progress | None
) -> int:
    """Run every tile row through the predictor into ``outputs``; returns the dendrite voxel count.
    On any error (or interrupt) the outputs are aborted: nothing half-written stays."""
    total = int(np.prod(plan.shape))
    done = dendrite = 0
    try:
        for z0, z1, logits in iter_logits(source, predictor, plan.tiling, plan.window, batch_size=batch_size):
            dendrite += outputs.write(z0, z1, logits)
            done += (z1 - z0) * plan.shape[1] * plan.shape[2]
            if progress:
                progress(done, total)
        outputs.commit()
    except BaseException:
        outputs.abort()
        raise
    return dendrite


@dataclass
class VolumePlan:
    """What a volume's segmentation is laid out as: its shape, tile grid and grey window."""

    shape: tuple[int, int, int]
    tiling: Tiling
    window: tuple[float, float]


def plan_volume(
    volume: Volume,
    predictor: Any,
    tile: tuple[int, ...] | None,
    overlap: float,
    overlap_z: float | None,
    window: tuple[float, float] | None,
) -> VolumePlan:
    """Check the volume, tell the predictor its size, lay out the tiles and measure the window
    (shared by :func:`segment` and the Dask path, so both cut the same tiles)."""
    check_volume(volume)
    shape = tuple(int(s) for s in volume.shape)
    if hasattr(predictor, "prepare"):
        predictor.prepare(int(np.prod(shape)))
    tiling = plan_tiling(shape, predictor, tile, overlap, overlap_z)
    window = window or window_for_volume(volume, predictor)
    return VolumePlan(shape, tiling, (float(window[0]), float(window[1])))  # type: ignore[arg-type]


class _Outputs:
    """Where :func:`segment` puts labels and probabilities: files written slab by slab, or memory."""

    def __init__(
        self, shape: tuple[int, ...], voxel_size: Any, output: Any, probabilities: Any, compression: Any,
        region: Any = None,
    ):  # fmt: skip
        self.labels_out = self.probs_out = None
        self.labels_mem = self.probs_mem = None
        self.region = None if region is None else region.mask
        stack = shape if len(shape) == 3 else (1, *shape)  # memory holds a 2D image as one slice
        self.writers: list[VolumeWriter] = []
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

    def write(self, z0: int, z1: int, logits: np.ndarray) -> int:
        """Store slices ``z0:z1``; returns their dendrite voxel count. Outside ``region``
        (the sample region, when there is one) nothing is dendrite."""
        if self.region is not None:
            inside = self.region[None] if self.region.ndim == 2 else self.region[z0:z1]
            logits = np.where(inside, logits, np.float32(-30.0))
        labels = (logits > 0).astype(np.uint8)
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


def _is_module(model: Any) -> bool:
    try:
        from torch import nn
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, nn.Module)


def window_for_volume(volume: Volume, predictor: Any) -> tuple[float, float]:
    """The grey window the predictor's normalisation asks for, measured on ``volume``."""
    return window_for(volume, getattr(predictor, "normalisation", None))
