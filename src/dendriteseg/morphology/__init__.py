"""From labels to science: surfaces, their area and curvature, and how they evolve.

``surface_mesh(labels, voxel_size)`` gives a closed triangle mesh in
micrometres; ``analyze_labels`` the quantities solidification studies
report (solid fraction and volume, interfacial area and S_v, mean and
Gaussian curvature and their distributions, components, arm statistics);
``analyze_series`` a table of them over a 4D series with jumps flagged.
"""

from dendriteseg.morphology.analyze import SERIES_FIELDS, analyze_labels, analyze_series
from dendriteseg.morphology.surface import Surface, surface_mesh, write_mesh

__all__ = ["SERIES_FIELDS", "Surface", "analyze_labels", "analyze_series", "surface_mesh", "write_mesh"]
