"""Where a volume lives: a path, its format, and (for HDF5/Zarr) an inner key.

``file.h5:/exchange/data`` names a dataset inside an HDF5 file; the part
after the colon is optional and defaults to ``/exchange/data`` (the APS
DXchange layout). ``store.zarr:/labels`` does the same for a Zarr group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dendriteseg.errors import FormatError

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".nxs")
ZARR_SUFFIXES = (".zarr",)
NPY_SUFFIXES = (".npy",)
DEFAULT_HDF5_DATASET = "/exchange/data"

FORMATS = ("tiff", "tiff-dir", "zarr", "hdf5", "npy")

_KEYED = re.compile(
    r"^(?P<path>.+?(?:" + "|".join(re.escape(s) for s in HDF5_SUFFIXES + ZARR_SUFFIXES) + r"))"
    r":(?P<key>/.*)$",
    re.IGNORECASE,
)


def split_key(spec: str | Path) -> tuple[str, str | None]:
    """Split ``file.h5:/group/data`` into ``("file.h5", "/group/data")`` (key None if absent)."""
    text = str(spec)
    match = _KEYED.match(text)
    return (match.group("path"), match.group("key")) if match else (text, None)


@dataclass(frozen=True)
class Location:
    """A parsed volume location.

    Attributes
    ----------
    path : Path
        The file or directory on disk.
    format : str
        One of ``FORMATS``.
    key : str or None
        Dataset path inside an HDF5 file or array path inside a Zarr group.
    """

    path: Path
    format: str
    key: str | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.key}" if self.key else str(self.path)


def _is_zarr_dir(path: Path) -> bool:
    return path.is_dir() and any((path / marker).exists() for marker in ("zarr.json", ".zarray", ".zgroup"))


def parse_location(spec: str | Path, *, for_writing: bool = False) -> Location:
    """Parse a user-given volume location and decide its format by suffix.

    Parameters
    ----------
    spec : str or Path
        ``vol.tif``, ``slices/`` (a folder of 2D TIFFs), ``vol.zarr``,
        ``vol.h5:/exchange/data``, ``vol.npy``.
    for_writing : bool
        When True, a path without a known suffix names a folder of TIFF
        slices to be created; when False it must be an existing folder.

    Raises
    ------
    FormatError
        The suffix is not one we read or write.

    Examples
    --------
    >>> parse_location("scan.h5").key
    '/exchange/data'
    >>> parse_location("scan.h5:/tomo/recon").format
    'hdf5'
    """
    text = str(spec)
    key = None
    match = _KEYED.match(text)
    if match:
        text, key = match.group("path"), match.group("key")
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return Location(path, "hdf5", key or DEFAULT_HDF5_DATASET)
    if suffix in ZARR_SUFFIXES or _is_zarr_dir(path):
        return Location(path, "zarr", key)
    if suffix in TIFF_SUFFIXES:
        return Location(path, "tiff")
    if suffix in NPY_SUFFIXES:
        return Location(path, "npy")
    if path.is_dir() or (for_writing and suffix == "" and not path.exists()):
        return Location(path, "tiff-dir")
    if not path.exists() and not for_writing:
        raise FormatError(f"{spec}: no such file or directory")
    raise FormatError(
        f"{spec}: unsupported format {suffix or '(no suffix)'!r}; use .tif/.tiff, a folder of "
        ".tif slices, .zarr, .h5/.hdf5 (file.h5:/dataset) or .npy"
    )
