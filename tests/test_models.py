import pytest

torch = pytest.importorskip("torch")

from dendriteseg.models import MODELS, build_model, count_parameters  # noqa: E402

ODD_INPUTS = [
    ("unet2d", (2, 1, 33, 35)),
    ("unet3d", (1, 1, 4, 33, 34)),
    ("unet3d", (1, 1, 7, 31, 30)),
    ("fcdense2d", (2, 1, 33, 35)),
    ("fcdense3d", (2, 1, 4, 33, 34)),
]


@pytest.mark.parametrize("name,shape", ODD_INPUTS)
def test_models_on_odd_sizes(name, shape):
    torch.manual_seed(0)
    small = {"depth": 3} if name.startswith("unet") else {"growth": 4, "layers": (2, 2, 2)}
    model = build_model(name, base=4, **small)
    x = torch.randn(shape)
    y = model(x)
    assert y.shape == (shape[0], 2, *shape[2:])
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_3d_pools_z_only_in_first_levels():
    model = build_model("unet3d", base=4, depth=4, z_levels=2)
    assert model.size_multiple() == (4, 16, 16)
    assert model(torch.randn(1, 1, 4, 32, 32)).shape == (1, 2, 4, 32, 32)


def test_registry():
    assert set(MODELS) == {"unet2d", "unet3d", "fcdense2d", "fcdense3d"}
    with pytest.raises(KeyError, match="unet2d"):
        build_model("segnet")
    assert count_parameters(build_model("unet2d", base=4, depth=2)) > 0
    assert count_parameters(build_model("unet3d", base=4, depth=2)) > count_parameters(
        build_model("unet3d", base=4, depth=2, residual=False)
    )


def test_model_file_round_trip(tmp_path):
    from dendriteseg.models.files import ModelInfo, load_model, read_model_info, save_model

    torch.manual_seed(1)
    model = build_model("fcdense3d", base=4, growth=4, layers=(2, 2), bottleneck=2).eval()
    info = ModelInfo(
        "fcdense3d",
        {"base": 4, "growth": 4, "layers": [2, 2], "bottleneck": 2},
        {"kind": "percentile", "low": 1, "high": 99},
        {"trained_on": "test"},
    )
    save_model(tmp_path / "m.safetensors", model, info)
    assert read_model_info(tmp_path / "m.safetensors") == info
    loaded, got = load_model(tmp_path / "m.safetensors")
    x = torch.randn(1, 1, 4, 17, 19)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_model_file_in_half_precision_loads_as_float32(tmp_path):
    from dendriteseg.models.files import ModelInfo, load_model, save_model

    torch.manual_seed(2)
    model = build_model("unet3d", base=4, depth=2).eval()
    save_model(tmp_path / "full.safetensors", model, ModelInfo("unet3d", {"base": 4, "depth": 2}))
    save_model(tmp_path / "half.safetensors", model, ModelInfo("unet3d", {"base": 4, "depth": 2}), half=True)
    full_size = (tmp_path / "full.safetensors").stat().st_size
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * full_size
    loaded, _ = load_model(tmp_path / "half.safetensors")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(1, 1, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=5e-2, rtol=5e-2)


def test_model_file_errors(tmp_path):
    from safetensors.torch import save_file

    from dendriteseg.errors import InputError
    from dendriteseg.models.files import load_model

    (tmp_path / "junk.safetensors").write_bytes(b"not a model at all")
    with pytest.raises(InputError, match="not a safetensors file"):
        load_model(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="not a dendriteseg model"):
        load_model(tmp_path / "other.safetensors")
    with pytest.raises(InputError, match="no such model"):
        load_model(tmp_path / "missing.safetensors")
