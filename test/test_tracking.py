"""Tracking: ids that objects keep across results, remembered objects, class vote, score smoothing."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cloud_msg, lidar_config, room_scene, static_lookup

from ros2_inst3d.config import Config, TrackingConfig
from ros2_inst3d.instances import Instances
from ros2_inst3d.pipeline import TOPIC_INSTANCES, TOPIC_MARKERS, StreamPipeline
from ros2_inst3d.segmenter import Segmenter
from ros2_inst3d.tracking import Tracker
from ros2_inst3d.voxelize import voxel_keys

SEC = 1_000_000_000
CHAIR, TABLE, SOFA = 4, 6, 5


def blob(center, size, n, rng):
    return rng.uniform(-0.5, 0.5, size=(n, 3)) * np.asarray(size) + np.asarray(center)


def result(objects, rng, order=None):
    """Instances of ``objects``: list of (center, size, class_id, score), in ``order``."""
    order = list(range(len(objects))) if order is None else order
    parts, labels, classes, scores = [], [], {}, {}
    for k, pos in enumerate(order):
        center, size, cls, score = objects[pos]
        pts = blob(center, size, 200, rng)
        parts.append(pts)
        labels.append(np.full(len(pts), k))
        classes[k], scores[k] = cls, score
    clutter = rng.uniform(-10, 10, size=(30, 3))
    xyz = np.vstack(parts + [clutter]).astype(np.float32)
    point_instance = np.concatenate(labels + [np.full(30, -1)])
    return Instances.from_point_labels(xyz, None, point_instance, classes, scores)


def ids_by_position(tracked, objects):
    """Track id of the instance nearest each object centre."""
    inst = tracked.instances
    out = []
    for center, *_ in objects:
        k = int(np.argmin([np.linalg.norm(inst.centroid(k) - center)
                           for k in range(inst.num_instances)]))
        out.append(int(inst.ids[k]))
    return out


ROOM = [((0.0, 0.0, 0.45), (0.5, 0.5, 0.9), CHAIR, 0.9),
        ((0.7, 0.0, 0.45), (0.5, 0.5, 0.9), CHAIR, 0.8),     # a second chair beside it
        ((3.0, 1.0, 0.4), (1.6, 0.9, 0.8), TABLE, 0.7)]


def test_objects_keep_their_ids_whatever_the_result_order():
    rng = np.random.default_rng(0)
    tracker = Tracker(TrackingConfig())
    first = tracker.update(result(ROOM, rng), 1 * SEC)
    ids = ids_by_position(first, ROOM)
    assert sorted(ids) == [0, 1, 2]
    for step, order in enumerate([[2, 1, 0], [1, 2, 0], [0, 2, 1]]):
        # The objects jitter by a few cm, as segmentations of the same object do.
        moved = [(tuple(np.add(c, rng.normal(0, 0.03, 3))), s, cl, sc) for c, s, cl, sc in ROOM]
        tracked = tracker.update(result(moved, rng, order), (2 + step) * SEC)
        assert ids_by_position(tracked, moved) == ids
        assert tracked.remembered == []
        for i in ids:
            assert tracked.info[i].hits == 2 + step and tracked.info[i].first_seen_ns == SEC
            assert tracked.info[i].last_seen_ns == (2 + step) * SEC
        # Points carry the track id too.
        inst = tracked.instances
        for k in range(inst.num_instances):
            assert (inst.point_instance[inst.indices[k]] == inst.ids[k]).all()


def test_tentative_tracks_wait_for_min_hits_and_spurious_ones_never_show():
    rng = np.random.default_rng(1)
    tracker = Tracker(TrackingConfig(min_hits=2))
    for t in (1, 2):   # warm-up: everything is published
        assert tracker.update(result(ROOM[:2], rng), t * SEC).instances.num_instances == 2
    ghost = ((5.0, 5.0, 0.5), (0.4, 0.4, 0.4), SOFA, 0.5)
    tracked = tracker.update(result(ROOM[:2] + [ghost], rng), 3 * SEC)
    assert tracked.instances.num_instances == 2     # the newcomer is tentative
    tracked = tracker.update(result(ROOM[:2], rng), 4 * SEC)
    assert tracked.instances.num_instances == 2 and tracked.remembered == []  # never confirmed
    # A real newcomer is published from its second sighting, with a fresh id.
    assert tracker.update(result(ROOM, rng), 5 * SEC).instances.num_instances == 2
    tracked = tracker.update(result(ROOM, rng), 6 * SEC)
    assert tracked.instances.num_instances == 3
    # Ids are handed out when a track starts: chairs 0 and 1, the ghost 2 (never published).
    assert ids_by_position(tracked, ROOM) == [0, 1, 3]


def test_ids_are_never_reused_and_remembered_objects_come_back_with_their_id():
    rng = np.random.default_rng(2)
    cfg = TrackingConfig(min_hits=1, max_age_s=5.0)
    tracker = Tracker(cfg)
    chair, table = ROOM[0], ROOM[2]
    chair_id = ids_by_position(tracker.update(result([chair, table], rng), 1 * SEC), [chair])[0]
    # The chair leaves the window: remembered, with its last geometry, not observed.
    tracked = tracker.update(result([table], rng), 3 * SEC)
    assert [r.id for r in tracked.remembered] == [chair_id]
    memory = tracked.remembered[0]
    assert not memory.info.observed and memory.info.last_seen_ns == SEC
    assert memory.class_id == CHAIR
    np.testing.assert_allclose(memory.centroid, chair[0], atol=0.05)
    # Back in view within max_age_s: same id.
    tracked = tracker.update(result([chair, table], rng), 5 * SEC)
    assert ids_by_position(tracked, [chair])[0] == chair_id and tracked.remembered == []
    # Unobserved for longer than max_age_s: forgotten; when seen again it is a new object.
    tracker.update(result([table], rng), 6 * SEC)
    assert tracker.update(result([table], rng), 10 * SEC + 1).remembered == []
    seen = set()
    for t in range(11, 14):
        tracked = tracker.update(result([chair, table], rng), t * SEC)
        seen |= set(tracked.instances.ids.tolist())
    assert chair_id not in seen
    # reset() forgets the tracks but not the id counter.
    before = max(seen)
    tracker.reset()
    tracked = tracker.update(result([chair, table], rng), 20 * SEC)
    assert tracked.instances.ids.min() > before


def test_class_is_voted_and_score_smoothed():
    rng = np.random.default_rng(3)
    tracker = Tracker(TrackingConfig(min_hits=1, score_smoothing=0.5))
    sequence = [(CHAIR, 0.8), (SOFA, 0.6), (CHAIR, 0.4), (SOFA, 0.3)]
    expected_score = None
    for t, (cls, score) in enumerate(sequence):
        tracked = tracker.update(result([((0, 0, 0.45), (0.5, 0.5, 0.9), cls, score)], rng),
                                 (t + 1) * SEC)
        expected_score = score if expected_score is None else 0.5 * expected_score + 0.5 * score
        inst = tracked.instances
        assert inst.ids.tolist() == [0]
        assert inst.scores[0] == pytest.approx(expected_score, rel=1e-6)
    # Votes: chair 0.8 + 0.4 = 1.2 beats sofa 0.6 + 0.3 = 0.9.
    assert tracked.instances.class_ids.tolist() == [CHAIR]
    assert tracked.instances.point_class.max() == SOFA   # the points keep the model's labels


def test_association_is_optimal_not_greedy():
    # Two tracks A (x=0) and B (x=0.6); detections at 0.35 and 0.95. Greedy would give the
    # detection at 0.35 to B (closer, 0.25 vs 0.35) and leave the other one unmatched;
    # the assignment keeps both objects.
    rng = np.random.default_rng(4)
    cfg = TrackingConfig(min_hits=1, max_distance=0.5, max_cost=0.95)
    tracker = Tracker(cfg)
    a = ((0.0, 0.0, 0.45), (0.5, 0.5, 0.9), CHAIR, 0.9)
    b = ((0.6, 0.0, 0.45), (0.5, 0.5, 0.9), CHAIR, 0.9)
    ids = ids_by_position(tracker.update(result([a, b], rng), SEC), [a, b])
    a2 = ((0.35, 0.0, 0.45), (0.5, 0.5, 0.9), CHAIR, 0.9)
    b2 = ((0.95, 0.0, 0.45), (0.5, 0.5, 0.9), CHAIR, 0.9)
    tracked = tracker.update(result([b2, a2], rng), 2 * SEC)
    assert ids_by_position(tracked, [a2, b2]) == ids


def test_far_or_different_objects_do_not_steal_an_id():
    rng = np.random.default_rng(5)
    tracker = Tracker(TrackingConfig(min_hits=1))
    chair = ROOM[0]
    chair_id = tracker.update(result([chair], rng), SEC).instances.ids[0]
    far = ((2.5, 0.0, 0.45), (0.5, 0.5, 0.9), CHAIR, 0.9)
    tracked = tracker.update(result([far], rng), 2 * SEC)
    assert tracked.instances.ids.tolist() != [chair_id]
    assert [r.id for r in tracked.remembered] == [chair_id]


def test_voxel_keys_are_global_and_sorted():
    a = voxel_keys(np.array([[0.05, 0.05, 0.05], [0.15, 0.05, 0.05], [0.06, 0.01, 0.09]]), 0.1)
    b = voxel_keys(np.array([[-0.05, 0.05, 0.05], [0.12, 0.02, 0.03]]), 0.1)
    assert len(a) == 2 and len(b) == 2 and (np.diff(a) > 0).all()
    assert len(np.intersect1d(a, b)) == 1
    with pytest.raises(ValueError, match="voxels"):
        voxel_keys(np.array([[2.0e5, 0.0, 0.0]]), 0.1)


def test_pipeline_results_keep_ids_and_publish_remembered_objects(factory):  # noqa: F811
    cfg = lidar_config().replace(**{"accumulate.dedupe_voxel": 0.0, "accumulate.window_s": 0.5,
                                    "tracking.min_hits": 1})
    pipe = StreamPipeline(cfg, Segmenter(cfg))
    xyz, _ = room_scene()
    lookup = static_lookup(np.eye(4))
    pipe.ingest("points", cloud_msg(factory, xyz, SEC, frame="map"), lookup)
    first = pipe.segment()
    ids = sorted(first.instances.ids.tolist())
    assert len(ids) == 4
    pipe.ingest("points", cloud_msg(factory, xyz[::-1].copy(), 2 * SEC, frame="map"), lookup)
    second = pipe.segment()
    assert sorted(second.instances.ids.tolist()) == ids
    assert all(second.track_info[i].hits == 2 for i in ids)
    # Keep only the points of one object: the other three are remembered.
    keep_id = int(second.instances.ids[0])
    part = second.instances.points(0)
    pipe.ingest("points", cloud_msg(factory, np.ascontiguousarray(part), 3 * SEC, frame="map"),
                lookup)
    third = pipe.segment()
    assert third.instances.ids.tolist() == [keep_id]
    assert sorted(r.id for r in third.remembered) == sorted(set(ids) - {keep_id})
    msgs = pipe.output_messages(factory, third)
    items = msgs[TOPIC_INSTANCES].instances
    assert [i.observed for i in items] == [True, False, False, False]
    assert sorted(i.id for i in items) == ids
    for item in items[1:]:
        assert item.num_points == 0 and len(item.point_indices) == 0
        assert (item.last_seen.sec, item.first_seen.sec) == (2, 1) and item.hits == 2
    assert (items[0].first_seen.sec, items[0].last_seen.sec, items[0].hits) == (1, 3, 3)
    labels = [m.text for m in msgs[TOPIC_MARKERS].markers if m.ns == "labels"]
    assert sum("seen 1.0 s ago" in text for text in labels) == 3
    # A backwards time jump forgets the tracks; ids stay unique.
    pipe.ingest("points", cloud_msg(factory, xyz, SEC // 2, frame="map"), lookup)
    after = pipe.segment()
    assert after.remembered == [] and after.instances.ids.min() > max(ids)


def test_tracking_off_gives_per_result_ids(factory):  # noqa: F811
    cfg = lidar_config().replace(**{"tracking.enabled": False})
    pipe = StreamPipeline(cfg, Segmenter(cfg))
    assert pipe.tracker is None
    xyz, _ = room_scene()
    for t in (1, 2):
        pipe.ingest("points", cloud_msg(factory, xyz, t * SEC, frame="map"),
                    static_lookup(np.eye(4)))
        res = pipe.segment()
        assert res.instances.ids.tolist() == [0, 1, 2, 3] and res.remembered == []
        items = pipe.output_messages(factory, res)[TOPIC_INSTANCES].instances
        assert all(i.observed and i.hits == 1 and i.first_seen.sec == t for i in items)


def test_tracking_parameters_are_in_the_schema():
    flat = Config().to_flat()
    for key in ("enabled", "min_hits", "max_age_s", "publish_remembered", "voxel_size",
                "max_distance", "max_cost", "class_mismatch_cost", "score_smoothing"):
        assert f"tracking.{key}" in flat


def test_an_empty_result_keeps_every_confirmed_track_in_memory():
    rng = np.random.default_rng(6)
    tracker = Tracker(TrackingConfig(min_hits=1))
    ids = sorted(tracker.update(result(ROOM, rng), SEC).instances.ids.tolist())
    empty = Instances.empty(rng.uniform(-1, 1, (10, 3)).astype(np.float32))
    tracked = tracker.update(empty, 2 * SEC)
    assert tracked.instances.num_instances == 0 and tracked.info == {}
    assert sorted(r.id for r in tracked.remembered) == ids
    assert TrackingConfig(publish_remembered=False).publish_remembered is False
    tracker.cfg = TrackingConfig(min_hits=1, publish_remembered=False)
    assert tracker.update(empty, 3 * SEC).remembered == []
