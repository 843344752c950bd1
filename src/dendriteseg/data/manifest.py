"""Dataset manifests: which volumes, which labels, how good, which split.

A manifest is JSON or YAML::

    entries:
      - name: scan_01
        image: scans/scan_01.h5:/exchange/data
        label: labels/scan_01.tif
        quality: exact        # or noisy
        split: train          # train | val | test
        group: 3              # optional
        slices: [120, 128]    # optional: only these z-slices are labelled

Relative paths are resolved against the manifest's folder, so users can
train on their own data by writing one. ``dendriteseg synth dataset``
writes manifests of this form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dendriteseg.errors import InputError

QUALITIES = ("noisy", "exact")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Entry:
    """One labelled volume of a manifest."""

    name: str
    image: str
    label: str
    quality: str
    split: str
    group: int | None = None
    slices: tuple[int, int] | None = None


def _resolve(base: Path, location: str) -> str:
    path, sep, key = location.partition(":/")
    resolved = path if Path(path).is_absolute() else str(base / path)
    return f"{resolved}:/{key}" if sep else resolved


def read_manifest(path: str | Path) -> list[Entry]:
    """Read and check a manifest; paths come back resolved."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read manifest ({exc.strerror})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # JSON and YAML raise different types
        raise InputError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise InputError(f"{path}: a manifest needs a list called 'entries'")
    entries = []
    for i, raw in enumerate(data["entries"]):
        where = f"{path}: entry {i}"
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a mapping")
        missing = [k for k in ("image", "label") if k not in raw]
        if missing:
            raise InputError(f"{where}: missing {', '.join(missing)}")
        quality = raw.get("quality", "exact")
        split = raw.get("split", "train")
        if quality not in QUALITIES:
            raise InputError(f"{where}: quality must be one of {', '.join(QUALITIES)}, got {quality!r}")
        if split not in SPLITS:
            raise InputError(f"{where}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        slices = raw.get("slices")
        entries.append(
            Entry(
                name=str(raw.get("name", f"entry_{i}")),
                image=_resolve(path.parent, str(raw["image"])),
                label=_resolve(path.parent, str(raw["label"])),
                quality=quality,
                split=split,
                group=raw.get("group"),
                slices=tuple(int(s) for s in slices) if slices else None,
            )
        )
    return entries


def entry_metas(path: str | Path, *, quality: str, split: str) -> list[tuple[dict[str, Any], dict | None]]:
    """The raw entries of one ``quality`` and ``split`` of a JSON manifest (as ``synth dataset`` writes
    them), in order, each with its ``meta.json`` (the scan's record) parsed; None where the entry names
    none or the file is missing."""
    path = Path(path)
    out = []
    for entry in json.loads(path.read_text())["entries"]:
        if entry.get("quality") != quality or entry.get("split") != split:
            continue
        meta = path.parent / entry["meta"] if entry.get("meta") else None
        out.append((entry, json.loads(meta.read_text()) if meta is not None and meta.is_file() else None))
    return out


def select(entries: list[Entry], *, quality: str | None = None, split: str | None = None) -> list[Entry]:
    """Entries of one quality and/or split."""
    return [
        e
        for e in entries
        if (quality is None or e.quality == quality) and (split is None or e.split == split)
    ]


def describe(entries: list[Entry]) -> dict[str, Any]:
    """Counts per quality and split."""
    out: dict[str, Any] = {}
    for e in entries:
        out.setdefault(e.quality, {}).setdefault(e.split, 0)
        out[e.quality][e.split] += 1
    return out
