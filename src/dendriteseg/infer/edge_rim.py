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


def rim_band(depth: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels of the region within ``width`` px of its edge: their (y, x) and their level (the whole
    px of their depth), deepest level first."""
    ys, xs = np.nonzero((depth > 0) & (depth < width))
    levels = depth[ys, xs].astype(np.int64)
    order = np.argsort(-levels, kind="stable")
    return ys[order], xs[order], levels[order]


def drop_edge_rim(
    labels: np.ndarray,
    depth: np.ndarray,
    width: int,
    band: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``labels`` (y, x) without the dendrite pixels within ``width`` px of the edge (``depth``: each
    pixel's distance from it, :func:`edge_depth`) that no dendrite reaches from deeper inside (module
    notes). Returns a new array of ``labels``' dtype. ``band``: :func:`rim_band` of ``depth`` and
    ``width``, where already known.

    Only the band's dendrite pixels are visited, level by level from the deepest: each stays where a
    pixel within ``LATERAL`` of it (in y and x) stayed at a deeper level or is dendrite deeper than
    ``width``; the cost follows the rim's length, not the slice's area."""
    labels = np.asarray(labels)
    out = labels.copy()
    ys, xs, levels = band if band is not None else rim_band(depth, width)
    called = labels[ys, xs] > 0
    if not called.any():
        return out
    ys, xs, levels = ys[called], xs[called], levels[called]
    kept = labels > 0
    kept[ys, xs] = False  # the band's dendrite counts once it is reached
    ny, nx = kept.shape
    stays = np.zeros(len(ys), bool)
    bounds = np.flatnonzero(np.diff(levels)) + 1  # levels run deepest first
    for at in np.split(np.arange(len(ys)), bounds):
        y, x = ys[at], xs[at]
        reached = np.zeros(at.size, bool)
        for dy in range(-LATERAL, LATERAL + 1):
            yy = np.clip(y + dy, 0, ny - 1)
            for dx in range(-LATERAL, LATERAL + 1):
                reached |= kept[yy, np.clip(x + dx, 0, nx - 1)]
        kept[y[reached], x[reached]] = True
        stays[at[reached]] = True
    out[ys[~stays], xs[~stays]] = 0
    return out


class EdgeRim:
    """The rule for one run: ``rim(z0, labels)`` gives the (z, y, x) ``labels`` of slices from ``z0`` on
    without their rim along ``region``'s edge (a (y, x) or (z, y, x) mask; None: unchanged), for a
    network that saw ``scale`` x ``scale`` binning."""

    def __init__(self, region: np.ndarray | None, scale: int = 1):
        self.width = rim_width(scale)
        self.depth = None if region is None else edge_depth(region)
        self._band = None if self.depth is None or self.depth.ndim != 2 else rim_band(self.depth, self.width)

    def __call__(self, z0: int, labels: np.ndarray) -> np.ndarray:
        if self.depth is None:
            return labels
        out = []
        for i, plane in enumerate(labels):
            depth = self.depth if self.depth.ndim == 2 else self.depth[z0 + i]
            out.append(drop_edge_rim(plane, depth, self.width, self._band))
        return np.stack(out)
