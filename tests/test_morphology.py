"""Surfaces and quantities against shapes whose answers are known."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("trimesh")

from typer.testing import CliRunner  # noqa: E402

from dendriteseg.cli import app  # noqa: E402
from dendriteseg.io import write_volume  # noqa: E402
from dendriteseg.morphology import analyze_labels, surface_mesh  # noqa: E402

runner = CliRunner()


def grid(n):
    return np.mgrid[:n, :n, :n] - (n - 1) / 2


@pytest.fixture(scope="module")
def ball():
    zz, yy, xx = grid(56)
    return (zz**2 + yy**2 + xx**2 <= 20**2).astype(np.uint8)


@pytest.fixture(scope="module")
def cylinder():
    _, yy, xx = grid(48)
    return (yy**2 + xx**2 <= 12**2).astype(np.uint8)


def test_a_ball_of_radius_20(ball, tmp_path):
    write_volume(tmp_path / "ball.tif", ball)
    result = runner.invoke(
        app,
        ["analyze", str(tmp_path / "ball.tif"), "--voxel-size", "1", "--json", str(tmp_path / "ball.json")],
    )
    assert result.exit_code == 0, result.stderr
    values = json.loads((tmp_path / "ball.json").read_text())
    assert values["solid_volume"] == pytest.approx(4 / 3 * math.pi * 20**3, rel=0.01)
    assert values["interface_area"] == pytest.approx(4 * math.pi * 20**2, rel=0.02)
    assert values["mean_curvature"] == pytest.approx(1 / 20, rel=0.05)
    assert values["components"] == 1 and values["components_touching_edge"] == 0
    assert values["units"]["interface_area"] == "um^2" and values["units"]["mean_curvature"] == "1/um"
    assert values["interface_area_per_volume"] == pytest.approx(values["interface_area"] / 56**3)
    assert values["voxel_size_from"] == "given" and "voxel size" not in result.stderr
    hist = values["mean_curvature_histogram"]
    assert len(hist["area"]) == len(hist["bin_edges"]) - 1  # the 1st to 99th percentile of the curvature
    assert 0.95 * values["interface_area"] < sum(hist["area"]) <= values["interface_area"]
    result = runner.invoke(app, ["mesh", str(tmp_path / "ball.tif"), "-o", str(tmp_path / "ball.stl")])
    assert result.exit_code == 0, result.stderr
    assert "no voxel size in the file and none given (--voxel-size): 1 um assumed" in result.stderr
    import trimesh

    mesh = trimesh.load(tmp_path / "ball.stl")
    edges = np.sort(mesh.edges, axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()  # closed: every edge shared by two triangles
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * 20**3, rel=0.02)


def test_a_cylinder_through_the_volume(cylinder):
    values = analyze_labels(cylinder, 0.5, arms=False)  # voxel size 0.5 um: R = 6 um, length 24 um
    assert values["solid_volume"] == pytest.approx(math.pi * 6**2 * 24, rel=0.01)
    assert values["interface_area"] == pytest.approx(2 * math.pi * 6 * 24, rel=0.02)  # the caps left out
    assert values["mean_curvature"] == pytest.approx(1 / (2 * 6), rel=0.05)
    assert values["components_touching_edge"] == 1
    surface = surface_mesh(cylinder, 0.5)
    assert surface.mesh.is_watertight and surface.cap.any()
    assert surface.mesh.volume == pytest.approx(math.pi * 6**2 * 24, rel=0.02)


def test_anisotropic_voxels_and_options(ball):
    stretched = analyze_labels(ball, (2.0, 1.0, 1.0), arms=False)
    assert stretched["solid_volume"] == pytest.approx(2 * ball.sum())
    two = ball.copy()
    two[:, :, :4] = 1  # a second piece, touching the edge
    assert analyze_labels(two, arms=False)["components"] == 2
    assert len(surface_mesh(two, largest=1).mesh.split()) == 1
    assert len(surface_mesh(ball, decimate=0.2).mesh.faces) < 0.3 * len(surface_mesh(ball).mesh.faces)
    with pytest.raises(ValueError, match="no solid voxels"):
        surface_mesh(np.zeros((8, 8, 8), np.uint8))


def test_arm_statistics_of_a_cross():
    cross = np.zeros((9, 61, 61), np.uint8)
    cross[3:6, 29:32, 5:56] = 1
    cross[3:6, 5:56, 29:32] = 1
    values = analyze_labels(cross, arms=True)
    assert values["branches"] >= 4 and values["branch_length_mean"] > 15


def test_a_growth_series_shows_its_trend(tmp_path):
    from dendriteseg.synth.dataset import write_series

    write_series(tmp_path / "growth", scans=4, shape=(12, 48, 48), seed=2)
    code = runner.invoke(
        app,
        [
            "analyze",
            str(tmp_path / "growth" / "t*" / "label.tif"),
            "--series",
            "--csv",
            str(tmp_path / "evo.csv"),
            "--plot",
            str(tmp_path / "evo.png"),
        ],
    )
    assert code.exit_code == 0, code.stderr
    lines = (tmp_path / "evo.csv").read_text().splitlines()
    assert lines[0].startswith("time_index,input,solid_fraction") and len(lines) == 5
    fractions = [float(line.split(",")[2]) for line in lines[1:]]
    assert all(b > a for a, b in zip(fractions, fractions[1:], strict=False))  # the dendrites grow
    assert (tmp_path / "evo.png").stat().st_size > 1000


def test_a_jump_is_flagged(ball, tmp_path):
    from dendriteseg.morphology import analyze_series

    for t, grow in enumerate([0, 1, 14, 2, 3]):  # time step 2 is a bad scan
        zz, yy, xx = grid(40)
        write_volume(tmp_path / f"t{t}.npy", (zz**2 + yy**2 + xx**2 <= (8 + grow) ** 2).astype(np.uint8))
    rows = analyze_series([str(tmp_path / "t*.npy")], jump=0.05)
    assert [bool(r["flag"]) for r in rows] == [False, False, True, False, False]
    assert all(r["voxel_size_from"].startswith("assumed: 1 um") for r in rows)  # .npy holds none
    said = runner.invoke(app, ["analyze", str(tmp_path / "t*.npy"), "--series", "--no-arms"]).stderr
    assert f"{tmp_path / 't0.npy'} and 4 more: no voxel size in the file and none given" in said


def test_the_png_shows_a_surface(ball, tmp_path):
    from dendriteseg.morphology.render import render_png

    path = render_png(surface_mesh(ball).mesh, tmp_path / "ball.png", title="ball")
    import matplotlib.image

    picture = matplotlib.image.imread(path)
    assert picture.shape[0] > 300 and picture[..., :3].std() > 0.05  # not blank


def test_analyze_says_when_it_assumes_the_voxel_size(ball, tmp_path):
    write_volume(tmp_path / "ball.tif", ball)
    out = tmp_path / "ball.json"
    result = runner.invoke(app, ["analyze", str(tmp_path / "ball.tif"), "--no-arms", "--json", str(out)])
    assert result.exit_code == 0, result.stderr
    assert f"{tmp_path / 'ball.tif'}: no voxel size in the file and none given" in result.stderr
    assert json.loads(out.read_text())["voxel_size_from"].startswith("assumed: 1 um")
    write_volume(tmp_path / "sized.tif", ball, voxel_size=(0.65, 0.65, 0.65))
    result = runner.invoke(app, ["analyze", str(tmp_path / "sized.tif"), "--no-arms", "--json", str(out)])
    assert result.exit_code == 0 and "voxel size" not in result.stderr
    assert json.loads(out.read_text())["voxel_size_from"] == "the file's"
