"""Synthetic XCT data with exact labels."""

from dendriteseg.synth.image_scan import cylinder_mask, paint_image_scan
from dendriteseg.synth.phasefield import PhaseFieldParams, PhaseFieldResult, grow_dendrites
from dendriteseg.synth.procedural import procedural_dendrites, random_rotation

__all__ = [
    "PhaseFieldParams",
    "PhaseFieldResult",
    "cylinder_mask",
    "grow_dendrites",
    "procedural_dendrites",
    "paint_image_scan",
    "random_rotation",
]
