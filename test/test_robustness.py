"""Bad input never crashes and nothing is lost silently (issue 12): one test per class.

Each class is checked where it enters (decode, file readers, config, checkpoints, bags, the
CLI) with the real code paths; the fuzz suite (test_fuzz.py) then throws random variations of
the same classes at them.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest
import torch
from conftest import REPO, lidar_config

from ros2_inst3d.accumulate import ScanAccumulator
from ros2_inst3d.bag import POINTCLOUD2, TF_TOPIC, TFMESSAGE, segment_bag
from ros2_inst3d.cli import main
from ros2_inst3d.cloud import CloudDecodeError, decode, encode_xyz, ns_to_stamp
from ros2_inst3d.config import ConfigError, Config, from_dict, load_config
from ros2_inst3d.io import CloudFileError, read_cloud
from ros2_inst3d.model.checkpoint import CheckpointError, check_checkpoint, load_checkpoint
from ros2_inst3d.model.registry import build_network, load_model_config
from ros2_inst3d.msgs import MessageFactory, make_typestore
from ros2_inst3d.errors import TransformUnavailable
from ros2_inst3d.pipeline import StreamPipeline
from ros2_inst3d.segmenter import Segmenter
from ros2_inst3d.testing import BagMessage, tf_message, write_scan_bag
from ros2_inst3d.transforms import transform_to_matrix

SEC = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * SEC
FACTORY = MessageFactory.for_rosbags(make_typestore("humble"))


def cloud_msg(xyz, stamp_ns, frame="sensor", rgb=None):
    header = FACTORY("std_msgs/msg/Header", stamp=ns_to_stamp(FACTORY, stamp_ns), frame_id=frame)
    return encode_xyz(FACTORY, header, xyz, rgb)


def identity_lookup(target, source, stamp_ns):
    if source != "sensor":
        raise TransformUnavailable(f"no edge {source} -> {target}")
    return np.eye(4)


def run_cli(argv, capsys):
    """(exit code, stdout, stderr) of the CLI run in this process."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return rc, out, err


def points(n=400, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3)).astype(np.float32)


# ---- stamps ---------------------------------------------------------------------------------

def test_a_stamp_no_output_can_carry_is_refused_at_decode_and_counted():
    msg = cloud_msg(points(), T0)
    msg.header.stamp.sec, msg.header.stamp.nanosec = 2**31 - 1, 1_500_000_000
    with pytest.raises(CloudDecodeError, match="builtin_interfaces/Time"):
        decode(msg)
    cfg = lidar_config()
    pipe = StreamPipeline(cfg, Segmenter(cfg), keep_records=True)
    rec = pipe.ingest("points", msg, identity_lookup)
    assert (rec.fate, rec.reason) == ("skipped", "malformed")


def test_bag_with_an_unrepresentable_stamp_still_writes_its_summary(tmp_path):
    rng = np.random.default_rng(0)
    stamps = [T0 + k * 200 * MS for k in range(3)]
    bad = cloud_msg(points(), T0)
    bad.header.stamp.sec, bad.header.stamp.nanosec = 2**31 - 1, 4_000_000_000
    write_scan_bag(tmp_path / "in", [rng.uniform(-1, 1, (300, 3)).astype(np.float32)
                                     for _ in stamps], stamps, lambda s: np.eye(4),
                   [T0 + k * 50 * MS for k in range(16)],
                   extra=[BagMessage("/points", POINTCLOUD2, T0 + 100 * MS, bad)])
    cfg = lidar_config().replace(**{"segment.min_points": 10})
    summary = segment_bag(tmp_path / "in", tmp_path / "out", cfg, progress=False)
    assert summary["scans"]["total"] == 4
    assert summary["scans"]["skipped_by_reason"] == {"malformed": 1}
    assert (tmp_path / "out" / "summary.json").is_file()


# ---- frame ids, eviction, time jumps --------------------------------------------------------

def test_empty_frame_id_is_refused_unless_a_parameter_names_the_frame():
    cfg = lidar_config()
    pipe = StreamPipeline(cfg, Segmenter(cfg), keep_records=True)
    rec = pipe.ingest("points", cloud_msg(points(), T0, frame=""), identity_lookup)
    assert (rec.fate, rec.reason) == ("skipped", "no_frame_id")
    named = cfg.replace(**{"input.empty_frame_id": "sensor"})
    pipe = StreamPipeline(named, Segmenter(named), keep_records=True)
    rec = pipe.ingest("points", cloud_msg(points(), T0, frame=""), identity_lookup)
    assert rec.fate == "pending" and pipe.accumulator.num_scans == 1


def test_scans_evicted_while_sharing_a_stamp_are_expired_not_merged():
    cfg = lidar_config().replace(**{"accumulate.max_scans": 2, "accumulate.dedupe_voxel": 0.0,
                                    "segment.min_points": 10})
    pipe = StreamPipeline(cfg, Segmenter(cfg), keep_records=True)
    for k in range(3):   # three sensors, one stamp
        pipe.ingest("points", cloud_msg(points(seed=k), T0), identity_lookup)
    assert pipe.segment() is not None
    fates = [(r.fate, r.reason) for r in pipe.records]
    assert fates == [("skipped", "expired"), ("merged", ""), ("processed", "")]
    # the point budget evicts by sequence too
    acc = ScanAccumulator(10.0, 10, 500)
    acc.add(points(400, 1), stamp_ns=T0)
    acc.add(points(400, 2), stamp_ns=T0)
    assert acc.held_sequences() == {1}


def loop_bag(path):
    """5 Hz scans with 20 Hz TF for 2 s, then the recording starts again at its first stamp."""
    rng = np.random.default_rng(3)
    pose = lambda s: transform_to_matrix([0.1 * (s - T0) / SEC, 0, 0], [0, 0, 0, 1])  # noqa
    stamps = [T0 + 100 * MS + k * 200 * MS for k in range(10)]
    tf_stamps = [T0 + k * 50 * MS for k in range(44)]
    scans = [rng.uniform(-1, 1, (300, 3)).astype(np.float32) for _ in stamps]
    loop_ns = 3 * SEC   # bag time keeps going, the stamps go back to T0
    extra = []
    for stamp in tf_stamps:
        extra.append(BagMessage(TF_TOPIC, TFMESSAGE, stamp + loop_ns + 2 * MS, tf_message(
            FACTORY, [("map", "sensor", stamp, pose(stamp))])))
    for xyz, stamp in zip(scans, stamps):
        extra.append(BagMessage("/points", POINTCLOUD2, stamp + loop_ns + 30 * MS,
                                cloud_msg(xyz, stamp)))
    return write_scan_bag(path, scans, stamps, pose, tf_stamps, odom_frame="map",
                          extra=extra)


def test_bag_time_jump_resets_window_and_tf_together(tmp_path):
    loop_bag(tmp_path / "in")
    cfg = lidar_config().replace(**{"segment.min_points": 10, "segment.every_n_scans": 2,
                                    "segment.rate_hz": 0.0})
    summary = segment_bag(tmp_path / "in", tmp_path / "out", cfg, progress=False)
    scans = summary["scans"]
    assert scans["total"] == 20
    assert summary["stats"]["time_jumps"] == 1
    # after the loop every scan finds its TF again (none is lost as no_transform)
    assert "no_transform" not in scans["skipped_by_reason"], scans
    second = [r for r in summary["records"] if r["index"] >= 10]
    assert sum(r["fate"] in ("processed", "merged") for r in second) >= 8


# ---- bags -----------------------------------------------------------------------------------

def small_bag(path, storage="sqlite3", rgb=False):
    rng = np.random.default_rng(1)
    stamps = [T0 + 125 * MS + k * 200 * MS for k in range(4)]
    scans = [rng.uniform(-1, 1, (300, 3)).astype(np.float32) for _ in stamps]
    rgbs = [rng.integers(0, 255, (300, 3), dtype=np.uint8) for _ in stamps] if rgb else None
    return write_scan_bag(path, scans, stamps, lambda s: np.eye(4),
                          [T0 + k * 50 * MS for k in range(20)], storage=storage, rgbs=rgbs)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_or_corrupt_bag_gives_one_line_and_non_zero_exit(tmp_path, capsys, storage):
    small_bag(tmp_path / "in", storage)
    data_file = next(p for p in (tmp_path / "in").iterdir() if p.suffix in (".db3", ".mcap"))
    data = data_file.read_bytes()
    data_file.write_bytes(data[:len(data) // 2])
    rc, _, err = run_cli(["bag", tmp_path / "in", tmp_path / "out", "--model", "geometric",
                          "--no-progress"], capsys)
    assert rc != 0 and "error:" in err
    # garbage in the middle of the storage file
    small_bag(tmp_path / "in2", storage)
    data_file = next(p for p in (tmp_path / "in2").iterdir() if p.suffix in (".db3", ".mcap"))
    data = bytearray(data_file.read_bytes())
    data[len(data) // 3:len(data) // 3 + 4096] = bytes(range(256)) * 16
    data_file.write_bytes(bytes(data))
    rc, _, err = run_cli(["bag", tmp_path / "in2", tmp_path / "out2", "--model", "geometric",
                          "--no-progress"], capsys)
    assert rc != 0 and "error:" in err


def test_things_that_are_not_bags_are_refused_by_name(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a bag\n")
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "cloud.npy", points())
    for path in (tmp_path / "notes.txt", tmp_path / "empty", tmp_path / "cloud.npy"):
        rc, _, err = run_cli(["bag", path, tmp_path / "out", "--model", "geometric"], capsys)
        assert rc == 2 and str(path) in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "out").exists()


def test_bag_that_segments_nothing_exits_non_zero_with_one_throttled_summary(tmp_path, capsys,
                                                                             caplog):
    small_bag(tmp_path / "in")   # no colour: the rgb weights skip every scan as no_color
    cfg_file = tmp_path / "every.yaml"
    rgb_weights = REPO / "models" / "softgroup_synthetic.pth"
    cfg_file.write_text("segment: {every_n_scans: 1, rate_hz: 0.0}\n"
                        f"model: {{checkpoint: '{rgb_weights}'}}\n")
    with caplog.at_level("WARNING"):
        rc, out, err = run_cli(["bag", tmp_path / "in", tmp_path / "out", "-c", cfg_file,
                                "--no-progress"], capsys)
    assert rc == 1 and "no scan was segmented" in err and "no_color" in err
    assert sum("segmentation skipped" in r.getMessage() for r in caplog.records) == 1
    assert out.count("no_color") <= 3   # grouped, not one line per scan
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["scans"]["processed"] == 0


def test_failed_bag_run_leaves_no_partial_output(tmp_path):
    small_bag(tmp_path / "in")

    class Exploding:
        model_name = "exploding"
        class_names = ("a",)

        def segment(self, xyz, rgb, fields=None):
            raise KeyboardInterrupt   # the user stops the run half-way

    with pytest.raises(KeyboardInterrupt):
        segment_bag(tmp_path / "in", tmp_path / "out", lidar_config(), segmenter=Exploding(),
                    progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


# ---- point-cloud files ----------------------------------------------------------------------

def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def zip_with(path, members, method=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)


def bad_numpy_files(tmp_path):
    """(name, bytes or a writer) of every malformed .npy/.npz class."""
    good = npy_bytes(points(50))
    header_end = good.index(b"\n") + 1
    huge_header = good[:header_end].replace(b"(50, 3)", b"(99999999999, 3)")
    files = {
        "empty.npy": b"", "empty.npz": b"",
        "npz_content.npy": None, "npy_content.npz": good,
        "bad_header.npy": good[:10] + b"{'descr': <f4, junk" + good[30:],
        "terabytes.npy": huge_header + good[header_end:],
        "object.npy": b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, "
                      b"'shape': (3,), }" + b" " * 51 + b"\n" + b"\x80" * 40,
    }
    for name, data in files.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    zip_with(tmp_path / "npz_content.npy", {"xyz.npy": good})
    zip_with(tmp_path / "terabytes.npz", {"xyz.npy": huge_header + good[header_end:]})
    zip_with(tmp_path / "not_array.npz", {"xyz.npy": good, "notes.txt": b"hello"})
    zip_with(tmp_path / "bzip_bad.npz", {"xyz.npy": good}, zipfile.ZIP_BZIP2)
    raw = bytearray((tmp_path / "bzip_bad.npz").read_bytes())
    raw[40:60] = b"\xff" * 20
    (tmp_path / "bzip_bad.npz").write_bytes(bytes(raw))
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA):
        name = f"corrupt_{method}.npz"
        zip_with(tmp_path / name, {"xyz.npy": good}, method)
        raw = bytearray((tmp_path / name).read_bytes())
        raw[50:120] = bytes(range(70))
        (tmp_path / name).write_bytes(bytes(raw))
    zip_with(tmp_path / "method.npz", {"xyz.npy": good}, zipfile.ZIP_STORED)
    raw = bytearray((tmp_path / "method.npz").read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):   # claim compression method 99 (AES)
        at = raw.index(sig)
        offset = 8 if sig == b"PK\x03\x04" else 10
        raw[at + offset:at + offset + 2] = struct.pack("<H", 99)
    (tmp_path / "method.npz").write_bytes(bytes(raw))
    zip_with(tmp_path / "encrypted.npz", {"xyz.npy": good}, zipfile.ZIP_STORED)
    raw = bytearray((tmp_path / "encrypted.npz").read_bytes())
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.index(sig)
        raw[at + offset] |= 0x1
    (tmp_path / "encrypted.npz").write_bytes(bytes(raw))
    return sorted(p for p in tmp_path.iterdir() if p.suffix in (".npy", ".npz"))


def test_every_malformed_numpy_file_is_one_clean_error(tmp_path):
    paths = bad_numpy_files(tmp_path)
    assert len(paths) >= 14
    for path in paths:
        with pytest.raises(CloudFileError) as info:
            read_cloud(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message, message
    assert "rename it to .npy" in str(pytest.raises(CloudFileError, read_cloud,
                                                    tmp_path / "npy_content.npz").value)
    assert "declares shape (99999999999, 3)" in str(
        pytest.raises(CloudFileError, read_cloud, tmp_path / "terabytes.npy").value)


def pcd(fields, sizes, types, counts, width, height, points_, data_kind, body):
    header = (f"# .PCD v0.7\nVERSION 0.7\nFIELDS {' '.join(fields)}\nSIZE {' '.join(map(str, sizes))}"
              f"\nTYPE {' '.join(types)}\nCOUNT {' '.join(map(str, counts))}\nWIDTH {width}\n"
              f"HEIGHT {height}\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {points_}\nDATA {data_kind}\n")
    return header.encode() + body


def test_pcd_lies_are_refused_before_anything_big_is_allocated(tmp_path):
    xyz = points(10)
    body = xyz.astype("<f4").tobytes()
    cases = {
        "wxh.pcd": pcd("xyz", [4] * 3, "FFF", [1] * 3, 5, 1, 10, "binary", body),
        "more_records.pcd": pcd("xyz", [4] * 3, "FFF", [1] * 3, 8, 1, 8, "binary", body),
        "count_intensity.pcd": pcd(
            ["x", "y", "z", "intensity"], [4] * 4, "FFFF", [1, 1, 1, 3], 2, 1, 2, "ascii",
            b"nan nan nan 1 2 3\n1 2 3 4 5 6\n"),
        # 12 bytes of LZF claiming 1 GB: refused from the header, nothing is decompressed
        "bomb.pcd": pcd("xyz", [4] * 3, "FFF", [1] * 3, 90_000_000, 1, 90_000_000,
                        "binary_compressed",
                        struct.pack("<II", 12, 1_080_000_000) + b"\x00" * 12),
        "raw_size.pcd": pcd("xyz", [4] * 3, "FFF", [1] * 3, 1, 1, 1, "binary_compressed",
                            struct.pack("<II", 14, 1_000_000) + b"\xff" * 14),
        "ascii_uchar.pcd": pcd(["x", "y", "z", "r", "g", "b"], [4, 4, 4, 1, 1, 1], "FFFUUU",
                               [1] * 6, 1, 1, 1, "ascii", b"1 2 3 300 0 0\n"),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CloudFileError) as info:
            read_cloud(tmp_path / name)
        assert "\n" not in str(info.value), name


def test_ply_lies_are_refused(tmp_path):
    head = "ply\nformat {fmt} 1.0\nelement vertex {n}\nproperty float x\nproperty float y\n" \
           "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n" \
           "end_header\n"
    cases = {
        "int64.ply": head.format(fmt="ascii", n=2**70).encode() + b"0 0 0 1 1 1\n",
        "extra_ascii.ply": head.format(fmt="ascii", n=1).encode() + b"0 0 0 1 1 1\n1 1 1 2 2 2\n",
        "extra_binary.ply": head.format(fmt="binary_little_endian", n=1).encode() + b"\x00" * 30,
        "uchar300.ply": head.format(fmt="ascii", n=1).encode() + b"0 0 0 300 1 1\n",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CloudFileError) as info:
            read_cloud(tmp_path / name)
        assert "\n" not in str(info.value), name


# ---- config ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    {"segment": 3, "segment.rate_hz": 1.0},
    {"/**": {"ros__parameters": [1, 2]}},
    {"segment": {"roi_min": [float("nan"), 0.0, 0.0]}},
    {"segment": {"roi_max": [1.0, float("inf"), 1.0]}},
    {1: {"a": 2}},
    [1, 2, 3],
])
def test_config_shapes_that_used_to_crash_are_config_errors(data):
    with pytest.raises(ConfigError):
        from_dict(data)


def test_non_finite_roi_is_refused_as_a_runtime_change_too():
    with pytest.raises(ConfigError, match="finite"):
        Config().replace(**{"segment.roi_min": [0.0, float("nan"), 0.0]})


def test_yaml_nested_thousands_deep_is_one_config_error(tmp_path):
    (tmp_path / "flow.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "block.yaml").write_text("".join(" " * i + f"k{i}:\n" for i in range(2000)))
    for name in ("flow.yaml", "block.yaml"):
        with pytest.raises(ConfigError, match="deep|nest"):
            load_config(tmp_path / name)


def test_wrong_types_in_a_model_yaml_are_config_errors(tmp_path):
    for body in ("channels: sixteen", "num_blocks: [1, 2]", "voxel_size: '0.05'",
                 "grouping_cfg: {radius: fast}", "test_cfg: [1]"):
        path = tmp_path / "m.yaml"
        path.write_text(f"model:\n  name: softgroup\n  {body}\n")
        with pytest.raises(ConfigError):
            build_network(load_model_config(path), device="meta")


def test_checkpoint_with_bad_embedded_config_or_class_table_is_refused(tmp_path):
    from ros2_inst3d.config import ModelConfig
    from ros2_inst3d.model.inference import LearnedModel

    net = build_network({"name": "softgroup", "channels": 4, "num_blocks": 2,
                       "semantic_classes": 20, "instance_classes": 18})
    state = net.state_dict()
    for extra in ({"config": {"name": "softgroup", "channels": "four"}},
                  {"config": {"name": "softgroup", "channels": 4, "num_blocks": 2},
                   "class_names": 17}):
        path = tmp_path / "c.pth"
        torch.save({"net": state, **extra}, path)
        with pytest.raises(ConfigError):
            LearnedModel.from_config(ModelConfig(name="softgroup", checkpoint=str(path)))


def test_nan_checkpoints_are_reported_and_refused(tmp_path, capsys):
    net = build_network({"name": "softgroup", "channels": 4, "num_blocks": 2,
                       "semantic_classes": 5, "instance_classes": 3})
    state = {k: v.clone() for k, v in net.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 3)
    state[key].view(-1)[:3] = torch.tensor([float("nan"), float("inf"), 1.0])
    torch.save({"net": state}, tmp_path / "nan.pth")
    report = check_checkpoint(tmp_path / "nan.pth", net)
    assert not report.ok and report.non_finite == [(key, 2)]
    assert "NaN/Inf" in report.format()
    with pytest.raises(CheckpointError, match="NaN/Inf"):
        load_checkpoint(net, tmp_path / "nan.pth")
    cfg = tmp_path / "m.yaml"
    cfg.write_text("model: {name: softgroup, channels: 4, num_blocks: 2, semantic_classes: 5, "
                   "instance_classes: 3}\n")
    rc, out, _ = run_cli(["check-checkpoint", tmp_path / "nan.pth", "-c", cfg], capsys)
    assert rc == 1 and key in out


# ---- CLI ------------------------------------------------------------------------------------

def test_segment_png_with_zero_instances_and_bad_paths(tmp_path, capsys):
    np.save(tmp_path / "few.npy", points(30))
    rc, out, _ = run_cli(["segment", tmp_path / "few.npy", "--model", "geometric", "-o",
                          tmp_path / "o", "--png"], capsys)
    assert rc == 0 and "0 instances" in out and (tmp_path / "o" / "few.instances.png").is_file()
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]
    (tmp_path / "afile").write_text("x")
    rc, _, err = run_cli(["segment", tmp_path / "few.npy", "--model", "geometric", "-o",
                          tmp_path / "afile"], capsys)
    assert rc == 2 and "is an existing file" in err
    rc, _, err = run_cli(["segment", tmp_path, "--model", "geometric"], capsys)
    assert rc == 2 and "is a directory" in err


def test_demo_with_zero_instances_writes_its_png(tmp_path, capsys):
    cfg = tmp_path / "none.yaml"
    cfg.write_text("segment: {min_points: 1000000}\n")
    rc, out, _ = run_cli(["demo", "--model", "geometric", "-c", cfg, "-o", tmp_path / "d"],
                         capsys)
    assert rc == 0 and "0 instances" in out
    assert (tmp_path / "d" / "demo_room.instances.png").stat().st_size > 1000
