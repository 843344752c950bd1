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


def test_the_formatter_is_never_switched_off():
    """Line lengths and sizes are kept by writing shorter code, not by exempting it from the formatter."""
    root = SRC.parents[1]
    markers = ("fmt: " + "skip", "fmt: " + "off")  # split: this file must not match itself
    exempt = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("src", "tests", "benchmarks", "scripts")
        for path in (root / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(marker in line for marker in markers)
    ]
    assert not exempt


def test_the_command_line_is_thin():
    """The CLI is a small package: its core module (the commands of the code-health issue) at most
    400 lines, each further module of commands smaller still."""
    for path in (SRC / "cli").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


def imports_of(path: Path) -> set[str]:
    """The dendriteseg modules a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {_resolve(a.name) for a in node.names if a.name.startswith("dendriteseg")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dendriteseg"):
            found.add(_resolve(node.module))
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    return found - {"", _module_name(path)}


def test_no_import_cycle_in_the_package():
    """No module imports, directly or through others, one that imports it (function-level imports too)."""
    graph = {name: imports_of(path) for name, path in MODULES.items()}

    def reaches(start: str, target: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name == target:
                return True
            if name not in seen:
                seen.add(name)
                todo.extend(graph.get(name, ()))
        return False

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if a < b and reaches(b, a))
    assert not cycles


def test_inference_and_training_data_stay_apart():
    """Inference never imports the training packages; training reaches devices without inference."""
    for name, path in MODULES.items():
        if name.startswith("dendriteseg.infer"):
            bad = {m for m in imports_of(path) if m.startswith(("dendriteseg.data", "dendriteseg.train"))}
            assert not bad, (name, bad)
    fit = imports_of(SRC / "train" / "fit.py")
    assert "dendriteseg.infer.cpu" not in fit and "dendriteseg.device" in fit


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
        threshold,
        list(zip(images, labels, strict=True)),
        window=(0.0, 1.0),
        keep_labels=True,
        hysteresis=0.5,  # every voxel above 0.5, as the expected labels are made
    )
    expected = [
        summarize(score_slices((im > 0.5).astype(np.uint8), lab))
        for im, lab in zip(images, labels, strict=True)
    ]  # noqa: E501
    for key in ("accuracy", "iou", "bf1", "bde"):
        values = [getattr(e, key) for e in expected]
        assert scores[key] == pytest.approx(np.nanmean(values)), key
    assert [np.array_equal(p, im > 0.5) for p, im in zip(scores.labels, images, strict=True)] == [True] * 3
