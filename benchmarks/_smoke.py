"""What every benchmark's ``--smoke`` run shares: a tiny dataset in a temporary folder.

``--smoke`` runs a benchmark end to end on tiny data in under a minute, to show that it
still runs (``tests/test_benchmarks.py`` runs them all); its numbers mean nothing.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_FOLDER: Path | None = None


def smoke_folder() -> Path:
    """A temporary folder, removed when the process ends."""
    global _FOLDER
    if _FOLDER is None:
        _FOLDER = Path(tempfile.mkdtemp(prefix="dendriteseg-smoke-"))
        atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)
    return _FOLDER


SHARED = "DENDRITESEG_SMOKE_DATA"  # a folder where smoke runs share one tiny dataset (the tests set it)


def tiny_dataset() -> Path:
    """A ``tiny`` synthetic dataset (seconds to build); returns its folder (``manifest.json`` inside).

    Built in ``$DENDRITESEG_SMOKE_DATA`` where that is set (and kept there for the next run),
    else in this run's temporary folder."""
    from dendriteseg.synth.dataset import build_dataset

    folder = Path(os.environ[SHARED]) if os.environ.get(SHARED) else smoke_folder() / "data"
    if not (folder / "manifest.json").is_file():
        build_dataset(folder, preset="tiny", seed=0)
    return folder
