"""Synthetic XCT data with exact labels."""

from dendriteseg.synth.procedural import procedural_dendrites, random_rotation
from dendriteseg.synth.quick_scan import cylinder_mask, quick_scan

__all__ = ["cylinder_mask", "procedural_dendrites", "quick_scan", "random_rotation"]
