import pytest

torch = pytest.importorskip("torch")

from dendriteseg.models import MODELS, build_model, count_parameters  # noqa: E402


@pytest.mark.parametrize(
    "name,shape", [("unet2d", (2, 1, 33, 35)), ("unet3d", (1, 1, 4, 33, 34)), ("unet3d", (1, 1, 7, 31, 30))]
)
def test_models_on_odd_sizes(name, shape):
    torch.manual_seed(0)
    model = build_model(name, base=4, depth=3)
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
    assert set(MODELS) >= {"unet2d", "unet3d"}
    with pytest.raises(KeyError, match="unet2d"):
        build_model("segnet")
    assert count_parameters(build_model("unet2d", base=4, depth=2)) > 0
    assert count_parameters(build_model("unet3d", base=4, depth=2)) > count_parameters(
        build_model("unet3d", base=4, depth=2, residual=False)
    )
