"""The offline bag tool on bags written here: a moving sensor scanning a known room, with TF,
malformed clouds, both storages; and the real VLP-16 rosbag2 from nebula's test fixtures."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import lidar_config, room_scene
from rosbags.highlevel import AnyReader
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from ros2_inst3d.bag import (
    POINTCLOUD2,
    SUMMARY_FILE,
    BagError,
    _json_safe,
    format_summary,
    output_topic,
    segment_bag,
)
from ros2_inst3d.cli import main
from ros2_inst3d.cloud import decode, encode_xyz, ns_to_stamp, stamp_to_ns
from ros2_inst3d.io import read_cloud
from ros2_inst3d.msgs import MessageFactory, make_typestore
from ros2_inst3d.pipeline import OUTPUT_TYPES
from ros2_inst3d.testing import BagMessage, write_scan_bag
from ros2_inst3d.transforms import (
    apply_transform,
    inverse_matrix,
    quaternion_from_euler,
    transform_to_matrix,
)

SEC = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * SEC
SCAN_STAMPS = [T0 + 125 * MS + k * 200 * MS for k in range(8)]      # 5 Hz
AUX_STAMPS = [T0 + 300 * MS, T0 + 1400 * MS]
TF_STAMPS = [T0 + k * 50 * MS for k in range(40)]                    # 20 Hz, scans fall between
CLOUD_LATENCY = 30 * MS
# Apache-2.0 data shipped with the tests (test/data/README.md).
_NEBULA = Path(__file__).resolve().parent / "data" / "real" / "nebula"
REAL_BAG = _NEBULA / "vlp16_bag"
REAL_SCAN = _NEBULA / "velodyne_vlp16_1673400472138016708.pcd"


def sensor_pose(stamp_ns):
    """odom <- sensor: drives 0.4 m/s along x while turning 0.5 rad/s, 1.2 m up."""
    s = (stamp_ns - T0) / SEC
    return transform_to_matrix([1.0 + 0.4 * s, 2.0 + 0.1 * s, 1.2],
                               quaternion_from_euler(0.0, 0.0, 0.5 * s))


MAP_TO_ODOM = transform_to_matrix([0.5, -0.25, 0.0], quaternion_from_euler(0.0, 0.0, 0.1))


def scan_of_scene(xyz, rng, stamp_ns):
    """Half of the scene's points, seen from the sensor at ``stamp_ns`` (sensor frame)."""
    keep = rng.random(len(xyz)) < 0.5
    map_sensor = MAP_TO_ODOM @ sensor_pose(stamp_ns)
    return apply_transform(inverse_matrix(map_sensor), xyz[keep])


def cloud(factory, xyz, stamp_ns, frame="sensor"):
    header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, stamp_ns), frame_id=frame)
    return encode_xyz(factory, header, xyz)


def malformed_messages(factory, xyz):
    """(bag time, expected reason, message) of every bad scan the scene bag holds on /points."""
    part = xyz[:500]
    truncated = cloud(factory, part, T0 + 330 * MS)
    truncated.data = truncated.data[:-7]
    no_z = cloud(factory, part, T0 + 530 * MS)
    no_z.fields = no_z.fields[:2]
    return [
        (T0 + 10 * MS, "no_transform", cloud(factory, part, T0 - 500 * MS)),  # before any TF
        (T0 + 360 * MS, "malformed", truncated),
        (T0 + 560 * MS, "malformed", no_z),
        (T0 + 760 * MS, "empty", cloud(factory, np.zeros((0, 3), np.float32), T0 + 730 * MS)),
        (T0 + 960 * MS, "no_transform", cloud(factory, part, T0 + 930 * MS, frame="ghost_lidar")),
        (T0 + 1160 * MS, "undecodable", b"\x00\x01\x00\x00" + bytes(10)),
    ]


def huge_coordinate_message(factory, xyz, rng):
    """A real scan with 10 points at float max ("no return"); those must be dropped, the rest
    used: (bag time, message)."""
    part = scan_of_scene(xyz, rng, T0 + 1330 * MS)
    part[:10] = 3e38
    return T0 + 1360 * MS, cloud(factory, part, T0 + 1330 * MS)


def write_scene_bag(path, storage, distro):
    factory = MessageFactory.for_rosbags(make_typestore(distro))
    xyz, _ = room_scene()
    rng = np.random.default_rng(7)
    scans = [scan_of_scene(xyz, rng, s) for s in SCAN_STAMPS]
    bad = malformed_messages(factory, xyz)
    extra = [BagMessage("/points", POINTCLOUD2, t, msg) for t, _, msg in bad]
    extra.append(BagMessage("/points", POINTCLOUD2, *huge_coordinate_message(factory, xyz, rng)))
    extra += [BagMessage("/aux/points", POINTCLOUD2, s + CLOUD_LATENCY,
                         cloud(factory, scan_of_scene(xyz, rng, s), s)) for s in AUX_STAMPS]
    write_scan_bag(path, scans, SCAN_STAMPS, sensor_pose, TF_STAMPS, map_to_odom=MAP_TO_ODOM,
                   cloud_latency_ns=CLOUD_LATENCY, extra=extra, storage=storage, distro=distro)
    return {t: reason for t, reason, _ in bad}


@pytest.fixture(scope="module", params=[("mcap", "humble"), ("sqlite3", "jazzy")],
                ids=["mcap-humble", "sqlite3-jazzy"])
def scene_run(request, tmp_path_factory):
    storage, distro = request.param
    root = tmp_path_factory.mktemp(f"bag_{storage}")
    expected_bad = write_scene_bag(root / "in", storage, distro)
    summary = segment_bag(root / "in", root / "out", lidar_config(), distro=distro, progress=False)
    return {"in": root / "in", "out": root / "out", "summary": summary, "bad": expected_bad,
            "storage": storage, "distro": distro}


def read_all(path):
    """{topic: [(bag time, raw, message or None)]} of a bag, via its own embedded definitions."""
    out = {}
    with AnyReader([Path(path)]) as reader:
        for conn, t, raw in reader.messages():
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception:  # noqa: BLE001 - the deliberately corrupt input message
                msg = None
            out.setdefault(conn.topic, []).append((t, bytes(raw), msg))
    return out


# ---- the account ------------------------------------------------------------------------------

def test_every_input_scan_is_processed_merged_or_skipped_for_its_reason(scene_run):
    summary, bad = scene_run["summary"], scene_run["bad"]
    scans = summary["scans"]
    num_input = len(SCAN_STAMPS) + len(AUX_STAMPS) + len(bad) + 1
    assert scans["total"] == len(summary["records"]) == num_input
    assert scans["processed"] + scans["merged"] + scans["skipped"] == num_input
    assert scans["processed"] == len(summary["segmentations"]) == 2
    # + 1: the scan with 10 float-max points is used without them.
    assert scans["merged"] == len(SCAN_STAMPS) + len(AUX_STAMPS) + 1 - 2
    assert summary["topics"] == ["/aux/points", "/points"]
    by_time = {rec["bag_time_ns"]: rec for rec in summary["records"]}
    for t, reason in bad.items():
        rec = by_time[t]
        assert rec["fate"] == "skipped", rec
        if reason is not None:
            assert rec["reason"] == reason, rec
        if rec["reason"] != "empty":
            assert rec["detail"], rec   # the error message says why
    assert "ghost_lidar" in by_time[T0 + 960 * MS]["detail"]
    assert "into the past" in by_time[T0 + 10 * MS]["detail"]
    assert "'z'" in by_time[T0 + 560 * MS]["detail"]
    good = [rec for rec in summary["records"] if rec["bag_time_ns"] not in bad]
    assert all(rec["fate"] in ("processed", "merged") for rec in good)
    reasons = [rec["reason"] for rec in summary["records"] if rec["fate"] == "skipped"]
    assert scans["skipped_by_reason"] == {r: reasons.count(r) for r in set(reasons)}
    # The printed account states the same numbers.
    text = format_summary(summary)
    assert f"{num_input} = 2 processed + {scans['merged']} merged + {len(bad)} skipped" in text


def test_summary_file_holds_the_returned_account(scene_run):
    written = json.loads((scene_run["out"] / SUMMARY_FILE).read_text())
    assert written == json.loads(json.dumps(_json_safe(scene_run["summary"])))
    assert written["storage"] == scene_run["storage"] and written["distro"] == scene_run["distro"]


# ---- the output bag ---------------------------------------------------------------------------

def test_output_bag_is_self_describing_with_every_output_topic(scene_run):
    out = scene_run["out"]
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8
    assert meta["storage_identifier"] == scene_run["storage"]
    with AnyReader([out]) as reader:   # no default typestore: the bag must carry definitions
        types = {t: info.msgtype for t, info in reader.topics.items()}
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    for name, msgtype in OUTPUT_TYPES.items():
        assert types[output_topic(name)] == msgtype
    assert qos["/instances/labels"][0].durability.name == "TRANSIENT_LOCAL"
    assert qos["/tf_static"][0].durability.name == "TRANSIENT_LOCAL"

    msgs = read_all(out)
    segs = scene_run["summary"]["segmentations"]
    assert len(msgs["/instances/labels"]) == 1
    assert msgs["/instances/labels"][0][2].class_map[4].class_name == "chair"
    records = scene_run["summary"]["records"]
    for name in ("instances", "instances/cloud", "instances/detections", "instances/markers"):
        got = msgs[output_topic(name)]
        assert len(got) == len(segs), name
        for (t, _, msg), seg in zip(got, segs):
            assert msg is not None, name
            header = msg.header if hasattr(msg, "header") else msg.markers[-1].header
            assert header.frame_id == "map", name
            newest_used = max(records[i]["stamp_ns"] for i in seg["scan_indices"])
            assert stamp_to_ns(header.stamp) == seg["stamp_ns"] == newest_used, name
            processed = [records[i] for i in seg["scan_indices"] if records[i]["fate"] == "processed"]
            assert processed and processed[0]["stamp_ns"] == newest_used
            assert t == seg["bag_time_ns"]   # written when the trigger fired, in bag time
    # The last result covers the scans pending at the end of the bag, written at its end.
    assert segs[-1]["bag_time_ns"] == max(t for m in read_all(scene_run["in"]).values()
                                          for t, _, _ in m)


def test_input_is_copied_byte_for_byte(scene_run):
    before, after = read_all(scene_run["in"]), read_all(scene_run["out"])
    for topic in ("/points", "/aux/points", "/tf", "/tf_static"):
        assert [(t, raw) for t, raw, _ in after[topic]] == [(t, raw) for t, raw, _ in before[topic]]
    assert scene_run["summary"]["not_copied"] == {}


def test_labelled_clouds_lie_on_the_scene_so_tf_was_interpolated(scene_run):
    # Scan stamps fall halfway between 20 Hz TF samples of a sensor moving 0.4 m/s and turning
    # 0.5 rad/s: using the nearest sample instead would misplace points by centimetres.
    xyz, _ = room_scene()
    tree = cKDTree(xyz)
    clouds = read_all(scene_run["out"])["/instances/cloud"]
    for (_, _, msg), seg in zip(clouds, scene_run["summary"]["segmentations"]):
        scan = decode(msg)
        assert scan.num_points == seg["num_points"] > len(xyz) // 2
        distance, _ = tree.query(scan.xyz)
        assert distance.max() < 1e-4
        fields = {f.name for f in msg.fields}
        assert {"instance_id", "class_id", "score", "rgb"} <= fields


def test_instances_match_the_scene_objects(scene_run):
    # Ground-plane centroids and heights: the boxes' bottom faces lie on the floor and go with
    # it, which moves 3D centroids up but not in x/y.
    xyz, gt = room_scene()
    objects = range(gt.max() + 1)
    truth_xy = np.array([xyz[gt == k, :2].mean(axis=0) for k in objects])
    truth_top = np.array([xyz[gt == k, 2].max() for k in objects])
    for _, _, msg in read_all(scene_run["out"])["/instances"]:
        found_xy = np.array([[i.centroid.x, i.centroid.y] for i in msg.instances])
        assert len(found_xy) == len(truth_xy)
        cost = np.linalg.norm(found_xy[:, None] - truth_xy[None], axis=2)
        rows, cols = linear_sum_assignment(cost)
        assert cost[rows, cols].max() < 0.05
        tops = np.array([msg.instances[r].max_z for r in rows])
        np.testing.assert_allclose(tops, truth_top[cols], atol=0.02)
        assert msg.model_name == "geometric"


# ---- arguments --------------------------------------------------------------------------------

def test_topic_selection_limit_and_missing_topics(scene_run, tmp_path):
    summary = segment_bag(scene_run["in"], tmp_path / "out", lidar_config(), topics=["points"],
                          limit=3, progress=False)
    assert summary["topics"] == ["/points"]
    assert summary["scans"]["total"] == 3 and summary["limit"] == 3
    assert summary["truncated_at_ns"] is not None
    assert {rec["topic"] for rec in summary["records"]} == {"/points"}
    last_read = max(rec["bag_time_ns"] for rec in summary["records"])
    assert summary["truncated_at_ns"] == last_read
    output = read_all(tmp_path / "out")
    assert len(output["/points"]) == 3   # the input is copied up to the last scan read
    assert len(output["/aux/points"]) == 1
    assert max(t for msgs in output.values() for t, _, _ in msgs) == last_read
    with pytest.raises(BagError, match=r"/lidar/front.*PointCloud2 topics: /aux/points, /points"):
        segment_bag(scene_run["in"], tmp_path / "other", lidar_config(), topics=["/lidar/front"],
                    progress=False)
    with pytest.raises(BagError, match="exists already"):
        segment_bag(scene_run["in"], tmp_path / "out", lidar_config(), progress=False)
    with pytest.raises(FileNotFoundError):
        segment_bag(tmp_path / "missing", tmp_path / "x", lidar_config(), progress=False)


def test_rerun_on_an_output_bag_replaces_the_old_results(scene_run, tmp_path):
    summary = segment_bag(scene_run["out"], tmp_path / "again", lidar_config(), topics=["/points"],
                          limit=4, progress=False)
    # The input now holds MarkerArray etc.: their definitions decide the distro.
    assert summary["distro"] == scene_run["distro"]
    assert set(summary["not_copied"]) == {output_topic(n) for n in OUTPUT_TYPES}
    msgs = read_all(tmp_path / "again")
    assert len(msgs["/instances"]) == len(summary["segmentations"]) >= 1
    assert len(msgs["/instances/labels"]) == 1


def small_bag(path, tf_latency_ns, storage):
    """Three 300-point scans at 5 Hz with 20 Hz TF received ``tf_latency_ns`` after its stamps."""
    rng = np.random.default_rng(1)
    stamps = [T0 + 125 * MS + k * 200 * MS for k in range(3)]
    scans = [rng.uniform(-1, 1, (300, 3)).astype(np.float32) for _ in stamps]
    return write_scan_bag(path, scans, stamps, sensor_pose, TF_STAMPS[:16],
                          tf_latency_ns=tf_latency_ns, storage=storage)


def test_tf_arriving_after_the_scan_is_waited_for(tmp_path):
    # TF is received 100 ms after its stamp, clouds 30 ms after theirs: at a cloud's arrival the
    # sample after its stamp is not in the bag yet. Waiting in bag time (tf_wait_s) fixes it.
    small_bag(tmp_path / "in", 100 * MS, "sqlite3")
    cfg = lidar_config().replace(**{"segment.min_points": 10})
    hasty = segment_bag(tmp_path / "in", tmp_path / "hasty", cfg, tf_wait_s=0.0, progress=False)
    assert hasty["scans"]["skipped_by_reason"] == {"no_transform": 3}
    assert all("into the future" in rec["detail"] for rec in hasty["records"])
    patient = segment_bag(tmp_path / "in", tmp_path / "patient", cfg, progress=False)
    assert patient["scans"]["skipped"] == 0
    assert patient["scans"]["processed"] + patient["scans"]["merged"] == 3


def test_bag_command_prints_the_account_and_honours_the_storage(tmp_path, capsys):
    small_bag(tmp_path / "in", 2 * MS, "mcap")
    assert main(["bag", str(tmp_path / "in"), str(tmp_path / "out"), "--model", "geometric",
                 "--fixed-frame", "odom", "--distro", "jazzy", "--storage", "sqlite3",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "input scans on /points: 3 = " in printed
    assert "(sqlite3, rosbag2 v8, jazzy definitions, model geometric, fixed frame 'odom')" \
        in printed
    assert str(tmp_path / "out" / SUMMARY_FILE) in printed
    meta = yaml.safe_load((tmp_path / "out" / "metadata.yaml").read_text())
    assert meta["rosbag2_bagfile_information"]["storage_identifier"] == "sqlite3"
    summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert summary["fixed_frame"] == "odom"
    assert summary["tf"]["frames"] == ["map", "odom", "sensor"]


# ---- the real VLP-16 bag ----------------------------------------------------------------------

def test_real_vlp16_packet_bag_opens_and_is_refused_with_its_topics(tmp_path):
    with AnyReader([REAL_BAG], default_typestore=make_typestore("humble")) as reader:
        assert {t: i.msgtype for t, i in reader.topics.items()} == {
            "/velodyne_packets": "velodyne_msgs/msg/VelodyneScan"}
        assert reader.message_count == 4
    with pytest.raises(BagError, match=r"no sensor_msgs/msg/PointCloud2 topic.*"
                                       r"/velodyne_packets \(velodyne_msgs/msg/VelodyneScan\)"):
        segment_bag(REAL_BAG, tmp_path / "out", lidar_config(), progress=False)


def add_cloud_to_humble_bag(bag, topic, time_ns, raw):
    """Append a topic and one message to a Humble (metadata v5, sqlite3) bag, as ros2 bag record
    would have written them: the topics/messages tables and metadata.yaml."""
    meta_path = bag / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    info = meta["rosbag2_bagfile_information"]
    db = bag / info["relative_file_paths"][0]
    with sqlite3.connect(db) as conn:
        topic_id = conn.execute("SELECT MAX(id) FROM topics").fetchone()[0] + 1
        conn.execute("INSERT INTO topics VALUES (?, ?, ?, 'cdr', '')",
                     (topic_id, topic, POINTCLOUD2))
        conn.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)",
                     (topic_id, time_ns, bytes(raw)))
    conn.close()
    info["topics_with_message_count"].append({"topic_metadata": {
        "name": topic, "type": POINTCLOUD2, "serialization_format": "cdr",
        "offered_qos_profiles": ""}, "message_count": 1})
    info["message_count"] += 1
    info["files"][0]["message_count"] += 1
    meta_path.write_text(yaml.safe_dump(meta))


def test_real_vlp16_scan_in_the_real_bag_is_segmented_end_to_end(tmp_path):
    # nebula's reference decoding of the bag's packets (the PCD), added to a copy of the real
    # Humble bag at the stamp of the scan's last packet: what recording the driver's packets and
    # points together gives. No TF: the fixed frame is the sensor frame.
    bag = tmp_path / "vlp16_bag"
    shutil.copytree(REAL_BAG, bag)
    for path in bag.iterdir():
        path.chmod(0o644)
    with AnyReader([bag], default_typestore=make_typestore("humble")) as reader:
        last_packet_ns = max(t for _, t, _ in reader.messages())
    assert str(last_packet_ns) in REAL_SCAN.name
    real = read_cloud(REAL_SCAN)
    store = make_typestore("humble")
    factory = MessageFactory.for_rosbags(store)
    msg = cloud(factory, real.xyz, last_packet_ns, frame="velodyne")
    add_cloud_to_humble_bag(bag, "/velodyne_points", last_packet_ns,
                            store.serialize_cdr(msg, POINTCLOUD2))

    summary = segment_bag(bag, tmp_path / "out", lidar_config(), fixed_frame="velodyne",
                          progress=False)
    assert summary["input_ros_distro"] == "humble"       # from the sqlite3 schema table
    assert summary["storage"] == "sqlite3"
    assert summary["scans"] == {"total": 1, "processed": 1, "merged": 0, "skipped": 0,
                                "skipped_by_reason": {}}
    assert "no definition" in summary["not_copied"]["/velodyne_packets"]
    msgs = read_all(tmp_path / "out")
    labelled = decode(msgs["/instances/cloud"][0][2])
    # Fixed frame = sensor frame: points are untouched; the 2 cm dedupe merges dual returns.
    assert labelled.num_points == summary["segmentations"][0]["num_points"] > len(real.xyz) // 2
    distance, _ = cKDTree(real.xyz).query(labelled.xyz)
    assert distance.max() == 0.0
    instances = msgs["/instances"][0][2]
    assert instances.header.frame_id == "velodyne"
    assert stamp_to_ns(instances.header.stamp) == last_packet_ns
    assert len(instances.instances) == summary["segmentations"][0]["num_instances"]
    assert len(msgs["/instances/detections"][0][2].detections) == len(instances.instances)
    assert [t for t, _, _ in msgs["/velodyne_points"]] == [last_packet_ns]
