"""Adaptation to the user's scan without labels, cheapest first, guarded against collapse.

:func:`adapt_to_scan` takes a model and a scan and returns a model fitted to
that scan, within a time budget:

1. **Normalisation statistics** (AdaBN, Li et al. 2018): the BatchNorm
   layers' running means and variances are measured again on tiles of the
   scan (inside the sample region), so the features a network normalises
   sit where they sat on its training data. Seconds.
2. **Self-training on confident, slice-consistent pseudo-labels** for the
   time left: voxels the adapted network calls dendrite with p >
   ``CONFIDENT`` or background with p < 1 - ``CONFIDENT``, whose label
   agrees with the slice above or below (a 3D check noise rarely passes),
   and everything outside the sample region as background, train the
   network at a small learning rate with flips; every other voxel is
   unlabelled. Cross-entropy only (no Dice term: it rewards whatever
   class is rare).

Guards: a step is kept only if the share the network calls dendrite on the
sampled tiles stays within ``DRIFT`` x of what the starting model called
there (entropy minimisation and self-training can drift to all-background
in a two-class problem); with fewer than ``MIN_PSEUDO`` confident voxels of
either class the self-training is skipped. ``benchmarks/adapt.py`` shows
where this helps and where it hurts, beside plain ``segment``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.data import UNLABELLED, LabelledVolume
from dendriteseg.data.augment import AugmentConfig
from dendriteseg.errors import InputError
from dendriteseg.heap import kept_heap
from dendriteseg.infer.predictor import TorchPredictor, resolve_model_path
from dendriteseg.infer.segment import check_volume, window_for_volume
from dendriteseg.io import SliceStack, Volume, as_volume
from dendriteseg.io.outputs import work_folder
from dendriteseg.models.files import ModelInfo, default_model_name, load_model, save_model
from dendriteseg.preprocess import FiniteVolume, evenly_spaced, sample_slices
from dendriteseg.sample_region import sample_region_for
from dendriteseg.train.config import TrainConfig
from dendriteseg.train.run import train_on

log = logging.getLogger(__name__)

SLABS = 8  # tile rows sampled from the scan
CONFIDENT = 0.9
DRIFT = 2.0  # the dendrite share called may move this many times up or down, no more
MIN_PSEUDO = 200  # confident voxels of each class needed to self-train
STEPS_PER_EPOCH = 10
LR = 1e-4


@dataclass
class Adaptation:
    """What :func:`adapt_to_scan` did: the steps taken and kept, and the dendrite share it saw called."""

    model: Any  # the adapted torch module (eval mode)
    info: ModelInfo
    steps: list[str] = field(default_factory=list)
    called_before: float = math.nan
    called_after: float = math.nan
    seconds: float = 0.0

    def describe(self) -> str:
        done = "; ".join(self.steps) or "nothing kept"
        return (
            f"adapted to the scan in {self.seconds:.0f} s ({done}); dendrite called on the sampled tiles "
            f"{100 * self.called_before:.2f} % before, {100 * self.called_after:.2f} % after"
        )


@kept_heap()  # each step reuses the memory of the step before (dendriteseg.heap)
def adapt_to_scan(
    volume: Any,
    model: str | Path | None = None,
    *,
    minutes: float = 1.0,
    sample_mask: Any = "auto",
    window: tuple[float, float] | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> Adaptation:
    """A copy of ``model`` (a model file or shipped name; None: the default, the 2D one for a 2D image)
    adapted to ``volume``.

    See the module notes. The result's ``model`` is a torch module that
    :func:`~dendriteseg.infer.segment` takes as it is; ``info`` records the
    adaptation in its provenance, for :func:`~dendriteseg.models.files.save_model`.
    """
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise InputError(f"adapt: minutes must be a positive number, got {minutes!r}")
    started = time.monotonic()
    owned = not isinstance(volume, Volume)
    vol = as_volume(volume)
    if vol.ndim == 2:
        vol = SliceStack(vol)
        model = default_model_name(image2d=True) if model is None else model  # as segment chooses
    try:
        path = resolve_model_path(model)
        net, info = load_model(path)
        check_volume(vol)
        region = sample_region_for(vol, sample_mask)
        probe = TorchPredictor(net, device=device, precision="fp32", normalisation=info.normalisation)
        if window is None:
            window = window_for_volume(sample_slices(vol), probe, region)
        tiles = _sample_tiles(vol, window, probe.tile_depth or 1)
    finally:
        if owned:
            vol.close()
    mask = None if region is None else region.mask
    result = Adaptation(net, info)
    start_share = result.called_before = _called(net, tiles, mask, device)
    adapted = _renormalise(net, tiles, mask, device)
    share = _called(adapted, tiles, mask, device)
    if _within(share, start_share):
        result.model, result.called_after = adapted, share
        result.steps.append("BatchNorm statistics measured on the scan")
    else:
        result.called_after = start_share
        result.steps.append(f"BatchNorm statistics kept (re-measured, {100 * share:.2f} % was called)")
    left = minutes * 60 - (time.monotonic() - started)
    trained = _self_train(result, tiles, mask, info, path, left, device, seed, start_share)
    if trained:
        result.steps.append(trained)
    result.seconds = time.monotonic() - started
    result.info = ModelInfo(
        info.architecture,
        info.arguments,
        info.normalisation,
        {**info.provenance, "adapted": {"from": str(path), "steps": result.steps, "window": list(window)}},
    )
    return result


def _sample_tiles(vol: Volume, window: tuple[float, float], depth: int) -> np.ndarray:
    """Up to ``SLABS`` evenly spaced slabs of ``depth`` slices, normalised: (n, depth, y, x)."""
    lo, hi = window
    source = FiniteVolume(vol, window)
    nz = vol.shape[0]
    starts = evenly_spaced(max(nz - depth + 1, 1), SLABS)
    slabs = []
    for z0 in starts:
        slab = np.asarray(source.read(int(z0), min(int(z0) + depth, nz)), np.float32)
        if slab.shape[0] < depth:
            slab = np.concatenate([slab, slab[::-1]] * depth, axis=0)[:depth]
        slabs.append((slab - lo) / (hi - lo))
    return np.stack(slabs)


def _probabilities(net: Any, tiles: np.ndarray, device: str) -> np.ndarray:
    predictor = TorchPredictor(net, device=device, precision="fp32")
    return 1.0 / (1.0 + np.exp(-np.clip(predictor(_aligned(tiles, predictor.size_multiple)), -30, 30)))


def _aligned(tiles: np.ndarray, multiple: tuple[int, ...]) -> np.ndarray:
    """``tiles`` cropped in-plane to the network's size multiple."""
    y = tiles.shape[2] // multiple[1] * multiple[1]
    x = tiles.shape[3] // multiple[2] * multiple[2]
    return tiles[:, :, :y, :x]


def _called(net: Any, tiles: np.ndarray, mask: np.ndarray | None, device: str) -> float:
    p = _probabilities(net, tiles, device)
    inside = (
        np.ones(p.shape[-2:], bool) if mask is None else _aligned(mask[None, None], (1, *p.shape[-2:]))[0, 0]
    )
    return float((p[..., inside] > 0.5).mean())


def _within(share: float, start: float) -> bool:
    floor = 1e-4  # below this share both are 'nothing'
    a, b = max(share, floor), max(start, floor)
    return a <= DRIFT * b and b <= DRIFT * a


def _renormalise(net: Any, tiles: np.ndarray, mask: np.ndarray | None, device: str) -> Any:
    """A copy of ``net`` whose BatchNorm running statistics are those of ``tiles`` (AdaBN)."""
    import torch

    adapted = copy.deepcopy(net).to(device)
    norms = [m for m in adapted.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return adapted
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative mean over every batch seen
        m.train()
    dims = getattr(adapted, "dims", 3)
    data = torch.from_numpy(np.ascontiguousarray(_aligned(tiles, _multiple(adapted))))
    with torch.no_grad():
        for tile in data:
            x = tile[:, None] if dims == 2 else tile[None, None]
            adapted(x.to(device))
    adapted.eval()
    return adapted


def _multiple(net: Any) -> tuple[int, int, int]:
    multiple = tuple(net.size_multiple()) if hasattr(net, "size_multiple") else (1, 1)
    return tuple(multiple) if len(multiple) == 3 else (1, *multiple)  # type: ignore[return-value]


def _pseudo_labels(p: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Confident, slice-consistent labels of probabilities ``p`` (n, z, y, x); the rest unlabelled."""
    label = np.full(p.shape, UNLABELLED, np.uint8)
    sure_fg, sure_bg = p > CONFIDENT, p < 1 - CONFIDENT
    if p.shape[1] > 1:  # agree with the slice above or below
        hard = p > 0.5
        above = np.concatenate([hard[:, :1], hard[:, :-1]], axis=1)
        below = np.concatenate([hard[:, 1:], hard[:, -1:]], axis=1)
        consistent = (hard == above) | (hard == below)
        sure_fg &= consistent
        sure_bg &= consistent
    label[sure_fg] = 1
    label[sure_bg] = 0
    if mask is not None:
        label[..., ~_aligned(mask[None, None], (1, *p.shape[-2:]))[0, 0]] = 0
    return label


def _self_train(
    result: Adaptation,
    tiles: np.ndarray,
    mask: np.ndarray | None,
    info: ModelInfo,
    path: Path,
    seconds: float,
    device: str,
    seed: int,
    start_share: float,
) -> str | None:
    """Self-train ``result.model`` on pseudo-labels for ``seconds``; the note of what was kept."""
    if seconds < 5:
        return None
    p = _probabilities(result.model, tiles, device)
    label = _pseudo_labels(p, mask)
    image = _aligned(tiles, (1, *p.shape[-2:]))
    counts = int((label == 1).sum()), int((label == 0).sum())
    if min(counts) < MIN_PSEUDO:
        return f"no self-training ({counts[0]} confident dendrite, {counts[1]} background voxels)"
    volumes = [LabelledVolume(f"scan_tile{i}", image[i], label[i], "exact") for i in range(len(image))]
    depth = image.shape[1]
    width = min(96, image.shape[2], image.shape[3]) // 16 * 16
    if width < 16:
        return None
    deadline = time.monotonic() + seconds
    with work_folder("adapt") as work:
        start = Path(work) / "start.safetensors"
        save_model(start, result.model, info)
        config = TrainConfig(
            model=info.architecture,
            patch=(1 if getattr(result.model, "dims", 3) == 2 else depth, width, width),
            batch=4,
            epochs=10**6,
            steps_per_epoch=STEPS_PER_EPOCH,
            lr=LR,
            lr_schedule="constant",
            dice_weight=0.0,
            foreground=0.5,
            train_quality="exact",
            seed=seed,
            device=device,
            out=str(Path(work) / "run"),
            augment=AugmentConfig(rotate_deg=0.0, shear_deg=0.0, p_affine=0.0),
        )
        kept: dict[str, Any] = {"model": None, "epochs": 0}

        class _Stop(Exception):
            pass

        def on_epoch(epoch: int, record: dict[str, Any]) -> None:
            net, _ = load_model(Path(config.out) / "last.safetensors", device=device)
            share = _called(net, tiles, mask, device)
            if not _within(share, start_share):
                raise _Stop  # drifting: keep what was kept before this epoch
            kept.update(model=net, epochs=epoch, share=share)
            if time.monotonic() > deadline:
                raise _Stop

        try:
            train_on(config, volumes, [], parent=start, on_epoch=on_epoch, provenance={"data": "the scan"})
        except _Stop:
            pass
    if kept["model"] is None:
        return "self-training stopped: the dendrite share drifted in its first epoch"
    result.model, result.called_after = kept["model"], kept["share"]
    return (
        f"self-trained {kept['epochs'] * STEPS_PER_EPOCH} steps on {counts[0] + counts[1]} confident voxels"
    )


def segment_adapted(
    spec: str,
    output: str,
    model: str | Path | None = None,
    *,
    minutes: float,
    settings: Any = None,
    probabilities: str | None = None,
    report: str | None = None,
    progress: Any = None,
) -> tuple[Any, Adaptation]:
    """``segment --adapt``: adapt the model to the scan ``spec`` (:func:`adapt_to_scan`), then segment
    it with the adapted model into ``output``; returns the run and the adaptation."""
    from dendriteseg.infer.run import SegmentRun
    from dendriteseg.infer.segment import segment
    from dendriteseg.infer.settings import InferenceSettings
    from dendriteseg.io import parse_location

    settings = settings or InferenceSettings()
    parse_location(output, for_writing=True)  # fail on a bad suffix before any work
    device = "cuda" if settings.device.startswith("cuda") else "cpu"
    adaptation = adapt_to_scan(
        spec, model, minutes=minutes, sample_mask=settings.sample_mask, window=settings.window, device=device
    )
    result = segment(
        spec,
        adaptation.model,
        output=output,
        probabilities=probabilities,
        settings=settings,
        progress=progress,
        report=report,
    )
    return SegmentRun(output, result=result), adaptation
