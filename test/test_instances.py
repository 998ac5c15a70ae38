"""Boxes, hulls and the Instances result type."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ros2_inst3d.classes import IGNORE_LABEL
from ros2_inst3d.instances import (Box3D, Instances, axis_aligned_box, convex_hull_xy,
                                   oriented_box_z)


def rectangle_points(length, width, yaw, center=(0.0, 0.0), z=(0.0, 1.0), n=9):
    """A grid of points filling a length x width rectangle rotated by yaw, corners included."""
    u, v = np.meshgrid(np.linspace(-length / 2, length / 2, n),
                       np.linspace(-width / 2, width / 2, n))
    c, s = math.cos(yaw), math.sin(yaw)
    x = center[0] + c * u.ravel() - s * v.ravel()
    y = center[1] + s * u.ravel() + c * v.ravel()
    zs = np.linspace(z[0], z[1], x.size)
    return np.column_stack([x, y, zs])


def brute_force_min_area(xy):
    """Slow reference: the minimum-area enclosing rectangle over the directions of every point
    pair (hull edges are among them), measured on every point."""
    diff = (xy[None, :, :] - xy[:, None, :]).reshape(-1, 2)
    diff = diff[np.linalg.norm(diff, axis=1) > 0]
    if len(diff) == 0:
        return 0.0
    angles = np.arctan2(diff[:, 1], diff[:, 0])
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    u = c * xy[:, 0] + s * xy[:, 1]
    v = -s * xy[:, 0] + c * xy[:, 1]
    return float((np.ptp(u, axis=1) * np.ptp(v, axis=1)).min())


def polygon_area(poly):
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def angle_mod(a, period):
    """Distance between angles modulo period."""
    d = np.mod(a, period)
    return min(d, period - d)


# ------------------------------------------------------------------------------------- boxes


def test_axis_aligned_box_is_min_max_of_a_random_cloud():
    xyz = np.random.default_rng(1).normal(size=(500, 3)).astype(np.float32) * [3, 1, 0.5] + 10
    box = axis_aligned_box(xyz)
    lo, hi = xyz.min(axis=0).astype(np.float64), xyz.max(axis=0).astype(np.float64)
    np.testing.assert_allclose(box.center - box.size / 2, lo, atol=1e-9)
    np.testing.assert_allclose(box.center + box.size / 2, hi, atol=1e-9)
    assert box.yaw == 0.0 and box.kind == "aabb"
    np.testing.assert_array_equal(box.quaternion, [0, 0, 0, 1])


@pytest.mark.parametrize("yaw", [0.0, 0.3, -0.3, math.pi / 4 - 0.01, -math.pi / 2 + 0.05, 1.4, 2.8])
def test_oriented_box_recovers_a_rotated_rectangle(yaw):
    xyz = rectangle_points(2.0, 0.6, yaw, center=(105.0, -40.0), z=(0.2, 1.1))
    box = oriented_box_z(xyz)
    np.testing.assert_allclose(box.size, [2.0, 0.6, 0.9], atol=1e-9)
    np.testing.assert_allclose(box.center, [105.0, -40.0, 0.65], atol=1e-9)
    # The long side is the box x axis, so yaw is determined up to a half turn.
    assert angle_mod(box.yaw - yaw, math.pi) < 1e-9
    assert -math.pi / 2 <= box.yaw < math.pi / 2
    assert box.kind == "obb_z"
    q = box.quaternion
    assert math.isclose(np.linalg.norm(q), 1.0) and q[0] == q[1] == 0.0
    assert math.isclose(2 * math.atan2(q[2], q[3]), box.yaw, abs_tol=1e-12)


def test_round_object_with_thousands_of_hull_vertices_matches_the_per_edge_reference():
    # Points on an ellipse are all hull vertices; the reference tries every hull edge direction
    # and projects every point (O(H^2)).
    t = np.random.default_rng(5).uniform(0, 2 * math.pi, 3000)
    c, s = math.cos(0.7), math.sin(0.7)
    ex, ey = 1.5 * np.cos(t), 0.5 * np.sin(t)
    xyz = np.column_stack([20 + c * ex - s * ey, -3 + s * ex + c * ey, np.zeros_like(t)])
    box = oriented_box_z(xyz)
    hull = convex_hull_xy(xyz)
    assert len(hull) > 1000
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    u = np.cos(angles)[:, None] * xyz[:, 0] + np.sin(angles)[:, None] * xyz[:, 1]
    v = -np.sin(angles)[:, None] * xyz[:, 0] + np.cos(angles)[:, None] * xyz[:, 1]
    reference = (np.ptp(u, axis=1) * np.ptp(v, axis=1)).min()
    assert box.size[0] * box.size[1] == pytest.approx(reference, rel=1e-12)
    assert box.contains(xyz, tol=1e-9).all()
    assert angle_mod(box.yaw - 0.7, math.pi) < 0.05  # the long axis of the ellipse


def test_square_footprint_is_recovered_up_to_a_quarter_turn():
    box = oriented_box_z(rectangle_points(1.0, 1.0, 0.5))
    np.testing.assert_allclose(box.size[:2], [1.0, 1.0], atol=1e-9)
    assert angle_mod(box.yaw - 0.5, math.pi / 2) < 1e-9


def test_degenerate_footprints():
    one = oriented_box_z(np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_array_equal(one.center, [1, 2, 3])
    np.testing.assert_array_equal(one.size, [0, 0, 0])
    assert one.yaw == 0.0

    same = oriented_box_z(np.array([[1.0, 2.0, 0.0], [1.0, 2.0, 0.5], [1.0, 2.0, 1.0]]))
    np.testing.assert_allclose(same.size, [0, 0, 1.0])

    # Collinear points along a direction of 120 degrees: a zero-width box along the line.
    t = np.linspace(-1.0, 2.0, 7)
    direction = np.array([math.cos(2.0944), math.sin(2.0944)])
    line = np.column_stack([5 + t * direction[0], 1 + t * direction[1], np.zeros_like(t)])
    box = oriented_box_z(line)
    np.testing.assert_allclose(box.size, [3.0, 0.0, 0.0], atol=1e-9)
    assert angle_mod(box.yaw - 2.0944, math.pi) < 1e-9
    assert box.contains(line, tol=1e-9).all()

    two = oriented_box_z(line[[0, -1]])
    np.testing.assert_allclose(two.size[:2], [3.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(two.center[:2], line[[0, -1], :2].mean(axis=0), atol=1e-9)


def test_box_corners_footprint_and_contains_agree():
    box = Box3D(center=np.array([1.0, 2.0, 0.5]), size=np.array([2.0, 1.0, 1.0]),
                yaw=math.pi / 6, kind="obb_z")
    foot = box.footprint()
    assert math.isclose(polygon_area(foot), 2.0)  # positive: counter-clockwise
    corners = box.corners()
    np.testing.assert_allclose(corners[:4, 2], 0.0)
    np.testing.assert_allclose(corners[4:, 2], 1.0)
    np.testing.assert_allclose(corners[:4, :2], corners[4:, :2])
    np.testing.assert_allclose(corners.mean(axis=0), box.center)
    assert box.contains(corners, tol=1e-9).all()
    outside = box.center + 1.01 * (corners - box.center)
    assert not box.contains(outside, tol=1e-9).any()
    # The box's own x axis points along yaw: the midpoint of the +x face.
    np.testing.assert_allclose(foot[1:3].mean(axis=0),
                               box.center[:2] + [math.cos(math.pi / 6), math.sin(math.pi / 6)])


def test_box_functions_reject_bad_points():
    with pytest.raises(ValueError, match="non-empty"):
        oriented_box_z(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        axis_aligned_box(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        oriented_box_z(np.array([[0.0, 0.0, np.nan], [1.0, 1.0, 1.0]]))


coordinates = st.floats(-50.0, 50.0, width=32)
clouds = st.integers(1, 40).flatmap(
    lambda n: arrays(np.float32, (n, 3), elements=coordinates))


@settings(max_examples=150, deadline=None)
@given(clouds)
def test_oriented_box_encloses_the_points_with_the_smallest_footprint(xyz):
    obb = oriented_box_z(xyz)
    aabb = axis_aligned_box(xyz)
    assert obb.contains(xyz, tol=1e-6).all()
    assert aabb.contains(xyz, tol=1e-6).all()
    assert obb.size[0] >= obb.size[1] >= 0.0
    assert -math.pi / 2 <= obb.yaw < math.pi / 2
    obb_area, aabb_area = obb.size[0] * obb.size[1], aabb.size[0] * aabb.size[1]
    assert obb_area <= aabb_area * (1 + 1e-9) + 1e-9
    reference = brute_force_min_area(xyz[:, :2].astype(np.float64))
    assert obb_area == pytest.approx(reference, rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(obb.size[2], aabb.size[2])


# -------------------------------------------------------------------------------------- hulls


@settings(max_examples=100, deadline=None)
@given(clouds)
def test_convex_hull_contains_all_points_and_is_made_of_them(xyz):
    hull = convex_hull_xy(xyz)
    xy = xyz[:, :2].astype(np.float64)
    # Every vertex is an input point.
    assert all(np.isclose(xy, v, atol=1e-9).all(axis=1).any() for v in hull)
    if len(hull) >= 3:
        assert polygon_area(hull) > 0  # counter-clockwise
        edges = np.roll(hull, -1, axis=0) - hull
        rel = xy[:, None, :] - hull[None, :, :]
        cross = edges[None, :, 0] * rel[..., 1] - edges[None, :, 1] * rel[..., 0]
        scale = max(1.0, float(np.abs(xy).max()))
        assert (cross >= -1e-9 * scale * scale).all()
    else:
        # Degenerate: the points lie on the segment between the (at most two) hull vertices.
        assert brute_force_min_area(xy) == pytest.approx(0.0, abs=1e-6)


def test_convex_hull_of_a_square_with_inner_points():
    xyz = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 3], [0.2, 0.7, 1]])
    hull = convex_hull_xy(xyz)
    assert len(hull) == 4 and math.isclose(polygon_area(hull), 1.0)
    assert len(convex_hull_xy(np.array([[2.0, 2.0, 0.0]] * 5))) == 1
    assert len(convex_hull_xy(np.array([[0, 0, 0], [1, 1, 0], [2, 2, 5.0]]))) == 2


# ---------------------------------------------------------------------------------- Instances


def two_objects():
    rng = np.random.default_rng(7)
    chair = rectangle_points(0.5, 0.4, 0.5, center=(1.0, 1.0), z=(0.0, 0.9), n=6)
    table = rectangle_points(1.2, 0.8, 0.0, center=(3.0, 0.0), z=(0.0, 0.75), n=6)
    clutter = rng.uniform(-1, 5, size=(10, 3))
    xyz = np.vstack([chair, clutter, table]).astype(np.float32)
    labels = np.concatenate([np.full(len(chair), 12), np.full(len(clutter), -100),
                             np.full(len(table), 5)])
    return xyz, labels


def test_from_point_labels_matches_a_per_id_reference():
    xyz, labels = two_objects()
    rgb = np.full((len(xyz), 3), 200, np.uint8)
    classes = np.zeros(13, np.int64)
    classes[[5, 12]] = [6, 4]
    scores = np.zeros(13)
    scores[[5, 12]] = [0.5, 0.875]
    inst = Instances.from_point_labels(xyz, rgb, labels, classes, scores,
                                       timing_ms={"grouping": 1.5})
    assert inst.num_instances == 2 and inst.num_points == len(xyz)
    np.testing.assert_array_equal(inst.ids, [5, 12])
    np.testing.assert_array_equal(inst.class_ids, [6, 4])
    np.testing.assert_allclose(inst.scores, [0.5, 0.875])
    for k, instance_id in enumerate(inst.ids):
        np.testing.assert_array_equal(inst.indices[k], np.flatnonzero(labels == instance_id))
    np.testing.assert_array_equal(inst.point_instance, np.where(labels < 0, -1, labels))
    expected_class = np.select([labels == 5, labels == 12], [6, 4], IGNORE_LABEL)
    np.testing.assert_array_equal(inst.point_class, expected_class)
    assert inst.point_instance.dtype == np.int32 and inst.xyz.dtype == np.float32
    assert inst.class_name(inst.position(12)) == "chair"
    assert inst.timing_ms == {"grouping": 1.5}

    # The same result from mappings.
    same = Instances.from_point_labels(xyz, None, labels, {5: 6, 12: 4}, {5: 0.5, 12: 0.875})
    np.testing.assert_array_equal(same.point_class, inst.point_class)
    np.testing.assert_allclose(same.obb(1).size, inst.obb(1).size)


def test_from_point_labels_rejects_incomplete_tables():
    xyz, labels = two_objects()
    with pytest.raises(KeyError, match=r"\[12\]"):
        Instances.from_point_labels(xyz, None, labels, {5: 6}, {5: 0.5, 12: 0.8})
    with pytest.raises(ValueError, match="instance id 12"):
        Instances.from_point_labels(xyz, None, labels, np.zeros(6, int), np.zeros(13))
    with pytest.raises(TypeError, match="integers"):
        Instances.from_point_labels(xyz, None, labels, np.full(13, 4.5), np.zeros(13))


def test_per_instance_geometry_is_cached_and_correct():
    xyz, labels = two_objects()
    inst = Instances.from_point_labels(xyz, None, labels, {5: 6, 12: 4}, {5: 0.5, 12: 0.9})
    chair = inst.position(12)
    box = inst.obb(chair)
    assert box is inst.obb(chair)  # computed once
    np.testing.assert_allclose(box.size, [0.5, 0.4, 0.9], atol=1e-6)
    assert angle_mod(box.yaw - 0.5, math.pi) < 1e-6
    assert inst.box(chair, "aabb") is inst.aabb(chair)
    np.testing.assert_allclose(inst.centroid(chair),
                               xyz[labels == 12].astype(np.float64).mean(axis=0))
    hull = inst.footprint(chair)
    assert math.isclose(polygon_area(hull), 0.5 * 0.4, rel_tol=1e-5)
    np.testing.assert_allclose(hull, convex_hull_xy(inst.points(chair)), atol=1e-12)
    with pytest.raises(IndexError):
        inst.obb(2)
    with pytest.raises(ValueError, match="box kind"):
        inst.box(0, "sphere")


def test_select_keeps_ids_and_unlabels_dropped_points():
    xyz, labels = two_objects()
    inst = Instances.from_point_labels(xyz, None, labels, {5: 6, 12: 4}, {5: 0.5, 12: 0.9})
    box = inst.obb(1)
    kept = inst.select(inst.scores > 0.7)
    np.testing.assert_array_equal(kept.ids, [12])
    np.testing.assert_array_equal(kept.point_instance, np.where(labels == 12, 12, -1))
    np.testing.assert_array_equal(kept.point_class, inst.point_class)
    assert kept.obb(0) is box
    reordered = inst.select([1, 0])
    np.testing.assert_array_equal(reordered.ids, [12, 5])
    np.testing.assert_array_equal(reordered.point_instance, inst.point_instance)
    assert inst.select(np.zeros(2, bool)).num_instances == 0
    with pytest.raises(ValueError, match="mask"):
        inst.select(np.ones(3, bool))
    with pytest.raises(IndexError):
        inst.select([2])


def test_empty():
    xyz, _ = two_objects()
    inst = Instances.empty(xyz)
    assert inst.num_instances == 0 and inst.num_points == len(xyz)
    assert (inst.point_instance == -1).all() and (inst.point_class == IGNORE_LABEL).all()
    none = Instances.from_point_labels(xyz, None, np.full(len(xyz), -1), [], [])
    assert none.num_instances == 0 and none.indices == []


N_POINTS = len(two_objects()[0])


def valid_fields():
    xyz, labels = two_objects()
    inst = Instances.from_point_labels(xyz, None, labels, {5: 6, 12: 4}, {5: 0.5, 12: 0.9})
    return dict(xyz=inst.xyz, rgb=None, point_instance=inst.point_instance,
                point_class=inst.point_class, ids=inst.ids, class_ids=inst.class_ids,
                scores=inst.scores, indices=inst.indices)


@pytest.mark.parametrize("change, error, message", [
    (dict(xyz=np.zeros((5, 2), np.float32)), ValueError, r"xyz must have shape \(\*, 3\)"),
    (dict(xyz=np.zeros((N_POINTS, 3), np.int32)), TypeError, "xyz must be a float array"),
    (dict(rgb=np.zeros((N_POINTS, 3), np.float32)), TypeError, "rgb must be uint8"),
    (dict(point_instance=np.zeros(3, np.int32)), ValueError, r"point_instance must have shape"),
    (dict(point_instance=np.zeros(N_POINTS)), TypeError, "point_instance must be an integer array"),
    (dict(ids=np.array([5, 5])), ValueError, "unique"),
    (dict(ids=np.array([-1, 12])), ValueError, ">= 0"),
    (dict(class_ids=np.array([6, 20])), ValueError, r"class_ids \[20\]"),
    (dict(scores=np.array([0.5, np.nan])), ValueError, "NaN"),
    (dict(scores=np.array([1, 0])), TypeError, "scores must be a float array"),
    (dict(point_instance=np.full(N_POINTS, 7)), ValueError, r"ids \[7\]"),
    (dict(point_class=np.full(N_POINTS, -1)), ValueError, "point_class"),
    (dict(indices=[np.array([0, 1]), np.array([], np.int64)]), ValueError, "no points"),
    (dict(indices=[np.array([0, N_POINTS]), np.array([1])]), ValueError, "outside"),
    (dict(indices=[np.array([0.0]), np.array([1])]), TypeError, "integer"),
    (dict(indices=[np.array([0])]), ValueError, "2 ids but 1 index arrays"),
])
def test_instances_rejects_inconsistent_fields_with_a_clear_message(change, error, message):
    fields = valid_fields()
    fields.update(change)
    with pytest.raises(error, match=message):
        Instances(**fields)
