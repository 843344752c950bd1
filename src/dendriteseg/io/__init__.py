"""Volume input/output by suffix: TIFF/BigTIFF, TIFF folders, Zarr, HDF5, NumPy.

``open_volume`` gives a lazy :class:`Volume` that reads z-slabs on demand;
``read_volume`` loads everything; ``write_volume`` and ``VolumeWriter``
write atomically (temporary name, then rename).
"""

from dendriteseg.io.location import DEFAULT_HDF5_DATASET, FORMATS, Location, parse_location
from dendriteseg.io.outputs import write_text_atomic
from dendriteseg.io.readers import (
    ArrayVolume,
    SliceStack,
    Volume,
    as_stack,
    as_volume,
    open_volume,
    read_metadata,
    read_volume,
)
from dendriteseg.io.writers import VolumeWriter, convert_volume, write_volume

__all__ = [
    "DEFAULT_HDF5_DATASET",
    "FORMATS",
    "ArrayVolume",
    "SliceStack",
    "as_stack",
    "Location",
    "Volume",
    "VolumeWriter",
    "convert_volume",
    "as_volume",
    "open_volume",
    "parse_location",
    "read_metadata",
    "read_volume",
    "write_text_atomic",
    "write_volume",
]
