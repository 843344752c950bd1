"""Every inference setting in one frozen dataclass, checked once when it is made.

:class:`InferenceSettings` is what :func:`~dendriteseg.infer.segment`, the
series runner, the Dask path, scoring and the command line share: a
setting is added here and nowhere else, and a bad value is refused here,
before any work, with a message that names the setting (as
the training configuration does for training).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.device import PRECISIONS
from dendriteseg.errors import InputError

COMPILE_CHOICES = {"auto": "auto", "on": True, "off": False, True: True, False: False}
TTA_CHOICES = COMPILE_CHOICES  # the same words: auto, on, off (or True, False)
TTA_AUTO_MAX_VOXELS = 2**25  # "auto" flips a network's tiles in volumes up to this size (128 x 512 x 512)
MAX_SCALE = 16  # pixels per binned pixel; binned slices must also keep MIN_BINNED_PIXELS a side
MIN_BINNED_PIXELS = 16  # a binned slice narrower than this holds too little for the network to see
MIN_TILE = 16  # in-plane tile side: smaller tiles lose the context networks are trained with
DEFAULT_OVERLAP = 0.25
DEFAULT_OVERLAP_Z = 0.0  # z tiles are consecutive unless overlap_z is given
DEFAULT_HYSTERESIS = 0.9  # probability a piece of dendrite must reach somewhere to be labelled


@dataclass(frozen=True, eq=False)  # eq=False: a sample mask may be an array
class InferenceSettings:
    """How a volume is segmented (every field has a default; see :func:`~dendriteseg.infer.segment`).

    Attributes
    ----------
    tile : (y, x) or (z, y, x), optional
        Tile size; default by rule (:func:`~dendriteseg.infer.segment.choose_tile`).
        In-plane sides are at least ``MIN_TILE``.
    overlap, overlap_z : float
        Overlap of neighbouring tiles in-plane (0.25) and along z (0), as a fraction of the tile.
    batch_size : int
        Tiles per network call (>= 1).
    tta : True, False or "auto" (also "on"/"off")
        Average over the four in-plane flips (four network passes). "auto" (the default): for
        networks on volumes of at most ``TTA_AUTO_MAX_VOXELS``, where four passes stay short; not for
        plain callables, and not above, where the time is what a user waits for (:func:`flips_for`).
    device : "auto", "cpu", "cuda" or "cuda:N"
    precision : "auto", "fp32", "bf16" or "fp16"
    compile : True, False or "auto" (also "on"/"off")
        ``torch.compile``; "auto" compiles on the CPU for volumes of at least 64 M voxels.
    window : (low, high), optional
        Intensities mapped to 0 and 1 (finite, low < high); default: measured on the volume.
    compression : str, optional
        Output compression (the writers check the name).
    sample_mask : "auto", "none", a file or an array
        Where dendrites may be (:mod:`dendriteseg.sample_region`).
    scale : int or "auto"
        Pixels per binned pixel the network sees (1 to ``MAX_SCALE``), or "auto"
        (:mod:`dendriteseg.infer.scale_choice`).
    hysteresis : float
        A piece of dendrite (p > 0.5) is labelled only where it holds a voxel at least this
        probable (:mod:`dendriteseg.infer.hysteresis`); 0.5 labels every voxel above 0.5.
    edge_rim : bool
        Drop a thin rim of dendrite along the sample region's edge, keeping dendrites that reach the
        edge from inside (:mod:`dendriteseg.infer.edge_rim`); no effect without a sample region.
    """

    tile: tuple[int, ...] | None = None
    overlap: float = DEFAULT_OVERLAP
    overlap_z: float | None = None
    batch_size: int = 1
    tta: bool | str = "auto"
    device: str = "auto"
    precision: str = "auto"
    compile: bool | str = "auto"
    window: tuple[float, float] | None = None
    compression: str | None = None
    sample_mask: Any = "auto"
    scale: int | str = "auto"
    hysteresis: float = DEFAULT_HYSTERESIS
    edge_rim: bool = True

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_("tile", _tile(self.tile))
        set_("overlap", _fraction("overlap", self.overlap))
        set_("overlap_z", None if self.overlap_z is None else _fraction("overlap_z", self.overlap_z))
        set_("batch_size", _whole("batch_size", self.batch_size, 1))
        if not isinstance(self.tta, (bool, np.bool_, str)) or self.tta not in TTA_CHOICES:
            raise InputError(f"tta: expected auto, on or off, got {self.tta!r}")
        set_("tta", TTA_CHOICES[self.tta])  # np.bool_ hashes and compares as bool
        if not isinstance(self.edge_rim, (bool, np.bool_)):
            raise InputError(f"edge_rim: expected true or false, got {self.edge_rim!r}")
        set_("device", _device(self.device))
        if self.precision not in PRECISIONS:
            raise InputError(f"precision: expected {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.compile, (bool, str)) or self.compile not in COMPILE_CHOICES:
            raise InputError(f"compile: expected auto, on or off, got {self.compile!r}")
        set_("compile", COMPILE_CHOICES[self.compile])
        set_("window", _window(self.window))
        if self.compression is not None and not isinstance(self.compression, str):
            raise InputError(f"compression: expected a codec name, got {self.compression!r}")
        set_("sample_mask", _sample_mask(self.sample_mask))
        set_("scale", check_scale(self.scale))
        set_("hysteresis", _hysteresis(self.hysteresis))

    def replace(self, **changes: Any) -> InferenceSettings:
        """A copy with ``changes`` (checked again); unknown names are refused, naming the valid ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(
                f"unknown inference setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def predictor_options(self) -> dict[str, Any]:
        """What building a predictor takes from the settings (test-time flips are added per volume:
        :func:`~dendriteseg.infer.predictor.with_flips`)."""
        return {"device": self.device, "precision": self.precision, "compile": self.compile}


def flips_for(tta: bool | str, voxels: int, network: bool = True) -> bool:
    """Whether a run averages over test-time flips: ``tta`` as set, or for "auto", a network's run
    on a volume of at most ``TTA_AUTO_MAX_VOXELS`` (``network``: False for a plain callable)."""
    if tta == "auto":
        return bool(network) and int(voxels) <= TTA_AUTO_MAX_VOXELS
    return bool(tta)


def settings_from(settings: InferenceSettings | None, changes: dict[str, Any]) -> InferenceSettings:
    """``settings`` (default: the defaults) with keyword ``changes`` applied and checked."""
    return (settings or InferenceSettings()).replace(**changes)


def check_scale(scale: Any) -> int | str:
    """A ``scale`` setting as given ("auto" or a whole number 1..MAX_SCALE, also as text)."""
    if isinstance(scale, str):
        if scale == "auto":
            return scale
        scale = int(scale) if scale.strip().isdigit() else scale
    if isinstance(scale, (int, np.integer)) and not isinstance(scale, bool) and 1 <= scale <= MAX_SCALE:
        return int(scale)
    raise InputError(
        f"scale: 'auto' or a whole number of pixels per binned pixel from 1 to {MAX_SCALE}, got {scale!r}"
    )


def check_scale_fits(scale: int, shape: tuple[int, ...], source: Any = "volume") -> None:
    """Refuse a binning that leaves slices narrower than ``MIN_BINNED_PIXELS``."""
    side = min(int(s) for s in shape[-2:])
    if scale > 1 and side // scale < MIN_BINNED_PIXELS:
        most = max(1, side // MIN_BINNED_PIXELS)
        raise InputError(
            f"{source}: scale {scale} leaves {side // scale} pixels a side of {side}; "
            f"at most {most} keeps {MIN_BINNED_PIXELS}"
        )


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise InputError(f"{name}: must be finite, got {value!r}")
    return float(value)


def _fraction(name: str, value: Any) -> float:
    value = _number(name, value)
    if not 0 <= value < 1:
        raise InputError(f"{name}: a fraction of the tile in [0, 1), got {value:g}")
    return value


def _hysteresis(value: Any) -> float:
    value = _number("hysteresis", value)
    if not 0.5 <= value < 1:
        raise InputError(f"hysteresis: a probability in [0.5, 1) (0.5: off), got {value:g}")
    return value


def _whole(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name}: expected a whole number, got {value!r}")
    if value < low:
        raise InputError(f"{name}: must be >= {low}, got {value}")
    return int(value)


def _tile(tile: Any) -> tuple[int, ...] | None:
    if tile is None:
        return None
    try:
        sizes = tuple(tile)
    except TypeError:
        raise InputError(f"tile: give Y,X or Z,Y,X, got {tile!r}") from None
    if len(sizes) not in (2, 3):
        raise InputError(f"tile: give Y,X or Z,Y,X, got {list(sizes)}")
    sizes = tuple(_whole("tile", s, 1) for s in sizes)
    if min(sizes[-2:]) < MIN_TILE:
        raise InputError(
            f"tile: in-plane sides of at least {MIN_TILE} (smaller tiles lose the context the network "
            f"needs and change its answer), got {list(sizes)}"
        )
    return sizes


def _device(device: Any) -> str:
    text = str(device)
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise InputError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}")


def _window(window: Any) -> tuple[float, float] | None:
    if window is None:
        return None
    try:
        low, high = (float(w) for w in window)
    except (TypeError, ValueError):
        raise InputError(f"window: expected two numbers LOW HIGH, got {window!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise InputError(f"window: two finite numbers with LOW < HIGH, got {low:g} {high:g}")
    return (low, high)


def _sample_mask(spec: Any) -> Any:
    if isinstance(spec, (str, Path)):
        text = str(spec)
        if not text:
            raise InputError("sample_mask: expected auto, none, a 0/1 file or an array, got ''")
        return text if text in ("auto", "none") else spec
    if spec is None:
        return "none"
    if hasattr(spec, "shape"):  # an array (or a lazy one) of 0/1
        return spec
    raise InputError(f"sample_mask: expected auto, none, a 0/1 file or an array, got {type(spec).__name__}")
