"""Training data: manifests, normalised volumes, patch sampling, augmentations."""

from dendriteseg.data.manifest import Entry, read_manifest, select
from dendriteseg.data.volumes import UNLABELLED, LabelledVolume, PatchSampler, crop_windows

__all__ = [
    "UNLABELLED",
    "Entry",
    "LabelledVolume",
    "PatchSampler",
    "crop_windows",
    "read_manifest",
    "select",
]
