"""The project's TF buffer (node and bag tool): interpolation, chains, directions, static vs
dynamic, errors, memory, and the node's two threads (executor writes, ingest reads and waits).

References are hand computations (cos/sin matrices) and a slow breadth-first search over the
frame graph that composes edge matrices the obvious way.
"""

from __future__ import annotations

import math
import threading
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros2_inst3d.testing import tf_message
from ros2_inst3d.msgs import MessageFactory, make_typestore
from ros2_inst3d.errors import TransformUnavailable
from ros2_inst3d.tf_buffer import TfBuffer
from ros2_inst3d.transforms import (apply_transform, quaternion_from_euler,
                                    transform_to_matrix)

SEC = 1_000_000_000
PROPERTY = settings(max_examples=40, deadline=None)


def rz(angle, translation=(0.0, 0.0, 0.0)):
    """Hand-built pose: rotation ``angle`` about z, then ``translation``."""
    c, s = math.cos(angle), math.sin(angle)
    m = np.identity(4)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = translation
    return m


def pose(translation, roll=0.0, pitch=0.0, yaw=0.0):
    return transform_to_matrix(translation, quaternion_from_euler(roll, pitch, yaw))


@pytest.fixture(scope="module")
def factory():
    return MessageFactory.for_rosbags(make_typestore("humble"))


# ---- interpolation ----------------------------------------------------------------------------

def test_interpolates_translation_linearly_and_rotation_by_slerp():
    buf = TfBuffer()
    buf.add_transform("odom", "base", 10 * SEC, rz(0.0, (0.0, 0.0, 0.0)), static=False)
    buf.add_transform("odom", "base", 11 * SEC, rz(math.pi / 2, (2.0, 4.0, 0.0)), static=False)
    np.testing.assert_allclose(buf.lookup("odom", "base", 10 * SEC + SEC // 2),
                               rz(math.pi / 4, (1.0, 2.0, 0.0)), atol=1e-12)
    np.testing.assert_allclose(buf.lookup("odom", "base", 10 * SEC + SEC // 4),
                               rz(math.pi / 8, (0.5, 1.0, 0.0)), atol=1e-12)
    # A point 1 m ahead of the robot, at the midpoint: rotated 45° and shifted.
    point = apply_transform(buf.lookup("odom", "base", 10_500_000_000), [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(point, [[1 + math.sqrt(0.5), 2 + math.sqrt(0.5), 0.0]], atol=1e-6)


def test_sample_stamps_return_the_samples_exactly():
    buf = TfBuffer()
    samples = {k * SEC: pose((k, -k, 0.1 * k), yaw=0.3 * k) for k in range(1, 5)}
    for stamp, matrix in samples.items():
        buf.add_transform("odom", "base", stamp, matrix, static=False)
    for stamp, matrix in samples.items():
        np.testing.assert_array_equal(buf.lookup("odom", "base", stamp), matrix)


def test_out_of_order_samples_are_sorted():
    ordered, shuffled = TfBuffer(), TfBuffer()
    stamps = [k * 100_000_000 for k in range(20)]
    for k, stamp in enumerate(stamps):
        ordered.add_transform("odom", "base", stamp, pose((0.1 * k, 0, 0), yaw=0.05 * k), False)
    for k in np.random.default_rng(3).permutation(len(stamps)):
        shuffled.add_transform("odom", "base", stamps[k], pose((0.1 * k, 0, 0), yaw=0.05 * k),
                               False)
    for t in (50_000_000, 1_234_567_890, stamps[-1]):
        np.testing.assert_array_equal(ordered.lookup("odom", "base", t),
                                      shuffled.lookup("odom", "base", t))


@PROPERTY
@given(speed=st.tuples(*[st.floats(-3, 3)] * 3), yaw_rate=st.floats(-2.0, 2.0),
       tilt=st.tuples(st.floats(-1, 1), st.floats(-1, 1)),
       dt_ms=st.integers(5, 200), fraction=st.floats(0.0, 1.0))
def test_constant_velocity_motion_is_interpolated_exactly(speed, yaw_rate, tilt, dt_ms, fraction):
    # Linear translation and a constant-rate turn about z (after a fixed tilt) are exactly what
    # linear interpolation and slerp reproduce between samples, whatever the sample spacing.
    tilt_matrix = pose((0, 0, 0), roll=tilt[0], pitch=tilt[1])

    def truth(stamp):
        s = stamp / SEC
        return rz(yaw_rate * s, np.multiply(speed, s)) @ tilt_matrix

    buf = TfBuffer()
    stamps = [k * dt_ms * 1_000_000 for k in range(1, 7)]   # (stamp 0 would mean "latest")
    for stamp in stamps:
        buf.add_transform("odom", "base", stamp, truth(stamp), static=False)
    t = int(stamps[0] + fraction * (stamps[-1] - stamps[0]))
    # atol: quaternion_slerp returns q0 for rotations closer than ~4e-8 rad (its epsilon).
    np.testing.assert_allclose(buf.lookup("odom", "base", t), truth(t), atol=1e-7)


# ---- the tree ---------------------------------------------------------------------------------

def robot_tree(buf):
    """map -(static)-> odom -(dynamic)-> base -(static)-> laser, base -(static)-> camera."""
    map_odom = pose((10.0, -5.0, 0.0), yaw=0.7)
    base_laser = pose((0.3, 0.0, 0.5), pitch=0.1)
    base_camera = pose((0.2, 0.1, 0.8), roll=-math.pi / 2, yaw=-math.pi / 2)
    odom_base = {0: pose((0.0, 0.0, 0.0)), SEC: pose((1.0, 0.5, 0.0), yaw=0.2)}
    buf.add_transform("map", "odom", 0, map_odom, static=True)
    buf.add_transform("base", "laser", 0, base_laser, static=True)
    buf.add_transform("base", "camera", 0, base_camera, static=True)
    for stamp, matrix in odom_base.items():
        buf.add_transform("odom", "base", stamp, matrix, static=False)
    return map_odom, odom_base, base_laser, base_camera


def test_chains_compose_along_the_tree_and_invert_the_other_way():
    buf = TfBuffer()
    map_odom, odom_base, base_laser, _ = robot_tree(buf)
    expected = map_odom @ odom_base[SEC] @ base_laser
    np.testing.assert_allclose(buf.lookup("map", "laser", SEC), expected, atol=1e-12)
    np.testing.assert_allclose(buf.lookup("laser", "map", SEC), np.linalg.inv(expected),
                               atol=1e-12)
    point = np.array([[1.0, 2.0, 3.0]], np.float32)
    there = apply_transform(buf.lookup("map", "laser", SEC // 3), point)
    back = apply_transform(buf.lookup("laser", "map", SEC // 3), there)
    np.testing.assert_allclose(back, point, atol=1e-5)


def test_siblings_connect_through_their_common_parent():
    buf = TfBuffer()
    _, _, base_laser, base_camera = robot_tree(buf)
    # Both hang off base: the dynamic odom edge is not on the path, so any stamp works.
    got = buf.lookup("camera", "laser", 123 * SEC)
    np.testing.assert_allclose(got, np.linalg.inv(base_camera) @ base_laser, atol=1e-12)


def test_same_frame_is_identity_and_leading_slash_is_ignored():
    buf = TfBuffer()
    robot_tree(buf)
    np.testing.assert_array_equal(buf.lookup("laser", "laser", 5 * SEC), np.identity(4))
    np.testing.assert_array_equal(buf.lookup("/map", "laser", SEC), buf.lookup("map", "/laser", SEC))


def reference_lookup(edges, target, source):
    """Slow reference: breadth-first search over the undirected frame graph, composing matrices.

    ``edges``: {(parent, child): T_parent_child}. Returns T_target_source or None.
    """
    graph = {}
    for (parent, child), matrix in edges.items():
        graph.setdefault(child, []).append((parent, matrix))            # child -> parent
        graph.setdefault(parent, []).append((child, np.linalg.inv(matrix)))
    found = {source: np.identity(4)}   # frame -> T_frame_source
    queue = deque([source])
    while queue:
        frame = queue.popleft()
        for neighbour, step in graph.get(frame, []):
            if neighbour not in found:
                found[neighbour] = step @ found[frame]
                queue.append(neighbour)
    return found.get(target)


@PROPERTY
@given(data=st.data(), num_frames=st.integers(2, 9))
def test_lookup_matches_a_graph_search_reference_on_random_forests(data, num_frames):
    frames = [f"f{i}" for i in range(num_frames)]
    edges = {}
    buf = TfBuffer()
    for i in range(1, num_frames):
        parent = data.draw(st.one_of(st.none(), st.integers(0, i - 1)), label=f"parent of f{i}")
        if parent is None:
            continue   # f{i} is another tree's root
        matrix = pose(data.draw(st.tuples(*[st.floats(-5, 5)] * 3)),
                      *data.draw(st.tuples(*[st.floats(-3, 3)] * 3)))
        edges[(frames[parent], frames[i])] = matrix
        buf.add_transform(frames[parent], frames[i], 0, matrix, static=data.draw(st.booleans()))
    known = set(buf.frames)
    for target in known:
        for source in known:
            expected = reference_lookup(edges, target, source)
            if expected is None:
                with pytest.raises(TransformUnavailable, match="no TF path"):
                    buf.lookup(target, source, 0)
            else:
                np.testing.assert_allclose(buf.lookup(target, source, 0), expected, atol=1e-9)


# ---- errors -----------------------------------------------------------------------------------

def test_unknown_frame_says_which_and_lists_the_known_ones():
    buf = TfBuffer()
    robot_tree(buf)
    with pytest.raises(TransformUnavailable, match=r"source frame 'lidar_top' does not exist.*"
                                                    r"'camera', 'laser', 'map'"):
        buf.lookup("map", "lidar_top", SEC)
    with pytest.raises(TransformUnavailable, match="target frame 'world'"):
        buf.lookup("world", "laser", SEC)
    with pytest.raises(TransformUnavailable, match=r"known frames: none \(no TF data yet\)"):
        TfBuffer().lookup("map", "laser", SEC)


def test_disconnected_trees_name_both_roots():
    buf = TfBuffer()
    robot_tree(buf)
    buf.add_transform("other_map", "drone", 0, np.identity(4), static=True)
    with pytest.raises(TransformUnavailable, match=r"tree rooted at 'map'.*tree rooted at "
                                                    r"'other_map'"):
        buf.lookup("drone", "laser", SEC // 2)


def test_extrapolation_is_refused_and_says_how_far():
    buf = TfBuffer()
    robot_tree(buf)   # odom -> base has samples at 0 s and 1 s
    with pytest.raises(TransformUnavailable,
                       match=r"'laser' -> 'map'.*0\.250 s into the future.*'odom' -> 'base'"):
        buf.lookup("map", "laser", SEC + SEC // 4)
    with pytest.raises(TransformUnavailable, match=r"0\.100 s into the past"):
        buf.lookup("map", "laser", -SEC // 10)
    assert not buf.can_transform("map", "laser", 2 * SEC)
    assert buf.can_transform("map", "laser", SEC)


def test_extrapolation_tolerance_clamps_to_the_end_sample():
    buf = TfBuffer(extrapolation_tolerance_s=0.1)
    _, odom_base, _, _ = robot_tree(buf)
    np.testing.assert_array_equal(buf.lookup("odom", "base", SEC + 50_000_000), odom_base[SEC])
    with pytest.raises(TransformUnavailable, match=r"0\.150 s into the future.*tolerance 0\.1 s"):
        buf.lookup("odom", "base", SEC + 150_000_000)


def test_a_single_dynamic_sample_only_answers_its_own_stamp():
    buf = TfBuffer()
    buf.add_transform("odom", "base", 5 * SEC, pose((1, 2, 3)), static=False)
    np.testing.assert_array_equal(buf.lookup("odom", "base", 5 * SEC), pose((1, 2, 3)))
    with pytest.raises(TransformUnavailable, match="1 sample"):
        buf.lookup("odom", "base", 5 * SEC + 1)


def test_parent_loops_are_reported():
    buf = TfBuffer()
    buf.add_transform("a", "b", 0, np.identity(4), static=True)
    buf.add_transform("b", "c", 0, np.identity(4), static=True)
    buf.add_transform("c", "a", 0, np.identity(4), static=True)
    with pytest.raises(TransformUnavailable, match="loops"):
        buf.lookup("a", "c", 0)


def test_stamp_zero_means_latest_common_time():
    buf = TfBuffer()
    buf.add_transform("map", "odom", 0, pose((0, 0, 0)), static=False)
    buf.add_transform("map", "odom", 3 * SEC, pose((3, 0, 0)), static=False)
    buf.add_transform("odom", "base", 0, pose((0, 0, 0)), static=False)
    buf.add_transform("odom", "base", 2 * SEC, pose((0, 2, 0)), static=False)
    # Latest time both edges cover: 2 s (map->odom interpolated to x=2).
    np.testing.assert_allclose(buf.lookup("map", "base", 0)[:3, 3], [2.0, 2.0, 0.0], atol=1e-12)


# ---- static vs dynamic, memory, clear ---------------------------------------------------------

def test_static_edges_never_expire_and_dynamic_ones_are_trimmed():
    buf = TfBuffer(cache_s=2.0)
    buf.add_transform("map", "odom", 0, pose((1, 0, 0)), static=True)
    for k in range(101):   # 10 s of odometry at 10 Hz
        buf.add_transform("odom", "base", k * SEC // 10, pose((0.1 * k, 0, 0)), static=False)
    samples = {child: n for _, child, _, n in buf.edges()}
    assert samples == {"odom": 1, "base": 21}     # the last 2 s, both ends included
    np.testing.assert_allclose(buf.lookup("map", "base", 9 * SEC)[:3, 3], [10.0, 0, 0], atol=1e-12)
    with pytest.raises(TransformUnavailable, match="into the past"):
        buf.lookup("map", "base", 7 * SEC)
    # Data older than the cache is rejected, as tf2 does (TF_OLD_DATA).
    assert not buf.add_transform("odom", "base", 5 * SEC, np.identity(4), static=False)
    assert buf.rejected["old_data"] == 1


def test_sample_count_is_bounded_even_within_the_cache_time():
    buf = TfBuffer(cache_s=100.0, max_samples_per_edge=50)
    for k in range(500):
        buf.add_transform("odom", "base", k * 1_000_000, pose((k, 0, 0)), static=False)
    assert buf.edges() == [("odom", "base", False, 50)]
    np.testing.assert_allclose(buf.lookup("odom", "base", 499_000_000)[:3, 3], [499, 0, 0])


def test_clear_forgets_dynamic_edges_but_keeps_static_ones():
    buf = TfBuffer()
    robot_tree(buf)
    buf.clear()
    np.testing.assert_allclose(buf.lookup("laser", "camera", 0),
                               np.linalg.inv(buf.lookup("camera", "laser", 0)), atol=1e-12)
    with pytest.raises(TransformUnavailable, match="no TF path"):
        buf.lookup("map", "laser", SEC)
    buf.clear(include_static=True)
    assert buf.frames == []


def test_invalid_transforms_are_rejected_and_counted(factory):
    buf = TfBuffer()
    good = tf_message(factory, [("odom", "base", SEC, pose((1, 0, 0)))])
    zero_rotation = tf_message(factory, [("odom", "base", 2 * SEC, pose((1, 0, 0)))])
    zero_rotation.transforms[0].transform.rotation.w = 0.0
    nan_translation = tf_message(factory, [("odom", "base", 3 * SEC, pose((1, 0, 0)))])
    nan_translation.transforms[0].transform.translation.x = float("nan")
    no_parent = tf_message(factory, [("", "base", 4 * SEC, pose((1, 0, 0)))])
    to_itself = tf_message(factory, [("base", "base", 4 * SEC, pose((1, 0, 0)))])
    assert buf.add_message(good, static=False) == 1
    assert buf.add_message(good, static=False) == 0   # repeated stamp (TF_REPEATED_DATA)
    for msg in (zero_rotation, nan_translation, no_parent, to_itself):
        assert buf.add_message(msg, static=False) == 0
    assert dict(buf.rejected) == {"repeated_data": 1, "invalid_rotation": 1, "non_finite": 1,
                                  "empty_frame_id": 1, "self_transform": 1}
    assert buf.edges() == [("odom", "base", False, 1)]


def test_messages_with_several_transforms_and_reparenting(factory):
    buf = TfBuffer()
    msg = tf_message(factory, [("map", "odom", SEC, pose((1, 0, 0))),
                               ("odom", "base", SEC, pose((0, 1, 0), yaw=0.5))])
    assert buf.add_message(msg, static=True) == 2
    np.testing.assert_allclose(buf.lookup("map", "base", 77 * SEC),
                               pose((1, 0, 0)) @ pose((0, 1, 0), yaw=0.5), atol=1e-12)
    # base gets a new parent: the old edge goes, the new one is used.
    buf.add_message(tf_message(factory, [("map", "base", SEC, pose((5, 5, 0)))]), static=True)
    assert ("map", "base", True, 1) in buf.edges()
    np.testing.assert_allclose(buf.lookup("map", "base", 0), pose((5, 5, 0)), atol=1e-12)


def test_constructor_rejects_meaningless_settings():
    with pytest.raises(ValueError, match="cache_s"):
        TfBuffer(cache_s=0)
    with pytest.raises(ValueError, match="extrapolation_tolerance_s"):
        TfBuffer(extrapolation_tolerance_s=-1)


# ---- threads (the node: executor thread adds /tf, ingest thread looks up) ----------------------

def test_wait_lookup_returns_once_another_thread_adds_the_sample():
    buf = TfBuffer()
    buf.add_transform("map", "base", 0, pose((0, 0, 0)), static=False)
    got = {}
    waiter = threading.Thread(
        target=lambda: got.update(matrix=buf.wait_lookup("map", "base", SEC // 2, timeout_s=60)))
    waiter.start()
    # A scan stamped between two /tf samples, the second of which arrives while it waits.
    buf.add_transform("map", "base", SEC, pose((2, 0, 0)), static=False)
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    np.testing.assert_allclose(got["matrix"], pose((1, 0, 0)), atol=1e-12)


def test_wait_lookup_gives_up_with_the_lookup_error():
    buf = TfBuffer()
    buf.add_transform("map", "base", 0, pose((0, 0, 0)), static=False)
    with pytest.raises(TransformUnavailable, match="into the future"):
        buf.wait_lookup("map", "base", SEC, timeout_s=0.01)
    with pytest.raises(TransformUnavailable, match="does not exist"):
        buf.wait_lookup("map", "nowhere", 0, timeout_s=0.0)


def test_concurrent_writes_clears_and_lookups_stay_consistent():
    """Lookups racing a writer (and time-jump clears) get a valid pose or TransformUnavailable,
    never another exception or a half-updated edge (interpolated x must lie between samples)."""
    buf = TfBuffer(cache_s=1.0)
    buf.add_transform("base", "laser", 0, pose((0, 0, 1)), static=True)
    errors = []
    done = threading.Event()

    def write():
        for k in range(3000):
            buf.add_transform("map", "base", k * SEC // 100, pose((k / 100, 0, 0)), static=False)
            if k % 700 == 699:
                buf.clear()
        done.set()

    def read():
        while not done.is_set():
            try:
                matrix = buf.lookup("map", "laser", 0)  # latest common time
            except TransformUnavailable:
                continue
            except Exception as exc:  # noqa: BLE001 - the failure this test looks for
                errors.append(exc)
                return
            if not (matrix[2, 3] == 1.0 and 0.0 <= matrix[0, 3] <= 30.0):
                errors.append(AssertionError(matrix))
                return

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    np.testing.assert_allclose(buf.lookup("map", "laser", 2999 * SEC // 100)[:3, 3], (29.99, 0, 1))
