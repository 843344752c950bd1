"""Robust fine-tuning by weight interpolation (WiSE-FT, Wortsman et al. 2022).

A model continued on new data (here: scans with the artefacts of real ones)
gains there and loses some of what it knew. The straight line between its
weights and the starting model's keeps much of the gain at a fraction of
the loss: both lie in one basin of the loss. :func:`interpolate` makes the
model at ``alpha`` (0: the starting model, 1: the continued one);
:func:`choose_alpha` takes the largest ``alpha`` of a grid whose score on
the old validation data stays within ``tolerance`` of the starting model's,
so the rule is stated in advance and never looks at test data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dendriteseg.errors import InputError
from dendriteseg.io import write_text_atomic
from dendriteseg.models.files import ModelInfo, load_model, save_model

ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class Interpolation:
    """A recipe's WiSE-FT step: the grid of ``alphas`` and the validation IoU it may give up."""

    alphas: tuple[float, ...] = ALPHAS
    tolerance: float = 0.005

    def __post_init__(self):
        if not self.alphas or any(not 0 < a <= 1 for a in self.alphas):
            raise InputError(f"wise: alphas must lie in (0, 1], got {list(self.alphas)}")
        if self.tolerance < 0:
            raise InputError(f"wise: tolerance must be at least 0, got {self.tolerance}")


@dataclass
class WiseResult:
    """The model kept, its alpha, and the validation IoU of every alpha tried (0: the start)."""

    model: Path
    alpha: float
    val_iou: dict[float, float] = field(default_factory=dict)


def average_weights(
    states: list[dict[str, torch.Tensor]], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """The element-wise mean (``weights``: weighted; default equal) of state dicts of one architecture;
    counters such as BatchNorm's ``num_batches_tracked`` are taken from the first."""
    weights = list(weights) if weights is not None else [1.0 / len(states)] * len(states)
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = sum(w * s[key].float() for w, s in zip(weights, states, strict=True)).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


def blend_weights(
    start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * start + alpha * tuned`` for floating-point tensors; counters taken from ``tuned``."""
    if start.keys() != tuned.keys():
        raise InputError("wise: the two models do not have the same layers")
    return average_weights([tuned, start], [alpha, 1.0 - alpha])


def _lineage(provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """A provenance and those of its parents (training starts), each without its history."""
    chain = []
    while provenance:
        chain.append({k: v for k, v in provenance.items() if k != "history"})
        provenance = (provenance.get("parent") or {}).get("provenance") or {}
    return chain


def interpolate(start: Path, tuned: Path, alpha: float, out: Path) -> Path:
    """Write the model at ``alpha`` between ``start`` and ``tuned`` to ``out``; its provenance keeps
    both models' provenance (so every dataset either was trained on), each once: the fine-tuned model's
    is the file's own, and the start's is left out where it is in that one's chain of parents (a model
    continued from ``start``), so that continuing a continued model does not copy its lineage again."""
    a, a_info = load_model(start)
    b, b_info = load_model(tuned)
    if (a_info.architecture, a_info.arguments) != (b_info.architecture, b_info.arguments):
        raise InputError(f"{tuned}: not the architecture of {start}; they cannot be interpolated")
    b.load_state_dict(blend_weights(a.state_dict(), b.state_dict(), alpha))
    start_provenance: Any = a_info.provenance
    start_chain = _lineage(a_info.provenance)
    if start_chain and start_chain[0] in _lineage(b_info.provenance)[1:]:
        start_provenance = "the fine-tuned model's parent (in this file's chain of parents)"
    provenance = {
        **b_info.provenance,
        "wise_ft": {
            "alpha": alpha,
            "rule": "weights (1 - alpha) * start + alpha * fine_tuned (WiSE-FT)",
            "start": {"file": str(start), "provenance": start_provenance},
            "fine_tuned": {"file": str(tuned), "provenance": "this file's own"},
        },
    }
    save_model(out, b, ModelInfo(b_info.architecture, b_info.arguments, b_info.normalisation, provenance))
    return out


def choose_alpha(
    start: Path,
    tuned: Path,
    score: Callable[[Path], float],
    folder: Path,
    grid: Interpolation,
) -> WiseResult:
    """The largest alpha of ``grid`` whose ``score`` (validation IoU) is within ``grid.tolerance`` of
    ``start``'s; the start itself where none is. Every candidate is kept in ``folder``, and the scores
    in ``folder/scores.json``, so a rerun scores nothing twice."""
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / "scores.json"
    scores: dict[str, float] = json.loads(record.read_text()) if record.is_file() else {}

    def scored(key: str, path: Path) -> float:
        if key not in scores:
            scores[key] = float(score(path))
            write_text_atomic(record, json.dumps(scores, indent=2) + "\n")
        return scores[key]

    floor = scored("0", start) - grid.tolerance
    kept = WiseResult(start, 0.0)
    for alpha in sorted(grid.alphas):
        path = folder / f"alpha_{alpha:g}.safetensors"
        if not path.is_file():
            interpolate(start, tuned, alpha, path)
        if scored(f"{alpha:g}", path) >= floor:
            kept = WiseResult(path, alpha)
    kept.val_iou = {float(k): v for k, v in scores.items()}
    return kept


def alphas_from(values: Any) -> Interpolation:
    """An :class:`Interpolation` from a recipe's ``wise`` mapping."""
    if not isinstance(values, dict):
        raise InputError(f"wise: expected a mapping of alphas and tolerance, got {values!r}")
    unknown = set(values) - {"alphas", "tolerance"}
    if unknown:
        raise InputError(f"wise: unknown keys {sorted(unknown)}")
    alphas: Sequence[float] = values.get("alphas", ALPHAS)
    return Interpolation(tuple(float(a) for a in alphas), float(values.get("tolerance", 0.005)))
