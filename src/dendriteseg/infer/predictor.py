"""Predictors: what the inference pipeline runs tiles through.

A :class:`Predictor` maps a float32 batch ``(B, Z, Y, X)`` of normalised
intensities (the model file's percentile window mapped to 0..1) to logits of
the same shape: the log-odds that each voxel is dendrite (> 0: dendrite).
It declares how its tiles must be cut (``tile_depth``: slices per tile for
3D networks, None for slice-wise ones; ``size_multiple``: the (z, y, x)
multiples tiles start at and measure), its ``normalisation``, and
``prepare(voxels)``, told the size of what comes before it starts.

:func:`resolve_predictor` is the one place a ``model`` argument becomes a
predictor: a model file or shipped name (``A+B``: an
:class:`EnsemblePredictor`), a torch module (:class:`TorchPredictor`, the
fastest path measured for the device, :mod:`dendriteseg.infer.cpu`), a
predictor, or any callable ``f(batch) -> logits``
(:class:`CallablePredictor`; an optional ``tile_depth`` attribute on it says
how many slices its tiles need). :class:`BinnedPredictor` wraps one to see
binned tiles.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dendriteseg.device import autocast, resolve_device, resolve_precision
from dendriteseg.errors import InputError
from dendriteseg.models.files import DEFAULT_MODEL, WEIGHTS
from dendriteseg.preprocess import NORMALISATION

log = logging.getLogger(__name__)

COMPILE_MIN_VOXELS = 64_000_000  # "auto" compiles for volumes this large (benchmarks/inference.py)
FLIPS = ((), (-1,), (-2,), (-1, -2))  # the four in-plane flips of test-time averaging: none, x, y, both


@runtime_checkable
class Predictor(Protocol):
    """What the inference pipeline needs of a predictor (see the module notes)."""

    tile_depth: int | None
    size_multiple: tuple[int, int, int]
    normalisation: dict[str, Any]

    def prepare(self, voxels: int) -> None: ...

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class CallablePredictor:
    """A plain callable ``f(batch) -> logits`` as a :class:`Predictor`.

    Tiles are slice-wise unless ``tile_depth`` is given (or ``f`` has a
    ``tile_depth`` attribute); no alignment; the default normalisation.
    """

    def __init__(self, fn: Any, *, tile_depth: int | None = None, name: str | None = None):
        if not callable(fn):
            raise InputError(
                f"model: expected a model file, a torch module or a callable, got {type(fn).__name__}"
            )
        self.fn = fn
        declared = getattr(fn, "tile_depth", None)  # the documented attribute of plain callables
        self.tile_depth = int(tile_depth or declared) if (tile_depth or declared) else None
        self.size_multiple = (1, 1, 1)
        self.normalisation = dict(NORMALISATION)
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def prepare(self, voxels: int) -> None:
        """Nothing to prepare for a plain callable."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.fn(batch)

    def __repr__(self) -> str:
        return f"CallablePredictor({self.name})"


def default_model_path() -> Path:
    """The shipped default model file."""
    path = WEIGHTS / f"{DEFAULT_MODEL}.safetensors"
    if not path.is_file():
        raise InputError(f"{path}: the default model is missing from this installation; pass --model")
    return path


def resolve_model_path(name: str | Path | None) -> Path:
    """A model file from a path or the name of a shipped model (``unet3d_default``)."""
    if name is None:
        return default_model_path()
    path = Path(name)
    if path.suffix != ".safetensors":
        shipped = WEIGHTS / f"{name}.safetensors"
        if shipped.is_file():
            return shipped
        raise InputError(f"{name}: not a .safetensors model file or a shipped model name")
    return path


class TorchPredictor:
    """A dendriteseg network as a :class:`Predictor`.

    Parameters
    ----------
    model : torch.nn.Module
        A network from :mod:`dendriteseg.models` (2 output channels).
    device : "auto", "cpu", "cuda" or "cuda:N"
    precision : "auto", "fp32", "bf16" or "fp16"
        See :func:`dendriteseg.device.resolve_precision`.
    tta : bool
        Average the logits over the four in-plane flips (4x the work).
    compile : bool or "auto"
        Run the network through ``torch.compile`` (with weight freezing on
        the CPU); the first batch pays the compile time, which only a large
        volume repays (``benchmarks/inference.py``). "auto": only on the CPU, and only
        once :meth:`prepare` is told of a volume of at least
        ``COMPILE_MIN_VOXELS``. If compiling fails (no C++ compiler, an
        unsupported platform), the eager path is used with a warning.
    tile_depth : int, optional
        Slices per tile for 3D models; default ``2 ** z_levels`` (4 for the
        shipped model); :func:`load_predictor` passes the depth of the
        model's training patches where those were deeper.
    """

    def __init__(
        self,
        model: Any,
        *,
        device: str = "auto",
        precision: str = "auto",
        tta: bool = False,
        compile: bool | str = False,
        tile_depth: int | None = None,
        normalisation: dict[str, Any] | None = None,
        name: str = "model",
    ):
        import torch

        self.device = resolve_device(device) if isinstance(device, str) else device
        self.precision = resolve_precision(precision, self.device)
        self.dims = getattr(model, "dims", 3)
        self.tta = tta
        self.name = name
        self.normalisation = {**NORMALISATION, **(normalisation or {})}
        if self.dims == 3:
            z_levels = getattr(model, "z_levels", 0)
            self.tile_depth: int | None = int(tile_depth or max(4, 2**z_levels))
        else:
            self.tile_depth = None
        multiple = tuple(model.size_multiple()) if hasattr(model, "size_multiple") else (1,) * self.dims
        self.size_multiple: tuple[int, int, int] = tuple(multiple) if self.dims == 3 else (1, *multiple)
        model = model.eval()
        self.memory_format = torch.channels_last_3d if self.dims == 3 else torch.contiguous_format
        source = model.to(self.device)
        if self.dims == 3 and self.device.type == "cpu":
            source = source.to(memory_format=torch.channels_last_3d)
        if self.device.type == "cpu" and self.precision == "fp32" and self.dims == 3:
            from dendriteseg.infer.cpu import optimise_for_cpu

            model = optimise_for_cpu(source).to(memory_format=torch.channels_last_3d)
        else:
            model = source
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.model = model
        self._source = source  # what torch.compile gets (inductor folds and fuses by itself)
        self._forward = _logit_difference(model)
        self._compiled_batch: int | None = None
        self._compile_pending = False
        if compile not in (True, False, "auto"):
            raise InputError(f"compile: expected True, False or 'auto', got {compile!r}")
        self.compile = compile
        if compile is True:
            self._use_compiled()

    def prepare(self, voxels: int) -> None:
        """Called before a volume of ``voxels``: compiles when ``compile="auto"`` and it pays."""
        if self.compile == "auto" and self.device.type == "cpu" and voxels >= COMPILE_MIN_VOXELS:
            self._use_compiled()

    @property
    def compiled(self) -> bool:
        return self._compiled_batch is not None or self._compile_pending

    def _use_compiled(self) -> None:
        import torch

        if self.compiled:
            return
        if self.device.type == "cpu":
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
        self._eager = self._forward
        self._forward = torch.compile(_logit_difference(self._source), dynamic=False)
        self._compile_pending = True

    def _run(self, x: Any) -> Any:
        """The logit difference of a batch, through the compiled net when there is one."""
        import torch.nn.functional as F

        if not self.compiled:
            return self._forward(x)
        b = x.shape[0]
        if self._compiled_batch is None:
            self._compiled_batch = b
        elif b < self._compiled_batch:  # keep one static shape: pad the last, smaller batch
            pad = [0] * (2 * (x.dim() - 1)) + [0, self._compiled_batch - b]
            return self._run(F.pad(x, pad).contiguous(memory_format=self.memory_format))[:b]
        try:
            out = self._forward(x)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back to eager
            log.warning("torch.compile failed (%s: %s); running without it", type(exc).__name__, exc)
            self._forward, self._compiled_batch, self._compile_pending = self._eager, None, False
            self.compile = False
            return self._forward(x)
        self._compile_pending = False
        return out

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        b, z, y, x = batch.shape
        tensor = torch.from_numpy(batch).to(self.device, non_blocking=True)
        if self.dims == 2:
            tensor = tensor.reshape(b * z, 1, y, x)
        else:
            tensor = tensor[:, None].contiguous(memory_format=self.memory_format)
        passes = FLIPS if self.tta else FLIPS[:1]
        with torch.inference_mode(), autocast(self.device, self.precision):
            total = None
            for dims in passes:
                inp = tensor.flip(dims) if dims else tensor
                out = self._run(inp).float()
                out = out.flip(dims) if dims else out
                total = out if total is None else total + out
            logits = total / len(passes)
        return logits.reshape(b, z, y, x).cpu().numpy()

    def __repr__(self) -> str:
        return f"TorchPredictor({self.name}, device={self.device}, precision={self.precision})"


def _logit_difference(model: Any) -> Any:
    """Wrap a 2-class network so that it returns dendrite log-odds (logit 1 - logit 0).

    (torch is imported here, not at module level, so that callables without
    torch can use :func:`~dendriteseg.infer.segment`.)
    """
    import torch

    class LogitDifference(torch.nn.Module):
        def __init__(self, net: Any):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.net(x)
            return out[:, 1] - out[:, 0]

    return LogitDifference(model)


def ensemble_members(name: Any) -> list[str] | None:
    """The model names or files of an ensemble written ``A+B`` (None for one model)."""
    if not isinstance(name, (str, Path)) or "+" not in str(name) or Path(name).is_file():
        return None
    parts = [part.strip() for part in str(name).split("+")]
    if len(parts) < 2 or not all(parts):
        raise InputError(f"{name}: an ensemble is written MODEL+MODEL (files or shipped names)")
    return parts


class EnsemblePredictor:
    """Several predictors as one: the mean of their dendrite probabilities, as log-odds.

    Each member normalises, tiles and runs as it would alone; the tiles
    follow the deepest member's tile depth and every member's alignment.
    It costs the members' time together; ``benchmarks/ensemble.py``
    measures its accuracy and time against each member alone.
    """

    def __init__(self, members: list[Any], name: str = "ensemble"):
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two predictors")
        members = [_protocol(m) for m in members]
        norms = [m.normalisation for m in members]
        if any(n != norms[0] for n in norms[1:]):
            raise InputError(f"{name}: its models normalise intensities differently ({norms})")
        self.members = members
        self.name = name
        self.normalisation = norms[0]
        depths = [m.tile_depth for m in members if m.tile_depth]
        self.tile_depth = max(depths) if depths else None
        multiples = [m.size_multiple for m in members]
        self.size_multiple = tuple(int(np.lcm.reduce(axis)) for axis in zip(*multiples, strict=True))

    def prepare(self, voxels: int) -> None:
        for m in self.members:
            m.prepare(voxels)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        logits = [np.clip(np.asarray(m(batch), np.float32), -30.0, 30.0) for m in self.members]  # finite exp
        p = np.clip(np.mean([1.0 / (1.0 + np.exp(-x)) for x in logits], axis=0), 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p)).astype(np.float32)

    def __repr__(self) -> str:
        return f"EnsemblePredictor({', '.join(repr(m) for m in self.members)})"


class BinnedPredictor:
    """A predictor that sees its tiles binned ``factor`` x ``factor`` in-plane (the mean of each block).

    For scans whose pixels are much finer than the structure the model was
    trained on (large petals, strong pixel noise): the network sees the
    scan at ``1 / factor`` of its resolution, where the features have the
    sizes it knows and the noise is averaged down, and its log-odds (not its
    labels) are brought back to every pixel by bilinear interpolation, so the
    boundary falls between binned pixels where the network placed it. Tiles
    are ``factor`` times the network's alignment in-plane.
    """

    def __init__(self, inner: Any, factor: int):
        if int(factor) != factor or factor < 1:
            raise InputError(f"scale: a whole number of pixels per binned pixel (1, 2, 3, ...), got {factor}")
        inner = _protocol(inner)
        self.inner, self.factor = inner, int(factor)
        self.normalisation = inner.normalisation
        self.tile_depth = inner.tile_depth
        mz, my, mx = inner.size_multiple
        self.size_multiple = (mz, my * self.factor, mx * self.factor)

    def prepare(self, voxels: int) -> None:
        self.inner.prepare(voxels // self.factor**2)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        f = self.factor
        b, z, y, x = batch.shape
        binned = np.asarray(batch, np.float32).reshape(b, z, y // f, f, x // f, f).mean(axis=(3, 5))
        logits = torch.from_numpy(np.ascontiguousarray(self.inner(binned), np.float32))
        low = logits.reshape(b * z, 1, y // f, x // f)
        up = F.interpolate(low, size=(y, x), mode="bilinear", align_corners=False)
        return up.reshape(b, z, y, x).numpy()

    def __repr__(self) -> str:
        return f"BinnedPredictor({self.inner!r}, factor={self.factor})"


class FlippedPredictor:
    """A predictor averaged over the four in-plane flips of each batch (four calls of ``inner``).

    A tile and its mirror images hold the same dendrites, but not the same
    noise as the network sees it: the mean of the four log-odds keeps what
    every orientation finds and weakens what only one does (docs/inference.md).
    """

    def __init__(self, inner: Any, flips: tuple[tuple[int, ...], ...] = FLIPS):
        inner = _protocol(inner)
        self.inner, self.flips = inner, tuple(flips)
        self.normalisation = inner.normalisation
        self.tile_depth = inner.tile_depth
        self.size_multiple = inner.size_multiple

    def prepare(self, voxels: int) -> None:
        self.inner.prepare(voxels)

    def flipped_only(self) -> FlippedPredictor:
        """The mean of the flipped passes alone, for a run that has the unflipped one already."""
        return FlippedPredictor(self.inner, tuple(axes for axes in self.flips if axes))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, np.float32)
        total = np.zeros(batch.shape, np.float32)
        for axes in self.flips:
            seen = np.ascontiguousarray(np.flip(batch, axes)) if axes else batch
            out = np.asarray(self.inner(seen), np.float32)
            total += np.flip(out, axes) if axes else out
        return total / len(self.flips)

    def __repr__(self) -> str:
        return f"FlippedPredictor({self.inner!r})"


def with_flips(predictor: Predictor, tta: bool | str, voxels: int) -> Predictor:
    """``predictor`` averaged over test-time flips where ``tta`` says so for a volume of ``voxels``
    (:func:`~dendriteseg.infer.settings.flips_for`); as it is where it flips already."""
    from dendriteseg.infer.settings import flips_for

    if flips(predictor) or not flips_for(tta, voxels, network=not isinstance(predictor, CallablePredictor)):
        return predictor
    if isinstance(predictor, EnsemblePredictor):  # each member's log-odds averaged, as each alone would
        return EnsemblePredictor([with_flips(m, True, voxels) for m in predictor.members], predictor.name)
    return FlippedPredictor(predictor)


def flips(predictor: Any) -> bool:
    """Whether ``predictor`` averages over the in-plane flips itself."""
    if isinstance(predictor, FlippedPredictor):
        return True
    if isinstance(predictor, EnsemblePredictor):
        return all(flips(m) for m in predictor.members)
    return getattr(predictor, "tta", False) is True


def load_predictor(model: Any = None, **kwargs: Any) -> TorchPredictor | EnsemblePredictor:
    """A predictor from a model file, a shipped model name, None (the default model),
    or several of those joined by ``+`` (an :class:`EnsemblePredictor`).

    Loading reads safetensors only; nothing is unpickled.
    """
    from dendriteseg.models.files import load_model

    members = ensemble_members(model)
    if members:
        return EnsemblePredictor([load_predictor(m, **kwargs) for m in members], name=str(model))
    path = resolve_model_path(model)
    net, info = load_model(path)
    kwargs.setdefault("normalisation", info.normalisation)
    trained_depth = (info.provenance.get("config") or {}).get("patch", [0])[0]
    if getattr(net, "dims", 3) == 3 and int(trained_depth) > 2 ** getattr(net, "z_levels", 0):
        # a model trained on deeper patches pools z to another bottleneck depth: tiles as deep as its patches
        kwargs.setdefault("tile_depth", int(trained_depth))
    return TorchPredictor(net, name=path.stem, **kwargs)


def resolve_predictor(
    model: Any = None,
    *,
    device: str = "auto",
    precision: str = "auto",
    tta: bool = False,
    compile: bool | str = False,
) -> Predictor:
    """The predictor for a ``model`` argument (see the module notes); the one place one is made.

    A predictor passes through as it is (its own device and precision hold).
    """
    if model is None or isinstance(model, (str, Path)):
        return load_predictor(model, device=device, precision=precision, tta=tta, compile=compile)
    if _is_module(model):
        return TorchPredictor(model, device=device, precision=precision, tta=tta, compile=compile)
    if isinstance(model, Predictor):
        return model
    return CallablePredictor(model)


def _protocol(predictor: Any) -> Predictor:
    """A predictor as it is, or a plain callable wrapped as one."""
    return predictor if isinstance(predictor, Predictor) else CallablePredictor(predictor)


def _is_module(model: Any) -> bool:
    try:
        from torch import nn
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, nn.Module)
