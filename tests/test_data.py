import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dendriteseg.data import LabelledVolume, PatchSampler, read_manifest, select  # noqa: E402
from dendriteseg.data.augment import AugmentConfig, augment, geometric  # noqa: E402
from dendriteseg.errors import InputError  # noqa: E402
from dendriteseg.io import write_volume  # noqa: E402


def test_geometric_augmentation_keeps_image_and_label_aligned():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.random((6, 1, 4, 33, 35)).astype(np.float32))
    label = (image[:, 0] > 0.6).to(torch.uint8)  # the label of the image
    cfg = AugmentConfig(image_interpolation="nearest", p_affine=1.0)
    gen = torch.Generator().manual_seed(3)
    x, y = geometric(image, label, cfg, gen)
    assert x.shape == image.shape and y.shape == label.shape
    assert torch.equal(y, (x[:, 0] > 0.6).to(torch.uint8))  # label of the transformed image
    assert not torch.equal(x, image)


def test_full_augmentation_shapes_and_determinism():
    x = torch.rand(3, 1, 4, 32, 32)
    y = (x[:, 0] > 0.5).to(torch.uint8)
    a = augment(x, y, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment(x, y, AugmentConfig(), torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.isfinite(a[0]).all() and set(a[1].unique().tolist()) <= {0, 1}
    x2 = torch.rand(2, 1, 1, 24, 25)  # 2D patches: z = 1
    out = augment(x2, (x2[:, 0] > 0.5).to(torch.uint8), AugmentConfig(), torch.Generator())
    assert out[0].shape == x2.shape


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (6, 40, 41)).astype(np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[:, 18:22, 18:22] = 1
    write_volume(tmp_path / "img.tif", image)
    write_volume(tmp_path / "lab.tif", label)
    manifest = {
        "entries": [
            {"name": "a", "image": "img.tif", "label": "lab.tif", "quality": "exact", "split": "train"},
            {
                "name": "b",
                "image": "img.tif",
                "label": "lab.tif",
                "quality": "noisy",
                "split": "val",
                "slices": [1, 5],
            },
        ]
    }
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    return tmp_path


def test_manifest_and_volumes(dataset):
    entries = read_manifest(dataset / "m.json")
    assert [e.name for e in select(entries, split="train")] == ["a"]
    vol = LabelledVolume.from_entry(entries[1])
    assert vol.image.shape == (4, 40, 41) and vol.label.sum() == 4 * 16
    assert -0.5 < float(np.median(vol.image)) < 1.5  # robustly normalised


def test_manifest_errors(tmp_path):
    (tmp_path / "bad.json").write_text('{"entries": [{"image": "x.tif"}]}')
    with pytest.raises(InputError, match="missing label"):
        read_manifest(tmp_path / "bad.json")
    (tmp_path / "q.yaml").write_text("entries:\n  - {image: a.tif, label: b.tif, quality: great}\n")
    with pytest.raises(InputError, match="quality"):
        read_manifest(tmp_path / "q.yaml")


def test_sampler_finds_rare_foreground(dataset):
    vol = LabelledVolume.from_entry(read_manifest(dataset / "m.json")[0])
    sampler = PatchSampler([vol], (4, 16, 16), foreground=0.8, rng=0)
    x, y = sampler.batch(32)
    assert x.shape == (32, 1, 4, 16, 16) and y.shape == (32, 4, 16, 16)
    assert (y.reshape(32, -1).max(1) > 0).mean() > 0.6  # most patches hold dendrite
    big = PatchSampler([vol], (8, 48, 48), rng=0).batch(2)  # larger than the volume: padded
    assert big[0].shape == (2, 1, 8, 48, 48)
