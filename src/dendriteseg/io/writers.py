"""Atomic volume writers: everything goes to a temporary name beside the
target and is renamed into place only when complete.

``VolumeWriter`` takes z-slabs one at a time, so a job can stream a volume
larger than memory to disk; ``write_volume`` writes an array in one call.
An interrupted write leaves the target as it was (absent or the old file).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.errors import FormatError, InputError
from dendriteseg.io.location import Location, parse_location
from dendriteseg.io.outputs import (
    check_free_space,
    check_target,
    remove,
    remove_stale_partials,
    resolve_output,
    temp_sibling,
    write_all,
    writing,
)

SLAB_BYTES = 64 * 2**20  # how much write_volume hands over per call


def _swap_into_place(temp: Path, final: Path) -> None:
    """Rename ``temp`` to ``final``; an existing folder target is replaced too."""
    if final.is_dir() and not final.is_symlink():
        old = temp_sibling(final)
        os.rename(final, old)
        try:
            os.rename(temp, final)
        except OSError:
            os.rename(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temp, final)


class VolumeWriter:
    """Write a (z, y, x) volume slab by slab, atomically.

    Parameters
    ----------
    spec : str, Path or Location
        Target; the format follows the suffix (see ``parse_location``).
    shape : tuple of int
        Full ``(z, y, x)`` shape.
    dtype : numpy dtype
    voxel_size : tuple of float, optional
        ``(z, y, x)`` in micrometres, stored where the format allows.
    compression : str, optional
        ``"zlib"``/``"zstd"`` for TIFF, HDF5 (``gzip``) and Zarr; Zarr
        compresses with its default codec when None.

    Notes
    -----
    TIFF and TIFF folders must be written in increasing z order; Zarr,
    HDF5 and ``.npy`` accept slabs in any order. Use as a context manager:
    the target appears on a clean exit and is left untouched on an error.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "out.tif")
    >>> with VolumeWriter(path, (4, 8, 8), np.uint8) as out:
    ...     out.write(np.ones((2, 8, 8), np.uint8), 0)
    ...     out.write(np.zeros((2, 8, 8), np.uint8), 2)
    """

    def __init__(
        self,
        spec: str | Path | Location,
        shape: tuple[int, ...],
        dtype: Any,
        *,
        voxel_size: tuple[float, float, float] | None = None,
        compression: str | None = None,
    ):
        self.location = spec if isinstance(spec, Location) else parse_location(spec, for_writing=True)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise InputError(
                f"{self.location}: can only write a 2D image or a 3D (z, y, x) volume, got {shape}"
            )
        self.shape = tuple(int(s) for s in shape)
        self._stack = self.shape if len(self.shape) == 3 else (1, *self.shape)  # 2D images: one slice
        self.dtype = np.dtype(dtype)
        self.voxel_size = tuple(float(v) for v in voxel_size) if voxel_size else None
        self.compression = compression
        self.final = resolve_output(self.location.path)
        parent = self.final.parent
        if not parent.is_dir():
            raise InputError(f"{self.final}: folder {parent} does not exist")
        self._check_target()
        remove_stale_partials(self.final)
        self.temp = temp_sibling(self.final)
        self._next_z = 0
        self._closed = False
        self._handle: Any = None
        with writing(self.final):
            self._open()

    def _check_target(self) -> None:
        """Refuse targets that writing would damage; check the free space where the size is known."""
        fmt = self.location.format
        if fmt == "zarr" and self.location.key:
            if self.final.exists() and not self.final.is_dir():
                raise InputError(
                    f"{self.final}: exists and is not a Zarr group; cannot add {self.location.key!r}"
                )
        else:
            check_target(self.final, folder=fmt in ("tiff-dir", "zarr"))
        if fmt in ("npy", "hdf5") or (fmt in ("tiff", "tiff-dir") and not self.compression):
            check_free_space(self.final, int(np.prod(self.shape)) * self.dtype.itemsize)

    # -- per format ----------------------------------------------------------
    def _open(self) -> None:
        fmt = self.location.format
        try:
            if fmt == "tiff":
                import tifffile

                bigtiff = int(np.prod(self.shape)) * self.dtype.itemsize > 2**31
                self._handle = tifffile.TiffWriter(self.temp, bigtiff=bigtiff)
            elif fmt == "tiff-dir":
                self.temp.mkdir()
            elif fmt == "npy":
                self._open_npy()
            elif fmt == "hdf5":
                self._open_hdf5()
            else:
                self._open_zarr()
        except BaseException:
            self.abort()
            raise

    def _open_npy(self) -> None:
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": self.shape,
        }
        with open(self.temp, "wb") as fh:
            np.lib.format.write_array_header_2_0(fh, header)
            self._offset = fh.tell()
            fh.truncate(self._offset + int(np.prod(self.shape)) * self.dtype.itemsize)
        self._handle = os.open(self.temp, os.O_WRONLY)

    def _open_hdf5(self) -> None:
        import h5py

        if self.final.exists():  # keep the file's other datasets
            shutil.copy2(self.final, self.temp)
        try:
            self._handle = h5py.File(self.temp, "a")
        except OSError as exc:
            raise FormatError(f"{self.final}: cannot open as HDF5 for writing ({exc})") from None
        key = self.location.key or "/exchange/data"
        if key in self._handle:
            del self._handle[key]
        chunks = (1, min(self._stack[1], 512), min(self._stack[2], 512))[-len(self.shape) :]
        dataset = self._handle.create_dataset(
            key,
            shape=self.shape,
            dtype=self.dtype,
            chunks=chunks,
            compression="gzip" if self.compression else None,
        )
        if self.voxel_size:
            dataset.attrs["voxel_size_um"] = self.voxel_size
        self._dataset = dataset

    def _open_zarr(self) -> None:
        import zarr

        key = (self.location.key or "").strip("/")
        chunks = (min(self._stack[0], 8), min(self._stack[1], 256), min(self._stack[2], 256))[
            -len(self.shape) :
        ]
        kwargs: dict[str, Any] = {"shape": self.shape, "dtype": self.dtype, "chunks": chunks}
        if self.compression in ("zstd", "zlib", "gzip"):
            from zarr.codecs import GzipCodec, ZstdCodec

            kwargs["compressors"] = ZstdCodec() if self.compression == "zstd" else GzipCodec()
        elif self.compression is not None:
            raise InputError(f"{self.final}: unknown compression {self.compression!r}")
        if key:
            # Write the array under a temporary name inside the (new or existing) group.
            if self.final.exists():
                try:
                    group = zarr.open_group(str(self.final), mode="r+")
                except Exception:  # zarr raises several types here
                    raise InputError(
                        f"{self.final}: exists and is not a Zarr group; cannot add {key!r} to it"
                    ) from None
                self._group_root = self.final
            else:
                group = zarr.open_group(str(self.temp), mode="w", zarr_format=3)
                self._group_root = self.temp
            self._member = key
            self._member_temp = f"{key}.partial-{uuid.uuid4().hex[:8]}"
            array = group.create_array(self._member_temp, **kwargs)
        else:
            self._member = None
            array = zarr.create_array(str(self.temp), zarr_format=3, **kwargs)
        if self.voxel_size:
            array.attrs["voxel_size_um"] = list(self.voxel_size)
        self._handle = array

    # -- public --------------------------------------------------------------
    def write(self, slab: np.ndarray, z0: int | None = None) -> None:
        """Write ``slab`` (shape ``(n, y, x)``) at slices ``z0 : z0 + n``.

        ``z0`` defaults to the slice after the previous slab.
        """
        with writing(self.final):
            self._write(slab, z0)

    def _write(self, slab: np.ndarray, z0: int | None) -> None:
        if self._closed:
            raise RuntimeError(f"{self.final}: writer is closed")
        slab = np.asarray(slab)
        if slab.ndim == 2:
            slab = slab[None]
        z0 = self._next_z if z0 is None else int(z0)
        z1 = z0 + slab.shape[0]
        if slab.shape[1:] != self._stack[1:] or not 0 <= z0 < z1 <= self._stack[0]:
            raise InputError(
                f"{self.final}: slab of shape {slab.shape} at z={z0} does not fit volume {self.shape}"
            )
        slab = slab.astype(self.dtype, copy=False)
        fmt = self.location.format
        if fmt in ("tiff", "tiff-dir") and z0 != self._next_z:
            raise InputError(f"{self.final}: TIFF slabs must be written in order (expected z={self._next_z})")
        if fmt == "tiff":
            self._write_tiff(slab)
        elif fmt == "tiff-dir":
            import tifffile

            width = max(5, len(str(self._stack[0] - 1)))
            for i, page in enumerate(slab):
                tifffile.imwrite(
                    self.temp / f"slice_{z0 + i:0{width}d}.tif",
                    page,
                    photometric="minisblack",
                    metadata=self._tiff_metadata("YX"),
                    compression=self.compression,
                )
        elif fmt == "npy":
            plane = self._stack[1] * self._stack[2] * self.dtype.itemsize
            data = np.ascontiguousarray(slab).tobytes()
            write_all(self._handle, data, self._offset + z0 * plane, self.final)
        elif fmt == "hdf5":
            self._dataset[(slice(z0, z1),) if len(self.shape) == 3 else ...] = (
                slab if len(self.shape) == 3 else slab[0]
            )
        else:
            self._handle[(slice(z0, z1),) if len(self.shape) == 3 else ...] = (
                slab if len(self.shape) == 3 else slab[0]
            )
        self._next_z = max(self._next_z, z1)

    def _tiff_metadata(self, axes: str = "ZYX") -> dict[str, Any]:
        meta: dict[str, Any] = {"axes": axes}
        if self.voxel_size:
            meta["voxel_size_um"] = list(self.voxel_size)
        return meta

    def _write_tiff(self, slab: np.ndarray) -> None:
        for page in slab:
            kwargs: dict[str, Any] = {}
            if self._next_z == 0:
                kwargs["metadata"] = self._tiff_metadata("ZYX" if len(self.shape) == 3 else "YX")
                if self.voxel_size:
                    # pixels per centimetre, so that ImageJ and others show the scale
                    kwargs["resolution"] = (1e4 / self.voxel_size[2], 1e4 / self.voxel_size[1])
                    kwargs["resolutionunit"] = "CENTIMETER"
            self._handle.write(
                page[None]
                if self.shape[0] == 1 and len(self.shape) == 3
                else page,  # keeps a one-slice volume 3D
                contiguous=True,
                photometric="minisblack",
                compression=self.compression,
                **kwargs,
            )
            self._next_z += 1

    @property
    def zarr_chunks(self) -> tuple[int, ...]:
        """Chunk shape of a Zarr target (other processes may write whole chunks in parallel)."""
        if self.location.format != "zarr":
            raise InputError(f"{self.final}: not a Zarr target")
        return tuple(self._handle.chunks)

    def zarr_temp(self) -> tuple[str, str | None]:
        """(store path, member path or None) of the temporary Zarr array being written."""
        if self.location.format != "zarr":
            raise InputError(f"{self.final}: not a Zarr target")
        if self._member is None:
            return str(self.temp), None
        return str(self._group_root), self._member_temp

    def commit(self) -> None:
        """Finish the file and rename it into place."""
        if self._closed:
            return
        fmt = self.location.format
        if fmt in ("tiff", "tiff-dir") and self._next_z != self._stack[0]:
            self.abort()
            raise InputError(f"{self.final}: only {self._next_z} of {self._stack[0]} slices were written")
        try:
            with writing(self.final):
                self._close_handle()
                if fmt == "zarr" and self._member is not None:
                    self._commit_zarr_member()
                else:
                    _swap_into_place(self.temp, self.final)
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def _commit_zarr_member(self) -> None:
        root = self._group_root
        member_dir = root / self._member
        temp_dir = root / self._member_temp
        member_dir.parent.mkdir(parents=True, exist_ok=True)
        _swap_into_place(temp_dir, member_dir)
        if root == self.temp:
            _swap_into_place(self.temp, self.final)

    def _close_handle(self) -> None:
        handle, self._handle = self._handle, None
        fmt = self.location.format
        if handle is None:
            return
        if fmt == "tiff" or fmt == "hdf5":
            handle.close()
        elif fmt == "npy":
            os.close(handle)

    def abort(self) -> None:
        """Drop everything written; the target is left as it was."""
        if self._closed:
            return
        self._closed = True
        try:
            self._close_handle()
        except Exception:  # noqa: BLE001 - best effort while cleaning up
            pass
        remove(self.temp)
        if self.location.format == "zarr" and getattr(self, "_member", None):
            remove(self._group_root / self._member_temp)

    def __enter__(self) -> VolumeWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_volume(
    spec: str | Path | Location,
    array: Any,
    *,
    voxel_size: tuple[float, float, float] | None = None,
    compression: str | None = None,
) -> None:
    """Write a whole array atomically; the format follows the suffix.

    Parameters
    ----------
    spec : str, Path or Location
        ``out.tif``, ``out_slices/``, ``out.zarr``, ``out.h5:/exchange/data``,
        ``out.npy``. An existing HDF5 file keeps its other datasets.
    array : array-like
        ``(z, y, x)``, or a 2D image ``(y, x)`` (written as a 2D image).
    voxel_size : tuple of float, optional
        ``(z, y, x)`` micrometres.
    compression : str, optional
        See :class:`VolumeWriter`.
    """
    data = np.asarray(array)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype.kind not in "iuf":
        raise InputError(f"{spec}: cannot write voxel type {data.dtype}")
    with VolumeWriter(spec, data.shape, data.dtype, voxel_size=voxel_size, compression=compression) as out:
        stack = data if data.ndim == 3 else data[None]
        step = max(1, SLAB_BYTES // max(1, stack[0].nbytes))
        for z0 in range(0, stack.shape[0], step):
            out.write(stack[z0 : z0 + step], z0)


def convert_volume(
    source: Any, target: str | Path, *, compression: str | None = None, slab: int = 16
) -> Path:
    """Copy a (z, y, x) volume into another file, ``slab`` slices at a time; returns the output path.

    The voxels are copied as they are, NaN and infinities included (a
    conversion changes no value); their count is logged as a warning.
    """
    import logging

    from dendriteseg.io.outputs import check_distinct
    from dendriteseg.io.readers import open_volume

    check_distinct([source], {"target": target})
    nonfinite = 0
    with open_volume(source) as vol:
        if vol.ndim != 3:
            raise InputError(f"{source}: convert needs a (z, y, x) volume, got shape {vol.shape}")
        with VolumeWriter(
            target, vol.shape, vol.dtype, voxel_size=vol.voxel_size, compression=compression
        ) as out:
            for z0, _, data in vol.iter_slabs(slab):
                if data.dtype.kind == "f":
                    nonfinite += int(np.count_nonzero(~np.isfinite(data)))
                out.write(data, z0)
    if nonfinite:
        logging.getLogger(__name__).warning(
            "%s: %s voxels are NaN or infinite; they were copied as they are", source, f"{nonfinite:,}"
        )
    return out.final
