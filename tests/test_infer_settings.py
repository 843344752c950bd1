"""InferenceSettings: every inference setting checked once, with messages that name it."""

import numpy as np
import pytest

from dendriteseg.errors import InputError
from dendriteseg.infer.settings import InferenceSettings, check_scale_fits, settings_from


@pytest.mark.parametrize(
    "changes,named",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -1}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"overlap": 1.0}, "overlap"),
        ({"overlap": -0.1}, "overlap"),
        ({"overlap": float("nan")}, "overlap"),
        ({"overlap_z": 1.5}, "overlap_z"),
        ({"tile": (1, 1)}, "tile"),
        ({"tile": (4, 8, 64)}, "tile"),
        ({"tile": (1, 2, 3, 4)}, "tile"),
        ({"tile": 64}, "tile"),
        ({"window": (float("nan"), 1.0)}, "window"),
        ({"window": (0.5, 0.5)}, "window"),
        ({"window": (1.0, 0.0)}, "window"),
        ({"window": (0.0,)}, "window"),
        ({"precision": "fp8"}, "precision"),
        ({"device": "gpu"}, "device"),
        ({"compile": "maybe"}, "compile"),
        ({"scale": 0}, "scale"),
        ({"scale": 1000}, "scale"),
        ({"scale": "big"}, "scale"),
        ({"scale": True}, "scale"),
        ({"tta": "yes"}, "tta"),
        ({"tta": 1}, "tta"),
        ({"tta": None}, "tta"),
        ({"sample_mask": ""}, "sample_mask"),
        ({"sample_mask": 3}, "sample_mask"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(changes, named):
    with pytest.raises(InputError, match=f"^{named}: "):
        InferenceSettings(**changes)


def test_settings_are_normalised_and_replace_checks_again():
    s = InferenceSettings(compile="on", scale="2", tile=[4, 64, 64], window=(0, 1), sample_mask=None)
    assert s.compile is True and s.scale == 2 and s.tile == (4, 64, 64) and s.window == (0.0, 1.0)
    assert s.sample_mask == "none" and InferenceSettings(compile="off").compile is False
    assert s.predictor_options == {"device": "auto", "precision": "auto", "compile": True}
    assert InferenceSettings().tta == "auto"
    assert InferenceSettings(tta="on").tta is True and InferenceSettings(tta=np.bool_(False)).tta is False
    with pytest.raises(InputError, match="^batch_size"):
        s.replace(batch_size=0)
    with pytest.raises(TypeError, match="unknown inference setting.*batch_sise"):
        s.replace(batch_sise=2)
    assert settings_from(None, {"overlap": 0.5}).overlap == 0.5
    assert settings_from(s, {}) is s


def test_a_binning_too_coarse_for_the_slices_is_refused():
    check_scale_fits(4, (1, 64, 64))
    with pytest.raises(InputError, match="scale 8 leaves 8 pixels"):
        check_scale_fits(8, (1, 64, 64), "scan.tif")


def test_segment_from_python_refuses_bad_settings_before_work():
    from dendriteseg.infer import segment

    calls = []

    def predictor(batch):
        calls.append(1)
        return batch

    volume = np.zeros((3, 40, 41), np.float32)
    for bad in ({"batch_size": 0}, {"batch_size": -1}, {"window": (np.nan, 1)}, {"window": (0.5, 0.5)}):
        with pytest.raises(InputError):
            segment(volume, predictor, **bad)
    with pytest.raises(InputError, match="scale 8 leaves"):
        segment(np.zeros((2, 64, 64), np.float32), predictor, scale=8)
    assert not calls


def test_auto_flips_a_network_on_volumes_up_to_the_limit_and_never_a_plain_callable():
    from dendriteseg.infer.settings import TTA_AUTO_MAX_VOXELS, flips_for

    assert flips_for("auto", TTA_AUTO_MAX_VOXELS) and not flips_for("auto", TTA_AUTO_MAX_VOXELS + 1)
    assert not flips_for("auto", 10, network=False)
    assert flips_for(True, 10**12, network=False) and not flips_for(False, 1)
