"""Training data: manifests, normalised volumes, patch sampling, augmentations."""

from dendriteseg.data.manifest import Entry, read_manifest, select
from dendriteseg.data.volumes import (
    NORMALISATION,
    LabelledVolume,
    PatchSampler,
    normalisation_window,
    normalise,
)

__all__ = [
    "NORMALISATION",
    "Entry",
    "LabelledVolume",
    "PatchSampler",
    "normalisation_window",
    "normalise",
    "read_manifest",
    "select",
]
