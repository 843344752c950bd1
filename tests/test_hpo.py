"""The paper's two-step search on a tiny dataset: pruning, resume after a kill, Dask workers, report."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
optuna = pytest.importorskip("optuna")

from dendriteseg.errors import InputError  # noqa: E402
from dendriteseg.models.files import load_model, read_model_info  # noqa: E402
from dendriteseg.synth.dataset import build_dataset  # noqa: E402
from dendriteseg.train import train  # noqa: E402
from dendriteseg.train.config import config_from_dict  # noqa: E402
from dendriteseg.tune.hpo import search  # noqa: E402
from dendriteseg.tune.report import write_report  # noqa: E402
from dendriteseg.tune.search import fail_orphans, open_study  # noqa: E402

DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("hpo") / "data", preset="tiny", seed=0)


def _base(manifest, out, **changes):
    return config_from_dict(
        {
            "data": str(manifest),
            "out": str(out),
            "model": "unet2d",
            "model_args": {"base": 8, "depth": 2},
            "patch": [1, 32, 32],
            "batch": 2,
            "precision": "fp32",
            **changes,
        }
    )


@pytest.fixture(scope="module")
def segmenting_model(manifest, tmp_path_factory):
    """A model that finds some dendrite already (trials that fine-tune it then differ)."""
    out = tmp_path_factory.mktemp("start")
    config = _base(
        manifest,
        out,
        train_quality="exact",
        epochs=2,
        steps_per_epoch=30,
        lr=3e-3,
        batch=4,
        foreground=0.7,
        lr_schedule="constant",
    )
    return train(config)


def test_both_steps_prune_export_and_report(manifest, segmenting_model, tmp_path):
    run = tmp_path / "run"
    base = _base(manifest, run)
    pre = search("pretrain", base, run, trials=3, budget="tiny", seed=1)
    assert pre.trials == 3
    model, info = load_model(pre.best_model)
    assert info.provenance["train_quality"] == "noisy"
    assert info.provenance["config"]["patch"][-1] == pre.best_params["patch_width"]
    ft = search("finetune", base, run, parent=segmenting_model, trials=6, budget="tiny", seed=2)
    assert ft.trials == 6 and ft.pruned >= 1  # ASHA stopped the weak ones
    info = read_model_info(ft.best_model)
    assert info.provenance["parent"]["file"] == str(segmenting_model)
    assert info.provenance["config"]["batch"] == 4 and info.provenance["train_quality"] == "exact"
    export = tmp_path / "best.safetensors"
    written = write_report(run, export=export, step="finetune")
    table = (run / "table1.md").read_text()
    assert "| unet2d | pretrain |" in table and "| unet2d | finetune |" in table and "(fixed)" in table
    assert {p.name for p in written} >= {
        "table1.md",
        "history_pretrain.png",
        "history_finetune.png",
        "best.safetensors",
    }
    load_model(export)
    moved = tmp_path / "moved"  # a run folder moved (or read from elsewhere) still exports its own models
    run.rename(moved)
    again = write_report(moved, export=tmp_path / "again.safetensors", step="pretrain")
    assert load_model(again[-1])[1].provenance["train_quality"] == "noisy"
    with pytest.raises(InputError, match="is a folder"):
        write_report(moved, export=tmp_path, step="pretrain")
    assert not list(tmp_path.glob(".*partial*"))
    with pytest.raises(InputError, match="begun with other settings.*lr"):
        search("pretrain", base.replace(lr=0.5), moved, trials=1, budget="tiny", seed=1)
    with pytest.raises(InputError, match="no study.journal"):
        write_report(tmp_path)
    with pytest.raises(InputError, match="--from"):
        search("finetune", base, run, trials=1, budget="tiny")


SCRIPT = """
import sys
from dendriteseg.train.config import config_from_dict
from dendriteseg.tune.hpo import search
base = config_from_dict({"data": sys.argv[1], "out": sys.argv[2], "model": "unet2d", "precision": "fp32",
                         "model_args": {"base": 8, "depth": 2}, "patch": [1, 32, 32], "batch": 2})
search("pretrain", base, sys.argv[2], trials=50, budget="tiny")
"""


def test_a_killed_search_keeps_its_trials_and_continues(manifest, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(manifest), str(run)], start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if (run / "study.journal").exists():
                trials = open_study(run, "pretrain").get_trials(deepcopy=False)
                if (  # the journal is written before its first trial
                    sum(t.state in DONE for t in trials) >= 2
                    and trials[-1].state.name == "RUNNING"
                    and "pid" in trials[-1].user_attrs
                ):
                    break
        else:
            pytest.fail("the search did not get going")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = open_study(run, "pretrain").get_trials(deepcopy=False)
    kept = [(t.number, t.state, t.params) for t in before if t.state in DONE]
    result = search("pretrain", _base(manifest, run), run, trials=len(kept) + 1, budget="tiny")
    after = open_study(run, "pretrain").get_trials(deepcopy=False)
    assert [(t.number, t.state, t.params) for t in after if t.number in {k[0] for k in kept}] == kept
    assert after[before[-1].number].state == optuna.trial.TrialState.FAIL  # the one killed mid-way
    assert result.trials == len(kept) + 1


def test_a_running_trial_that_names_no_process_is_failed_once_it_is_old(tmp_path):
    study = open_study(tmp_path, "pretrain")
    owned, unowned = study.ask(), study.ask()
    owned.set_user_attr("host", socket.gethostname())
    owned.set_user_attr("pid", os.getpid())  # alive: this process
    assert fail_orphans(study) == []  # a fresh unowned trial may be naming itself right now
    assert fail_orphans(study, unowned_after=0.0) == [unowned.number]
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {
        owned.number: optuna.trial.TrialState.RUNNING,
        unowned.number: optuna.trial.TrialState.FAIL,
    }


def test_two_dask_workers_contribute_to_one_study(manifest, tmp_path):
    distributed = pytest.importorskip("distributed")
    run = tmp_path / "run"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        result = search(
            "pretrain", _base(manifest, run), run, trials=4, budget="tiny", dask=cluster.scheduler_address
        )
    trials = open_study(run, "pretrain").get_trials(deepcopy=False)
    assert result.trials >= 4
    assert len({t.user_attrs["pid"] for t in trials if t.state in DONE}) == 2
