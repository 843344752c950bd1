"""Score a model on labelled volumes: segment -> score every slice -> summarise -> mean.

The one place where validation during training, the shipped models' test
scores, the training recipes and every benchmark turn a model and some
labelled volumes into accuracy, IoU, boundary F1 and BDE. The prediction
is :func:`dendriteseg.infer.segment` (tiled, blended), the same code a user
runs; each volume is summarised as in ``shared/DESIGN.md`` (NaN-mean over
its slices) and the volumes' summaries are averaged ignoring NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dendriteseg.infer.predictor import resolve_predictor
from dendriteseg.infer.segment import segment
from dendriteseg.infer.settings import InferenceSettings
from dendriteseg.metrics import UNLABELLED, Evaluation, score_labelled, score_slices, summarize

SCORES = ("accuracy", "iou", "bf1", "bde")


@dataclass
class ModelScores:
    """Mean scores over volumes, each volume's :class:`~dendriteseg.metrics.Evaluation`,
    and (when asked for) the predicted labels."""

    mean: dict[str, float]
    volumes: list[Evaluation]
    labels: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0  # spent segmenting (score_model only)
    voxels: int = 0

    @property
    def voxels_per_second(self) -> float:
        return self.voxels / self.seconds if self.seconds > 0 else math.nan

    def __getitem__(self, key: str) -> float:
        return self.mean[key]


def _pair(volume: Any) -> tuple[Any, Any]:
    """``(image, label)`` from a pair or an object with ``image`` and ``label`` (a LabelledVolume)."""
    if hasattr(volume, "image") and hasattr(volume, "label"):
        return volume.image, volume.label
    image, label = volume
    return image, label


def mean_scores(evaluations: list[Evaluation]) -> dict[str, float]:
    """The NaN-ignoring mean of each score over volumes (NaN where every volume skipped it)."""
    out = {}
    for key in SCORES:
        kept = [getattr(e, key) for e in evaluations if not math.isnan(getattr(e, key))]
        out[key] = float(np.mean(kept)) if kept else math.nan
    return out


def score_predictions(pairs: Iterable[tuple[Any, Any]], *, tolerance: float = 4.0) -> ModelScores:
    """Scores of ``(prediction, truth)`` label volumes, each ``(z, y, x)``."""
    evaluations = [summarize(score_slices(p, t, tolerance=tolerance), tolerance=tolerance) for p, t in pairs]
    return ModelScores(mean_scores(evaluations), evaluations)


def _evaluate(pred: np.ndarray, truth: Any, tolerance: float) -> Evaluation:
    """A volume's summary: per slice, or over the labelled voxels where labels are partial."""
    truth = np.asarray(truth)
    if truth.dtype != bool and (truth == UNLABELLED).any():
        return score_labelled(pred, truth, tolerance=tolerance)
    return summarize(score_slices(pred, truth, tolerance=tolerance), tolerance=tolerance)


def score_model(
    model: Any,
    volumes: Iterable[Any],
    *,
    window: tuple[float, float] | None = None,
    tolerance: float = 4.0,
    keep_labels: bool = False,
    settings: InferenceSettings | None = None,
    **changes: Any,
) -> ModelScores:
    """Segment each volume with ``model`` and score it against its labels.

    Parameters
    ----------
    model : anything :func:`~dendriteseg.infer.segment` takes
        A model file, a shipped name (``A+B`` for an ensemble), a torch
        module, a predictor or a callable; loaded once for all volumes.
    volumes : iterable of ``(image, label)`` pairs or LabelledVolume
    window : (low, high), optional
        The grey window of every image; default: measured per volume as
        the model asks. Images that are normalised already take ``(0, 1)``.
    tolerance : float
        BF1 tolerance in pixels.
    keep_labels : bool
        Also return the predicted labels (``ModelScores.labels``).
    settings, **changes
        Inference settings as :func:`~dendriteseg.infer.segment` takes them (``device``,
        ``precision``, ``tile``, ``tta``, ...); ``compile`` defaults to off here.
    """
    settings = (settings or InferenceSettings(compile=False)).replace(window=window, **changes)
    predictor = resolve_predictor(model, **settings.predictor_options)
    evaluations, labels, seconds, voxels = [], [], 0.0, 0
    for volume in volumes:
        image, truth = _pair(volume)
        result = segment(image, predictor, settings=settings)
        pred, seconds, voxels = result.labels, seconds + result.seconds, voxels + int(np.prod(result.shape))
        evaluations.append(_evaluate(pred, truth, tolerance))
        if keep_labels:
            labels.append(pred)
    return ModelScores(mean_scores(evaluations), evaluations, labels, seconds, voxels)
