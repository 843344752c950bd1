"""Model files: one ``.safetensors`` file with the weights, and in its header
the architecture, its arguments, the input normalisation and the training
provenance. Loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dendriteseg.errors import InputError

FORMAT = "dendriteseg-model/1"


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself."""

    architecture: str
    arguments: dict[str, Any]
    normalisation: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def save_model(path: str | Path, model: Any, info: ModelInfo, *, half: bool = False) -> None:
    """Write weights and ``info`` to ``path`` (atomically).

    ``half`` stores floating-point tensors as float16 (half the file size);
    :func:`load_model` loads them back into the model's float32 parameters.
    """
    from safetensors.torch import save_file

    from dendriteseg.io.outputs import (
        check_target,
        remove_stale_partials,
        resolve_output,
        temp_sibling,
        writing,
    )

    path = resolve_output(Path(path))
    if path.suffix != ".safetensors":
        raise InputError(f"{path}: model files end in .safetensors")
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    check_target(path, folder=False)
    remove_stale_partials(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    metadata = {"format": FORMAT, "dendriteseg": json.dumps(asdict(info))}
    temp = temp_sibling(path)
    try:
        with writing(path):
            save_file(tensors, str(temp), metadata=metadata)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temp, 0o666 & ~umask)  # as a plainly created file would be
            os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def read_model_info(path: str | Path) -> ModelInfo:
    """Read only the header of a model file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(f"{path}: not a safetensors file ({exc})") from None
    if metadata.get("format") != FORMAT or "dendriteseg" not in metadata:
        raise InputError(f"{path}: not a dendriteseg model (no {FORMAT} metadata)")
    try:
        return ModelInfo(**json.loads(metadata["dendriteseg"]))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: damaged model metadata ({exc})") from None


def load_model(path: str | Path, *, device: str = "cpu") -> tuple[Any, ModelInfo]:
    """Build the model a file describes and load its weights (no pickle).

    Returns
    -------
    (torch.nn.Module in eval mode, ModelInfo)
    """
    from safetensors.torch import load_file

    from dendriteseg.models import MODELS, build_model

    info = read_model_info(path)
    if info.architecture not in MODELS:
        raise InputError(f"{path}: unknown architecture {info.architecture!r}")
    if not isinstance(info.arguments, dict):
        raise InputError(f"{path}: damaged model metadata (arguments are not a mapping)")
    try:
        model = build_model(info.architecture, **info.arguments)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: arguments do not fit {info.architecture} ({exc})") from None
    try:
        state = load_file(str(path), device=device)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise InputError(f"{path}: damaged model file ({type(exc).__name__}: {exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"{path}: weights do not match {info.architecture} ({first})") from None
    return model.to(device).eval(), info


WEIGHTS = Path(__file__).resolve().parents[1] / "weights"  # the shipped model files
DEFAULT_MODEL = "unet3d_default"  # what segment uses when no model is named
DEFAULT_MODEL_2D = "unet2d_default"  # ... and for a single 2D image (a 3D model sees it repeated along z)
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # state, not parameters


def default_model_name(image2d: bool = False) -> str:
    """The shipped model used where none is named: the 2D one for a single 2D image (where installed)."""
    if image2d and (WEIGHTS / f"{DEFAULT_MODEL_2D}.safetensors").is_file():
        return DEFAULT_MODEL_2D
    return DEFAULT_MODEL


@dataclass(frozen=True)
class ModelSummary:
    """A model file at a glance: what ``dendriteseg models`` lists."""

    name: str
    path: Path
    architecture: str
    arguments: dict[str, Any]
    parameters: int
    megabytes: float
    test_scores: dict[str, Any]
    default: bool = False
    train_quality: str = "?"
    data: str = "?"
    epochs: int = 0
    last_val: dict[str, float] = field(default_factory=dict)

    def row(self) -> tuple[str, ...]:
        """Name (``*`` for the default), parameters, MB, test IoU, BF1, BDE, as text."""
        scores = [
            f"{self.test_scores[k]:.3f}" if k in self.test_scores else "-" for k in ("iou", "bf1", "bde")
        ]
        name = self.name + (" *" if self.default else "")
        return (name, f"{self.parameters:,}", f"{self.megabytes:.1f}", *scores)

    def describe(self) -> str:
        """One line: architecture, training data and the last validation IoU."""
        return (
            f"{self.architecture} {self.arguments}, trained on {self.train_quality} labels of {self.data}, "
            f"{self.epochs} epochs, last val IoU {self.last_val.get('iou', float('nan')):.4f}"
        )


def count_file_parameters(path: str | Path) -> int:
    """Learnable parameters stored in a model file, counted from its header (nothing is built)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(path), framework="pt") as fh:
        for key in fh.keys():
            if not key.endswith(_BUFFERS):
                count = 1
                for n in fh.get_slice(key).get_shape():
                    count *= int(n)
                total += count
    return total


def summarize_model(path: str | Path) -> ModelSummary:
    """A :class:`ModelSummary` of a model file, read from its header (and, for its test
    scores, the JSON file of the same name beside it where there is one, as for shipped models)."""
    path = Path(path)
    info = read_model_info(path)
    history = info.provenance.get("history") or []
    scores = dict(info.provenance.get("test_scores", {}))
    record = path.with_suffix(".json")  # a shipped model's scores, kept beside it
    if path.resolve().parent == WEIGHTS and record.is_file():
        try:
            scores = json.loads(record.read_text())
        except ValueError as exc:
            raise InputError(f"{record}: not valid JSON ({exc})") from None
    return ModelSummary(
        name=path.stem,
        path=path,
        architecture=info.architecture,
        arguments=dict(info.arguments),
        parameters=count_file_parameters(path),
        megabytes=path.stat().st_size / 1e6,
        test_scores=scores,
        default=path.parent == WEIGHTS and path.stem in (DEFAULT_MODEL, DEFAULT_MODEL_2D),
        train_quality=str(info.provenance.get("train_quality", "?")),
        data=str(info.provenance.get("data", "?")),
        epochs=len(history),
        last_val=dict(history[-1].get("val", {})) if history else {},
    )


def shipped_models() -> list[ModelSummary]:
    """The model files shipped with the package, by name (``--model NAME``)."""
    return [summarize_model(path) for path in sorted(WEIGHTS.glob("*.safetensors"))]
