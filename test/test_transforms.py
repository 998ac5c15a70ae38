"""Tests for ros2_inst3d.transforms: hand-computed values, scipy as an independent reference for
every Euler convention, and hypothesis round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from ros2_inst3d import transforms as tf

SQRT_HALF = math.sqrt(0.5)
PROPERTY = settings(max_examples=60, deadline=None)

angles = st.floats(-math.pi, math.pi, allow_nan=False)
coordinates = st.floats(-1e3, 1e3, allow_nan=False)
quaternions = (
    st.tuples(*[st.floats(-1.0, 1.0, allow_nan=False)] * 4)
    .map(np.array)
    .filter(lambda q: float(q @ q) > 1e-3)
)
translations = st.tuples(coordinates, coordinates, coordinates).map(np.array)


def rigid(translation, quaternion):
    return tf.transform_to_matrix(translation, quaternion)


def rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def same_rotation(q0, q1, atol=1e-9):
    """q and -q are the same rotation."""
    q0 = np.asarray(q0) / np.linalg.norm(q0)
    q1 = np.asarray(q1) / np.linalg.norm(q1)
    return min(np.abs(q0 - q1).max(), np.abs(q0 + q1).max()) < atol


# ---------------------------------------------------------------------------------------------
# Known values, computed by hand
# ---------------------------------------------------------------------------------------------


def test_yaw_90_degrees_by_hand():
    q = tf.quaternion_from_euler(0.0, 0.0, math.pi / 2)
    np.testing.assert_allclose(q, [0.0, 0.0, SQRT_HALF, SQRT_HALF], atol=1e-15)
    np.testing.assert_allclose(
        tf.quaternion_matrix(q), [[0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], atol=1e-15
    )
    np.testing.assert_allclose(tf.euler_from_quaternion(q), [0.0, 0.0, math.pi / 2], atol=1e-15)
    # +90 deg about z takes x onto y.
    np.testing.assert_allclose(tf.apply_transform(tf.quaternion_matrix(q), [[1.0, 0.0, 0.0]]), [[0, 1, 0]], atol=1e-7)


def test_roll_and_pitch_90_degrees_by_hand():
    np.testing.assert_allclose(tf.quaternion_from_euler(math.pi / 2, 0, 0), [SQRT_HALF, 0, 0, SQRT_HALF], atol=1e-15)
    np.testing.assert_allclose(tf.quaternion_from_euler(0, math.pi / 2, 0), [0, SQRT_HALF, 0, SQRT_HALF], atol=1e-15)
    # 180 deg about z.
    np.testing.assert_allclose(tf.quaternion_from_euler(0, 0, math.pi), [0, 0, 1, 0], atol=1e-15)


def test_sxyz_is_yaw_pitch_roll_and_equals_rzyx_reversed():
    roll, pitch, yaw = 0.3, -0.7, 2.1
    expected = rot_z(yaw) @ rot_y(pitch) @ rot_x(roll)
    np.testing.assert_allclose(tf.euler_matrix(roll, pitch, yaw)[:3, :3], expected, atol=1e-15)
    np.testing.assert_allclose(tf.euler_matrix(yaw, pitch, roll, "rzyx")[:3, :3], expected, atol=1e-15)
    assert tf.euler_from_matrix(expected, "rzyx") == pytest.approx((yaw, pitch, roll), abs=1e-12)
    assert same_rotation(tf.quaternion_from_euler(yaw, pitch, roll, "rzyx"), tf.quaternion_from_euler(roll, pitch, yaw))


def test_quaternion_multiply_composes_by_hand():
    z90 = [0, 0, SQRT_HALF, SQRT_HALF]
    np.testing.assert_allclose(tf.quaternion_multiply(z90, z90), [0, 0, 1, 0], atol=1e-15)
    x90 = [SQRT_HALF, 0, 0, SQRT_HALF]
    # x90 first, then z90: y -> z (by x90) -> z (z90 leaves z alone); x -> x -> y.
    combined = tf.quaternion_matrix(tf.quaternion_multiply(z90, x90))
    np.testing.assert_allclose(combined[:3, :3] @ [0, 1, 0], [0, 0, 1], atol=1e-15)
    np.testing.assert_allclose(combined[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-15)


def test_conjugate_inverse_and_unit_vector_by_hand():
    np.testing.assert_allclose(tf.quaternion_conjugate([1, 2, 3, 4]), [-1, -2, -3, 4])
    np.testing.assert_allclose(tf.quaternion_inverse([0, 0, 0, 2]), [0, 0, 0, 0.5])
    np.testing.assert_allclose(tf.unit_vector([3.0, 4.0]), [0.6, 0.8])
    np.testing.assert_allclose(tf.unit_vector([[3.0, 4.0], [0.0, 2.0]], axis=1), [[0.6, 0.8], [0.0, 1.0]])


def test_translation_and_rotation_about_a_point():
    t = tf.translation_matrix([1.0, -2.0, 3.5])
    np.testing.assert_array_equal(tf.translation_from_matrix(t), [1.0, -2.0, 3.5])
    np.testing.assert_array_equal(t[:3, :3], np.eye(3))
    np.testing.assert_array_equal(tf.identity_matrix(), np.eye(4))
    pivot = np.array([1.0, 1.0, 0.0])
    r = tf.rotation_matrix(math.pi / 2, [0, 0, 2.0], point=pivot)
    np.testing.assert_allclose(r @ np.append(pivot, 1.0), np.append(pivot, 1.0), atol=1e-15)
    np.testing.assert_allclose(r @ [2.0, 1.0, 0.0, 1.0], [1.0, 2.0, 0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(tf.quaternion_about_axis(math.pi, [0, 3.0, 0]), [0, 1, 0, 0], atol=1e-15)


def test_quaternion_from_matrix_canonical_sign_and_3x3_input():
    q = tf.quaternion_from_matrix(rot_x(3.0))  # w = cos(1.5) > 0
    np.testing.assert_allclose(q, [math.sin(1.5), 0, 0, math.cos(1.5)], atol=1e-12)
    q = tf.quaternion_from_matrix(tf.quaternion_matrix([0, 0, -0.6, -0.8]))
    np.testing.assert_allclose(q, [0, 0, 0.6, 0.8], atol=1e-12)


def test_quaternion_from_matrix_projects_a_noisy_rotation():
    rng = np.random.default_rng(3)
    q = tf.unit_vector(rng.normal(size=4))
    noisy = tf.quaternion_matrix(q)
    noisy[:3, :3] += rng.normal(scale=1e-6, size=(3, 3))
    assert same_rotation(tf.quaternion_from_matrix(noisy), q, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# All 24 Euler conventions against scipy (an independent implementation)
# ---------------------------------------------------------------------------------------------


def scipy_sequence(axes: str) -> str:
    # tf 's' = static frame = scipy lowercase (extrinsic); 'r' = rotating = scipy uppercase.
    return axes[1:] if axes[0] == "s" else axes[1:].upper()


@pytest.mark.parametrize("axes", tf.EULER_AXES)
def test_every_euler_convention_matches_scipy(axes):
    rng = np.random.default_rng(sum(map(ord, axes)))
    for a in rng.uniform(-math.pi, math.pi, size=(20, 3)):
        reference = Rotation.from_euler(scipy_sequence(axes), a)
        np.testing.assert_allclose(tf.euler_matrix(*a, axes=axes)[:3, :3], reference.as_matrix(), atol=1e-12)
        q = tf.quaternion_from_euler(*a, axes=axes)
        assert same_rotation(q, reference.as_quat(), atol=1e-12)
        # euler_from_* may pick the other equivalent triple; it must give the same rotation.
        back = tf.euler_from_matrix(reference.as_matrix(), axes)
        np.testing.assert_allclose(tf.euler_matrix(*back, axes=axes)[:3, :3], reference.as_matrix(), atol=1e-12)
        back = tf.euler_from_quaternion(q, axes)
        np.testing.assert_allclose(tf.euler_matrix(*back, axes=axes)[:3, :3], reference.as_matrix(), atol=1e-12)


@PROPERTY
@given(q=quaternions)
def test_quaternion_matrix_matches_scipy(q):
    np.testing.assert_allclose(tf.quaternion_matrix(q)[:3, :3], Rotation.from_quat(q).as_matrix(), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Round trips (hypothesis)
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(q=quaternions)
def test_quaternion_matrix_round_trip_up_to_sign(q):
    m = tf.quaternion_matrix(q)
    np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(m[:3, :3]) == pytest.approx(1.0, abs=1e-12)
    back = tf.quaternion_from_matrix(m)
    assert back[3] >= 0.0
    assert same_rotation(back, q, atol=1e-9)


@PROPERTY
@given(roll=angles, pitch=st.floats(-1.5, 1.5), yaw=angles)
def test_euler_round_trip_away_from_gimbal_lock(roll, pitch, yaw):
    q = tf.quaternion_from_euler(roll, pitch, yaw)
    back = np.array(tf.euler_from_quaternion(q))
    # Compare modulo 2 pi: +pi and -pi are the same angle.
    wrapped = (back - [roll, pitch, yaw] + math.pi) % (2 * math.pi) - math.pi
    np.testing.assert_allclose(wrapped, 0.0, atol=1e-9)
    np.testing.assert_allclose(tf.euler_matrix(*tf.euler_from_quaternion(q)), tf.quaternion_matrix(q), atol=1e-9)


@PROPERTY
@given(t=translations, q=quaternions)
def test_inverse_matrix_undoes_transform(t, q):
    m = rigid(t, q)
    np.testing.assert_allclose(tf.inverse_matrix(m) @ m, np.eye(4), atol=1e-9)
    np.testing.assert_allclose(m @ tf.inverse_matrix(m), np.eye(4), atol=1e-9)
    t_back, q_back = tf.matrix_to_transform(m)
    np.testing.assert_allclose(t_back, t, atol=1e-12)
    assert same_rotation(q_back, q, atol=1e-9)


@PROPERTY
@given(
    t=translations,
    q=quaternions,
    xyz=st.lists(st.tuples(coordinates, coordinates, coordinates), min_size=1, max_size=20).map(np.array),
)
def test_apply_transform_then_inverse_returns_the_points(t, q, xyz):
    xyz = xyz.astype(np.float32)
    m = rigid(t, q)
    moved = tf.apply_transform(m, xyz)
    assert moved.dtype == np.float32 and moved.shape == xyz.shape
    back = tf.apply_transform(tf.inverse_matrix(m), moved)
    # Two float32 roundings of coordinates up to ~2e3 m.
    np.testing.assert_allclose(back, xyz, atol=2e-3 * 4)
    # Distances are preserved by a rigid transform.
    np.testing.assert_allclose(
        np.linalg.norm(moved - moved[0], axis=1), np.linalg.norm(xyz - xyz[0], axis=1), atol=1e-3 * 4
    )


@PROPERTY
@given(q1=quaternions, q0=quaternions)
def test_quaternion_multiply_is_matrix_product(q1, q0):
    expected = tf.quaternion_matrix(q1) @ tf.quaternion_matrix(q0)
    np.testing.assert_allclose(tf.quaternion_matrix(tf.quaternion_multiply(q1, q0)), expected, atol=1e-9)
    np.testing.assert_allclose(tf.quaternion_multiply(q0, tf.quaternion_inverse(q0)), [0, 0, 0, 1], atol=1e-9)


@PROPERTY
@given(q0=quaternions, q1=quaternions, fraction=st.floats(0.0, 1.0))
def test_slerp_endpoints_norm_and_constant_speed(q0, q1, fraction):
    u0, u1 = tf.unit_vector(q0), tf.unit_vector(q1)
    np.testing.assert_allclose(tf.quaternion_slerp(q0, q1, 0.0), u0, atol=1e-12)
    np.testing.assert_allclose(tf.quaternion_slerp(q0, q1, 1.0), u1, atol=1e-12)
    q = tf.quaternion_slerp(q0, q1, fraction)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-12)

    def angle(a, b):  # rotation angle between two quaternions, in [0, pi]
        return 2.0 * math.acos(min(1.0, abs(float(np.dot(a, b)))))

    total = angle(u0, u1)
    assert angle(u0, q) == pytest.approx(fraction * total, abs=1e-6)
    assert angle(q, u1) == pytest.approx((1.0 - fraction) * total, abs=1e-6)


def test_slerp_halfway_by_hand_and_shortest_path():
    identity = [0, 0, 0, 1]
    z90 = [0, 0, SQRT_HALF, SQRT_HALF]
    z45 = [0, 0, math.sin(math.pi / 8), math.cos(math.pi / 8)]
    np.testing.assert_allclose(tf.quaternion_slerp(identity, z90, 0.5), z45, atol=1e-12)
    # -z90 is the same rotation; the short path still passes through z45 (up to sign).
    assert same_rotation(tf.quaternion_slerp(identity, -np.array(z90), 0.5), z45, atol=1e-12)


def test_interpolate_transform_by_hand():
    t0 = tf.transform_to_matrix([0, 0, 0], [0, 0, 0, 1])
    t1 = tf.transform_to_matrix([2, 4, -6], [0, 0, SQRT_HALF, SQRT_HALF])
    mid = tf.interpolate_transform(t0, t1, 0.5)
    np.testing.assert_allclose(mid[:3, 3], [1, 2, -3], atol=1e-12)
    np.testing.assert_allclose(mid[:3, :3], rot_z(math.pi / 4), atol=1e-12)
    np.testing.assert_allclose(tf.interpolate_transform(t0, t1, 0.0), t0, atol=1e-12)
    np.testing.assert_allclose(tf.interpolate_transform(t0, t1, 1.0), t1, atol=1e-12)
    with pytest.raises(ValueError, match="extrapolate"):
        tf.interpolate_transform(t0, t1, 1.5)


def test_concatenate_matrices_order():
    a = tf.translation_matrix([1, 0, 0])
    b = tf.rotation_matrix(math.pi / 2, [0, 0, 1])
    np.testing.assert_allclose(tf.concatenate_matrices(a, b), a @ b)
    # b first, then a: the x axis goes to y and is shifted by +x.
    np.testing.assert_allclose(tf.concatenate_matrices(a, b) @ [1, 0, 0, 1], [1, 1, 0, 1], atol=1e-15)
    np.testing.assert_array_equal(tf.concatenate_matrices(), np.eye(4))


def test_apply_transform_keeps_precision_far_from_origin():
    """Map coordinates of ~100 km: the product runs in float64, so the only error left is the
    final float32 rounding (compared with a per-point float64 loop)."""
    rng = np.random.default_rng(7)
    xyz = rng.uniform(-50, 50, size=(200, 3)).astype(np.float32)
    m = tf.transform_to_matrix([1.0e5, -2.5e4, 12.0], tf.quaternion_from_euler(0.1, -0.2, 2.0))
    out = tf.apply_transform(m, xyz)
    reference = np.array([m[:3, :3] @ p.astype(np.float64) + m[:3, 3] for p in xyz])
    assert np.all(np.abs(out - reference) <= np.spacing(np.abs(reference).astype(np.float32)))
    assert tf.apply_transform(m, np.zeros((0, 3), np.float32)).shape == (0, 3)


def test_transform_to_matrix_normalises_quaternion():
    q = np.array([0.1, -0.2, 0.3, 0.9])
    np.testing.assert_allclose(
        tf.transform_to_matrix([1, 2, 3], 5.0 * q), tf.transform_to_matrix([1, 2, 3], q), atol=1e-15
    )


def test_transform_msg_to_matrix_with_rosbags_messages():
    store = get_typestore(Stores.ROS2_HUMBLE)
    Vector3 = store.types["geometry_msgs/msg/Vector3"]
    Quaternion = store.types["geometry_msgs/msg/Quaternion"]
    Transform = store.types["geometry_msgs/msg/Transform"]
    msg = Transform(
        translation=Vector3(x=1.0, y=2.0, z=3.0), rotation=Quaternion(x=0.0, y=0.0, z=SQRT_HALF, w=SQRT_HALF)
    )
    expected = np.array([[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], dtype=float)
    np.testing.assert_allclose(tf.transform_msg_to_matrix(msg), expected, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="zero norm"):
        tf.transform_to_matrix([0, 0, 0], [0, 0, 0, 0])
    with pytest.raises(ValueError, match="zero norm"):
        tf.quaternion_matrix([0, 0, 0, 0])
    with pytest.raises(ValueError, match="finite"):
        tf.transform_to_matrix([0, 0, 0], [0, 0, float("nan"), 1])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        tf.transform_to_matrix([0, 0], [0, 0, 0, 1])
    with pytest.raises(ValueError, match="unknown Euler axes 'xyz'"):
        tf.euler_matrix(0, 0, 0, "xyz")
    with pytest.raises(ValueError, match="unknown Euler axes"):
        tf.quaternion_from_euler(0, 0, 0, "sabc")
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        tf.apply_transform(np.eye(4), np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        tf.apply_transform(np.eye(3), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="singular"):
        tf.inverse_matrix(np.zeros((4, 4)))
