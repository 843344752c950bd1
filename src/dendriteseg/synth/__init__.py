"""Synthetic XCT data with exact labels."""

from dendriteseg.synth.phasefield import PhaseFieldParams, PhaseFieldResult, grow_dendrites
from dendriteseg.synth.procedural import procedural_dendrites, random_rotation
from dendriteseg.synth.quick_scan import cylinder_mask, quick_scan

__all__ = [
    "PhaseFieldParams",
    "PhaseFieldResult",
    "cylinder_mask",
    "grow_dendrites",
    "procedural_dendrites",
    "quick_scan",
    "random_rotation",
]
