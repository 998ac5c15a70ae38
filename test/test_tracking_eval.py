"""CLEAR-MOT / IDF1 counting on hand-made frames, and a tiny generated sequence replayed end to end."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import REPO

from ros2_inst3d.tracking_eval import (Frame, bench_tracking, format_tracking, frame_of,
                                       mot_counts, record_sequence, replay_sequence,
                                       sequence_params, track_recorded)


def frame(gt, hyp, iou):
    return Frame(np.array(gt), np.array(hyp), np.array(iou, dtype=float).reshape(len(gt), len(hyp)))


def test_perfect_tracking():
    frames = [frame([0, 1], [10, 11], [[0.9, 0.0], [0.0, 0.8]]) for _ in range(3)]
    c = mot_counts(frames)
    assert (c.gt, c.matches, c.id_switches, c.fragmentations, c.false_positives, c.misses) == \
        (6, 6, 0, 0, 0, 0)
    assert c.mota == 1.0 and c.idf1 == 1.0
    assert c.mean_iou == pytest.approx(0.85)


def test_an_id_switch_costs_mota_and_idf1():
    frames = [frame([0], [5], [[0.9]]), frame([0], [5], [[0.9]]), frame([0], [7], [[0.9]])]
    c = mot_counts(frames)
    assert c.id_switches == 1 and c.fragmentations == 0
    assert c.mota == pytest.approx(1 - 1 / 3)
    assert c.idf1 == pytest.approx(2 * 2 / (3 + 3))
    assert c.id_switches_per_100 == pytest.approx(100 / 3)


def test_a_gap_is_a_fragmentation_not_a_switch():
    frames = [frame([0], [5], [[0.9]]), frame([0], [], []), frame([0], [5], [[0.7]]),
              frame([0], [5], [[0.4]])]   # IoU below 0.5: a miss and a false positive
    c = mot_counts(frames)
    assert (c.id_switches, c.fragmentations, c.misses, c.false_positives) == (0, 1, 2, 1)
    # Absent from the frame (left the view) is neither a miss nor a fragmentation.
    c = mot_counts([frame([0], [5], [[0.9]]), frame([], [], []), frame([0], [5], [[0.9]])])
    assert (c.misses, c.fragmentations, c.gt) == (0, 0, 2)


def test_a_kept_match_wins_over_a_better_newcomer():
    # Frame 2: the old track still overlaps >= 0.5, a new one overlaps more: CLEAR-MOT keeps the
    # correspondence (no switch) and counts the newcomer as a false positive.
    frames = [frame([0], [5], [[0.9]]), frame([0], [5, 6], [[0.6, 0.95]])]
    c = mot_counts(frames)
    assert (c.id_switches, c.false_positives, c.matches) == (0, 1, 2)


def test_identity_assignment_is_global():
    # GT 0 is hyp 5 for 3 frames then hyp 6 for 1: IDTP = 3 (one identity each).
    frames = [frame([0], [5], [[0.9]])] * 3 + [frame([0], [6], [[0.9]])]
    c = mot_counts(frames)
    assert c.idtp == 3 and c.idf1 == pytest.approx(6 / 8)


def test_frame_of_computes_point_iou_and_presence():
    gt = np.array([0, 0, 0, 0, 1, 1, -1, -1, 2])
    f = frame_of(gt, [3, 4], [np.array([0, 1, 2, 6]), np.array([4, 5])], min_gt_points=2)
    assert f.gt_ids.tolist() == [0, 1]      # instance 2 has 1 point: not present
    np.testing.assert_allclose(f.iou, [[3 / 5, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize("tracking", [True, False])
def test_replayed_sequence_is_scored(tracking):
    report = bench_tracking(models=["geometric"], sensors=["rgbd"], num_sequences=1, small=True,
                            tracking=tracking)
    (row,) = report["runs"]
    assert row["frames"] == 8 and row["gt"] > 10
    assert row["matches"] > 0 and 0.5 <= row["mean_iou"] <= 1.0
    if tracking:
        # Every published instance is a track: a geometric cluster of a static object seen in
        # consecutive results keeps its id.
        assert row["tracks"] < row["hypotheses"]
        assert row["id_switches"] <= 1
    else:
        # Per-result ids 0..K-1 reused for other objects: switches appear.
        assert row["id_switches"] > 0
    assert "| geometric | rgbd |" in format_tracking(report)


def test_recorded_results_retracked_offline_equal_the_tracking_pipeline():
    # The sweep (benchmarks/tracking_sweep.py) segments once and re-runs only the tracker per
    # setting; that must score exactly what the pipeline that tracks while it streams scores.
    from ros2_inst3d.bench import bench_point_model
    from ros2_inst3d.config import Config
    from ros2_inst3d.segmenter import Segmenter
    from ros2_inst3d.synthetic.scene import generate_scene, split_seed

    seq = generate_scene(split_seed("val", 0), sequence_params("rgbd", small=True),
                         keep_sequence=True, threads=1).sequence
    cfg = Config().replace(**{"model.name": "geometric", "model.device": "cpu",
                              "tracking.min_hits": 2})
    segmenter = Segmenter(cfg, bench_point_model("geometric", "cpu")[0])
    live = replay_sequence(seq, cfg, segmenter).frames
    recorded = record_sequence(seq, cfg, segmenter)
    assert all(np.array_equal(r.instances.ids, np.arange(r.instances.num_instances))
               for r in recorded)      # recorded untracked: ids per result
    offline = track_recorded(recorded, cfg.tracking)
    assert len(offline) == len(live) == 8
    for a, b in zip(offline, live):
        assert np.array_equal(a.gt_ids, b.gt_ids) and np.array_equal(a.hyp_ids, b.hyp_ids)
        np.testing.assert_array_equal(a.iou, b.iou)
    assert any(len(f.hyp_ids) for f in offline)
    # Another setting changes the frames (min_hits 4 publishes fewer tracks after warm-up).
    fewer = track_recorded(recorded, cfg.replace(**{"tracking.min_hits": 4}).tracking)
    assert sum(len(f.hyp_ids) for f in fewer) < sum(len(f.hyp_ids) for f in offline)


def test_sweep_settings_are_read_as_yaml_values_of_tracking_parameters():
    import argparse
    import importlib.util

    script = REPO / "benchmarks" / "tracking_sweep.py"
    spec = importlib.util.spec_from_file_location("tracking_sweep_under_test", script)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    assert sweep.parse_setting("tracking.min_hits=3") == ("tracking.min_hits", 3)
    assert sweep.parse_setting("tracking.max_age_s=120.5") == ("tracking.max_age_s", 120.5)
    assert sweep.parse_setting("tracking.publish_remembered=false") == \
        ("tracking.publish_remembered", False)
    for bad in ("segment.min_points=10", "tracking.min_hits"):
        with pytest.raises(argparse.ArgumentTypeError):
            sweep.parse_setting(bad)
