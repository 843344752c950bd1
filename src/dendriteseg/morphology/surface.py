"""Closed surfaces of labelled solid, in physical units, with their curvature.

The surface is the 0.5 level set of the labels smoothed by a Gaussian of
``sigma`` voxels (marching cubes, scikit-image): a level set, unlike the
staircase of voxel faces, has the area of the shape it digitises (a ball
of radius 20 voxels: within 0.5 %). The volume is padded with empty voxels
first, so every surface is closed; where the solid touches the volume's
edge the surface is capped there, and those cap faces are marked
(``Surface.cap``) so that the interfacial area leaves them out.

Mean curvature is half the divergence of the outward unit normal of the
smoothed field, ``H = -div(grad f / |grad f|) / 2``, interpolated at the
vertices: positive where the solid is convex (a ball: 1/R, a cylinder:
1/(2R)). Gaussian curvature is the mesh's angle defect per vertex area.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from dendriteseg.errors import InputError

EDGE = 2.5  # voxels from the volume's edge where curvature is not averaged
BYTES_PER_VOXEL = 48  # working memory of the smoothed field, its gradient and curvature (float32)
MESH_FORMATS = (".stl", ".ply", ".obj", ".glb")


def _trimesh() -> Any:
    try:
        import trimesh
    except ImportError:
        raise InputError("meshes need trimesh: pip install 'dendriteseg[morphology]'") from None
    return trimesh


def _spacing(voxel_size: Any) -> tuple[float, float, float]:
    if voxel_size is None:
        return (1.0, 1.0, 1.0)
    values = (float(voxel_size),) * 3 if np.isscalar(voxel_size) else tuple(float(v) for v in voxel_size)
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"voxel size: one or three positive numbers (Z, Y, X in um), got {voxel_size}")
    return values  # type: ignore[return-value]


def check_memory(shape: tuple[int, ...], what: str = "labels") -> None:
    """Refuse a volume whose surface analysis would not fit in memory, saying how much it needs."""
    need = int(np.prod(shape)) * BYTES_PER_VOXEL
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > 0.8 * available:
        raise InputError(
            f"{what}: a surface of {'x'.join(map(str, shape))} voxels needs about {need / 1e9:.1f} GB, "
            f"{available / 1e9:.1f} GB are free; crop the volume or downsample it (a slab-wise mesher "
            "would cut the surface at every slab's edge)"
        )


@dataclass
class Surface:
    """A closed mesh (``trimesh.Trimesh``, micrometres) with per-vertex curvature.

    ``cap``: faces on the volume's edge (where the solid was cut off);
    ``mean_curvature``/``gaussian_curvature``: per vertex, 1/um and 1/um^2;
    ``vertex_area``: each vertex's share of the interface area (caps excluded);
    ``curvature_weight``: the same, but 0 within ``EDGE`` voxels of the volume's
    edge, where the cut biases the curvature (use it to average curvature).
    """

    mesh: Any
    cap: np.ndarray
    mean_curvature: np.ndarray
    gaussian_curvature: np.ndarray
    vertex_area: np.ndarray
    curvature_weight: np.ndarray

    @property
    def interface_area(self) -> float:
        return float(self.mesh.area_faces[~self.cap].sum())


def _keep_largest(solid: np.ndarray, count: int) -> np.ndarray:
    labels, n = ndimage.label(solid, structure=np.ones((3, 3, 3)))
    if n <= count:
        return solid
    sizes = ndimage.sum(solid, labels, range(1, n + 1))
    keep = 1 + np.argsort(sizes)[::-1][:count]
    return np.isin(labels, keep)


MAX_SMOOTH = 200  # Taubin iterations


def _check_mesh_options(sigma: float, smooth: int, decimate: float | None, largest: int | None) -> None:
    """Refuse mesh settings outside their ranges, naming the setting."""
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma >= 0):
        raise InputError(f"sigma: a smoothing width >= 0 voxels, got {sigma!r}")
    if isinstance(smooth, bool) or not isinstance(smooth, (int, np.integer)) or not 0 <= smooth <= MAX_SMOOTH:
        raise InputError(f"smooth: Taubin iterations from 0 to {MAX_SMOOTH}, got {smooth!r}")
    if decimate is not None and not (math.isfinite(decimate) and 0 < decimate <= 1):
        raise InputError(f"decimate: a share of faces in (0, 1], got {decimate}")
    if largest is not None and (
        isinstance(largest, bool) or not isinstance(largest, (int, np.integer)) or largest < 1
    ):
        raise InputError(f"largest: keep at least 1 piece, got {largest!r}")


def _restore_volume(mesh: Any, volume: float, rounds: int = 3) -> None:
    """Move ``mesh``'s vertices along their normals until it encloses ``volume`` again (to first
    order each round: the volume missing over the area)."""
    for _ in range(rounds):
        area = float(mesh.area)
        if area <= 0:
            return
        shift = (volume - float(mesh.volume)) / area
        if abs(shift) < 1e-6:
            return
        mesh.vertices = mesh.vertices + shift * mesh.vertex_normals


def surface_mesh(
    labels: Any,
    voxel_size: Any = None,
    *,
    sigma: float = 1.0,
    smooth: int = 0,
    decimate: float | None = None,
    largest: int | None = None,
) -> Surface:
    """The closed surface of the solid (label 1) in ``labels`` ``(z, y, x)``.

    Parameters
    ----------
    voxel_size : float or (z, y, x), micrometres; default 1
    sigma : float
        Gaussian smoothing (voxels) of the labels before the level set.
    smooth : int
        Taubin smoothing iterations afterwards (0 to ``MAX_SMOOTH``); Taubin smoothing still
        shrinks a dendrite's thin arms, so the smoothed surface is then moved along its normals
        until it encloses the volume the unsmoothed one did.
    decimate : float, optional
        Keep this share of the faces (quadric decimation).
    largest : int, optional
        Only the ``largest`` biggest solid pieces (26-connected).
    """
    from skimage.measure import marching_cubes

    trimesh = _trimesh()
    _check_mesh_options(sigma, smooth, decimate, largest)
    solid = np.asarray(labels) > 0
    if solid.ndim != 3:
        raise InputError(f"labels: a surface needs a (z, y, x) volume, got shape {solid.shape}")
    if not solid.any():
        raise InputError("labels: no solid voxels (label 1): there is no surface")
    check_memory(solid.shape)
    if largest:
        solid = _keep_largest(solid, largest)
    spacing = _spacing(voxel_size)
    field = np.pad(
        ndimage.gaussian_filter(solid.astype(np.float32), sigma) if sigma else solid.astype(np.float32), 1
    )
    if field.max() <= 0.5:  # a solid thinner than the smoothing (a voxel, a line, a sheet): as it is
        field = np.pad(solid.astype(np.float32), 1)
    verts, faces, _, _ = marching_cubes(field, 0.5, spacing=spacing)
    mesh = trimesh.Trimesh(verts, faces[:, ::-1], process=True)  # normals out of the solid
    if smooth:
        volume = float(mesh.volume)
        trimesh.smoothing.filter_taubin(mesh, iterations=int(smooth))
        _restore_volume(mesh, volume)
    if decimate is not None and decimate < 1:
        mesh = mesh.simplify_quadric_decimation(percent=1 - decimate)
    grid = mesh.vertices / np.asarray(spacing)  # voxel coordinates in the padded field
    centroids = mesh.triangles_center / np.asarray(spacing)
    upper = np.asarray(field.shape) - 2.0
    normals = np.abs(mesh.face_normals)
    cap = np.zeros(len(mesh.faces), bool)
    beyond = np.zeros(len(mesh.faces), int)
    for axis in range(3):
        edge = (centroids[:, axis] < 1.0) | (centroids[:, axis] > upper[axis])
        cap |= edge & (normals[:, axis] > 0.9)
        beyond += edge
    cap |= beyond >= 2  # the chamfers along the volume's own edges and corners are its faces too
    vertex_area = np.zeros(len(mesh.vertices))
    share = np.where(cap, 0.0, mesh.area_faces / 3)
    np.add.at(vertex_area, mesh.faces.ravel(), np.repeat(share, 3))
    mean = _mean_curvature(field, grid, spacing)
    all_area = np.zeros(len(mesh.vertices))
    np.add.at(all_area, mesh.faces.ravel(), np.repeat(mesh.area_faces / 3, 3))
    gaussian = np.asarray(mesh.vertex_defects) / np.maximum(all_area, 1e-12)
    near_edge = ((grid < 1.0 + EDGE) | (grid > upper - EDGE)).any(axis=1)
    return Surface(mesh, cap, mean, gaussian, vertex_area, np.where(near_edge, 0.0, vertex_area))


def _mean_curvature(field: np.ndarray, points: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """``-div(grad f / |grad f|) / 2`` of ``field`` at ``points`` (voxel coordinates)."""
    smooth = ndimage.gaussian_filter(field, 0.5)
    grad = np.gradient(smooth, *spacing)
    norm = np.sqrt(sum(g * g for g in grad)) + 1e-12
    divergence = sum(np.gradient(-grad[i] / norm, spacing[i], axis=i) for i in range(3))
    return 0.5 * ndimage.map_coordinates(divergence, points.T, order=1, mode="nearest")


def write_mesh(surface: Surface | Any, path: str | Path) -> Path:
    """Write a mesh as STL, PLY, OBJ or GLB (by suffix), atomically."""
    from dendriteseg.io.outputs import check_target, resolve_output, temp_sibling, writing

    path = resolve_output(Path(path))
    if path.suffix.lower() not in MESH_FORMATS:
        raise InputError(f"{path}: unknown mesh format {path.suffix!r}; use {', '.join(MESH_FORMATS)}")
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    check_target(path, folder=False)
    mesh = surface.mesh if isinstance(surface, Surface) else surface
    temp = temp_sibling(path)
    try:
        with writing(path):
            with open(temp, "wb") as fh:
                mesh.export(fh, file_type=path.suffix.lower().lstrip("."))
            os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
    return path
