import os

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from dendriteseg.errors import FormatError, InputError
from dendriteseg.io import (
    VolumeWriter,
    open_volume,
    parse_location,
    read_metadata,
    read_volume,
    write_volume,
)

FORMATS = ["vol.tif", "slices", "vol.zarr", "vol.h5", "vol.h5:/group/data", "vol.npy", "vol.zarr:/x"]


@pytest.mark.parametrize("name", FORMATS)
def test_roundtrip_every_format(tmp_path, odd_volume, name):
    target = f"{tmp_path}/{name}"
    has_size = not name.endswith(".npy")
    write_volume(target, odd_volume, voxel_size=(2.0, 0.65, 0.65))
    data, voxel = read_volume(target, return_voxel_size=True)
    np.testing.assert_array_equal(data, odd_volume)
    assert data.dtype == odd_volume.dtype
    assert voxel == ((2.0, 0.65, 0.65) if has_size else None)


@pytest.mark.parametrize("name", FORMATS)
def test_lazy_indexing_matches_numpy(tmp_path, odd_volume, name):
    target = f"{tmp_path}/{name}"
    write_volume(target, odd_volume)
    with open_volume(target) as vol:
        assert vol.shape == odd_volume.shape
        for key in [
            np.s_[3:9],
            np.s_[5],
            np.s_[-1],
            np.s_[::4],
            np.s_[2:30:7, 3:5, -4:],
            np.s_[[1, 4, 2]],
            np.s_[0:0],
        ]:
            np.testing.assert_array_equal(vol[key], odd_volume[key])
        slabs = list(vol.iter_slabs(10, halo=2))
        assert [(a, b) for a, b, _ in slabs] == [(0, 10), (10, 20), (20, 30), (30, 33)]
        np.testing.assert_array_equal(slabs[1][2], odd_volume[8:22])
        np.testing.assert_array_equal(np.asarray(vol), odd_volume)


def test_tiff_folder_natural_sort(tmp_path):
    folder = tmp_path / "stack"
    folder.mkdir()
    for z in (10, 2, 1):
        tifffile.imwrite(folder / f"s{z}.tif", np.full((4, 5), z, np.uint8))
    (folder / "notes.txt").write_text("ignored")
    assert read_volume(folder)[:, 0, 0].tolist() == [1, 2, 10]


def test_tiff_folder_mismatched_slice(tmp_path):
    folder = tmp_path / "stack"
    folder.mkdir()
    tifffile.imwrite(folder / "a1.tif", np.zeros((4, 5), np.uint8))
    tifffile.imwrite(folder / "a2.tif", np.zeros((4, 6), np.uint8))
    with pytest.raises(FormatError, match="a2.tif"):
        read_volume(folder)


def test_reads_imagej_tiff_voxel_size(tmp_path):
    data = np.zeros((3, 4, 5), np.uint16)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data[:, None],
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"spacing": 1.5, "unit": "um", "axes": "ZCYX"},
    )
    vol, voxel = read_volume(tmp_path / "ij.tif", return_voxel_size=True)
    assert vol.shape == (3, 4, 5)
    assert voxel == pytest.approx((1.5, 0.5, 0.5))


def test_reads_bigtiff_and_compressed_tiff(tmp_path, odd_volume):
    tifffile.imwrite(tmp_path / "big.tif", odd_volume, bigtiff=True)
    tifffile.imwrite(tmp_path / "z.tif", odd_volume, compression="zlib")
    np.testing.assert_array_equal(read_volume(tmp_path / "big.tif"), odd_volume)
    with open_volume(tmp_path / "z.tif") as vol:
        np.testing.assert_array_equal(vol[4:6], odd_volume[4:6])


def test_reads_single_page_3d_tiff_through_zarr(tmp_path, odd_volume):
    # a volumetric (tiled, single-IFD) TIFF has no pages per slice
    tifffile.imwrite(tmp_path / "vol.tif", odd_volume, volumetric=True, tile=(16, 16, 16))
    with open_volume(tmp_path / "vol.tif") as vol:
        assert vol.shape == odd_volume.shape
        np.testing.assert_array_equal(vol[7:12], odd_volume[7:12])


def test_reads_zarr_v2(tmp_path, odd_volume):
    array = zarr.create_array(
        str(tmp_path / "v2.zarr"),
        shape=odd_volume.shape,
        dtype=odd_volume.dtype,
        chunks=(8, 16, 16),
        zarr_format=2,
    )
    array[:] = odd_volume
    np.testing.assert_array_equal(read_volume(tmp_path / "v2.zarr"), odd_volume)


def test_hdf5_default_dataset_and_other_datasets_kept(tmp_path, odd_volume):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as fh:
        fh["/exchange/theta"] = np.arange(5.0)
    write_volume(path, odd_volume)  # defaults to /exchange/data
    with h5py.File(path) as fh:
        assert "/exchange/theta" in fh and fh["/exchange/data"].shape == odd_volume.shape
    assert parse_location("scan.h5").key == "/exchange/data"


def test_missing_hdf5_dataset_lists_datasets(tmp_path, odd_volume):
    write_volume(f"{tmp_path}/scan.h5:/tomo/recon", odd_volume)
    with pytest.raises(FormatError, match=r"no dataset '/exchange/data'.*/tomo/recon"):
        open_volume(tmp_path / "scan.h5")


@pytest.mark.parametrize(
    "name,message",
    [
        ("missing.tif", "no such file"),
        ("file.xyz", "unsupported format"),
    ],
)
def test_bad_locations(tmp_path, name, message):
    path = tmp_path / name
    if name.endswith(".xyz"):
        path.write_text("x")
    with pytest.raises(FormatError, match=message):
        open_volume(path)


def test_not_a_tiff(tmp_path):
    (tmp_path / "fake.tif").write_text("hello")
    with pytest.raises(FormatError, match="fake.tif: not a readable TIFF"):
        open_volume(tmp_path / "fake.tif")


def test_truncated_npy(tmp_path, odd_volume):
    np.save(tmp_path / "v.npy", odd_volume)
    data = (tmp_path / "v.npy").read_bytes()
    (tmp_path / "v.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated"):
        open_volume(tmp_path / "v.npy")


def test_one_rule_for_axes_beyond_three(tmp_path):
    """Axes of length 1 beyond three, leading or trailing, are dropped in every format; others refused."""
    data = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    for name, shape in [
        ("a", (1, 3, 4, 5)),
        ("b", (1, 1, 3, 4, 5)),
        ("c", (3, 4, 5, 1)),
        ("d", (1, 3, 4, 5, 1)),
    ]:
        np.save(tmp_path / f"{name}.npy", data.reshape(shape))
        with h5py.File(tmp_path / f"{name}.h5", "w") as fh:
            fh["/exchange/data"] = data.reshape(shape)
        zarr.create_array(str(tmp_path / f"{name}.zarr"), shape=shape, dtype=np.uint8)[...] = data.reshape(
            shape
        )
        for spec in (f"{name}.npy", f"{name}.h5", f"{name}.zarr"):
            with open_volume(tmp_path / spec) as vol:
                assert vol.shape == (3, 4, 5), spec
                np.testing.assert_array_equal(vol[1:3], data[1:3])
    for shape in [(2, 3, 4, 5), (3, 4, 5, 2), (1, 2, 3, 4, 5)]:
        np.save(tmp_path / "bad.npy", np.zeros(shape, np.uint8))
        with pytest.raises(FormatError, match=r"bad.npy: shape .* has \d axes; expected \(z, y, x\)"):
            open_volume(tmp_path / "bad.npy")


def test_failed_write_leaves_old_file_untouched(tmp_path, odd_volume):
    target = tmp_path / "out.tif"
    write_volume(target, odd_volume)
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with VolumeWriter(target, odd_volume.shape, np.uint16) as out:
            out.write(odd_volume[:5], 0)
            raise RuntimeError("killed")
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["out.tif"]


@pytest.mark.parametrize("name", ["out.zarr", "outdir", "out.npy", "out.h5"])
def test_incomplete_write_leaves_nothing(tmp_path, odd_volume, name):
    with pytest.raises(RuntimeError):
        with VolumeWriter(tmp_path / name, odd_volume.shape, np.uint16) as out:
            out.write(odd_volume[:3], 0)
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_tiff_needs_all_slices(tmp_path, odd_volume):
    writer = VolumeWriter(tmp_path / "o.tif", odd_volume.shape, np.uint16)
    writer.write(odd_volume[:3])
    with pytest.raises(InputError, match="only 3 of 33 slices"):
        writer.commit()
    assert os.listdir(tmp_path) == []


def test_writer_out_of_order_zarr(tmp_path, odd_volume):
    with VolumeWriter(tmp_path / "o.zarr", odd_volume.shape, np.uint16) as out:
        out.write(odd_volume[20:], 20)
        out.write(odd_volume[:20], 0)
    np.testing.assert_array_equal(read_volume(tmp_path / "o.zarr"), odd_volume)


def test_write_into_missing_folder(tmp_path, odd_volume):
    with pytest.raises(InputError, match="does not exist"):
        write_volume(tmp_path / "nope" / "x.tif", odd_volume)


def test_metadata_reads_no_voxels(tmp_path, odd_volume):
    write_volume(tmp_path / "v.h5", odd_volume, voxel_size=(1, 1, 1))
    meta = read_metadata(tmp_path / "v.h5")
    assert meta["shape"] == [33, 34, 35] and meta["dtype"] == "uint16"
