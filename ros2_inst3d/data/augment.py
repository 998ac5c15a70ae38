"""Training augmentation of the official SoftGroup recipe (``softgroup/data/custom.py``).

``transform_train`` there, in order (research/official-models.md §6):

1. ``xyz @ m`` with ``m = I + N(0, 0.1)`` per entry (an affine "jitter" of the whole scene),
   x flipped with probability 1/2, then a random turn about z in [0, 2 pi) — or the fixed
   0.35 pi test turn when the random turn is skipped — and a scale in U(0.95, 1.05) (the scale
   is on because ``aug_prob`` lands in the ``scale`` argument positionally);
2. elastic distortion of the *voxel grid only* (the xyz features stay undistorted):
   ``elastic(x, 6, 40)`` then ``elastic(x, 20, 160)`` in voxel units (x = xyz / voxel_size).
   Each is a random-normal noise lattice with spacing ``2 * granularity``, blurred by three
   separable box filters of width 3 applied twice (zero padding), trilinearly interpolated at
   the points and added times ``magnitude``;
3. a random crop to at most ``max_points`` (250k) inside a cube of ``spatial_shape[1]`` (512)
   voxels whose xy side shrinks by 32 voxels per try; scenes with fewer than ``min_points``
   (5000) points left are dropped;
4. per-scan colour noise ``feat += N(0, 0.1)`` in normalised colour units (3 values).

The random draws are numpy ``Generator`` calls, so a seeded generator makes a sample
reproducible; the official code uses the global ``np.random`` state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.interpolate import RegularGridInterpolator

from ..errors import ConfigError
from ..schema import build_section, check_value, param
from .inputs import OFFICIAL_TEST_YAW, yaw_matrix

COLOR_SCALE = 127.5  # rgb/127.5 - 1: one normalised colour unit is 127.5 in 0..255 units


def _elastic_pairs(where: str, value: Any) -> tuple[tuple[float, float], ...]:
    """``elastic``: a list of [granularity, magnitude] pairs in voxels (``[]``/null: none)."""
    pairs = value or ()
    if not isinstance(pairs, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
        raise ConfigError(f"'{where}' must be a list of [granularity, magnitude] pairs in "
                          f"voxels (e.g. [[2, 16], [8, 64]]) or [], got {value!r}")
    return tuple((check_value(where, float, g, {"low": 1e-6}),
                  check_value(where, float, m, {"low": 0.0})) for g, m in pairs)


def _scale_range(where: str, value: Any) -> tuple[float, float] | None:
    """``scale_range``: [low, high] (low <= high) or null."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"'{where}' must be [low, high] or null, got {value!r}")
    lo, hi = (check_value(where, float, v, {"low": 1e-6}) for v in value)
    if lo > hi:
        raise ConfigError(f"'{where}' low {lo} is above high {hi}")
    return (lo, hi)


@dataclass(frozen=True)
class Augmentation:
    """Parameters of ``augment``; the defaults are SoftGroup's ScanNet recipe (the ``data.augment``
    section of a training YAML, validated by :func:`augmentation_from_dict`)."""

    jitter_std: float = param(0.1, "Std of the noise added to the 3x3 transform (0 disables).",
                              low=0.0)
    flip_x: bool = param(True, "Mirror x with probability 1/2.")
    rotate_z: bool = param(True, "Random turn about z in [0, 2 pi); otherwise the fixed official "
                           "test turn.")
    scale_range: tuple[float, float] | None = param(
        (0.95, 1.05), "Uniform scale range [low, high], or null.", parse=_scale_range)
    elastic: tuple[tuple[float, float], ...] = param(
        ((6.0, 40.0), (20.0, 160.0)), "(granularity, magnitude) pairs in voxel units, applied "
        "in order; [] disables.", parse=_elastic_pairs)
    color_noise_std: float = param(0.1, "Std of the per-scan colour offset, normalised colour "
                                   "units.", low=0.0)
    prob: float = param(1.0, "Probability of each random step (``aug_prob``).", low=0.0,
                        high=1.0)
    max_points: int | None = param(250_000, "Crop budget in points (null disables cropping).",
                                   low=0)
    crop_extent: int = param(512, "Crop cube side in voxels.", low=0)
    crop_step: int = param(32, "Voxels the xy side shrinks per crop try (SoftGroup: 32 ScanNet, "
                           "64 S3DIS).", low=0)
    min_points: int = param(5000, "A crop keeping fewer points drops the sample.", low=0)


def augmentation_from_dict(values: Any, where: str = "data.augment") -> Augmentation | None:
    """An :class:`Augmentation` from a YAML mapping (missing fields keep their defaults);
    ``null`` / ``false`` turns augmentation off."""
    if values is None or values is False:
        return None
    return build_section(Augmentation, where, values)


@dataclass
class Augmented:
    """One augmented scan.

    xyz: (N', 3) float32, metres — transformed coordinates (the xyz features).
    grid_xyz: (N', 3) float32, metres — elastically distorted coordinates for voxel assignment.
    rgb: (N', 3) float32, 0..255 units with colour noise (not clipped, as in the official code);
    None for a cloud without colour.
    keep: (N',) int64 — indices of the kept points in the input.
    """

    xyz: np.ndarray
    grid_xyz: np.ndarray
    rgb: np.ndarray | None
    keep: np.ndarray


def scene_transform(rng: np.random.Generator, aug: Augmentation) -> tuple[np.ndarray, float]:
    """(3, 3) matrix ``m`` (apply as ``xyz @ m``) and scale factor of ``dataAugment``."""
    m = np.eye(3)
    if aug.jitter_std and rng.random() < aug.prob:
        m += rng.standard_normal((3, 3)) * aug.jitter_std
    if aug.flip_x and rng.random() < aug.prob:
        m[0, 0] *= rng.integers(0, 2) * 2 - 1
    if aug.rotate_z and rng.random() < aug.prob:
        m = m @ yaw_matrix(rng.random() * 2 * math.pi)
    else:
        m = m @ yaw_matrix(OFFICIAL_TEST_YAW)
    scale = 1.0
    if aug.scale_range is not None and rng.random() < aug.prob:
        scale = float(rng.uniform(*aug.scale_range))
    return m, scale


def smoothed_noise(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Standard-normal noise lattice blurred by a width-3 box filter along x, y, z, twice.

    Zero padding at the border (``mode='constant'``), float32 like the official lattice.
    """
    noise = rng.standard_normal(shape).astype(np.float32)
    for _ in range(2):
        for axis in range(3):
            noise = ndimage.uniform_filter1d(noise, size=3, axis=axis, mode="constant", cval=0.0)
    return noise


def elastic_distortion(x: np.ndarray, granularity: float, magnitude: float,
                       rng: np.random.Generator) -> np.ndarray:
    """Smooth random displacement of (N, 3) points, all lengths in the same unit (voxels).

    The lattice covers ``[-(b - 1) g, (b - 1) g]`` per axis with ``b = max|x| // g + 3`` nodes,
    i.e. a node every ``2 g`` (the official ``np.linspace``); points outside get no displacement.
    """
    x = np.asarray(x, np.float64)
    if granularity <= 0:
        raise ValueError(f"elastic granularity must be > 0, got {granularity}")
    nodes = (np.abs(x).max(axis=0).astype(np.int64) // int(granularity) + 3
             if x.shape[0] else np.full(3, 3, np.int64))
    axes = [np.linspace(-(b - 1) * granularity, (b - 1) * granularity, int(b)) for b in nodes]
    shape = tuple(int(b) for b in nodes)
    displacement = np.empty_like(x)
    for d in range(3):
        lattice = smoothed_noise(shape, rng)
        interp = RegularGridInterpolator(axes, lattice, bounds_error=False, fill_value=0.0)
        displacement[:, d] = interp(x)
    return x + displacement * magnitude


def crop_to_budget(grid: np.ndarray, aug: Augmentation, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """SoftGroup's ``crop``: shift (N, 3) non-negative voxel-unit coordinates randomly and keep
    the points inside a ``crop_extent`` cube, shrinking its xy side until at most ``max_points``
    remain. Returns (shifted coordinates (N, 3), keep mask (N,))."""
    keep = np.ones(grid.shape[0], bool)
    if aug.max_points is None or grid.shape[0] <= aug.max_points:
        return grid, keep
    extent = np.full(3, float(aug.crop_extent))
    room = grid.max(axis=0) - grid.min(axis=0)
    shifted = grid
    while keep.sum() > aug.max_points:
        if extent[0] <= 0:
            raise ValueError(f"cannot crop {grid.shape[0]} points down to max_points="
                             f"{aug.max_points}: the crop cube shrank to nothing (raise max_points"
                             " or the voxel size)")
        step = aug.crop_step * (2 if keep.sum() > 1e6 else 1)
        offset = np.minimum(extent - room + 0.001, 0.0) * rng.random(3)
        shifted = grid + offset
        keep = (shifted.min(axis=1) >= 0) & np.all(shifted < extent, axis=1)
        extent[:2] -= step
    return shifted, keep


def augment(xyz: np.ndarray, rgb: np.ndarray | None, voxel_size: float, aug: Augmentation,
            rng: np.random.Generator) -> Augmented | None:
    """SoftGroup's ``transform_train`` plus its colour noise, on one centred scan.

    xyz: (N, 3) float, metres, centred on the scene mean. rgb: (N, 3) 0..255 units, or None
    for a cloud without colour (then ``Augmented.rgb`` is None too). Returns None when fewer
    than ``aug.min_points`` points survive five crop tries (the official loader drops such
    samples).
    """
    m, scale = scene_transform(rng, aug)
    moved = (np.asarray(xyz, np.float64) * scale) @ m
    grid = moved / voxel_size
    if aug.elastic and rng.random() < aug.prob:
        for granularity, magnitude in aug.elastic:
            grid = elastic_distortion(grid, granularity, magnitude, rng)
    grid = grid - grid.min(axis=0)
    keep = None
    for _ in range(5):
        shifted, mask = crop_to_budget(grid, aug, rng)
        if mask.sum() >= aug.min_points:
            keep = mask
            grid = shifted
            break
    if keep is None:
        return None
    index = np.flatnonzero(keep)
    colors = None
    if rgb is not None:
        colors = np.asarray(rgb, np.float32)[index]
        if aug.color_noise_std:
            colors = colors + (rng.standard_normal(3) * aug.color_noise_std
                               * COLOR_SCALE).astype(np.float32)
    return Augmented(xyz=moved[index].astype(np.float32),
                     grid_xyz=(grid[index] * voxel_size).astype(np.float32),
                     rgb=colors, keep=index.astype(np.int64))
