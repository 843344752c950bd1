"""Fuzz the readers: TIFF, TIFF folders, Zarr, HDF5, .npy and model files.

Each example takes a small valid file of one format and damages it
(bytes overwritten, inserted or cut off, or a Zarr store's metadata
edited), then opens it, reads its metadata and a slice (or, for a model
file, its header and weights). The only acceptable outcome besides success
is a :class:`~dendriteseg.errors.DendritesegError`: the one-line error
the command line prints. Anything else (another exception, a native
crash) is a finding.

    python tests/fuzz_readers.py --examples 10000      # a long run; prints counts per format
    pytest tests/test_fuzz.py                          # a short run of the same target

Hypothesis (``pip install hypothesis``) generates the damage; runs are
reproducible for a ``--seed``.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from dendriteseg.errors import DendritesegError

KINDS = ("tif", "tif_zlib", "tif_slices", "npy", "h5", "zarr_meta", "zarr_chunk", "model")
MAX_BYTES = 64 * 2**20  # a damaged header may claim a huge volume: read it only if it is small


def _seed_files(root: Path) -> dict[str, Path]:
    """One small valid file (or folder) per kind."""
    import h5py
    import tifffile
    import zarr

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = (rng.random((3, 12, 13)) * 1000).astype(np.uint16)
    files = {}
    files["tif"] = root / "a.tif"
    tifffile.imwrite(files["tif"], data, metadata={"axes": "ZYX"})
    files["tif_zlib"] = root / "b.tif"
    tifffile.imwrite(files["tif_zlib"], data, compression="zlib", tile=(16, 16))
    files["tif_slices"] = root / "slices"
    files["tif_slices"].mkdir()
    for i, page in enumerate(data):
        tifffile.imwrite(files["tif_slices"] / f"slice_{i:03d}.tif", page)
    files["npy"] = root / "c.npy"
    np.save(files["npy"], data)
    files["h5"] = root / "d.h5"
    with h5py.File(files["h5"], "w") as fh:
        fh.create_dataset("/exchange/data", data=data, chunks=(1, 12, 13), compression="gzip")
    files["zarr_meta"] = files["zarr_chunk"] = root / "e.zarr"
    zarr.create_array(str(root / "e.zarr"), shape=data.shape, dtype=data.dtype, chunks=(1, 12, 13))[...] = (
        data
    )
    files["model"] = root / "f.safetensors"
    from dendriteseg.models import build_model
    from dendriteseg.models.files import ModelInfo, save_model

    save_model(
        files["model"], build_model("unet2d", base=2, depth=1), ModelInfo("unet2d", {"base": 2, "depth": 1})
    )
    return files


def _target_file(kind: str, copy: Path) -> Path:
    """The file inside a copied seed whose bytes the example damages."""
    if kind == "tif_slices":
        return copy / "slice_001.tif"
    if kind == "zarr_meta":
        return copy / "zarr.json"
    if kind == "zarr_chunk":
        return next(p for p in copy.rglob("*") if p.is_file() and p.name != "zarr.json")
    return copy


def damage(raw: bytes, edits: list[tuple[int, int, int]], cut: float | None) -> bytes:
    """Apply (kind, position, value) edits: 0 overwrite a byte, 1 insert one, 2 delete one; then cut."""
    out = bytearray(raw)
    for op, position, value in edits:
        if not out:
            break
        i = position % len(out)
        if op == 0:
            out[i] = value
        elif op == 1:
            out.insert(i, value)
        else:
            del out[i]
    if cut is not None:
        out = out[: int(len(out) * cut)]
    return bytes(out)


def exercise(kind: str, path: Path) -> None:
    """What a user's command does with the file: open, describe, read a slice (or load a model)."""
    if kind == "model":
        from dendriteseg.models.files import load_model, read_model_info

        read_model_info(path)
        load_model(path)
        return
    from dendriteseg.io import open_volume, read_metadata

    read_metadata(path)
    with open_volume(path) as vol:
        if vol.nbytes <= MAX_BYTES:
            vol.read()


class Fuzzer:
    """Runs damaged copies of the seed files through :func:`exercise`; counts outcomes."""

    def __init__(self, root: Path):
        self.root = root
        self.seeds = _seed_files(root / "seeds")
        self.outcomes: collections.Counter = collections.Counter()
        self.findings: list[str] = []

    def one(self, kind: str, edits: list[tuple[int, int, int]], cut: float | None, n: int) -> None:
        work = self.root / f"case{n % 4}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        source = self.seeds[kind]
        copy = work / source.name
        if source.is_dir():
            shutil.copytree(source, copy)
        else:
            shutil.copy(source, copy)
        target = _target_file(kind, copy)
        target.write_bytes(damage(target.read_bytes(), edits, cut))
        try:
            exercise(kind, copy)
            self.outcomes[(kind, "read")] += 1
        except DendritesegError:
            self.outcomes[(kind, "one-line error")] += 1
        except Exception as exc:  # noqa: BLE001 - that is what we are looking for
            self.outcomes[(kind, f"finding: {type(exc).__name__}")] += 1
            self.findings.append(f"{kind} {edits} cut={cut}: {type(exc).__name__}: {exc}")


EDITS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2**20), st.integers(0, 255)), max_size=8)
CUTS = st.one_of(st.none(), st.floats(0.0, 1.0))


def run(examples: int, root: Path, rng_seed: int = 0) -> Fuzzer:
    """Run ``examples`` damaged files per kind through the readers."""
    fuzzer = Fuzzer(root)
    counter = iter(range(10**9))

    def campaign(kind: str) -> None:
        @seed(rng_seed)
        @settings(
            max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(edits=EDITS, cut=CUTS)
        def case(edits: list, cut: float | None) -> None:
            fuzzer.one(kind, edits, cut, next(counter))

        case()

    for kind in KINDS:
        campaign(kind)
    return fuzzer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10000, help="in all, split over the formats")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dseg-fuzz-"))
    try:
        fuzzer = run(max(1, args.examples // len(KINDS)), root, args.seed)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = sum(fuzzer.outcomes.values())
    print(f"{total} damaged files; outcomes:")
    for (kind, outcome), count in sorted(fuzzer.outcomes.items()):
        print(f"  {kind:12s} {outcome:28s} {count}")
    for finding in fuzzer.findings[:20]:
        print("FINDING", finding)
    print(json.dumps({"examples": total, "findings": len(fuzzer.findings)}))
    sys.exit(1 if fuzzer.findings else 0)


if __name__ == "__main__":
    main()
