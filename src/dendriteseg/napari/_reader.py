"""The reader: TIFF/BigTIFF, TIFF folders, Zarr, HDF5 (``/exchange/data`` by default) and ``.npy``.

Volumes larger than ``LAZY_BYTES`` open as dask arrays cut by z-slab, read
only where the viewer looks; smaller ones are read whole. A uint8 volume whose
voxels are 0/1 (or 0/1/2 scribbles) opens as a Labels layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.io import open_volume, parse_location

LAZY_BYTES = 256 * 2**20
SLAB = 16  # slices per dask chunk
SUFFIXES = (".tif", ".tiff", ".zarr", ".h5", ".hdf5", ".npy")


def get_reader(path: str | list[str]) -> Any:
    """The reader function for ``path`` (napari's reader contribution), or None where it is not ours."""
    if isinstance(path, list):
        return None if not path else (get_reader(path[0]) and _read_many)
    text = str(path).rstrip("/")
    if not (text.lower().endswith(SUFFIXES) or Path(text).is_dir()):
        return None
    try:
        parse_location(text)
    except Exception:  # noqa: BLE001 - not a volume we know: another reader may take it
        return None
    return read_layers


def _read_many(paths: list[str]) -> list[tuple]:
    return [layer for path in paths for layer in read_layers(path)]


def read_layers(path: str) -> list[tuple[Any, dict[str, Any], str]]:
    """One layer for the volume at ``path``: (data, attributes, "image" or "labels")."""
    volume = open_volume(str(path).rstrip("/"))
    name = Path(str(path).rstrip("/").split(":")[0]).name
    data: Any
    if volume.nbytes > LAZY_BYTES and volume.ndim == 3:
        import dask.array as da

        data = da.from_array(volume, chunks=(SLAB, *volume.shape[1:]), lock=True, asarray=True)
        probe = np.asarray(volume.read(volume.shape[0] // 2, volume.shape[0] // 2 + 1))
    else:
        data = volume.read()
        probe = data
        volume.close()
    attributes: dict[str, Any] = {"name": name}
    if volume.voxel_size is not None and data.ndim == len(volume.voxel_size):
        attributes["scale"] = tuple(float(v) for v in volume.voxel_size)
    kind = "labels" if _looks_like_labels(probe) else "image"
    return [(data, attributes, kind)]


def _looks_like_labels(array: np.ndarray) -> bool:
    return array.dtype == np.uint8 and (array.size == 0 or int(array.max()) <= 2)
