"""What a beamline adds between the sample and the reconstruction.

Each function works on one slice's projections (views, detector pixels),
parallel beam:

* :func:`propagate`: propagation-based phase contrast. For a homogeneous
  object the transport-of-intensity equation gives the intensity a
  distance behind the sample as ``I_z = (1 - alpha * d2/dx2) I_0``, with
  ``alpha = z delta / mu`` in detector pixels squared (the model Paganin's
  method inverts; the second derivative is the local difference
  ``[1, -2, 1]``, so nothing rings far from an edge); the detector's point-spread function (Gaussian, sigma
  in pixels) is applied in the same Fourier multiply. It draws a dark and
  a bright fringe at every interface, most strongly where attenuation
  jumps (sample edge, pores, inclusions);
* :func:`retrieve_phase`: Paganin's single-material phase retrieval,
  ``1 / (1 + alpha_r L(f))`` (``L`` that difference's symbol) on the measured intensity: with
  ``alpha_r`` near the propagation's ``alpha`` it removes the fringes;
  larger, it blurs edges, noise and rings alike, as beamline pipelines do;
* :func:`detector_stripes`: gain errors of the detector that flat-field
  correction leaves, the cause of ring artefacts (Vo et al., Opt. Express
  26:28396, 2018): broad bands (scintillator defects) of both signs, full
  (present in every view: full rings) or partial (a range of views: arcs),
  and a stripe at the rotation axis (a bright or dark spot at the centre).

Fourier filters pad each row with its edge values to twice its length, so
the sample's shadow does not wrap around.
"""

from __future__ import annotations

import math

import numpy as np


def _laplacian(f: np.ndarray) -> np.ndarray:
    """Symbol of minus the discrete second difference [1, -2, 1] (local, unlike the spectral one)."""
    return (2 * np.sin(math.pi * f)) ** 2


def _filter_rows(rows: np.ndarray, response) -> np.ndarray:
    """Multiply each row's spectrum by ``response(f)`` (f in cycles per pixel)."""
    n = rows.shape[-1]
    pad = n // 2 + 1
    padded = np.pad(rows, [(0, 0)] * (rows.ndim - 1) + [(pad, pad)], mode="edge")
    f = np.fft.rfftfreq(padded.shape[-1])
    out = np.fft.irfft(np.fft.rfft(padded, axis=-1) * response(f), n=padded.shape[-1], axis=-1)
    return out[..., pad : pad + n]


def propagate(intensity: np.ndarray, alpha: float, blur: float = 0.0) -> np.ndarray:
    """Intensity after free-space propagation (``alpha`` px^2) and detector blur (``blur`` px).

    Kept at or above 1e-4 of the flat field (the linear model can undershoot
    where the edge is sharpest).
    """
    if alpha < 0 or blur < 0:
        raise ValueError(f"alpha and blur must be >= 0, got {alpha} and {blur}")

    def response(f: np.ndarray) -> np.ndarray:
        return (1 + alpha * _laplacian(f)) * np.exp(-0.5 * blur**2 * (2 * math.pi * f) ** 2)

    return np.maximum(_filter_rows(intensity, response), 1e-4)


def retrieve_phase(intensity: np.ndarray, alpha: float) -> np.ndarray:
    """Paganin phase retrieval of measured intensities (``alpha`` in px^2; 0 returns them as they are)."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if alpha == 0:
        return intensity
    return np.maximum(_filter_rows(intensity, lambda f: 1 / (1 + alpha * _laplacian(f))), 1e-4)


def detector_stripes(
    n_views: int,
    n_det: int,
    *,
    broad: int,
    strength: float,
    max_width: float,
    axis_spot: float,
    gen: np.random.Generator,
    reach: float | None = None,
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Multiplicative gain errors (views, detector pixels) and what was drawn.

    ``broad`` bands, each 3 px to ``max_width`` px wide (a smooth-edged box),
    a relative gain error of ``strength`` x 0.4 to 1, either sign, centred
    within ``reach`` pixels of the rotation axis (default: the whole
    detector); half of them partial, present in a contiguous run of 20 % to
    80 % of the views (sorted by angle: an arc). ``axis_spot`` is the gain
    error of a 1-3 px stripe on the rotation axis.
    """
    if broad < 0 or strength < 0 or axis_spot < 0:
        raise ValueError("broad, strength and axis_spot must be >= 0")
    gain = np.ones((n_views, n_det))
    x = np.arange(n_det) - (n_det - 1) / 2
    reach = (n_det - 1) / 2 if reach is None else reach
    drawn = []
    for _ in range(broad):
        width = float(gen.uniform(3.0, max(max_width, 3.0)))
        centre = float(gen.uniform(-reach, reach))
        amplitude = float(gen.choice([-1.0, 1.0]) * strength * gen.uniform(0.4, 1.0))
        edge = max(width / 6, 0.5)
        profile = 0.5 * (np.tanh((x - centre + width / 2) / edge) - np.tanh((x - centre - width / 2) / edge))
        views = np.ones(n_views, bool)
        share = 1.0
        if gen.random() < 0.5:
            share = float(gen.uniform(0.2, 0.8))
            first = int(gen.integers(n_views))
            views = ((np.arange(n_views) - first) % n_views) < share * n_views
        gain[views] *= 1 + amplitude * profile[None]
        drawn.append({"centre": centre, "width": width, "amplitude": amplitude, "views": share})
    if axis_spot > 0:
        width = float(gen.uniform(1.0, 3.0))
        amplitude = float(gen.choice([-1.0, 1.0]) * axis_spot)
        gain *= 1 + amplitude * (np.abs(x) <= width / 2)[None]
        drawn.append({"centre": 0.0, "width": width, "amplitude": amplitude, "views": 1.0})
    return np.maximum(gain, 0.05), drawn
