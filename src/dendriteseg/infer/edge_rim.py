"""Labels along the sample's edge: a thin rim that follows the edge is not a dendrite.

Where the sample meets what is around it (a dark exterior, an oxide skin, a
band of grains), networks call a thin rim along the edge dendrite: the step
in grey there looks to them like a dendrite's side (the Mg slice in
``../shared/real``, ``benchmarks/real_like.py``'s grainy-band rows). A
dendrite cut by the edge looks different: it reaches the edge from inside,
across it, not along it. So, within ``RIM_DEPTH`` pixels (times the binning
the network saw) of the sample region's edge, a dendrite pixel is kept only
where the dendrite reaches it from deeper inside: level by level towards the
edge, one pixel of depth at a time, a kept piece may widen by ``LATERAL``
pixels a level (dendrites that meet the edge at 27 degrees or more keep all
of themselves; a rim parallel to the edge keeps only the stretch where such a
dendrite meets it). Deeper than that, nothing changes; without a sample
region (``--sample-mask none``, or none found) nothing changes.

:class:`EdgeRim` applies it to a run's slabs of labels, after hysteresis;
the probabilities written beside the labels stay the network's, and the
trust report counts what hysteresis dropped, not this.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

RIM_DEPTH = 6  # px (x the binning) from the region's edge within which a rim is looked for
LATERAL = 2  # px a kept dendrite may widen for each px it comes closer to the edge


def rim_width(scale: int) -> int:
    """How deep (px) the rim rule looks from the edge when the network saw ``scale`` x ``scale`` binning:
    a binned network's boundaries are as coarse as its pixels, and so is the rim it calls."""
    return RIM_DEPTH * max(int(scale), 1)


def edge_depth(region: np.ndarray) -> np.ndarray:
    """Each pixel's distance (px) from the outside of ``region`` (a (y, x) or (z, y, x) mask; 0 outside;
    the slice's own border is not an edge: a region that runs off the slice does not end there)."""
    region = np.asarray(region, bool)
    if region.ndim == 2:
        return ndimage.distance_transform_edt(region).astype(np.float32)
    return np.stack([ndimage.distance_transform_edt(m).astype(np.float32) for m in region])


def drop_edge_rim(labels: np.ndarray, depth: np.ndarray, width: int) -> np.ndarray:
    """``labels`` (y, x) without the dendrite pixels within ``width`` px of the edge (``depth``: each
    pixel's distance from it, :func:`edge_depth`) that no dendrite reaches from deeper inside (module
    notes). Returns a new array of ``labels``' dtype."""
    found = np.asarray(labels) > 0
    near = found & (depth < width)
    if not near.any():
        return np.asarray(labels).copy()
    ys, xs = np.nonzero(near)  # work on the box around the rim and what may reach it
    pad = (width + 1) * LATERAL + 1
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, found.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, found.shape[1])
    box, d = found[y0:y1, x0:x1], depth[y0:y1, x0:x1]
    kept = box & (d >= width)
    step = np.ones((2 * LATERAL + 1, 2 * LATERAL + 1), bool)
    for level in range(width - 1, -1, -1):
        layer = box & (d >= level) & (d < level + 1)
        if layer.any():
            kept |= layer & ndimage.binary_dilation(kept, step)
    out = found.copy()
    out[y0:y1, x0:x1] = kept
    return out.astype(np.asarray(labels).dtype)


class EdgeRim:
    """The rule for one run: ``rim(z0, labels)`` gives the (z, y, x) ``labels`` of slices from ``z0`` on
    without their rim along ``region``'s edge (a (y, x) or (z, y, x) mask; None: unchanged), for a
    network that saw ``scale`` x ``scale`` binning."""

    def __init__(self, region: np.ndarray | None, scale: int = 1):
        self.depth = None if region is None else edge_depth(region)
        self.width = rim_width(scale)

    def __call__(self, z0: int, labels: np.ndarray) -> np.ndarray:
        if self.depth is None:
            return labels
        depth = self.depth
        planes = [depth if depth.ndim == 2 else depth[z0 + i] for i in range(len(labels))]
        kept = [drop_edge_rim(plane, d, self.width) for plane, d in zip(labels, planes, strict=True)]
        return np.stack(kept)
