"""Gravity for offline clouds: every method assumes z up, and files are often in another frame.

The node gets a z-up fixed frame from TF. A file in a camera optical frame (z forward, y down)
or from a tilted sensor needs a rotation first; ``segment`` and ``eval`` take it as ``--up AXIS``
(the axis that points up: ``-y`` for camera frames), ``--transform`` (a 4x4 matrix or
``x,y,z,qx,qy,qz,qw``) and/or ``--level`` (rotate the dominant roughly-horizontal plane, a floor
or a table, to horizontal). They compose in that order: transform, up axis, level.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .transforms import apply_transform, transform_to_matrix

_AXES = {"x": 0, "y": 1, "z": 2}
LEVEL_MAX_TILT_DEG = 45.0   # --level: planes tilted more than this from the up axis are walls
_LEVEL_SAMPLE = 50_000      # points the levelling RANSAC looks at
_LEVEL_PLANE_DISTANCE = 0.02  # m


def parse_up_axis(text: str) -> np.ndarray:
    """The unit vector of ``x``, ``-y``, ``+z``...; ValueError for anything else."""
    t = text.strip().lower()
    sign = -1.0 if t.startswith("-") else 1.0
    axis = t.lstrip("+-")
    if axis not in _AXES or len(t) - len(axis) > 1:
        raise ValueError(f"--up must be one of x, y, z, -x, -y, -z; got {text!r}")
    v = np.zeros(3)
    v[_AXES[axis]] = sign
    return v


def rotation_between(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """(3, 3) rotation taking unit vector ``a`` onto unit vector ``b`` (Rodrigues; the shortest
    arc, a half turn about a perpendicular axis when they are opposite)."""
    a = np.asarray(a, np.float64) / np.linalg.norm(a)
    b = np.asarray(b, np.float64) / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if c < -1.0 + 1e-9:
        perp = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(perp) < 1e-6:
            perp = np.cross(a, [0.0, 1.0, 0.0])
        perp /= np.linalg.norm(perp)
        return 2.0 * np.outer(perp, perp) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def up_axis_matrix(up: str) -> np.ndarray:
    """(4, 4) rotation that maps the given up axis onto +z. For ``-y`` (camera optical frames)
    it is the usual optical → body rotation's tilt part: y down becomes z up, z forward stays
    horizontal."""
    m = np.eye(4)
    m[:3, :3] = rotation_between(parse_up_axis(up), [0.0, 0.0, 1.0])
    return m


def parse_transform(text: str) -> np.ndarray:
    """(4, 4) matrix from 16 numbers (row-major 4x4) or 7 (x, y, z, qx, qy, qz, qw), separated by
    commas and/or spaces; ValueError naming the expected forms otherwise."""
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"--transform must be numbers, got {text!r}") from None
    if len(values) == 16:
        m = np.asarray(values).reshape(4, 4)
        if not np.allclose(m[3], [0, 0, 0, 1]):
            raise ValueError("--transform: the last row of a 4x4 matrix must be 0 0 0 1")
        rot = m[:3, :3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4):
            raise ValueError("--transform: the 3x3 part is not a rotation (not orthonormal)")
        return m
    if len(values) == 7:
        return transform_to_matrix(values[:3], values[3:])
    raise ValueError("--transform takes 16 numbers (a row-major 4x4 matrix) or 7 "
                     f"(x,y,z,qx,qy,qz,qw); got {len(values)}")


def level_matrix(xyz: np.ndarray, seed: int = 0, max_tilt_deg: float = LEVEL_MAX_TILT_DEG
                 ) -> np.ndarray:
    """(4, 4) rotation that makes the dominant roughly-horizontal plane of ``xyz`` (N, 3), z up,
    exactly horizontal (its normal becomes +z); identity when no plane within ``max_tilt_deg``
    of horizontal holds at least 5 % of the points.

    Up to four planes are searched largest first (RANSAC on a subsample); walls are skipped.
    """
    from .model.geometric import ransac_plane

    pts = np.asarray(xyz, np.float64)
    rng = np.random.default_rng(seed)
    if len(pts) > _LEVEL_SAMPLE:
        pts = pts[rng.choice(len(pts), _LEVEL_SAMPLE, replace=False)]
    cos_tilt = math.cos(math.radians(max_tilt_deg))
    candidate = np.ones(len(pts), dtype=bool)
    for _ in range(4):
        idx = np.flatnonzero(candidate)
        found = ransac_plane(pts[idx], _LEVEL_PLANE_DISTANCE, 500, rng)
        if found is None:
            break
        normal, _, inliers = found
        if inliers.sum() < 0.05 * len(pts):
            break
        if abs(normal[2]) >= cos_tilt:
            m = np.eye(4)
            m[:3, :3] = rotation_between(normal if normal[2] > 0 else -normal, [0.0, 0.0, 1.0])
            return m
        candidate[idx[inliers]] = False
    return np.eye(4)


def gravity_transform(xyz: np.ndarray, *, transform: str | None = None, up: str | None = None,
                      level: bool = False) -> np.ndarray | None:
    """The (4, 4) matrix the command-line options ask for (transform, then up axis, then
    levelling on the result), or None when none is given."""
    if transform is None and up is None and not level:
        return None
    m = np.eye(4)
    if transform is not None:
        m = parse_transform(transform) @ m
    if up is not None:
        m = up_axis_matrix(up) @ m
    if level:
        m = level_matrix(apply_transform(m, xyz)) @ m
    return m


def add_gravity_arguments(parser) -> None:
    """``--up``, ``--transform``, ``--level`` for the commands that read clouds."""
    parser.add_argument("--up", metavar="AXIS",
                        help="axis that points up in the file: x, y, z, -x, -y, -z (camera "
                        "optical frames: -y); the cloud is rotated so it becomes +z")
    parser.add_argument("--transform", metavar="T",
                        help="apply this transform first: 16 numbers (row-major 4x4) or "
                        "x,y,z,qx,qy,qz,qw")
    parser.add_argument("--level", action="store_true",
                        help="then rotate the dominant roughly-horizontal plane (floor, table) "
                        "to horizontal")
