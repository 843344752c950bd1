"""Whole-volume inference: blended tiles streamed slab by slab, many volumes, Dask.

``segment(volume, model)`` is the entry point; ``segment_series`` runs a
folder or 4D series with resume; ``segment_dask`` runs block-wise on a
``dask.distributed`` cluster.
"""

from dendriteseg.infer.predictor import (
    Predictor,
    TorchPredictor,
    default_model_path,
    load_predictor,
    resolve_predictor,
)
from dendriteseg.infer.segment import SegmentResult, segment
from dendriteseg.infer.series import segment_series
from dendriteseg.infer.settings import InferenceSettings
from dendriteseg.infer.stream import choose_tile, iter_logits
from dendriteseg.infer.tiling import Tiling, gaussian_window, tile_starts

__all__ = [
    "InferenceSettings",
    "Predictor",
    "SegmentResult",
    "Tiling",
    "TorchPredictor",
    "choose_tile",
    "default_model_path",
    "gaussian_window",
    "iter_logits",
    "load_predictor",
    "resolve_predictor",
    "segment",
    "segment_series",
    "tile_starts",
]
