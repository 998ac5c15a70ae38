"""Rigid-transform maths in numpy: quaternions, Euler angles, 4x4 matrices, clouds.

The names and conventions follow ``tf_transformations`` (the ROS 2 port of ROS 1
``tf.transformations``) so code written against it reads the same here:

* quaternions are ``(x, y, z, w)`` (ROS message order; transforms3d uses ``w, x, y, z``);
* Euler axes are a 4-letter string, ``'sxyz'`` by default: the first letter is ``s`` (static,
  extrinsic axes) or ``r`` (rotating, intrinsic axes), followed by the axis order. All 24
  combinations are supported; ``'sxyz'`` (roll, pitch, yaw about fixed x, y, z) equals ``'rzyx'``
  with the angles reversed;
* ``quaternion_multiply(q1, q0)`` is the Hamilton product ``q1 * q0`` (rotate by ``q0``, then ``q1``);
* 4x4 homogeneous matrices act on column vectors: ``p_target = T @ p_source``.

We do not depend on ``tf_transformations``: on Humble it imports ``transforms3d``, whose apt
build uses ``np.float`` and crashes with NumPy >= 1.24 (docs/ros2-ecosystem.md §4.5).

Deviations from ``tf_transformations``, all in the direction of failing loudly:
``quaternion_matrix`` raises on a zero or non-finite quaternion instead of returning the identity,
and ``quaternion_from_matrix`` always returns the quaternion with ``w >= 0``.

Our own helpers for clouds: :func:`transform_to_matrix`, :func:`matrix_to_transform`,
:func:`transform_msg_to_matrix`, :func:`apply_transform`, :func:`interpolate_transform`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = [
    "identity_matrix",
    "translation_matrix",
    "translation_from_matrix",
    "rotation_matrix",
    "quaternion_about_axis",
    "quaternion_matrix",
    "quaternion_from_matrix",
    "euler_matrix",
    "euler_from_matrix",
    "euler_from_quaternion",
    "quaternion_from_euler",
    "quaternion_multiply",
    "quaternion_conjugate",
    "quaternion_inverse",
    "quaternion_slerp",
    "unit_vector",
    "inverse_matrix",
    "concatenate_matrices",
    "transform_to_matrix",
    "matrix_to_transform",
    "transform_msg_to_matrix",
    "apply_transform",
    "interpolate_transform",
]

# Below this squared norm a quaternion carries no rotation we could recover.
_QUAT_EPS = 1e-12
# Gimbal-lock / parallel-quaternion threshold, as in transformations.py (4 * machine epsilon).
_EPS = np.finfo(float).eps * 4.0

# Euler axes string -> (first axis, parity, repetition, frame), the encoding of Shoemake's
# "Euler angle conversion" (Graphics Gems IV) used by tf.transformations.
_NEXT_AXIS = (1, 2, 0, 1)
_AXES_TO_TUPLE = {
    "sxyz": (0, 0, 0, 0), "sxyx": (0, 0, 1, 0), "sxzy": (0, 1, 0, 0), "sxzx": (0, 1, 1, 0),
    "syzx": (1, 0, 0, 0), "syzy": (1, 0, 1, 0), "syxz": (1, 1, 0, 0), "syxy": (1, 1, 1, 0),
    "szxy": (2, 0, 0, 0), "szxz": (2, 0, 1, 0), "szyx": (2, 1, 0, 0), "szyz": (2, 1, 1, 0),
    "rzyx": (0, 0, 0, 1), "rxyx": (0, 0, 1, 1), "ryzx": (0, 1, 0, 1), "rxzx": (0, 1, 1, 1),
    "rxzy": (1, 0, 0, 1), "ryzy": (1, 0, 1, 1), "rzxy": (1, 1, 0, 1), "ryxy": (1, 1, 1, 1),
    "ryxz": (2, 0, 0, 1), "rzxz": (2, 0, 1, 1), "rxyz": (2, 1, 0, 1), "rzyz": (2, 1, 1, 1),
}
EULER_AXES: tuple[str, ...] = tuple(_AXES_TO_TUPLE)


def _euler_axes(axes: str) -> tuple[int, int, int, int, int, int]:
    """Decode an axes string into (i, j, k, parity, repetition, frame) indices."""
    try:
        first, parity, repetition, frame = _AXES_TO_TUPLE[axes.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"unknown Euler axes {axes!r}: use one of {', '.join(EULER_AXES)} "
            "('s' = static/extrinsic axes, 'r' = rotating/intrinsic axes; tf default 'sxyz')"
        ) from None
    i = first
    j = _NEXT_AXIS[i + parity]
    k = _NEXT_AXIS[i - parity + 1]
    return i, j, k, parity, repetition, frame


def _vector(value: Any, length: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    return array


def _matrix4(value: Any, name: str = "matrix") -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (4, 4):
        raise ValueError(f"{name} must be a (4, 4) homogeneous matrix, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    return array


def _unit_quaternion(quaternion: Any, name: str = "quaternion") -> np.ndarray:
    q = _vector(quaternion, 4, name)
    norm_sq = float(q @ q)
    if norm_sq < _QUAT_EPS:
        raise ValueError(
            f"{name} {q.tolist()} has (near) zero norm and defines no rotation; "
            "an unset geometry_msgs/Quaternion is (0, 0, 0, 0) — set w = 1 for the identity"
        )
    return q / math.sqrt(norm_sq)


# --------------------------------------------------------------------------------------------
# 4x4 matrices
# --------------------------------------------------------------------------------------------


def identity_matrix() -> np.ndarray:
    """(4, 4) float64 identity."""
    return np.identity(4)


def translation_matrix(direction: Sequence[float]) -> np.ndarray:
    """(4, 4) float64 matrix translating by ``direction`` (3,), metres."""
    matrix = np.identity(4)
    matrix[:3, 3] = _vector(direction, 3, "direction")
    return matrix


def translation_from_matrix(matrix: Any) -> np.ndarray:
    """Translation (3,) float64 of a (4, 4) homogeneous matrix."""
    return _matrix4(matrix)[:3, 3].copy()


def rotation_matrix(angle: float, direction: Sequence[float], point: Sequence[float] | None = None) -> np.ndarray:
    """(4, 4) float64 rotation by ``angle`` (rad, right-handed) about the axis ``direction`` (3,)
    through ``point`` (3,) (the origin when None)."""
    axis = unit_vector(_vector(direction, 3, "direction"))
    if not np.all(np.isfinite(axis)):
        raise ValueError("rotation axis direction must be non-zero")
    q = quaternion_about_axis(angle, axis)
    matrix = quaternion_matrix(q)
    if point is not None:
        p = _vector(point, 3, "point")
        matrix[:3, 3] = p - matrix[:3, :3] @ p
    return matrix


def inverse_matrix(matrix: Any) -> np.ndarray:
    """Inverse of a (4, 4) matrix (any invertible one, not only rigid transforms)."""
    m = _matrix4(matrix)
    try:
        return np.linalg.inv(m)
    except np.linalg.LinAlgError:
        raise ValueError(f"matrix is singular and has no inverse:\n{m}") from None


def concatenate_matrices(*matrices: Any) -> np.ndarray:
    """Product ``M0 @ M1 @ ...`` of (4, 4) matrices (the rightmost applies first); identity if none."""
    result = np.identity(4)
    for index, matrix in enumerate(matrices):
        result = result @ _matrix4(matrix, f"matrices[{index}]")
    return result


def unit_vector(data: Any, axis: int | None = None) -> np.ndarray:
    """``data`` (float64) divided by its Euclidean norm, over all elements or along ``axis``.

    A zero vector gives NaN (as numpy's division does); callers that cannot accept that check.
    """
    array = np.array(data, dtype=np.float64)
    if axis is None:
        return array / math.sqrt(float(np.sum(array * array)))
    norm = np.sqrt(np.sum(array * array, axis=axis, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return array / norm


# --------------------------------------------------------------------------------------------
# Quaternions (x, y, z, w)
# --------------------------------------------------------------------------------------------


def quaternion_about_axis(angle: float, axis: Sequence[float]) -> np.ndarray:
    """Quaternion (x, y, z, w) rotating by ``angle`` (rad) about ``axis`` (3,), any non-zero length."""
    a = _vector(axis, 3, "axis")
    norm = float(np.linalg.norm(a))
    if norm < _EPS:
        raise ValueError("rotation axis must be non-zero")
    half = 0.5 * float(angle)
    q = np.empty(4)
    q[:3] = a * (math.sin(half) / norm)
    q[3] = math.cos(half)
    return q


def quaternion_matrix(quaternion: Sequence[float]) -> np.ndarray:
    """(4, 4) float64 rotation matrix of a quaternion (x, y, z, w); the quaternion is normalised.

    Raises ValueError for a zero or non-finite quaternion (tf_transformations returns identity).
    """
    x, y, z, w = _unit_quaternion(quaternion)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    return np.array(
        [
            [1.0 - 2.0 * (yy + zz), 2.0 * (xy - wz), 2.0 * (xz + wy), 0.0],
            [2.0 * (xy + wz), 1.0 - 2.0 * (xx + zz), 2.0 * (yz - wx), 0.0],
            [2.0 * (xz - wy), 2.0 * (yz + wx), 1.0 - 2.0 * (xx + yy), 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def quaternion_from_matrix(matrix: Any) -> np.ndarray:
    """Quaternion (x, y, z, w), ``w >= 0``, of the rotation part of a (4, 4) or (3, 3) matrix.

    Uses the largest eigenvector of Bar-Itzhack's symmetric 4x4 matrix, so a slightly
    non-orthonormal rotation (accumulated float error) gives the nearest rotation's quaternion.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape not in ((4, 4), (3, 3)):
        raise ValueError(f"matrix must be (4, 4) or (3, 3), got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("matrix contains NaN or inf")
    r = m[:3, :3]
    k = np.array(
        [
            [r[0, 0] - r[1, 1] - r[2, 2], r[0, 1] + r[1, 0], r[0, 2] + r[2, 0], r[2, 1] - r[1, 2]],
            [r[0, 1] + r[1, 0], r[1, 1] - r[0, 0] - r[2, 2], r[1, 2] + r[2, 1], r[0, 2] - r[2, 0]],
            [r[0, 2] + r[2, 0], r[1, 2] + r[2, 1], r[2, 2] - r[0, 0] - r[1, 1], r[1, 0] - r[0, 1]],
            [r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1], r[0, 0] + r[1, 1] + r[2, 2]],
        ]
    ) / 3.0
    _, vectors = np.linalg.eigh(k)
    q = vectors[:, -1]  # eigh sorts eigenvalues ascending
    if q[3] < 0.0:
        q = -q
    return q / np.linalg.norm(q)


def quaternion_multiply(quaternion1: Sequence[float], quaternion0: Sequence[float]) -> np.ndarray:
    """Hamilton product ``quaternion1 * quaternion0`` (x, y, z, w): rotate by q0, then by q1."""
    x1, y1, z1, w1 = _vector(quaternion1, 4, "quaternion1")
    x0, y0, z0, w0 = _vector(quaternion0, 4, "quaternion0")
    return np.array(
        [
            w1 * x0 + x1 * w0 + y1 * z0 - z1 * y0,
            w1 * y0 - x1 * z0 + y1 * w0 + z1 * x0,
            w1 * z0 + x1 * y0 - y1 * x0 + z1 * w0,
            w1 * w0 - x1 * x0 - y1 * y0 - z1 * z0,
        ]
    )


def quaternion_conjugate(quaternion: Sequence[float]) -> np.ndarray:
    """Conjugate (-x, -y, -z, w)."""
    q = _vector(quaternion, 4, "quaternion").copy()
    q[:3] = -q[:3]
    return q


def quaternion_inverse(quaternion: Sequence[float]) -> np.ndarray:
    """Multiplicative inverse ``conjugate(q) / |q|^2`` (x, y, z, w); raises for a zero quaternion."""
    q = _vector(quaternion, 4, "quaternion")
    norm_sq = float(q @ q)
    if norm_sq < _QUAT_EPS:
        raise ValueError(f"quaternion {q.tolist()} has (near) zero norm and no inverse")
    return quaternion_conjugate(q) / norm_sq


def quaternion_slerp(
    quat0: Sequence[float],
    quat1: Sequence[float],
    fraction: float,
    spin: int = 0,
    shortestpath: bool = True,
) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions (x, y, z, w).

    ``fraction`` 0 gives ``quat0``, 1 gives ``quat1`` (both normalised). ``spin`` adds extra half
    turns; ``shortestpath`` flips ``quat1`` when needed so the rotation takes the short arc.
    """
    q0 = _unit_quaternion(quat0, "quat0")
    q1 = _unit_quaternion(quat1, "quat1")
    fraction = float(fraction)
    if fraction == 0.0:
        return q0
    if fraction == 1.0:
        return q1
    cos_angle = float(q0 @ q1)
    if abs(abs(cos_angle) - 1.0) < _EPS:
        return q0  # same rotation (q and -q included): nothing to interpolate
    if shortestpath and cos_angle < 0.0:
        cos_angle = -cos_angle
        q1 = -q1
    angle = math.acos(min(1.0, max(-1.0, cos_angle))) + spin * math.pi
    if abs(angle) < _EPS:
        return q0
    sin_angle = math.sin(angle)
    result = q0 * (math.sin((1.0 - fraction) * angle) / sin_angle) + q1 * (
        math.sin(fraction * angle) / sin_angle
    )
    return result / np.linalg.norm(result)


# --------------------------------------------------------------------------------------------
# Euler angles
# --------------------------------------------------------------------------------------------


def euler_matrix(ai: float, aj: float, ak: float, axes: str = "sxyz") -> np.ndarray:
    """(4, 4) float64 rotation from Euler angles (rad) ``ai, aj, ak`` about ``axes``.

    For ``'sxyz'`` the angles are roll, pitch, yaw and the matrix is ``Rz(ak) @ Ry(aj) @ Rx(ai)``.
    """
    i, j, k, parity, repetition, frame = _euler_axes(axes)
    if frame:
        ai, ak = ak, ai
    if parity:
        ai, aj, ak = -ai, -aj, -ak
    si, sj, sk = math.sin(ai), math.sin(aj), math.sin(ak)
    ci, cj, ck = math.cos(ai), math.cos(aj), math.cos(ak)
    cc, cs = ci * ck, ci * sk
    sc, ss = si * ck, si * sk
    m = np.identity(4)
    if repetition:
        m[i, i] = cj
        m[i, j] = sj * si
        m[i, k] = sj * ci
        m[j, i] = sj * sk
        m[j, j] = -cj * ss + cc
        m[j, k] = -cj * cs - sc
        m[k, i] = -sj * ck
        m[k, j] = cj * sc + cs
        m[k, k] = cj * cc - ss
    else:
        m[i, i] = cj * ck
        m[i, j] = sj * sc - cs
        m[i, k] = sj * cc + ss
        m[j, i] = cj * sk
        m[j, j] = sj * ss + cc
        m[j, k] = sj * cs - sc
        m[k, i] = -sj
        m[k, j] = cj * si
        m[k, k] = cj * ci
    return m


def euler_from_matrix(matrix: Any, axes: str = "sxyz") -> tuple[float, float, float]:
    """Euler angles (rad) ``(ai, aj, ak)`` of the rotation part of a (4, 4) or (3, 3) matrix.

    At gimbal lock the third angle is set to 0 and the first carries the whole rotation.
    """
    i, j, k, parity, repetition, frame = _euler_axes(axes)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape not in ((4, 4), (3, 3)):
        raise ValueError(f"matrix must be (4, 4) or (3, 3), got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("matrix contains NaN or inf")
    if repetition:
        sy = math.sqrt(m[i, j] * m[i, j] + m[i, k] * m[i, k])
        if sy > _EPS:
            ax = math.atan2(m[i, j], m[i, k])
            ay = math.atan2(sy, m[i, i])
            az = math.atan2(m[j, i], -m[k, i])
        else:
            ax = math.atan2(-m[j, k], m[j, j])
            ay = math.atan2(sy, m[i, i])
            az = 0.0
    else:
        cy = math.sqrt(m[i, i] * m[i, i] + m[j, i] * m[j, i])
        if cy > _EPS:
            ax = math.atan2(m[k, j], m[k, k])
            ay = math.atan2(-m[k, i], cy)
            az = math.atan2(m[j, i], m[i, i])
        else:
            ax = math.atan2(-m[j, k], m[j, j])
            ay = math.atan2(-m[k, i], cy)
            az = 0.0
    if parity:
        ax, ay, az = -ax, -ay, -az
    if frame:
        ax, az = az, ax
    return ax, ay, az


def euler_from_quaternion(quaternion: Sequence[float], axes: str = "sxyz") -> tuple[float, float, float]:
    """Euler angles (rad) of a quaternion (x, y, z, w); for ``'sxyz'``: (roll, pitch, yaw)."""
    return euler_from_matrix(quaternion_matrix(quaternion), axes)


def quaternion_from_euler(ai: float, aj: float, ak: float, axes: str = "sxyz") -> np.ndarray:
    """Quaternion (x, y, z, w) from Euler angles (rad); same sign convention as tf_transformations
    (e.g. ``quaternion_from_euler(0, 0, pi/2) == (0, 0, sin(pi/4), cos(pi/4))``)."""
    i, j, k, parity, repetition, frame = _euler_axes(axes)
    if frame:
        ai, ak = ak, ai
    if parity:
        aj = -aj
    ai, aj, ak = 0.5 * ai, 0.5 * aj, 0.5 * ak
    ci, si = math.cos(ai), math.sin(ai)
    cj, sj = math.cos(aj), math.sin(aj)
    ck, sk = math.cos(ak), math.sin(ak)
    cc, cs = ci * ck, ci * sk
    sc, ss = si * ck, si * sk
    q = np.empty(4)
    if repetition:
        q[i] = cj * (cs + sc)
        q[j] = sj * (cc + ss)
        q[k] = sj * (cs - sc)
        q[3] = cj * (cc - ss)
    else:
        q[i] = cj * sc - sj * cs
        q[j] = cj * ss + sj * cc
        q[k] = cj * cs - sj * sc
        q[3] = cj * cc + sj * ss
    if parity:
        q[j] = -q[j]
    return q


# --------------------------------------------------------------------------------------------
# Transforms for clouds (ours)
# --------------------------------------------------------------------------------------------


def transform_to_matrix(translation: Sequence[float], rotation_xyzw: Sequence[float]) -> np.ndarray:
    """(4, 4) float64 homogeneous matrix from a translation (3,) in metres and a quaternion
    (x, y, z, w). The quaternion is normalised (TF publishers often send slightly denormalised
    ones); a zero quaternion raises ValueError."""
    matrix = quaternion_matrix(_unit_quaternion(rotation_xyzw, "rotation_xyzw"))
    matrix[:3, 3] = _vector(translation, 3, "translation")
    return matrix


def matrix_to_transform(matrix: Any) -> tuple[np.ndarray, np.ndarray]:
    """Split a rigid (4, 4) matrix into (translation (3,) float64, quaternion (4,) float64 xyzw, w >= 0)."""
    m = _matrix4(matrix)
    return m[:3, 3].copy(), quaternion_from_matrix(m)


def transform_msg_to_matrix(transform: Any) -> np.ndarray:
    """(4, 4) float64 matrix of a ``geometry_msgs/Transform`` or ``TransformStamped`` (duck-typed:
    rclpy and rosbags messages alike; no ROS import)."""
    inner = getattr(transform, "transform", transform)
    t, r = inner.translation, inner.rotation
    return transform_to_matrix((t.x, t.y, t.z), (r.x, r.y, r.z, r.w))


def apply_transform(matrix: Any, xyz: Any) -> np.ndarray:
    """Transform points: ``xyz`` (N, 3), metres, source frame -> (N, 3) float32, target frame.

    ``matrix`` is the (4, 4) source->target transform. The product runs in float64 and is cast
    once at the end: map-frame coordinates far from the origin (hundreds of metres) would
    otherwise lose millimetres to float32 rounding inside the rotation.
    """
    m = _matrix4(matrix)
    points = np.asarray(xyz)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"xyz must have shape (N, 3), got {points.shape}")
    columns = points.T.astype(np.float64)  # (3, N) contiguous rows
    out = np.empty((points.shape[0], 3), dtype=np.float32)
    for row in range(3):
        # Three scaled column sums beat a (N, 3) @ (3, 3) matmul several times on numpy's BLAS path.
        out[:, row] = (
            columns[0] * m[row, 0] + columns[1] * m[row, 1] + columns[2] * m[row, 2] + m[row, 3]
        )
    return out


def interpolate_transform(matrix0: Any, matrix1: Any, alpha: float) -> np.ndarray:
    """Rigid transform between two (4, 4) rigid transforms: ``alpha`` in [0, 1] (0 gives ``matrix0``).

    Translation is interpolated linearly and rotation by slerp (shortest arc), as tf2 does between
    two stamped transforms. Extrapolation (alpha outside [0, 1]) is refused, as in tf2.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (tf2 does not extrapolate), got {alpha}")
    t0, q0 = matrix_to_transform(matrix0)
    t1, q1 = matrix_to_transform(matrix1)
    return transform_to_matrix((1.0 - alpha) * t0 + alpha * t1, quaternion_slerp(q0, q1, alpha))
