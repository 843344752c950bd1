"""Datasets like the paper's: many noisy labels, few exact ones, and a manifest.

* noisy set: whole scans whose labels are corrupted like an older CNN's
  (:mod:`dendriteseg.synth.label_noise`), split 70/20/10 by volume;
* exact set: 14 groups of 8 consecutive slices, each group from its own
  scan, with exact labels: 6 groups train, 4 validation, 4 test.

Every scan draws its difficulty (easy/moderate/hard, with jittered knobs),
its structure (procedural or phase field) and its placement at random, so
models trained on it meet many scanners and samples. Each entry has its own
seed (spawned from the dataset seed), so a killed run resumes where it
stopped and produces the same files. ``manifest.json`` is written last; read it with
:func:`dendriteseg.data.read_manifest`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.errors import InputError
from dendriteseg.io import write_text_atomic, write_volume
from dendriteseg.synth.label_noise import LabelNoise, corrupt_labels, label_agreement
from dendriteseg.synth.scan import check_variety, make_image_scan, make_scan

MANIFEST_FORMAT = "dendriteseg-dataset/1"
EXACT_GROUPS = {"train": 6, "val": 4, "test": 4}
GROUP_DEPTH = 8
GENERATORS = ("ct", "image")
DIFFICULTY_MIX = {"easy": 0.2, "moderate": 0.6, "hard": 0.2}


@dataclass(frozen=True)
class DatasetPreset:
    """Sizes of a dataset preset."""

    noisy_volumes: int
    noisy_shape: tuple[int, int, int]
    exact_size: int
    phasefield_share: float


DATASET_PRESETS = {
    "tiny": DatasetPreset(4, (8, 48, 48), 48, 0.0),
    "small": DatasetPreset(12, (32, 128, 128), 128, 0.25),
    "paper": DatasetPreset(28, (64, 320, 320), 320, 0.4),
}


def write_scan(
    out_dir: str | Path,
    scan: dict[str, Any],
    *,
    fmt: str = "tif",
    with_phase: bool = False,
    extra: dict[str, np.ndarray] | None = None,
) -> dict[str, str]:
    """Write a scan as ``image.<fmt>``, ``label.<fmt>`` (and more) plus ``meta.json``.

    ``meta.json`` is written last, so its presence marks a complete scan.
    Returns the written file names.
    """
    out = Path(out_dir)
    if not out.parent.is_dir():
        raise InputError(f"{out}: folder {out.parent} does not exist")
    if fmt not in ("tif", "zarr", "h5", "npy"):
        raise InputError(f"{out}: unknown format {fmt!r}; use tif, zarr, h5 or npy")
    out.mkdir(exist_ok=True)
    arrays = {"image": scan["image"], "label": scan["label"]}
    if with_phase:
        arrays["phase"] = scan["phase"]
    arrays.update(extra or {})
    names = {}
    for name, array in arrays.items():
        names[name] = f"{name}.{fmt}"
        write_volume(out / names[name], array)
    write_text_atomic(out / "meta.json", json.dumps(scan["meta"], indent=2, default=_json) + "\n")
    return names


def _json(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _splits(n: int) -> list[str]:
    """70/20/10 by volume, at least one validation and test volume when n >= 3."""
    n_val = max(1 if n >= 3 else 0, int(round(0.2 * n)))
    n_test = max(1 if n >= 3 else 0, int(round(0.1 * n)))
    return ["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test


def _plan_entries(spec: DatasetPreset) -> list[dict[str, Any]]:
    """Name, quality, split, group and shape of every entry of a dataset, in order."""
    plan: list[dict[str, Any]] = []
    for i, split in enumerate(_splits(spec.noisy_volumes)):
        plan.append(
            {
                "name": f"noisy_{i:03d}",
                "quality": "noisy",
                "split": split,
                "group": None,
                "shape": spec.noisy_shape,
            }
        )
    group = 0
    for split, count in EXACT_GROUPS.items():
        for _ in range(count):
            shape = (GROUP_DEPTH, spec.exact_size, spec.exact_size)
            plan.append(
                {
                    "name": f"exact_{group:02d}",
                    "quality": "exact",
                    "split": split,
                    "group": group,
                    "shape": shape,
                }
            )
            group += 1
    return plan


def _write_entry(
    folder: Path,
    item: dict[str, Any],
    generator: str,
    structure: str,
    scan_options: dict[str, Any],
    noise: LabelNoise,
    gen: np.random.Generator,
) -> None:
    """Make one entry's scan (and, for a noisy entry, its corrupted label) and write it."""
    if generator == "image":
        scan = make_image_scan(item["shape"], structure=structure, rng=gen)
    else:
        scan = make_scan(item["shape"], structure=structure, vary=True, rng=gen, **scan_options)
    extra = {}
    if item["quality"] == "noisy":
        exact = scan["label"]
        noisy = corrupt_labels(exact, noise=noise, rng=gen)
        scan["meta"]["label_noise"] = {"settings": asdict(noise), **label_agreement(noisy, exact)}
        extra["label_exact"] = exact
        scan = {**scan, "label": noisy}
    write_scan(folder, scan, extra=extra)


def write_synthetic_scan(
    out_dir: str | Path,
    shape: tuple[int, int, int] = (64, 192, 192),
    *,
    preset: str = "moderate",
    structure: str = "procedural",
    seed: int = 0,
    fmt: str = "tif",
    phase: bool = False,
) -> dict[str, Any]:
    """Make one scan (:func:`~dendriteseg.synth.scan.make_scan`) and write it (:func:`write_scan`);
    returns its ``meta``."""
    scan = make_scan(shape, preset=preset, structure=structure, rng=seed)
    write_scan(out_dir, scan, fmt=fmt, with_phase=phase)
    return scan["meta"]


def write_series(
    out_dir: str | Path,
    *,
    scans: int = 5,
    shape: tuple[int, int, int] = (32, 128, 128),
    preset: str = "moderate",
    seed: int = 0,
    fmt: str = "tif",
) -> list[dict[str, Any]]:
    """Write a 4D growth series: ``t000/``, ``t001/``, ... and ``series.json``; returns its rows.

    Each row gives the time index, the folder and the scan's dendrite
    fraction; ``series.json`` (the rows) is written last.
    """
    from dendriteseg.synth.scan import make_series

    out = Path(out_dir)
    if not out.parent.is_dir():
        raise InputError(f"{out}: folder {out.parent} does not exist")
    series = make_series(shape, n_scans=scans, preset=preset, rng=seed)
    out.mkdir(exist_ok=True)
    rows = []
    for t, scan in enumerate(series):
        write_scan(out / f"t{t:03d}", scan, fmt=fmt)
        rows.append(
            {"time_index": t, "folder": f"t{t:03d}", "dendrite_fraction": scan["meta"]["dendrite_fraction"]}
        )
    write_text_atomic(out / "series.json", json.dumps(rows, indent=2) + "\n")
    return rows


def build_dataset(
    out_dir: str | Path,
    *,
    preset: str = "tiny",
    seed: int = 0,
    noise: LabelNoise | None = None,
    variety: str = "standard",
    holder: float = 0.0,
    generator: str = "ct",
    min_visible: float = 0.0,
    on_entry: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Generate a dataset and its manifest; returns the manifest's path.

    Parameters
    ----------
    out_dir : path
        Created if missing; entries already complete there are kept.
    preset : {"tiny", "small", "paper"}
    seed : int
    noise : LabelNoise, optional
        How wrong the noisy labels are (default ``LabelNoise()``).
    variety : {"standard", "wide", "real", "field"}
        How widely the scans' knobs vary (:func:`dendriteseg.synth.scan.jitter`):
        ``"wide"`` adds more air, larger and smaller dendrites, more and less
        noise and contrast, for training data that generalises; ``"real"``
        adds what real scans show (:func:`dendriteseg.synth.scan.real_scan_draws`:
        fringes, phase retrieval, broad and partial rings, an axis spot,
        dense inclusions, textured walls, masked exteriors); ``"field"`` adds faint dendrites,
        skins, grainy bands, correlated noise and scans with little to find
        (:func:`dendriteseg.synth.scan.field_scan_draws`); the benchmark is ``"standard"``.
    holder : float
        Share of scans with a holder tube around the sample (label 0).
    generator : {"ct", "image"}
        ``"ct"``: the CT forward model (:func:`make_scan`); ``"image"``:
        scans painted in the image domain over wide ranges of grey levels,
        noise and blur (:func:`make_image_scan`; ``variety`` and
        ``holder`` do not apply), a second look for training data.
    min_visible : float
        Raise the contrast of scans whose solid shows less than this (``make_scan``); 0: off.
    on_entry : callable(name, done, total), optional
        Progress callback.
    """
    if preset not in DATASET_PRESETS:
        raise KeyError(f"unknown dataset preset {preset!r}; choose one of {', '.join(DATASET_PRESETS)}")
    check_variety(variety)
    if generator not in GENERATORS:
        raise InputError(f"{out_dir}: unknown generator {generator!r}; choose one of {', '.join(GENERATORS)}")
    if generator == "image" and holder:
        raise InputError(f"{out_dir}: the image generator has no holder tubes; use holder 0")
    if not 0 <= holder <= 1:
        raise InputError(f"{out_dir}: holder must be a share between 0 and 1, got {holder}")
    if min_visible < 0 or (min_visible and generator == "image"):
        raise InputError(f"{out_dir}: min_visible must be 0 or more, and 0 for the image generator")
    spec = DATASET_PRESETS[preset]
    noise = noise or LabelNoise()
    out = Path(out_dir)
    if not out.parent.is_dir():
        raise InputError(f"{out}: folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    plan = _plan_entries(spec)
    children = np.random.SeedSequence(seed).spawn(len(plan))
    entries = []
    for done, (item, child) in enumerate(zip(plan, children, strict=True)):
        gen = np.random.default_rng(child)
        difficulty = str(gen.choice(list(DIFFICULTY_MIX), p=list(DIFFICULTY_MIX.values())))
        structure = "phasefield" if gen.random() < spec.phasefield_share else "procedural"
        entry = {k: item[k] for k in ("name", "quality", "split", "group")}
        entry.update(
            image=f"{item['name']}/image.tif",
            label=f"{item['name']}/label.tif",
            meta=f"{item['name']}/meta.json",
            difficulty=difficulty if generator == "ct" else None,
            structure=structure,
        )
        if item["quality"] == "noisy":
            entry["exact_label"] = f"{item['name']}/label_exact.tif"
        if not (out / item["name"] / "meta.json").exists():
            scan_options = dict(preset=difficulty, variety=variety, holder=holder, min_visible=min_visible)
            _write_entry(out / item["name"], item, generator, structure, scan_options, noise, gen)
        entries.append(entry)
        if on_entry:
            on_entry(item["name"], done + 1, len(plan))
    manifest = {
        "format": MANIFEST_FORMAT,
        "preset": preset,
        "seed": seed,
        "variety": variety,
        "holder": holder,
        "generator": generator,
        "min_visible": min_visible,
        "label_convention": "uint8, 1 = dendrite",
        "exact_groups": dict(EXACT_GROUPS),
        "entries": entries,
    }
    path = out / "manifest.json"
    write_text_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path
