"""The writer: a Labels layer to TIFF, Zarr, HDF5 or ``.npy``, atomically (as the command line writes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dendriteseg.io import write_volume


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write a Labels layer's data to ``path`` (the format follows the suffix); returns ``[path]``."""
    array = np.asarray(data)
    if array.min(initial=0) < 0 or array.max(initial=0) > 255:
        raise ValueError(f"{path}: labels must be 0 to 255 to be saved as uint8")
    scale = attributes.get("scale")
    voxel_size = tuple(float(s) for s in scale) if scale is not None and len(scale) == 3 else None
    write_volume(path, array.astype(np.uint8), voxel_size=voxel_size)
    return [path]
