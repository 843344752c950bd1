"""Every benchmark still runs: each script's ``--smoke`` (tiny data) exits 0 within 180 s."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def test_every_benchmark_has_a_smoke_flag():
    missing = [name for name in SCRIPTS if "--smoke" not in (BENCHMARKS / name).read_text()]
    assert not missing


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    """One tiny dataset for every smoke run that needs one (built by the first)."""
    return tmp_path_factory.mktemp("smoke_data") / "data"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke_run(script, tmp_path, smoke_data):
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
        "DENDRITESEG_SMOKE_DATA": str(smoke_data),
    }
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke"],
        cwd=tmp_path,  # nothing is written into the checkout
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
