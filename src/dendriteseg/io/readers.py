"""Lazy volume readers: shape and dtype up front, voxels only when asked.

Every reader reads z-slabs with plain file reads (``pread``, TIFF page
reads, HDF5/Zarr chunk reads), never by memory-mapping the whole file, so
the resident memory of a streaming job stays the size of its slabs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.errors import DendritesegError, FormatError, InputError
from dendriteseg.io.location import TIFF_SUFFIXES, Location, parse_location

VoxelSize = tuple[float, float, float]


def natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _check_dtype(dtype: np.dtype, source: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise FormatError(f"{source}: unsupported voxel type {dtype}; expected integers or floats")
    return dtype


def _squeeze_shape(shape: tuple[int, ...], source: str) -> tuple[int, ...]:
    """The (z, y, x) or (y, x) shape of stored data: one rule for every format.

    Axes of length 1 beyond three, leading or trailing (``(1, 1, Z, Y, X)``,
    ``(1, Z, Y, X)``, ``(Z, Y, X, 1)``), are dropped; any other shape with
    more than three axes (a time series, colour channels) is refused.
    """
    stored = tuple(int(s) for s in shape)
    shape = stored
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise FormatError(
            f"{source}: shape {stored} has {len(stored)} axes; expected (z, y, x), with any further axes "
            "of length 1 (segment a time series one volume at a time)"
        )
    if len(shape) < 2 or min(shape) < 1:
        raise FormatError(f"{source}: expected a 2D image or a 3D volume (z, y, x), got shape {stored}")
    return shape


def _leading_axes(stored: tuple[int, ...]) -> int:
    """How many leading axes :func:`_squeeze_shape` drops from a stored shape."""
    lead = 0
    while len(stored) - lead > 3 and stored[lead] == 1:
        lead += 1
    return lead


def _voxel_size(value: Any) -> VoxelSize | None:
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(values) != 3 or not all(np.isfinite(values)) or min(values) <= 0:
        return None
    return values  # type: ignore[return-value]


def _shaped_voxel_size(tif: Any) -> VoxelSize | None:
    """The voxel size our writer stores in a TIFF's shaped (JSON) description."""
    for meta in tif.shaped_metadata or ():
        size = _voxel_size(meta.get("voxel_size_um"))
        if size:
            return size
    return None


class Volume:
    """A volume on disk that reads z-slabs on demand.

    Indexing (``vol[z0:z1]``, ``vol[5, 10:20]``) returns NumPy arrays; only
    the z-range the key touches is read. ``np.asarray(vol)`` reads it all.
    Use as a context manager, or call ``close()``.

    Attributes
    ----------
    shape : tuple of int
        ``(z, y, x)``, or ``(y, x)`` for a single 2D image.
    dtype : numpy.dtype
    voxel_size : tuple of float or None
        ``(z, y, x)`` in micrometres when the file records it.
    source : str
        The location it was opened from, for messages.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    voxel_size: VoxelSize | None = None
    source: str = ""

    # -- to be provided by subclasses ---------------------------------------
    def _read(self, z0: int, z1: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release file handles."""

    # -- shared behaviour ----------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, shape={self.shape}, dtype={self.dtype})"

    def read(self, z0: int = 0, z1: int | None = None) -> np.ndarray:
        """Read slices ``z0:z1`` of a 3D volume (the whole of a 2D image)."""
        if self.ndim == 2:
            with _damaged(self.source, "the image"):
                return self._read(0, 1).reshape(self.shape)
        depth = self.shape[0]
        z1 = depth if z1 is None else z1
        if not 0 <= z0 <= z1 <= depth:
            raise IndexError(f"{self.source}: slab {z0}:{z1} outside 0:{depth}")
        if z0 == z1:
            return np.empty((0, *self.shape[1:]), self.dtype)
        with _damaged(self.source, f"slices {z0}:{z1}"):
            out = self._read(z0, z1)
            return out.reshape((z1 - z0, *self.shape[1:]))

    def __getitem__(self, key: Any) -> np.ndarray:
        if self.ndim == 2:
            return self.read()[key]
        if not isinstance(key, tuple):
            key = (key,)
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if first is Ellipsis:
            return self.read()[key]
        if isinstance(first, (int, np.integer)):
            z = int(first) + (self.shape[0] if first < 0 else 0)
            if not 0 <= z < self.shape[0]:
                raise IndexError(f"{self.source}: slice {first} outside 0:{self.shape[0]}")
            return self.read(z, z + 1)[(0, *rest)]
        if isinstance(first, slice):
            start, stop, step = first.indices(self.shape[0])
            if step == 1:
                return self.read(start, max(start, stop))[(slice(None), *rest)]
            indices = np.arange(start, stop, step)
        else:
            indices = np.asarray(first)
            if indices.dtype == bool:
                indices = np.flatnonzero(indices)
        if indices.size == 0:
            return self.read(0, 0)[(slice(None), *rest)]
        lo, hi = int(indices.min()), int(indices.max()) + 1
        return self.read(lo, hi)[(indices - lo, *rest)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self.read()
        return data if dtype is None else data.astype(dtype, copy=False)

    def iter_slabs(self, depth: int, *, halo: int = 0) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(z0, z1, slab)`` for consecutive slabs of ``depth`` slices.

        With ``halo`` > 0 each slab also carries up to ``halo`` slices before
        and after its own range; ``z0:z1`` is always the slab's own range and
        the returned array starts at ``max(z0 - halo, 0)``.
        """
        if self.ndim != 3:
            raise InputError(f"{self.source}: slabs need a 3D volume, got shape {self.shape}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        nz = self.shape[0]
        for z0 in range(0, nz, depth):
            z1 = min(z0 + depth, nz)
            yield z0, z1, self.read(max(z0 - halo, 0), min(z1 + halo, nz))


class NpyVolume(Volume):
    """A ``.npy`` file read by ``pread`` of whole slices (C order), else loaded."""

    def __init__(self, path: Path):
        self.source = str(path)
        self._fd: int | None = None
        self._array: np.ndarray | None = None
        try:
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                reader = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = reader(fh)
                self._offset = fh.tell()
        except (ValueError, OSError) as exc:
            raise FormatError(f"{path}: not a readable .npy file ({exc})") from None
        self.dtype = _check_dtype(dtype, self.source)
        self.shape = _squeeze_shape(shape, self.source)
        if fortran or self.dtype.hasobject:
            self._array = np.load(path, mmap_mode="r").reshape(self.shape)
        else:
            expected = self._offset + int(np.prod(shape)) * self.dtype.itemsize
            if os.path.getsize(path) < expected:
                raise FormatError(f"{path}: file is truncated (expected {expected} bytes)")
            self._fd = os.open(path, os.O_RDONLY)

    def _read(self, z0: int, z1: int) -> np.ndarray:
        if self._array is not None:
            return np.array(self._array[z0:z1] if self.ndim == 3 else self._array)
        plane = int(np.prod(self.shape[1:])) if self.ndim == 3 else int(np.prod(self.shape))
        count = (z1 - z0) * plane * self.dtype.itemsize
        start = self._offset + (z0 * plane * self.dtype.itemsize if self.ndim == 3 else 0)
        buffer = bytearray(count)
        view = memoryview(buffer)
        done = 0
        while done < count:
            got = os.preadv(self._fd, [view[done:]], start + done)
            if got <= 0:
                raise FormatError(f"{self.source}: file is truncated")
            done += got
        return np.frombuffer(buffer, dtype=self.dtype)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class TiffVolume(Volume):
    """A multi-page TIFF / BigTIFF read page by page (or through its Zarr view)."""

    def __init__(self, path: Path):
        import tifffile

        self.source = str(path)
        try:
            self._tif = tifffile.TiffFile(path)
            series = self._tif.series[0]
        except (tifffile.TiffFileError, OSError, IndexError, ValueError) as exc:
            raise FormatError(f"{path}: not a readable TIFF file ({exc})") from None
        self.dtype = _check_dtype(series.dtype, self.source)
        self.shape = _squeeze_shape(_declared_shape(self._tif, series), self.source)
        self._series = series
        _check_not_truncated(self._tif, series, path)
        page_shape = tuple(series.keyframe.shape)
        self._by_page = (
            len(self.shape) == 3 and len(series) == self.shape[0] and page_shape == tuple(self.shape[1:])
        )
        self._zarr = None
        self._offset = series.dataoffset  # contiguous voxels are read by offset: no page headers needed
        self._raw_dtype = np.dtype(series.dtype).newbyteorder(self._tif.byteorder)
        if self._offset is None and not self._by_page and len(self.shape) == 3:
            import zarr

            self._zarr = zarr.open(series.aszarr(), mode="r")
        self.voxel_size = self._read_voxel_size()

    def _read_voxel_size(self) -> VoxelSize | None:
        tif = self._tif
        size = _shaped_voxel_size(tif)
        if size:
            return size
        ij = tif.imagej_metadata
        if ij and "spacing" in ij:
            try:
                page = tif.pages.first
                xr = page.tags["XResolution"].value
                yr = page.tags["YResolution"].value
                return _voxel_size((ij["spacing"], yr[1] / yr[0], xr[1] / xr[0]))
            except (KeyError, ZeroDivisionError, TypeError):
                return None
        return None

    def _read(self, z0: int, z1: int) -> np.ndarray:
        if self._offset is not None:
            plane = int(np.prod(self.shape[1:])) if len(self.shape) == 3 else int(np.prod(self.shape))
            z0, z1 = (z0, z1) if len(self.shape) == 3 else (0, 1)
            fh = self._tif.filehandle
            fh.seek(self._offset + z0 * plane * self._raw_dtype.itemsize)
            data = np.frombuffer(fh.read((z1 - z0) * plane * self._raw_dtype.itemsize), self._raw_dtype)
            if data.size != (z1 - z0) * plane:
                raise FormatError(f"{self.source}: truncated TIFF")
            return data.astype(self.dtype, copy=False)
        if len(self.shape) == 2:
            return self._series.asarray()
        if self._zarr is not None:
            return np.asarray(self._zarr[z0:z1]).reshape((z1 - z0, *self.shape[1:]))
        return self._tif.asarray(key=range(z0, z1), series=0)

    def close(self) -> None:
        self._tif.close()


@contextmanager
def _damaged(source: str, what: str) -> Iterator[None]:
    """Turn a library's error on damaged data into one line naming the file."""
    try:
        with _quiet("tifffile"):  # its complaints become our one line
            yield
    except (DendritesegError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile, h5py, zarr and codecs raise many types
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise FormatError(f"{source}: cannot read {what}: damaged file ({reason})") from None


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Silence a library's logger for a moment."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        log.setLevel(level)


def _declared_shape(tif: Any, series: Any) -> tuple[int, ...]:
    """The series' shape, or the one our writer declared where that only adds a leading 1 (one slice)."""
    shape = tuple(series.shape)
    for meta in tif.shaped_metadata or ():
        declared = tuple(int(n) for n in meta.get("shape", ()))
        if declared == (1, *shape):
            return declared
    return shape


def _check_not_truncated(tif: Any, series: Any, path: Path) -> None:
    """Refuse a TIFF that was cut short: voxels past the end of the file, or fewer than it declares."""
    size, total = tif.filehandle.size, int(np.prod(series.shape))
    declared = [tuple(m["shape"]) for m in (tif.shaped_metadata or ()) if "shape" in m]
    if declared and int(np.prod(declared[0])) > total:
        raise FormatError(
            f"{path}: truncated TIFF: it declares shape {declared[0]}, the file holds {series.shape}"
        )
    present = total
    try:
        if series.dataoffset is not None:  # contiguous voxels
            end = series.dataoffset + total * series.dtype.itemsize
        else:
            pages = [p for p in series.pages if p is not None]
            present = sum(int(p.size) for p in pages)
            offsets = (o + c for p in pages for o, c in zip(p.dataoffsets, p.databytecounts, strict=False))
            end = max(offsets, default=0)
    except (IndexError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise FormatError(f"{path}: damaged TIFF ({type(exc).__name__}: {exc})") from None
    if present < total:
        raise FormatError(f"{path}: truncated TIFF: {present:,} of {total:,} voxels are present")
    if end > size:
        raise FormatError(
            f"{path}: truncated TIFF: the file has {size:,} bytes, its voxels reach to byte {end:,}"
        )


class TiffFolderVolume(Volume):
    """A folder of 2D TIFF slices, in natural sort order (s2 before s10)."""

    def __init__(self, path: Path):
        import tifffile

        self.source = str(path)
        self._files = sorted(
            (p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and p.is_file()),
            key=lambda p: natural_key(p.name),
        )
        if not self._files:
            raise FormatError(f"{path}: folder holds no .tif/.tiff slices")
        first = self._files[0]
        try:
            with tifffile.TiffFile(first) as tif:
                series = tif.series[0]
                shape = tuple(series.shape)
                self.dtype = _check_dtype(series.dtype, str(first))
                self.voxel_size = _shaped_voxel_size(tif)
        except (tifffile.TiffFileError, OSError, IndexError) as exc:
            raise FormatError(f"{first}: not a readable TIFF file ({exc})") from None
        if len(shape) != 2:
            raise FormatError(f"{first}: expected a 2D slice, got shape {shape}")
        self.shape = (len(self._files), *shape)

    def _read(self, z0: int, z1: int) -> np.ndarray:
        import tifffile

        out = np.empty((z1 - z0, *self.shape[1:]), self.dtype)
        for i, file in enumerate(self._files[z0:z1]):
            try:
                with tifffile.TiffFile(file) as tif:
                    series = tif.series[0]
                    if tuple(series.shape) != self.shape[1:] or series.dtype != self.dtype:
                        found = f"{tuple(series.shape)} {series.dtype}"
                        first = f"{self.shape[1:]} {self.dtype}"
                        raise FormatError(f"{file}: slice is {found}, the folder's first slice is {first}")
                    _check_not_truncated(tif, series, file)  # before any voxel is read
                    out[i] = series.asarray()
            except (tifffile.TiffFileError, OSError) as exc:
                raise FormatError(f"{file}: not a readable TIFF file ({exc})") from None
        return out


class Hdf5Volume(Volume):
    """A dataset in an HDF5 file (``file.h5:/exchange/data``)."""

    def __init__(self, path: Path, key: str):
        import h5py

        self.source = f"{path}:{key}"
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise FormatError(f"{path}: not a readable HDF5 file ({exc})") from None
        node = self._file.get(key)
        if not isinstance(node, h5py.Dataset):
            names: list[str] = []
            self._file.visititems(
                lambda name, obj: names.append("/" + name) if isinstance(obj, h5py.Dataset) else None
            )
            self._file.close()
            hint = ", ".join(names[:8]) or "none"
            raise FormatError(f"{path}: no dataset {key!r} (datasets in the file: {hint})")
        self._dataset = node
        self.dtype = _check_dtype(node.dtype, self.source)
        self.shape = _squeeze_shape(node.shape, self.source)
        self._lead = _leading_axes(tuple(node.shape))
        self.voxel_size = _voxel_size(node.attrs.get("voxel_size_um"))

    def _read(self, z0: int, z1: int) -> np.ndarray:
        index = (0,) * self._lead
        if len(self.shape) == 2:
            return self._dataset[index]
        return self._dataset[(*index, slice(z0, z1))]

    def close(self) -> None:
        self._file.close()


class ZarrVolume(Volume):
    """A Zarr array (v2 or v3), or one array of a Zarr group."""

    def __init__(self, path: Path, key: str | None):
        import zarr

        self.source = f"{path}:{key}" if key else str(path)
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as exc:  # zarr raises several unrelated types
            raise FormatError(f"{path}: not a readable Zarr store ({exc})") from None
        if isinstance(node, zarr.Group):
            node = self._pick_array(node, key, path)
        elif key not in (None, "/"):
            raise FormatError(f"{path}: is a single array; it has no member {key!r}")
        self._array = node
        self.dtype = _check_dtype(node.dtype, self.source)
        self.shape = _squeeze_shape(node.shape, self.source)
        self._lead = _leading_axes(tuple(node.shape))
        self.voxel_size = _voxel_size(dict(node.attrs).get("voxel_size_um"))

    @staticmethod
    def _pick_array(group: Any, key: str | None, path: Path) -> Any:
        import zarr

        arrays = sorted(name for name, _ in group.arrays())
        if key not in (None, "/"):
            try:
                node = group[key.strip("/")]
            except KeyError:
                node = None
            if not isinstance(node, zarr.Array):
                raise FormatError(f"{path}: no array {key!r} (arrays: {', '.join(arrays) or 'none'})")
            return node
        if len(arrays) == 1:
            return group[arrays[0]]
        if "0" in arrays:  # OME-Zarr: full-resolution level
            return group["0"]
        raise FormatError(
            f"{path}: group holds {len(arrays)} arrays ({', '.join(arrays) or 'none'}); "
            f"name one as {path}:/NAME"
        )

    def _read(self, z0: int, z1: int) -> np.ndarray:
        index = (0,) * self._lead
        if len(self.shape) == 2:
            return np.asarray(self._array[index])
        return np.asarray(self._array[(*index, slice(z0, z1))])


class ArrayVolume(Volume):
    """Wrap an in-memory array so that code can treat it like a lazy volume."""

    def __init__(self, array: np.ndarray, voxel_size: VoxelSize | None = None, source: str = "array"):
        self._data = np.asarray(array)
        self.source = source
        self.dtype = _check_dtype(self._data.dtype, source)
        self.shape = _squeeze_shape(self._data.shape, source)
        self._data = self._data.reshape(self.shape)
        self.voxel_size = _voxel_size(voxel_size)

    def _read(self, z0: int, z1: int) -> np.ndarray:
        return self._data[z0:z1] if self.ndim == 3 else self._data


class SliceStack(Volume):
    """A 2D image seen as a volume of one slice, ``(1, y, x)``."""

    def __init__(self, image: Volume):
        if image.ndim != 2:
            raise InputError(f"{image.source}: expected a 2D image, got shape {image.shape}")
        self.image = image
        self.shape = (1, *image.shape)
        self.dtype, self.source = image.dtype, image.source
        self.voxel_size = image.voxel_size

    def _read(self, z0: int, z1: int) -> np.ndarray:
        return self.image.read()[None]

    def close(self) -> None:
        self.image.close()


def as_stack(data: Any, name: str = "array") -> Volume:
    """A path, Volume or array as a ``(z, y, x)`` volume; a 2D image becomes one slice (a SliceStack)."""
    volume = as_volume(data, name)
    return SliceStack(volume) if volume.ndim == 2 else volume


def open_volume(spec: str | Path | Location) -> Volume:
    """Open a volume lazily; nothing but its header is read.

    Parameters
    ----------
    spec : str, Path or Location
        See :func:`dendriteseg.io.parse_location` for the accepted forms.

    Returns
    -------
    Volume
        Index it or iterate ``iter_slabs`` to read voxels.

    Raises
    ------
    FormatError
        Missing file, unknown suffix, unreadable content, 4D data.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from dendriteseg.io import write_volume
    >>> path = os.path.join(tempfile.mkdtemp(), "v.npy")
    >>> write_volume(path, np.zeros((3, 4, 5), np.uint8))
    >>> with open_volume(path) as vol:
    ...     vol.shape, vol[1:3].shape
    ((3, 4, 5), (2, 4, 5))
    """
    location = spec if isinstance(spec, Location) else parse_location(spec)
    path = location.path
    if not path.exists():
        raise FormatError(f"{path}: no such file or directory")
    with _damaged(str(path), f"its {location.format} header"):
        if location.format == "npy":
            return NpyVolume(path)
        if location.format == "tiff":
            return TiffVolume(path)
        if location.format == "tiff-dir":
            return TiffFolderVolume(path)
        if location.format == "hdf5":
            return Hdf5Volume(path, location.key or "/exchange/data")
        return ZarrVolume(path, location.key)


def as_volume(data: Any, name: str = "array") -> Volume:
    """A path, :class:`Volume` or array-like as a :class:`Volume` (arrays are wrapped)."""
    if isinstance(data, Volume):
        return data
    if isinstance(data, (str, os.PathLike, Location)):
        return open_volume(data)
    return ArrayVolume(np.asarray(data), source=name)


def read_volume(spec: str | Path | Location, *, return_voxel_size: bool = False) -> Any:
    """Read a whole volume into memory.

    Parameters
    ----------
    spec : str, Path or Location
        File, folder or ``file.h5:/dataset``.
    return_voxel_size : bool
        Also return the voxel size ``(z, y, x)`` in micrometres (or None).

    Returns
    -------
    numpy.ndarray, or (numpy.ndarray, tuple or None)
    """
    with open_volume(spec) as vol:
        data = vol.read()
        return (data, vol.voxel_size) if return_voxel_size else data


def read_metadata(spec: str | Path | Location) -> dict[str, Any]:
    """Shape, dtype and voxel size of a volume, as a JSON-friendly dict."""
    with open_volume(spec) as vol:
        return {
            "source": vol.source,
            "shape": list(vol.shape),
            "dtype": str(vol.dtype),
            "voxel_size_um": list(vol.voxel_size) if vol.voxel_size else None,
        }


__all__ = [
    "Volume",
    "ArrayVolume",
    "SliceStack",
    "as_stack",
    "as_volume",
    "open_volume",
    "read_volume",
    "read_metadata",
]
