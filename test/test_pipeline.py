"""The streaming pipeline the node and the bag tool share: triggers, scan accounting, TF, outputs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cloud_msg, lidar_config, room_scene, static_lookup

from ros2_inst3d.cloud import decode, stamp_to_ns
from ros2_inst3d.pipeline import (
    TOPIC_CLOUD,
    TOPIC_DETECTIONS,
    TOPIC_INSTANCES,
    TOPIC_MARKERS,
    SegmentTrigger,
    StreamPipeline,
)
from ros2_inst3d.segmenter import Segmenter
from ros2_inst3d.transforms import quaternion_from_euler, transform_to_matrix

SEC = 1_000_000_000


# ---- trigger ------------------------------------------------------------------------------

def test_rate_trigger_fires_once_per_period_and_counts_missed_periods():
    trig = SegmentTrigger(rate_hz=2.0, every_n_scans=0)
    assert not trig.poll(0.0)        # starts the clock
    assert not trig.poll(0.4)
    assert trig.poll(0.5)
    assert not trig.poll(0.9)
    assert trig.poll(2.1)            # 1.6 s late: periods at 1.0 and 1.5 were missed
    assert trig.skipped == 2


def test_triggers_while_busy_are_skipped_not_queued():
    trig = SegmentTrigger(rate_hz=1.0, every_n_scans=0)
    trig.poll(0.0)
    assert trig.poll(1.0)
    trig.begin()
    assert not trig.poll(2.0) and not trig.poll(3.0)
    assert trig.skipped == 2
    trig.end()
    assert not trig.poll(3.5)        # nothing queued: the next trigger is a full period later
    assert trig.poll(4.0)


def test_scan_count_trigger_and_disabled_timer():
    trig = SegmentTrigger(rate_hz=0.0, every_n_scans=3)
    for _ in range(2):
        trig.scan_added()
    assert not trig.poll(100.0)
    trig.scan_added()
    assert trig.poll(100.0)
    assert not trig.poll(1000.0)     # the counter restarted; no timer


# ---- ingest and accounting ------------------------------------------------------------------

def test_scans_are_transformed_into_the_fixed_frame(factory):
    cfg = lidar_config().replace(**{"accumulate.dedupe_voxel": 0.0})
    pipe = StreamPipeline(cfg, Segmenter(cfg))
    pose = transform_to_matrix([1.0, 2.0, 0.5], quaternion_from_euler(0, 0, np.pi / 2))
    xyz = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    rec = pipe.ingest("points", cloud_msg(factory, xyz, 5 * SEC), static_lookup(pose))
    assert rec.fate == "pending" and rec.stamp_ns == 5 * SEC
    got = pipe.accumulator.cloud().xyz
    np.testing.assert_allclose(got, [[1.0, 3.0, 0.5], [0.0, 2.0, 0.5]], atol=1e-6)


def test_every_scan_is_accounted_for(factory):
    cfg = lidar_config().replace(**{"accumulate.window_s": 10.0, "accumulate.max_scans": 3})
    pipe = StreamPipeline(cfg, Segmenter(cfg), keep_records=True)
    ident = static_lookup(np.eye(4))
    xyz, _ = room_scene()
    parts = np.array_split(xyz, 4)
    pipe.ingest("points", cloud_msg(factory, parts[0], 1 * SEC), ident)
    pipe.ingest("points", cloud_msg(factory, parts[1], 2 * SEC, frame="elsewhere"), ident)
    bad = cloud_msg(factory, parts[2], 3 * SEC)
    bad.data = bad.data[:-7]
    pipe.ingest("points", bad, ident)
    pipe.ingest("points", cloud_msg(factory, np.zeros((0, 3), np.float32), 4 * SEC), ident)
    nan = parts[2].copy()
    nan[:] = np.nan
    pipe.ingest("points", cloud_msg(factory, nan, 5 * SEC), ident)
    for i, part in enumerate(parts[1:]):
        pipe.ingest("points", cloud_msg(factory, part, (6 + i) * SEC), ident)
    result = pipe.segment()
    assert result is not None
    pipe.ingest("points", cloud_msg(factory, parts[0], 20 * SEC), ident)
    pipe.finish()

    fates = [(r.fate, r.reason) for r in pipe.records]
    assert fates == [
        ("skipped", "expired"),          # pushed out by max_scans=3 before any segmentation
        ("skipped", "no_transform"),
        ("skipped", "malformed"),
        ("skipped", "empty"),
        ("skipped", "empty"),            # every point non-finite: nothing left
        ("merged", ""), ("merged", ""), ("processed", ""),
        ("skipped", "not_segmented"),
    ]
    assert pipe.stats.scans_received == len(pipe.records) == 9
    assert sum(pipe.stats.scans_skipped.values()) + 3 == 9
    assert pipe.stats.points_dropped_non_finite == len(nan)
    assert result.scan_indices == [5, 6, 7]
    assert result.newest_stamp_ns == 8 * SEC and result.oldest_stamp_ns == 6 * SEC
    assert result.num_scans == 3


def test_backwards_time_jump_resets_the_window(factory):
    cfg = lidar_config()
    pipe = StreamPipeline(cfg, Segmenter(cfg), keep_records=True)
    ident = static_lookup(np.eye(4))
    pts = np.random.default_rng(0).uniform(0, 1, (100, 3)).astype(np.float32)
    pipe.ingest("points", cloud_msg(factory, pts, 100 * SEC), ident)
    pipe.ingest("points", cloud_msg(factory, pts + 5, 101 * SEC), ident)
    pipe.ingest("points", cloud_msg(factory, pts, 3 * SEC), ident)   # the bag looped
    assert pipe.stats.time_jumps == 1
    assert [r.reason for r in pipe.records[:2]] == ["time_jump", "time_jump"]
    cloud = pipe.accumulator.cloud()
    assert cloud.num_scans == 1 and cloud.newest_stamp_ns == 3 * SEC
    # A small backwards step (out-of-order scans of two sensors) is not a jump.
    pipe.ingest("points", cloud_msg(factory, pts + 1, 2_600_000_000), ident)
    assert pipe.stats.time_jumps == 1


def test_front_end_clock_jump_poll_and_diagnostics_come_from_the_pipeline(factory):
    """What the node shows on /diagnostics is the pipeline's own account (the node adds only its
    input rate and TF rejections)."""
    cfg = lidar_config().replace(**{"segment.rate_hz": 0.0, "segment.every_n_scans": 2})
    pipe = StreamPipeline(cfg, Segmenter(cfg), keep_records=True)
    report = pipe.diagnostic_values()
    assert report.warning == "no input clouds yet" and report.values["model"] == "geometric"
    ident = static_lookup(np.eye(4))
    pts = np.random.default_rng(0).uniform(0, 1, (100, 3)).astype(np.float32)
    pipe.ingest("points", cloud_msg(factory, pts, 10 * SEC), ident)
    assert not pipe.poll(0.0)
    pipe.ingest("points", cloud_msg(factory, pts + 2, 11 * SEC), ident)
    assert pipe.poll(0.0)                                    # every_n_scans = 2
    pipe.ingest("points", cloud_msg(factory, pts, 12 * SEC), lambda *a: np.eye(3))  # not 4x4
    pipe.note_clock_jump()                                   # e.g. the node's ROS time looped
    report = pipe.diagnostic_values()
    values = report.values
    assert report.warning == "most scans are skipped (see scans_skipped.*)"
    assert values["scans_received"] == 3 and values["time_jumps"] == 1
    assert values["scans_skipped.time_jump"] == 2 and values["scans_skipped.no_transform"] == 1
    assert values["accumulated_points"] == 0 and values["device"] == "cpu"
    assert values["end_to_end_latency_ms"] == "nan" and values["input_clock_offset_s"] == "0.0"
    for k in range(2):
        pipe.ingest("points", cloud_msg(factory, pts + 4 * k, (13 + k) * SEC), ident)
    report = pipe.diagnostic_values()
    assert report.warning is None and report.values["accumulated_points"] > 100
    # Stamps a year behind the clock: reported once, latency not shown, offset shown, a warning.
    year = 365 * 86400 * SEC
    assert pipe.record_end_to_end(year + 11 * SEC, 11 * SEC) == pytest.approx(year / SEC)
    assert pipe.record_end_to_end(year + 12 * SEC, 11 * SEC) is None   # already reported
    report = pipe.diagnostic_values()
    assert report.values["end_to_end_latency_ms"] == "nan"
    assert float(report.values["input_clock_offset_s"]) == pytest.approx(-year / SEC, abs=1)
    assert "disagree" in report.warning
    assert pipe.record_end_to_end(12 * SEC + 250_000_000, 12 * SEC) is None
    report = pipe.diagnostic_values()
    assert report.values["end_to_end_latency_ms"] == "250.0" and report.warning is None


def test_outputs_carry_fixed_frame_and_newest_stamp(factory):
    cfg = lidar_config().replace(**{"input.fixed_frame": "odom", "accumulate.dedupe_voxel": 0.0})
    pipe = StreamPipeline(cfg, Segmenter(cfg))
    xyz, _ = room_scene()
    lookup = static_lookup(np.eye(4))
    pipe.ingest("points", cloud_msg(factory, xyz[::2], 7 * SEC + 5), lookup)
    pipe.ingest("points", cloud_msg(factory, xyz[1::2], 8 * SEC + 250), lookup)
    result = pipe.segment()
    msgs = pipe.output_messages(factory, result)
    assert set(msgs) == {TOPIC_INSTANCES, TOPIC_CLOUD, TOPIC_DETECTIONS, TOPIC_MARKERS}
    for topic, msg in msgs.items():
        header = msg.header if hasattr(msg, "header") else msg.markers[-1].header
        assert header.frame_id == "odom", topic
        assert stamp_to_ns(header.stamp) == 8 * SEC + 250, topic
    inst_msg = msgs[TOPIC_INSTANCES]
    assert stamp_to_ns(inst_msg.oldest_stamp) == 7 * SEC + 5
    assert len(inst_msg.instances) == result.instances.num_instances == 4
    labelled = decode(msgs[TOPIC_CLOUD])
    assert labelled.num_points == len(xyz)
    only = pipe.output_messages(factory, result, wanted={TOPIC_INSTANCES})
    assert set(only) == {TOPIC_INSTANCES}
    labels = pipe.label_message(factory, 8 * SEC)
    assert labels.header.frame_id == "odom"


def test_runtime_config_changes_apply(factory):
    cfg = lidar_config().replace(**{"accumulate.dedupe_voxel": 0.0})
    pipe = StreamPipeline(cfg, Segmenter(cfg))
    xyz, _ = room_scene()
    pipe.ingest("points", cloud_msg(factory, xyz, SEC, frame="map"), static_lookup(np.eye(4)))
    pipe.apply_runtime_config(cfg.replace(**{"segment.min_points": 9000, "segment.rate_hz": 5.0}))
    assert pipe.trigger.period_s == pytest.approx(0.2)
    assert pipe.segment().instances.num_instances == 2


def test_an_unchanged_window_is_not_segmented_again(factory):
    cfg = lidar_config()
    pipe = StreamPipeline(cfg, Segmenter(cfg))
    xyz, _ = room_scene()
    lookup = static_lookup(np.eye(4))
    pipe.ingest("points", cloud_msg(factory, xyz, SEC, frame="map"), lookup)
    assert pipe.segment() is not None
    # The input stopped: the same window would give the same result, at the cost of a model run.
    assert pipe.segment() is None and pipe.segment() is None
    assert pipe.stats.segmentations == 1
    assert pipe.stats.segmentations_skipped["no_new_scans"] == 2
    pipe.ingest("points", cloud_msg(factory, xyz, 2 * SEC, frame="map"), lookup)
    assert pipe.segment().newest_stamp_ns == 2 * SEC
