"""The CUDA path: autocast, torch.compile, batched tiles and training, where a GPU is present.

Without CUDA every test here is skipped with one line saying so.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device: the GPU path is not exercised here"
    ),
]

from dendriteseg.infer import segment  # noqa: E402
from dendriteseg.synth.scan import make_image_scan  # noqa: E402


@pytest.fixture(scope="module")
def scan():
    s = make_image_scan((12, 96, 96), rng=3)
    return s["image"], s["label"]


def test_cuda_labels_agree_with_the_cpu(scan):
    image, _ = scan
    cpu = segment(image, device="cpu", precision="fp32", scale=1).labels
    gpu32 = segment(image, device="cuda", precision="fp32", scale=1).labels
    gpu16 = segment(image, device="cuda", precision="auto", scale=1).labels  # bf16 autocast
    assert (gpu32 == cpu).mean() > 0.999 and (gpu16 == cpu).mean() > 0.99


def test_compiled_and_batched_tiles_on_cuda(scan):
    image, _ = scan
    eager = segment(image, device="cuda", compile=False, scale=1, tile=(4, 64, 64)).labels
    batched = segment(image, device="cuda", compile=False, scale=1, tile=(4, 64, 64), batch_size=4).labels
    compiled = segment(image, device="cuda", compile=True, scale=1, tile=(4, 64, 64), batch_size=4).labels
    assert (batched == eager).mean() > 0.999 and (compiled == eager).mean() > 0.99


def test_training_runs_on_cuda_in_bf16(tmp_path, scan):
    from dendriteseg.device import training_precision
    from dendriteseg.tune.finetune import finetune_on_labels
    from dendriteseg.tune.labels import user_scan

    assert training_precision("auto", torch.device("cuda")) in ("bf16", "fp16")
    image, label = scan
    given = np.full(label.shape, 0, np.uint8)
    given[[3, 8]] = label[[3, 8]] + 1  # scribbles on two slices
    result = finetune_on_labels(
        [user_scan(image, given, scribbles=True)],
        tmp_path / "m.safetensors",
        epochs=8,
        budget="tiny",
        devices=["cuda"],
    )
    from dendriteseg.models.files import read_model_info

    assert read_model_info(result.model).provenance["training"]["device"] == "cuda"
