"""Synthetic XCT scans with exact labels: structure + placement + CT model.

``make_scan`` is the one entry point for a single volume, ``make_series``
for a 4D growth series. Difficulty presets (``easy``, ``moderate``,
``realistic``, ``hard``) set the scan's knobs; ``jitter`` varies them per
volume so that a dataset spans many scanners, samples and alloys rather
than one. ``moderate`` is the benchmark's middle difficulty (datasets draw
easy, moderate and hard); ``realistic`` is ``moderate`` in a container, as
an in-situ solidification experiment is: a crucible wall of grainy
material about as dense as the melt, label 0, which a global threshold
calls dendrite as it does on real scans.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict
from typing import Any

import numpy as np

from dendriteseg.rng import Rng, as_generator
from dendriteseg.synth.ct import ScanParams, simulate_scan
from dendriteseg.synth.image_scan import paint_image_scan
from dendriteseg.synth.phasefield import PhaseFieldParams, grow_dendrites
from dendriteseg.synth.procedural import procedural_dendrites
from dendriteseg.synth.structure import grow_phase, place_structure

_MODERATE = dict(
    n_views=360,
    photons=8e3,
    ring_strength=0.004,
    dead_pixels=2,
    solid_ratio=0.67,
    phase_contrast=0.1,
    pores=3,
    particles=6,
)
PRESETS: dict[str, dict[str, Any]] = {
    "easy": {
        "scan": dict(
            n_views=720,
            photons=4e4,
            ring_strength=0.001,
            dead_pixels=0,
            solid_ratio=0.6,
            z_blur=0.4,
            drift=0.02,
            pores=1,
            particles=2,
        ),
        "growth": 0.0,
    },
    "moderate": {
        "scan": _MODERATE,
        "growth": 1.0,
    },
    "realistic": {
        "scan": dict(
            _MODERATE,
            holder_thickness=0.03,
            holder_gap=0.01,
            holder_mu=0.8,
            holder_texture=0.3,
        ),
        "growth": 1.0,
    },
    "hard": {
        "scan": dict(
            n_views=180,
            photons=2.5e3,
            ring_strength=0.01,
            dead_pixels=4,
            solid_ratio=0.75,
            phase_contrast=0.3,
            detector_blur=1.2,
            z_blur=1.0,
            drift=0.1,
            pores=6,
            particles=12,
        ),
        "growth": 2.0,
    },
}
STRUCTURES = ("procedural", "phasefield")


def scan_params(preset: str, **overrides: Any) -> tuple[ScanParams, float]:
    """The ScanParams and growth-during-scan (voxels) of a preset."""
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    spec = PRESETS[preset]
    return ScanParams(**{**spec["scan"], **overrides}), float(spec["growth"])


VARIETIES = ("standard", "wide", "real", "field")


def check_variety(variety: str) -> None:
    if variety not in VARIETIES:
        raise KeyError(f"unknown variety {variety!r}; choose one of {', '.join(VARIETIES)}")


def jitter(
    params: ScanParams, growth: float, rng: Rng = None, variety: str = "standard"
) -> tuple[ScanParams, float]:
    """Randomly vary a preset's knobs (log-uniform photons, ratio, rings, ...).

    ``variety="wide"`` spans more scanners and samples than the benchmark
    (``"standard"``): 2.5x wider photon range, weaker and stronger solid
    contrast, and samples from 22 % to 48 % of the field of view wide, so
    much more air around them. ``variety="real"`` draws as ``"wide"`` does
    and adds what real scans show (:func:`real_scan_draws`); ``"field"``
    adds to those what failed on real scans in the field
    (:func:`field_scan_draws`).
    """
    check_variety(variety)
    wide = variety in ("wide", "real", "field")
    gen = as_generator(rng)
    photons = gen.uniform(-1.4, 1.0) if wide else gen.uniform(-0.7, 0.7)
    ratio = gen.uniform(-0.16, 0.14) if wide else gen.uniform(-0.08, 0.08)
    ratio_range = (0.4, 0.88) if wide else (0.45, 0.85)
    params = params.replace(
        photons=params.photons * math.exp(photons),
        solid_ratio=float(np.clip(params.solid_ratio + ratio, *ratio_range)),
        ring_strength=params.ring_strength * gen.uniform(0.3, 2.0),
        dead_pixels=int(gen.integers(0, params.dead_pixels + 2)),
        phase_contrast=params.phase_contrast * gen.uniform(0, 2),
        detector_blur=params.detector_blur * gen.uniform(0.6, 1.5),
        z_blur=params.z_blur * gen.uniform(0.5, 1.5),
        halo=params.halo * gen.uniform(0, 2),
        radius_fraction=gen.uniform(0.22, 0.48) if wide else gen.uniform(0.38, 0.48),
        interlace=int(gen.choice([1, 2, 4, 8])),
    )
    growth *= gen.uniform(0.0, 1.5)
    if variety in ("real", "field"):
        params = params.replace(**real_scan_draws(params, gen))
    if variety == "field":
        params = params.replace(**field_scan_draws(params, gen))
    return params, growth


def field_scan_draws(params: ScanParams, gen: np.random.Generator) -> dict[str, Any]:
    """What real scans showed that the ``real`` variety lacked, each drawn at random per scan.

    * faint dendrites: in 30 % of the scans the solid only 3 % to 12 % darker than the melt;
    * an oxide skin in half: a shell of 1-3 px at the sample's surface, darker (0.2-0.9 of
      the melt) or, in a fifth, brighter (1.1-1.6);
    * a grainy band touching the sample in 60 %: 2-10 % of the view wide, about as dense as
      the melt (0.75-1.25), grains 2-8 px across (1-4 px smoothing) of 0.3-1.0 spread, and
      in 70 % of those the exterior masked to one grey just outside it (0, about the melt's,
      or any);
    * noise correlated over 0.7-2.5 px (phase retrieval, binning) in half, of 0.02-0.12 of
      the melt's attenuation.
    """
    draws: dict[str, Any] = {}
    if gen.random() < 0.3:
        draws["solid_ratio"] = float(gen.uniform(0.88, 0.97))
    if gen.random() < 0.5:
        dark = gen.random() < 0.8
        draws.update(
            skin_thickness=float(gen.uniform(1.0, 3.0)),
            skin_mu=float(gen.uniform(0.2, 0.9) if dark else gen.uniform(1.1, 1.6)),
        )
    if gen.random() < 0.6:
        room = max(0.5 - params.radius_fraction - 0.01, 0.0)
        thickness = min(float(gen.uniform(0.02, 0.10)), room)
        draws.update(
            holder_gap=0.0,
            holder_thickness=thickness,
            holder_mu=float(gen.uniform(0.75, 1.25)),
            holder_texture=float(gen.uniform(0.3, 1.0)),
            holder_grain=float(gen.uniform(1.0, 4.0)),
            mask_radius=0.0,
        )
        if thickness > 0 and gen.random() < 0.7:
            outer = params.radius_fraction + thickness
            draws["mask_radius"] = float(min(outer + gen.uniform(0.0, 0.01), 0.5))
            draws["mask_value"] = float(gen.choice([0.0, gen.uniform(0.8, 1.1), gen.uniform(0.0, 1.5)]))
    if gen.random() < 0.5:
        draws.update(
            correlated_noise=float(gen.uniform(0.02, 0.12)),
            noise_correlation=float(gen.uniform(0.7, 2.5)),
        )
    return draws


def real_scan_draws(params: ScanParams, gen: np.random.Generator) -> dict[str, Any]:
    """What real scans show, each drawn at random per scan (``../shared/REAL-SCANS.md``).

    * contrast: solid 7 % to 55 % darker than the melt;
    * optics: half the scans with Fresnel fringes (alpha 1-40 px^2,
      log-uniform), half of those phase-retrieved (Paganin, 0.5x-2x the
      propagation's alpha: blurred instead); a few retrieved without fringes;
    * rings: 0-5 broad detector stripes (3 to 5-40 px wide, gain errors of
      2 % to 30 %, full or partial: rings and arcs of either sign), narrow
      rings 0.3x-4x the preset's, a spot on the rotation axis in half;
    * dense inclusions (5-30x the melt's attenuation: streaks) in a third;
    * exterior: air, a textured wall (crucible, oxide skin or packing,
      touching the sample or not) or not; masked beyond a radius to one grey
      (0, about the melt's, or any) in 40 %.
    """
    draws: dict[str, Any] = {"solid_ratio": float(gen.uniform(0.45, 0.93)), "phase_contrast": 0.0}
    if gen.random() < 0.5:
        draws["fresnel"] = float(math.exp(gen.uniform(0.0, math.log(40.0))))
        if gen.random() < 0.5:
            draws["paganin"] = draws["fresnel"] * float(gen.uniform(0.5, 2.0))
    elif gen.random() < 0.2:
        draws["paganin"] = float(gen.uniform(1.0, 10.0))
    draws.update(
        broad_rings=int(gen.integers(0, 6)),
        broad_ring_strength=float(math.exp(gen.uniform(math.log(0.02), math.log(0.3)))),
        broad_ring_width=float(gen.uniform(5.0, 40.0)),
        ring_strength=params.ring_strength * float(gen.uniform(0.3, 4.0)),
        axis_spot=float(gen.uniform(0.05, 0.5)) if gen.random() < 0.5 else 0.0,
    )
    if gen.random() < 0.33:
        draws.update(dense_inclusions=int(gen.integers(1, 10)), dense_mu=float(gen.uniform(5.0, 30.0)))
    if gen.random() < 0.6:
        room = max(0.5 - params.radius_fraction - 0.01, 0.0)
        gap = float(gen.uniform(0.0, 0.03)) if gen.random() < 0.5 else 0.0
        draws.update(
            holder_gap=min(gap, room),
            holder_thickness=min(float(gen.uniform(0.01, 0.12)), max(room - gap, 0.0)),
            holder_mu=float(gen.uniform(0.3, 1.5)),
            holder_texture=float(gen.uniform(0.0, 0.8)),
            holder_grain=float(gen.uniform(0.7, 3.0)),
        )
    if gen.random() < 0.4:
        outer = params.radius_fraction + draws.get("holder_gap", 0.0) + draws.get("holder_thickness", 0.0)
        draws["mask_radius"] = float(gen.uniform(min(outer + 0.005, 0.5), 0.5))
        draws["mask_value"] = float(gen.choice([0.0, gen.uniform(0.8, 1.1), gen.uniform(0.0, 1.5)]))
    return draws


def sharpen_interfaces(phase: np.ndarray) -> np.ndarray:
    """A solid fraction whose interfaces ramp over one voxel, wherever they lie.

    Resampling a structure at a zoom widens its diffuse interface by that
    zoom; real optics keep an interface as sharp at every magnification.
    The 0.5 level stays where it is (signed distance from the gradient).
    """
    grad = np.sqrt(sum(g.astype(np.float32) ** 2 for g in np.gradient(phase)))
    return np.clip(0.5 + (phase - 0.5) / np.maximum(grad, 1e-3), 0.0, 1.0).astype(np.float32)


def holder_params(params: ScanParams, rng: Rng = None) -> dict[str, float]:
    """A random holder tube around the sample (a wall of 1.5-5 % of the view,
    0-3 % away from the sample, 0.3-1.2x the melt's attenuation: from below
    the solid's to above the melt's), thinned to fit in the view."""
    gen = as_generator(rng)
    room = 0.5 - params.radius_fraction - 0.01
    gap = min(gen.uniform(0.0, 0.03), max(room - 0.01, 0.0))
    return {
        "holder_gap": gap,
        "holder_thickness": min(gen.uniform(0.015, 0.05), max(room - gap, 0.0)),
        "holder_mu": gen.uniform(0.3, 1.2),
    }


def _structure(
    kind: str,
    shape: tuple[int, int, int],
    zoom: float,
    growth: float,
    gen: np.random.Generator,
    steps: int | None,
    seeds: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Source solid fraction at the start and end of the scan (on the source grid); ``seeds``:
    the procedural structure's dendrites (default drawn)."""
    src_shape = tuple(max(8, int(math.ceil(s / zoom * 1.15))) for s in shape)
    if kind == "procedural":
        cube = max(src_shape)
        src_shape = (cube, cube, cube)  # any rotation keeps the view filled
        n_seeds = int(gen.integers(12, 40)) if seeds is None else int(seeds)  # from a few to ~25 % solid
        if n_seeds > 0:
            _, start = procedural_dendrites(src_shape, n_seeds=n_seeds, rng=gen)
        else:
            start = np.zeros(src_shape, np.float32)
        end = grow_phase(start, growth / zoom) if growth > 0 else start
        return start, end, {"kind": kind, "source_shape": list(src_shape), "n_seeds": n_seeds}
    if kind == "phasefield":
        cube = int(max(src_shape))
        side = (cube, cube, cube)
        n_seeds = int(gen.integers(1, 5))
        steps = steps or int(25 * cube)
        every = max(1, steps // 20)
        result = grow_dendrites(side, n_seeds=n_seeds, steps=steps, snapshot_every=every, rng=gen)
        # the scan sees the last snapshots: growth moves the interface by ~growth voxels
        later = len(result.snapshots) - 1
        earlier = max(0, later - max(0, int(round(growth))))
        start = result.snapshots[earlier].astype(np.float32)
        end = result.snapshots[later].astype(np.float32)
        meta = {
            "kind": kind,
            "source_shape": list(side),
            "n_seeds": n_seeds,
            "steps": steps,
            "params": asdict(PhaseFieldParams()),
        }
        return start, end, meta
    raise KeyError(f"unknown structure {kind!r}; choose one of {', '.join(STRUCTURES)}")


MAX_CONTRAST_GAIN = 6.0
MIN_SOLID_RATIO = 0.4


def raised_contrast(solid_ratio: float, shown: float, wanted: float) -> float:
    """The solid-to-melt ratio whose contrast (1 - ratio) is ``wanted / shown`` times this one's
    (``shown`` floored at ``1 / MAX_CONTRAST_GAIN`` of ``wanted``: inverted or hidden contrast gets
    the largest gain), never below :data:`MIN_SOLID_RATIO`."""
    gain = wanted / max(shown, wanted / MAX_CONTRAST_GAIN)
    return float(max(1.0 - (1.0 - solid_ratio) * gain, MIN_SOLID_RATIO))


def _simulate_visible(
    phase: np.ndarray,
    phase_end: np.ndarray | None,
    params: ScanParams,
    gen: np.random.Generator,
    min_visible: float,
) -> dict[str, Any]:
    """:func:`simulate_scan`, again with more contrast where the solid shows less than ``min_visible``."""
    again = copy.deepcopy(gen)  # the same noise, rings and distractors if simulated again
    out = simulate_scan(phase, phase_end=phase_end, params=params, rng=gen)
    shown = out["meta"]["visible_contrast"]
    if min_visible > 0 and math.isfinite(shown) and shown < min_visible:
        params = params.replace(solid_ratio=raised_contrast(params.solid_ratio, shown, min_visible))
        out = simulate_scan(phase, phase_end=phase_end, params=params, rng=again)
        out["meta"]["visibility_raised"] = {"visible_contrast_before": shown, "min_visible": min_visible}
    return out


def _scan_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or shape[1] != shape[2] or min(shape) < 1 or shape[1] < 16:
        raise ValueError(f"shape must be (z, n, n) with n >= 16, got {shape}")
    return shape


def _default_zoom(structure: str, shape: tuple[int, int, int]) -> float:
    """CT voxels per structure voxel: 1.5 (procedural) or ``shape / 56`` (a 64^3 phase field fills it)."""
    return 1.5 if structure == "procedural" else max(1.0, shape[1] / 56)


def _wide_zoom_factor(structure: str, gen: np.random.Generator, high: float = 2.0) -> float:
    """Log-uniform from 0.6x to ``high`` (from 1x for the phase field, whose cost grows as zoom^-4)."""
    low = 0.6 if structure == "procedural" else 1.0
    return math.exp(gen.uniform(math.log(low), math.log(high)))


def make_scan(
    shape: tuple[int, int, int] = (64, 192, 192),
    *,
    preset: str = "moderate",
    structure: str = "procedural",
    zoom: float | None = None,
    vary: bool = False,
    variety: str = "standard",
    holder: float = 0.0,
    phasefield_steps: int | None = None,
    seeds: int | None = None,
    min_visible: float = 0.0,
    rng: Rng = None,
    **scan_overrides: Any,
) -> dict[str, Any]:
    """Make one synthetic scan with its exact label.

    Parameters
    ----------
    shape : (z, y, x)
        Output size; y and x must be equal (a cylindrical sample).
    preset : {"easy", "moderate", "realistic", "hard"}
    structure : {"procedural", "phasefield"}
        Fast branching capsules, or the 3D phase-field model.
    zoom : float, optional
        CT voxels per structure voxel; default 1.5 (procedural) or
        ``shape / 56`` (phase field, so a 64^3 simulation fills the view).
    vary : bool
        Jitter the preset's knobs (for datasets).
    variety : {"standard", "wide", "real", "field"}
        How far ``vary`` jitters (see :func:`jitter`); ``"wide"`` also
        draws the zoom log-uniformly from 0.6x to 2x of the default (from
        1x for the phase field, whose cost grows as zoom^-4), where
        ``"standard"`` draws 0.8x to 1.25x; ``"real"`` and ``"field"`` draw it from 0.6x
        to 4x and keeps interfaces one voxel sharp at every zoom
        (:func:`sharpen_interfaces`).
    holder : float
        Probability of a holder tube around the sample (label 0, see
        :func:`holder_params`). Its draws come from a stream of their own,
        so a seed gives the same structure, placement and label with or
        without a holder.
    phasefield_steps : int, optional
        Time steps of the phase-field model (default ~25 per voxel of side).
    seeds : int, optional
        Dendrites in the (procedural) structure; default drawn from 12 to 39, a few to
        ~25 % solid. With ``vary`` and the ``field`` variety, 30 % of the scans draw 0
        to 3 (the first scans of a solidification series: little or nothing to find).
    min_visible : float
        Where the solid shows less than this (:func:`dendriteseg.synth.ct.visible_contrast`), simulate
        again with its contrast raised (:func:`raised_contrast`): a label the image does not show
        teaches a network to call noise dendrite. 0 (the default) keeps every draw.
    rng : int or numpy.random.Generator
    **scan_overrides
        Any :class:`ScanParams` field, e.g. ``photons=2000``.

    Returns
    -------
    dict
        ``image``, ``label``, ``phase``, ``sample``, ``meta`` (see
        :func:`dendriteseg.synth.ct.simulate_scan`), with the structure's
        and the placement's parameters added to ``meta``.
    """
    gen = as_generator(rng)
    shape = _scan_shape(shape)
    params, growth = scan_params(preset, **scan_overrides)
    if vary:
        params, growth = jitter(params, growth, gen, variety)
    zoom = float(zoom if zoom is not None else _default_zoom(structure, shape))
    if vary and variety in ("wide", "real", "field"):
        zoom *= _wide_zoom_factor(structure, gen, 4.0 if variety in ("real", "field") else 2.0)
    elif vary:
        zoom *= gen.uniform(0.8, 1.25)
    if seeds is None and vary and variety == "field" and structure == "procedural" and gen.random() < 0.3:
        seeds = int(gen.integers(0, 4))
    start, end, smeta = _structure(structure, shape, zoom, growth, gen, phasefield_steps, seeds)
    placement_seed = int(gen.integers(2**31))
    holder_gen = np.random.default_rng([placement_seed, 1])
    if holder > 0 and holder_gen.random() < holder:
        params = params.replace(**holder_params(params, holder_gen))
    elastic = float(gen.uniform(0, 3)) if vary else 0.0
    placed = [place_structure(p, shape, zoom=zoom, elastic=elastic, rng=placement_seed) for p in (start, end)]
    if vary and variety in ("real", "field"):
        placed = [sharpen_interfaces(p) for p in placed]
    moving = growth > 0 and not np.array_equal(start, end)
    out = _simulate_visible(placed[0], placed[1] if moving else None, params, gen, min_visible)
    out["meta"].update(
        seed=rng if isinstance(rng, (int, np.integer)) else None,
        preset=preset,
        variety=variety if vary else None,
        structure=smeta,
        zoom=zoom,
        growth_voxels=growth,
        elastic_voxels=elastic,
        placement_seed=placement_seed,
        shape=list(shape),
        dendrite_fraction=float(out["label"].mean()),
    )
    return out


IMAGE_SETTINGS = {  # image-domain scans: (low, high) of each paint_image_scan setting, drawn uniformly
    "solid": (0.4, 0.9),
    "air": (0.0, 0.35),
    "noise": (0.02, 0.15),
    "blur": (0.4, 1.8),
    "rings": (0.0, 0.05),
    "drift": (-0.15, 0.15),
    "radius_fraction": (0.3, 0.48),
}


def make_image_scan(
    shape: tuple[int, int, int] = (32, 128, 128),
    *,
    structure: str = "procedural",
    phasefield_steps: int | None = None,
    rng: Rng = None,
) -> dict[str, Any]:
    """One scan painted in the image domain (:func:`paint_image_scan`), with its exact label.

    A second generator beside :func:`make_scan`'s CT forward model, for
    training data that does not teach one simulator's look: white rather
    than streaky noise, Gaussian blur, rings, drift, and each scan's grey
    levels (solid, air), noise, blur and sample radius drawn over the
    wide ranges of :data:`IMAGE_SETTINGS`. Structure, zoom (0.6x to 2x),
    placement, elastic warp and growth during the scan (a boundary that
    moves by up to 2 voxels shows as the mean of its two positions) are
    drawn as for ``make_scan(vary=True, variety="wide")``. Returns the
    same keys as :func:`make_scan`; ``meta["scan"]`` holds the settings.
    """
    gen = as_generator(rng)
    shape = _scan_shape(shape)
    settings = {k: float(gen.uniform(lo, hi)) for k, (lo, hi) in IMAGE_SETTINGS.items()}
    growth = float(gen.uniform(0.0, 2.0))
    zoom = _default_zoom(structure, shape) * _wide_zoom_factor(structure, gen)
    start, end, smeta = _structure(structure, shape, zoom, growth, gen, phasefield_steps)
    placement_seed = int(gen.integers(2**31))
    elastic = float(gen.uniform(0, 3))
    placed = [place_structure(p, shape, zoom=zoom, elastic=elastic, rng=placement_seed) for p in (start, end)]
    phase = 0.5 * (placed[0] + placed[1])
    image, sample = paint_image_scan(phase, rng=gen, **settings)
    label = ((phase > 0.5) & sample[None]).astype(np.uint8)
    meta = {
        "generator": "image",
        "scan": settings,
        "seed": rng if isinstance(rng, (int, np.integer)) else None,
        "structure": smeta,
        "zoom": zoom,
        "growth_voxels": growth,
        "elastic_voxels": elastic,
        "placement_seed": placement_seed,
        "shape": list(shape),
        "dendrite_fraction": float(label.mean()),
    }
    return {"image": image, "label": label, "phase": phase.astype(np.float32), "sample": sample, "meta": meta}


def make_series(
    shape: tuple[int, int, int] = (32, 128, 128),
    *,
    n_scans: int = 5,
    preset: str = "moderate",
    zoom: float | None = None,
    phasefield_steps: int | None = None,
    rng: Rng = None,
) -> list[dict[str, Any]]:
    """A 4D series: one phase-field growth imaged ``n_scans`` times.

    Each scan sees the structure move from one snapshot to the next while
    it is acquired (with the preset's noise drawn anew each time), and the
    intensity drifts between scans. The solid fraction of the labels grows
    along the series.
    """
    gen = as_generator(rng)
    shape = tuple(int(s) for s in shape)
    if n_scans < 1:
        raise ValueError(f"n_scans must be >= 1, got {n_scans}")
    params, _ = scan_params(preset)
    zoom = float(zoom or max(1.0, shape[1] / 56))
    cube = int(math.ceil(max(shape) / zoom * 1.15))
    steps = phasefield_steps or int(25 * cube)
    n_seeds = int(gen.integers(1, 4))
    result = grow_dendrites(
        (cube, cube, cube),
        n_seeds=n_seeds,
        steps=steps,
        snapshot_every=max(1, steps // (2 * n_scans)),
        rng=gen,
    )
    snaps = result.snapshots[-(n_scans + 1) :]
    while len(snaps) < n_scans + 1:
        snaps.insert(0, snaps[0])
    placement_seed = int(gen.integers(2**31))
    scans = []
    for t in range(n_scans):
        start, end = (
            place_structure(s.astype(np.float32), shape, zoom=zoom, rng=placement_seed)
            for s in (snaps[t], snaps[t + 1])
        )
        out = simulate_scan(start, phase_end=end, params=params, rng=gen)
        out["meta"].update(
            seed=rng if isinstance(rng, (int, np.integer)) else None,
            preset=preset,
            time_index=t,
            zoom=zoom,
            placement_seed=placement_seed,
            structure={"kind": "phasefield", "source_shape": [cube] * 3, "n_seeds": n_seeds, "steps": steps},
            shape=list(shape),
            dendrite_fraction=float(out["label"].mean()),
        )
        scans.append(out)
    return scans
