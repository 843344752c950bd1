"""Rules the code base keeps: functions a reader can hold, a thin command line, one scoring path."""

import ast
from pathlib import Path

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dendriteseg"


def test_no_function_in_the_package_is_over_100_lines():
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                if node.end_lineno - start + 1 > 100:
                    long.append(f"{path.relative_to(SRC)}:{node.name}")
    assert not long


def test_the_command_line_is_thin():
    """The CLI is a small package: its core module (the commands of the code-health issue) at most
    400 lines, each further module of commands smaller still."""
    for path in (SRC / "cli").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name


def test_inference_and_training_data_stay_apart():
    """Inference never imports the training packages; training reaches devices without inference."""
    for path in (SRC / "infer").glob("*.py"):
        text = path.read_text()
        assert "dendriteseg.data" not in text and "dendriteseg.train" not in text, path.name
    assert "dendriteseg.infer.predictor import cpu" not in (SRC / "train" / "fit.py").read_text()


def test_evenly_spaced_picks_rounded_distinct_indices():
    from dendriteseg.preprocess import evenly_spaced

    assert evenly_spaced(10, 4).tolist() == [0, 3, 6, 9]
    assert evenly_spaced(5, 16).tolist() == [0, 1, 2, 3, 4]
    assert evenly_spaced(33, 3).tolist() == [0, 16, 32]
    assert evenly_spaced(0, 3).tolist() == []


def test_score_model_is_the_nan_mean_of_each_volume_summary():
    from dendriteseg.metrics import score_slices, summarize
    from dendriteseg.scoring import score_model

    rng = np.random.default_rng(0)
    images = [rng.random((3, 17, 19)).astype(np.float32) for _ in range(3)]
    labels = [(im > 0.4).astype(np.uint8) for im in images]
    labels[2][:] = 0  # nothing to find: its IoU is 0 (predictions) or skipped
    threshold = lambda batch: (batch - 0.5) * 8.0  # noqa: E731 - dendrite where the image is > 0.5
    scores = score_model(
        threshold, list(zip(images, labels, strict=True)), window=(0.0, 1.0), keep_labels=True
    )
    expected = [
        summarize(score_slices((im > 0.5).astype(np.uint8), lab))
        for im, lab in zip(images, labels, strict=True)
    ]  # noqa: E501
    for key in ("accuracy", "iou", "bf1", "bde"):
        values = [getattr(e, key) for e in expected]
        assert scores[key] == pytest.approx(np.nanmean(values)), key
    assert [np.array_equal(p, im > 0.5) for p, im in zip(scores.labels, images, strict=True)] == [True] * 3
