"""Point-cloud file readers and result writers (ros2_inst3d/io.py).

Every format is written here by a small independent writer (or by open3d), read back with
``read_cloud`` and compared; the LZF decoder is checked against a byte-by-byte reference and
hand-made streams; real files are cross-checked against open3d and their dataset card: the
Apache-2.0 nebula LiDAR frames shipped in test/data/real/, the package's MIT-0 furniture meshes,
and (only where ../shared/data/real sits beside the repository, since their licences forbid
copying them here) SemanticKITTI and mOSD.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ros2_inst3d.instances import Instances
from ros2_inst3d.io import (
    CloudFileError,
    colors_to_uint8,
    contiguous_instance_labels,
    lzf_decompress,
    read_cloud,
    unpack_rgb,
    write_instances_ply,
    write_results,
)
from ros2_inst3d.outputs import UNASSIGNED_COLOR, instance_color

SHIPPED_REAL_DATA = Path(__file__).resolve().parent / "data" / "real"
MESHES = Path(__file__).resolve().parents[1] / "ros2_inst3d" / "synthetic" / "meshes"
# Non-redistributable data (SemanticKITTI: CC BY-NC-SA; mOSD: licence unclear) is never copied
# into the repository; its tests read the shared folder beside it and skip when it is absent.
UNSHIPPED_REAL_DATA = Path(os.environ.get("ROS2_INST3D_REAL_DATA",
                                          Path(__file__).resolve().parents[2] / "shared" / "data"
                                          / "real"))


@pytest.fixture(scope="module")
def unshipped() -> Path:
    if not UNSHIPPED_REAL_DATA.is_dir():
        pytest.skip(f"{UNSHIPPED_REAL_DATA} not present: SemanticKITTI and mOSD may not be "
                    "copied into the repository (set ROS2_INST3D_REAL_DATA to their folder)")
    return UNSHIPPED_REAL_DATA


# --------------------------------------------------------------------------------------------
# independent helpers: LZF reference decoder and two encoders, PCD and PLY writers


def lzf_reference_decompress(data: bytes) -> bytes:
    """liblzf's decoder, one byte at a time: slow and obviously right."""
    out = bytearray()
    i = 0
    while i < len(data):
        ctrl = data[i]
        i += 1
        if ctrl < 32:
            for _ in range(ctrl + 1):
                out.append(data[i])
                i += 1
        else:
            length = ctrl >> 5
            if length == 7:
                length += data[i]
                i += 1
            ref = len(out) - ((ctrl & 31) << 8) - data[i] - 1
            i += 1
            for _ in range(length + 2):
                out.append(out[ref])
                ref += 1
    return bytes(out)


def lzf_compress_literals(raw: bytes) -> bytes:
    """The simplest valid LZF stream: literal runs of up to 32 bytes."""
    out = bytearray()
    for start in range(0, len(raw), 32):
        chunk = raw[start:start + 32]
        out.append(len(chunk) - 1)
        out += chunk
    return bytes(out)


def lzf_compress_greedy(raw: bytes) -> bytes:
    """A greedy LZF encoder with back-references (3..264 bytes, up to 8192 back, overlapping)."""
    out = bytearray()
    literal = bytearray()
    last: dict[bytes, int] = {}

    def flush() -> None:
        for s in range(0, len(literal), 32):
            chunk = literal[s:s + 32]
            out.append(len(chunk) - 1)
            out.extend(chunk)
        literal.clear()

    i = 0
    while i < len(raw):
        key = raw[i:i + 3]
        ref = last.get(key) if len(key) == 3 else None
        last[key] = i
        if ref is not None and i - ref <= 8192:
            length = 3
            while (length < 264 and i + length < len(raw)
                   and raw[ref + length] == raw[i + length]):
                length += 1
            flush()
            distance = i - ref - 1
            code = length - 2
            if code < 7:
                out.append((code << 5) | (distance >> 8))
            else:
                out.append((7 << 5) | (distance >> 8))
                out.append(code - 7)
            out.append(distance & 0xFF)
            i += length
        else:
            literal.append(raw[i])
            i += 1
    flush()
    return bytes(out)


def write_pcd(path: Path, columns: list[tuple[str, str, np.ndarray]], data: str,
              compressor=lzf_compress_greedy, width: int | None = None) -> None:
    """PCD v0.7 writer. columns: (name, TYPE letter, values (N,) or (N, COUNT))."""
    n = columns[0][2].shape[0]
    arrays = [(name, t, np.asarray(v)[:, None] if np.ndim(v) == 1 else np.asarray(v))
              for name, t, v in columns]
    width = n if width is None else width
    header = ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
              f"FIELDS {' '.join(a[0] for a in arrays)}\n"
              f"SIZE {' '.join(str(a[2].dtype.itemsize) for a in arrays)}\n"
              f"TYPE {' '.join(a[1] for a in arrays)}\n"
              f"COUNT {' '.join(str(a[2].shape[1]) for a in arrays)}\n"
              f"WIDTH {width}\nHEIGHT {n // max(width, 1)}\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\n"
              f"DATA {data}\n")
    if data == "ascii":
        rows = []
        for i in range(n):
            vals = []
            for name, t, a in arrays:
                for v in a[i]:
                    if name == "rgb" and t == "F":  # PCL writes float-packed rgb as its uint32 bits
                        vals.append(str(int(np.float32(v).view(np.uint32))))
                    elif t == "F":
                        vals.append(repr(float(v)) if np.isfinite(v) else "nan")
                    else:
                        vals.append(str(int(v)))
            rows.append(" ".join(vals))
        body = ("\n".join(rows) + "\n").encode()
    elif data == "binary":
        dtype = np.dtype([(f"f{k}", a.dtype.newbyteorder("<"), (a.shape[1],))
                          for k, (_, _, a) in enumerate(arrays)])
        table = np.empty(n, dtype=dtype)
        for k, (_, _, a) in enumerate(arrays):
            table[f"f{k}"] = a
        body = table.tobytes()
    else:
        raw = b"".join(np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"))).tobytes()
                       for _, _, a in arrays)
        packed = compressor(raw)
        body = struct.pack("<II", len(packed), len(raw)) + packed
    path.write_bytes(header.encode() + body)


def write_ply(path: Path, columns: list[tuple[str, str, np.ndarray]], fmt: str,
              before: bytes = b"", before_header: str = "", faces: int = 0) -> None:
    """PLY writer. columns: (name, PLY type, values (N,)); optional element before the vertices
    and a face element after them."""
    n = columns[0][2].shape[0]
    codes = {"float": "f4", "double": "f8", "uchar": "u1", "int": "i4", "ushort": "u2"}
    header = f"ply\nformat {fmt} 1.0\ncomment written by test_io\n{before_header}"
    header += f"element vertex {n}\n" + "".join(f"property {t} {name}\n" for name, t, _ in columns)
    if faces:
        header += f"element face {faces}\nproperty list uchar int vertex_indices\n"
    header += "end_header\n"
    if fmt == "ascii":
        lines = [" ".join(repr(float(v)) if t in ("float", "double") else str(int(v))
                          for (_, t, _), v in zip(columns, row))
                 for row in zip(*(c[2] for c in columns))]
        body = "".join(line + "\n" for line in lines).encode()
        body += b"".join(b"3 0 1 2\n" for _ in range(faces))
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, order + codes[t]) for name, t, _ in columns])
        table = np.empty(n, dtype=dtype)
        for name, _, values in columns:
            table[name] = values
        body = table.tobytes()
        face = struct.pack(order + "Biii", 3, 0, 1, 2)
        body += face * faces
    path.write_bytes(header.encode() + before + body)


def random_cloud(n: int, seed: int = 0, nan_rows: int = 0):
    rng = np.random.default_rng(seed)
    xyz = rng.normal(scale=5.0, size=(n, 3)).astype(np.float32)
    xyz[rng.choice(n, nan_rows, replace=False), rng.integers(0, 3)] = np.nan
    rgb = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
    intensity = rng.random(n, dtype=np.float32) * 100
    return xyz, rgb, intensity


def pack(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[:, k].astype(np.uint32) for k in range(3))
    return (r << 16) | (g << 8) | b


# --------------------------------------------------------------------------------------------
# LZF


def test_lzf_hand_made_streams():
    # literal "abc", then a back-reference of 3 bytes, 3 back: "abcabc"
    assert lzf_decompress(b"\x02abc\x20\x02", 6) == b"abcabc"
    # literal "a", then an overlapping copy 1 back of 7 + 10 + 2 = 19 bytes (extended length)
    assert lzf_decompress(b"\x00a\xe0\x0a\x00", 20) == b"a" * 20
    # 12-bit distance: 300 literal-ish bytes then a copy from 300 back (high bits in the ctrl)
    raw = bytes(range(256)) + bytes(range(44))
    stream = lzf_compress_literals(raw) + bytes([(2 << 5) | (299 >> 8), 299 & 0xFF])
    assert lzf_decompress(stream, 304) == raw + raw[:4]


def test_lzf_matches_reference_on_compressible_data():
    rng = np.random.default_rng(3)
    raw = (np.repeat(rng.integers(0, 4, 3000), rng.integers(1, 40, 3000)).astype(np.uint8)
           .tobytes() + bytes(5000) + rng.bytes(700))
    stream = lzf_compress_greedy(raw)
    assert len(stream) < len(raw) // 2  # the encoder really emitted back-references
    assert lzf_reference_decompress(stream) == raw
    assert lzf_decompress(stream, len(raw)) == raw


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 3))
def test_lzf_roundtrip_property(raw, repeats):
    raw = raw * (repeats + 1)  # repetitions give back-references
    for stream in (lzf_compress_literals(raw), lzf_compress_greedy(raw)):
        assert lzf_decompress(stream, len(raw)) == lzf_reference_decompress(stream) == raw


@pytest.mark.parametrize("stream, size, reason", [
    (b"\x05ab", 6, "truncated"),            # literal run longer than the input
    (b"\x00a\x20\x05", 4, "before the start"),  # reference 6 bytes back after 1 byte of output
    (b"\x00a\xe0", 20, "truncated"),        # extended length byte missing
    (b"\x02abc", 4, "header says 4"),        # decompresses to fewer bytes than declared
])
def test_lzf_rejects_corrupt_streams(stream, size, reason):
    with pytest.raises(ValueError, match=reason):
        lzf_decompress(stream, size)


# --------------------------------------------------------------------------------------------
# PCD


@pytest.mark.parametrize("data", ["ascii", "binary", "binary_compressed"])
def test_pcd_roundtrip_all_encodings(tmp_path, data):
    n = 500
    xyz, rgb, intensity = random_cloud(n, seed=1, nan_rows=7)
    rng = np.random.default_rng(2)
    label = rng.integers(0, 2**32, n, dtype=np.uint32)
    normal = rng.normal(size=(n, 3)).astype(np.float32)
    ring = rng.integers(-300, 300, n).astype(np.int16)
    path = tmp_path / f"cloud_{data}.pcd"
    write_pcd(path, [("x", "F", xyz[:, 0]), ("y", "F", xyz[:, 1]), ("z", "F", xyz[:, 2]),
                     ("rgb", "F", pack(rgb).view(np.float32)), ("intensity", "F", intensity),
                     ("label", "U", label), ("normal", "F", normal), ("ring", "I", ring),
                     ("_", "U", np.zeros((n, 2), np.uint8))], data)
    cloud = read_cloud(path)
    keep = np.isfinite(xyz).all(axis=1)
    assert cloud.dropped_non_finite == 7 and cloud.num_points == n - 7
    np.testing.assert_array_equal(cloud.xyz, xyz[keep])
    np.testing.assert_array_equal(cloud.rgb, rgb[keep])
    np.testing.assert_array_equal(cloud.intensity, intensity[keep])
    np.testing.assert_array_equal(cloud.extra["label"], label[keep])
    np.testing.assert_array_equal(cloud.extra["normal"], normal[keep])
    np.testing.assert_array_equal(cloud.extra["ring"], ring[keep])
    assert cloud.extra["ring"].dtype == np.int16
    assert set(cloud.extra) == {"label", "normal", "ring"}  # padding "_" is not a field
    assert cloud.xyz.dtype == np.float32 and cloud.rgb.dtype == np.uint8


@pytest.mark.parametrize("data", ["ascii", "binary", "binary_compressed"])
def test_pcd_uint32_rgba_and_organised_layout(tmp_path, data):
    n = 12 * 10
    xyz, rgb, _ = random_cloud(n, seed=4)
    rgba = pack(rgb) | np.uint32(0xFF000000)  # alpha bits must not leak into the colour
    path = tmp_path / "organised.pcd"
    write_pcd(path, [("x", "F", xyz[:, 0]), ("y", "F", xyz[:, 1]), ("z", "F", xyz[:, 2]),
                     ("rgba", "U", rgba)], data, compressor=lzf_compress_literals, width=12)
    cloud = read_cloud(path)
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_array_equal(cloud.rgb, rgb)
    assert cloud.intensity is None


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 40), data=st.sampled_from(["ascii", "binary", "binary_compressed"]),
       seed=st.integers(0, 2**16))
def test_pcd_roundtrip_property(tmp_path, n, data, seed):
    xyz, rgb, intensity = random_cloud(n, seed=seed)
    path = tmp_path / "p.pcd"
    write_pcd(path, [("x", "F", xyz[:, 0]), ("y", "F", xyz[:, 1]), ("z", "F", xyz[:, 2]),
                     ("intensity", "U", (intensity).astype(np.uint16))], data)
    cloud = read_cloud(path)
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_array_equal(cloud.intensity, intensity.astype(np.uint16).astype(np.float32))


def test_pcd_written_by_open3d_compressed_and_ascii(tmp_path):
    o3d = pytest.importorskip("open3d")
    xyz, rgb, _ = random_cloud(3000, seed=5)
    pc = o3d.geometry.PointCloud()
    pc.points = o3d.utility.Vector3dVector(xyz.astype(np.float64))
    pc.colors = o3d.utility.Vector3dVector(rgb / 255.0)
    for kwargs in ({"compressed": True}, {"write_ascii": True}, {}):
        path = tmp_path / f"o3d_{'_'.join(kwargs) or 'binary'}.pcd"
        assert o3d.io.write_point_cloud(str(path), pc, **kwargs)
        cloud = read_cloud(path)
        np.testing.assert_allclose(cloud.xyz, xyz, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(cloud.rgb, rgb)


def test_real_mosd_binary_compressed_matches_card_and_open3d(unshipped):
    o3d = pytest.importorskip("open3d")
    # the dataset card: points, finite points, table points (labels 1-9), objects (label // 10)
    card = {"test43": (170986, 170986, 123873, 7), "test55": (307200, 175178, 70775, 14)}
    for name, (points, valid, table, objects) in card.items():
        path = unshipped / "mosd" / f"{name}.pcd"
        assert b"DATA binary_compressed" in path.read_bytes()[:400]
        cloud = read_cloud(path)
        assert cloud.num_points == valid and cloud.dropped_non_finite == points - valid
        label = cloud.extra["label"]
        assert np.count_nonzero((label >= 1) & (label <= 9)) == table
        assert len(np.unique(label[label >= 20] // 10)) == objects
        assert 0.4 < cloud.xyz[:, 2].min() and cloud.xyz[:, 2].max() < 1.7  # depth 0.48..1.67 m
        ref = o3d.io.read_point_cloud(str(path), remove_nan_points=True)
        np.testing.assert_array_equal(cloud.xyz, np.asarray(ref.points, dtype=np.float32))
        np.testing.assert_array_equal(cloud.rgb, np.round(np.asarray(ref.colors) * 255))
        ref_t = o3d.t.io.read_point_cloud(str(path))
        finite = np.isfinite(ref_t.point.positions.numpy()).all(axis=1)
        np.testing.assert_array_equal(label, ref_t.point["label"].numpy().reshape(-1)[finite])


def test_real_nebula_binary_matches_card_and_open3d():
    real = SHIPPED_REAL_DATA
    o3d = pytest.importorskip("open3d")
    counts = {"velodyne_vlp16": 14831, "velodyne_vls128": 208680, "hesai_qt128": 73560,
              "hesai_xt32": 63021}
    for path in sorted((real / "nebula").glob("*.pcd")):
        cloud = read_cloud(path)
        assert cloud.num_points == counts[path.name.rsplit("_", 1)[0]]
        np.testing.assert_array_equal(
            cloud.xyz, np.asarray(o3d.io.read_point_cloud(str(path)).points, dtype=np.float32))
    vlp16 = read_cloud(next((real / "nebula").glob("velodyne_vlp16_*.pcd")))
    ref = o3d.t.io.read_point_cloud(str(vlp16.path))
    np.testing.assert_array_equal(vlp16.intensity, ref.point["intensity"].numpy().reshape(-1))
    for name in ("return_type", "channel", "azimuth", "elevation", "distance", "time_stamp"):
        got, want = vlp16.extra[name], ref.point[name].numpy().reshape(-1)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------------
# PLY


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_roundtrip(tmp_path, fmt):
    xyz, rgb, intensity = random_cloud(300, seed=6, nan_rows=3)
    label = np.arange(300, dtype=np.int32) - 5
    path = tmp_path / f"c_{fmt}.ply"
    write_ply(path, [("x", "float", xyz[:, 0]), ("y", "float", xyz[:, 1]),
                     ("z", "float", xyz[:, 2]), ("red", "uchar", rgb[:, 0]),
                     ("green", "uchar", rgb[:, 1]), ("blue", "uchar", rgb[:, 2]),
                     ("intensity", "float", intensity), ("label", "int", label)], fmt, faces=4)
    cloud = read_cloud(path)
    keep = np.isfinite(xyz).all(axis=1)
    assert cloud.dropped_non_finite == 3
    np.testing.assert_array_equal(cloud.xyz, xyz[keep])
    np.testing.assert_array_equal(cloud.rgb, rgb[keep])
    np.testing.assert_array_equal(cloud.intensity, intensity[keep])
    np.testing.assert_array_equal(cloud.extra["label"], label[keep])
    assert cloud.extra["label"].dtype == np.int32


@pytest.mark.parametrize("fmt", ["ascii", "binary_big_endian"])
def test_ply_float_colours_double_xyz_and_element_before_vertices(tmp_path, fmt):
    xyz, rgb, _ = random_cloud(50, seed=7)
    order = ">" if fmt == "binary_big_endian" else "<"
    before = b"" if fmt == "ascii" else np.array([1.5, 2.5], dtype=order + "f4").tobytes()
    before_ascii = "1.5\n2.5\n" if fmt == "ascii" else ""
    path = tmp_path / "c.ply"
    write_ply(path, [("x", "double", xyz[:, 0]), ("y", "double", xyz[:, 1]),
                     ("z", "double", xyz[:, 2]), ("r", "float", rgb[:, 0] / 255.0),
                     ("g", "float", rgb[:, 1] / 255.0), ("b", "float", rgb[:, 2] / 255.0)],
              fmt, before=before, before_header="element camera 2\nproperty float focal\n")
    if fmt == "ascii":  # the camera rows come before the vertex rows
        text = path.read_bytes()
        head, body = text.split(b"end_header\n")
        path.write_bytes(head + b"end_header\n" + before_ascii.encode() + body)
    cloud = read_cloud(path)
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_array_equal(cloud.rgb, rgb)


def test_far_double_coordinates_are_logged(tmp_path, caplog):
    xyz = np.array([[500_000.123, 4_000_000.456, 12.0], [500_001.0, 4_000_001.0, 13.0]])
    path = tmp_path / "utm.ply"
    write_ply(path, [("x", "double", xyz[:, 0]), ("y", "double", xyz[:, 1]),
                     ("z", "double", xyz[:, 2])], "binary_little_endian")
    with caplog.at_level("WARNING", logger="ros2_inst3d.io"):
        cloud = read_cloud(path)
    assert cloud.num_points == 2
    assert "float32" in caplog.text and "utm.ply" in caplog.text
    caplog.clear()
    write_ply(path, [("x", "double", xyz[:, 0] - 500_000), ("y", "double", xyz[:, 1] - 4e6),
                     ("z", "double", xyz[:, 2])], "binary_little_endian")
    with caplog.at_level("WARNING", logger="ros2_inst3d.io"):
        read_cloud(path)
    assert caplog.text == ""


def test_real_furniture_meshes_give_their_vertices():
    o3d = pytest.importorskip("open3d")
    vertices = {"chaira_01": 1224, "bed_01": 3824, "tvcabinet_01": 96,
                "kitchencabinet_01": 5775}
    for name, count in vertices.items():
        path = MESHES / f"{name}.ply"
        cloud = read_cloud(path)
        assert cloud.num_points == count and cloud.rgb is None and not cloud.extra
        mesh = o3d.io.read_triangle_mesh(str(path))
        np.testing.assert_array_equal(cloud.xyz, np.asarray(mesh.vertices, dtype=np.float32))
        assert abs(float(cloud.xyz[:, 2].min())) < 0.05  # objects stand on z = 0


# --------------------------------------------------------------------------------------------
# numpy files and KITTI .bin


def test_npy_column_layouts(tmp_path):
    xyz, rgb, intensity = random_cloud(40, seed=8, nan_rows=2)
    keep = np.isfinite(xyz).all(axis=1)
    cases = {
        "xyz": (xyz, None, None),
        "xyzi": (np.column_stack([xyz, intensity]), None, intensity),
        "xyzrgb255": (np.column_stack([xyz, rgb.astype(np.float32)]), rgb, None),
        "xyzrgb01": (np.column_stack([xyz.astype(np.float64), rgb / 255.0]), rgb, None),
    }
    for name, (array, want_rgb, want_i) in cases.items():
        np.save(tmp_path / f"{name}.npy", array)
        cloud = read_cloud(tmp_path / f"{name}.npy")
        assert cloud.dropped_non_finite == 2
        np.testing.assert_array_equal(cloud.xyz, xyz[keep])
        if want_rgb is None:
            assert cloud.rgb is None
        else:
            np.testing.assert_array_equal(cloud.rgb, want_rgb[keep])
        if want_i is None:
            assert cloud.intensity is None
        else:
            np.testing.assert_array_equal(cloud.intensity, want_i[keep])


def test_npy_structured_array(tmp_path):
    xyz, rgb, intensity = random_cloud(30, seed=9)
    table = np.zeros(30, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("rgb", "u4"),
                                ("intensity", "f4"), ("ring", "u2")])
    for k, c in enumerate("xyz"):
        table[c] = xyz[:, k]
    table["rgb"], table["intensity"], table["ring"] = pack(rgb), intensity, np.arange(30)
    np.save(tmp_path / "s.npy", table)
    cloud = read_cloud(tmp_path / "s.npy")
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_array_equal(cloud.rgb, rgb)
    np.testing.assert_array_equal(cloud.extra["ring"], np.arange(30))


def test_npz_scene_file(tmp_path):
    xyz, rgb, _ = random_cloud(60, seed=10, nan_rows=4)
    semantic = np.arange(60, dtype=np.int16) % 20 - 1
    instance = np.arange(60, dtype=np.int32) // 7
    meta = {"classes": ["wall", "floor"], "seed": 10}
    np.savez(tmp_path / "scene.npz", xyz=xyz, rgb=rgb, semantic=semantic, instance=instance,
             meta=json.dumps(meta), normals=np.ones((60, 3), np.float32))
    cloud = read_cloud(tmp_path / "scene.npz")
    keep = np.isfinite(xyz).all(axis=1)
    assert cloud.dropped_non_finite == 4 and cloud.meta == meta
    np.testing.assert_array_equal(cloud.xyz, xyz[keep])
    np.testing.assert_array_equal(cloud.rgb, rgb[keep])
    np.testing.assert_array_equal(cloud.semantic, semantic[keep])
    np.testing.assert_array_equal(cloud.instance, instance[keep])
    assert cloud.semantic.dtype == np.int16 and cloud.instance.dtype == np.int32
    assert cloud.extra["normals"].shape == (56, 3)
    xyz_, rgb_, intensity_ = cloud  # unpacks like the plain (xyz, rgb, intensity) triple
    assert xyz_ is cloud.xyz and rgb_ is cloud.rgb and intensity_ is None


def test_npz_points_with_float_rgb_and_intensity(tmp_path):
    xyz, rgb, intensity = random_cloud(25, seed=11)
    np.savez_compressed(tmp_path / "p.npz", points=np.column_stack([xyz, intensity]),
                        rgb=rgb / 255.0)
    cloud = read_cloud(tmp_path / "p.npz")
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_array_equal(cloud.rgb, rgb)
    np.testing.assert_array_equal(cloud.intensity, intensity)


def test_kitti_bin(tmp_path):
    xyz, _, intensity = random_cloud(77, seed=12, nan_rows=1)
    np.column_stack([xyz, intensity]).astype("<f4").tofile(tmp_path / "scan.bin")
    cloud = read_cloud(tmp_path / "scan.bin")
    keep = np.isfinite(xyz).all(axis=1)
    np.testing.assert_array_equal(cloud.xyz, xyz[keep])
    np.testing.assert_array_equal(cloud.intensity, intensity[keep])


def test_real_semantickitti_scan(unshipped):
    cloud = read_cloud(unshipped / "semantickitti" / "000000.bin")
    assert cloud.num_points == 123389 and cloud.dropped_non_finite == 0
    assert 0.0 <= cloud.intensity.min() and cloud.intensity.max() <= 0.99 + 1e-6
    labels = np.fromfile(unshipped / "semantickitti" / "000000.label", dtype="<u4")
    assert labels.size == cloud.num_points  # one label per point: nothing was lost or invented
    road = (labels & 0xFFFF) == 40
    assert abs(float(np.median(cloud.xyz[road, 2])) + 1.7) < 0.3  # the road is ~1.7 m below


# --------------------------------------------------------------------------------------------
# helpers and errors


def test_colour_rules():
    np.testing.assert_array_equal(colors_to_uint8(np.array([[0.0, 0.5, 1.0]])), [[0, 128, 255]])
    np.testing.assert_array_equal(colors_to_uint8(np.array([[0.0, 2.0, 255.0]])), [[0, 2, 255]])
    np.testing.assert_array_equal(colors_to_uint8(np.array([[0, 32896, 65535]], np.uint16)),
                                  [[0, 128, 255]])
    with pytest.raises(ValueError, match="0..1 or 0..255"):
        colors_to_uint8(np.array([[0.0, 300.0, 1.0]]))
    np.testing.assert_array_equal(unpack_rgb(np.array([0x00FF8001], np.uint32)), [[255, 128, 1]])
    np.testing.assert_array_equal(unpack_rgb(np.array([0x00FF8001], np.uint32).view(np.float32)),
                                  [[255, 128, 1]])


def _pcd_xyz(tmp_path: Path, data: str, n: int = 20) -> Path:
    xyz, _, _ = random_cloud(n, seed=13)
    path = tmp_path / f"good_{data}.pcd"
    write_pcd(path, [("x", "F", xyz[:, 0]), ("y", "F", xyz[:, 1]), ("z", "F", xyz[:, 2])], data)
    return path


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    cases: dict[str, tuple[Path, str]] = {}
    p = tmp_path / "cloud.xyz"
    p.write_text("1 2 3\n")
    cases["extension"] = (p, "unknown extension '.xyz'")
    cases["missing"] = (tmp_path / "nope.pcd", "no such file")
    good = _pcd_xyz(tmp_path, "binary").read_bytes()
    p = tmp_path / "truncated.pcd"
    p.write_bytes(good[:-5])
    cases["pcd truncated"] = (p, "truncated PCD binary data")
    good = _pcd_xyz(tmp_path, "binary_compressed").read_bytes()
    p = tmp_path / "truncated_c.pcd"
    p.write_bytes(good[:-5])
    cases["pcd compressed truncated"] = (p, "truncated PCD binary_compressed")
    p = tmp_path / "corrupt_c.pcd"
    head = good[:good.index(b"binary_compressed\n") + 18]
    p.write_bytes(head + struct.pack("<II", 3, 240) + b"\x00a\x3f")
    cases["pcd corrupt lzf"] = (p, "corrupt PCD binary_compressed")
    good = _pcd_xyz(tmp_path, "ascii").read_text()
    p = tmp_path / "short_ascii.pcd"
    p.write_text(good.rsplit("\n", 3)[0])
    cases["pcd ascii truncated"] = (p, "truncated ascii data")
    p = tmp_path / "word.pcd"
    p.write_text(good.rstrip().rsplit(" ", 1)[0] + " banana\n")
    cases["pcd ascii word"] = (p, "banana")
    p = tmp_path / "no_data.pcd"
    p.write_text("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\n")
    cases["pcd no DATA"] = (p, "no 'DATA' line")
    p = tmp_path / "sizes.pcd"
    p.write_text("FIELDS x y z\nSIZE 4 4\nTYPE F F F\nWIDTH 1\nPOINTS 1\nDATA ascii\n1 2 3\n")
    cases["pcd SIZE count"] = (p, "SIZE has 2 entries for 3 FIELDS")
    p = tmp_path / "type.pcd"
    p.write_text("FIELDS x y z\nSIZE 4 4 3\nTYPE F F F\nWIDTH 1\nPOINTS 1\nDATA ascii\n1 2 3\n")
    cases["pcd bad type"] = (p, "TYPE F SIZE 3")
    p = tmp_path / "no_z.pcd"
    p.write_text("FIELDS x y intensity\nSIZE 4 4 4\nTYPE F F F\nWIDTH 1\nPOINTS 1\nDATA ascii\n"
                 "1 2 3\n")
    cases["pcd missing z"] = (p, "missing z among the PCD fields (x y intensity)")
    p = tmp_path / "no_y.ply"
    write_ply(p, [("x", "float", np.zeros(3)), ("z", "float", np.zeros(3))],
              "binary_little_endian")
    cases["ply missing y"] = (p, "missing y among the PLY vertex properties")
    p = tmp_path / "short.ply"
    write_ply(p, [("x", "float", np.zeros(30)), ("y", "float", np.zeros(30)),
                  ("z", "float", np.zeros(30))], "binary_little_endian")
    p.write_bytes(p.read_bytes()[:-7])
    cases["ply truncated"] = (p, "truncated PLY")
    p = tmp_path / "short_ascii.ply"
    write_ply(p, [("x", "float", np.zeros(30)), ("y", "float", np.zeros(30)),
                  ("z", "float", np.zeros(30))], "ascii")
    p.write_bytes(p.read_bytes()[:-20])
    cases["ply ascii truncated"] = (p, "truncated")
    p = tmp_path / "notply.ply"
    p.write_text("hello\n")
    cases["not ply"] = (p, "not a PLY file")
    p = tmp_path / "badfmt.ply"
    p.write_text("ply\nformat binary_middle_endian 1.0\nelement vertex 0\nend_header\n")
    cases["ply format"] = (p, "unknown format")
    p = tmp_path / "badtype.ply"
    p.write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n1\n")
    cases["ply type"] = (p, "property float128 x")
    p = tmp_path / "odd.bin"
    p.write_bytes(bytes(30))
    cases["bin size"] = (p, "not a multiple of 16")
    p = tmp_path / "five.npy"
    np.save(p, np.zeros((4, 5)))
    cases["npy columns"] = (p, "shape (4, 5)")
    p = tmp_path / "junk.npy"
    p.write_bytes(b"not numpy")
    cases["npy junk"] = (p, "not a readable .npy")
    p = tmp_path / "nokeys.npz"
    np.savez(p, colors=np.zeros((3, 3)))
    cases["npz keys"] = (p, "no 'xyz' or 'points' array (arrays: colors)")
    p = tmp_path / "badrgb.npz"
    np.savez(p, xyz=np.zeros((3, 3)), rgb=np.zeros((2, 3)))
    cases["npz rgb shape"] = (p, "'rgb' has shape (2, 3); expected (3, 3)")
    p = tmp_path / "junk.npz"
    p.write_bytes(b"PK junk")
    cases["npz junk"] = (p, "not a readable .npz")
    return cases


def test_malformed_files_raise_one_line_errors_naming_file_and_reason(tmp_path):
    for case, (path, reason) in _bad_files(tmp_path).items():
        with pytest.raises(CloudFileError) as info:
            read_cloud(path)
        message = str(info.value)
        assert str(path) in message, case
        assert reason in message, (case, message)
        assert "\n" not in message, case


# --------------------------------------------------------------------------------------------
# result writers


def rotated_block(center, size, yaw, n, seed):
    """n points filling a box of ``size`` rotated by ``yaw`` about z, centred at ``center``."""
    rng = np.random.default_rng(seed)
    local = (rng.random((n, 3)) - 0.5) * size
    local[:8] = (np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)]) - 0.5) * size
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return (local @ rot.T + center).astype(np.float32)


def scene_instances(overlap: bool = False) -> Instances:
    """Three blocks with ids 7, 3, 12 (not contiguous) plus 50 unlabelled floor points."""
    blocks = [rotated_block([1, 2, 0.25], [2.0, 1.0, 0.5], np.pi / 6, 200, 1),
              rotated_block([-3, 0, 0.5], [0.6, 0.4, 1.0], 0.0, 120, 2),
              rotated_block([0, -2, 0.4], [1.2, 0.3, 0.8], -1.0, 90, 3)]
    floor = np.random.default_rng(4).uniform(-5, 5, (50, 3)).astype(np.float32)
    floor[:, 2] = 0
    xyz = np.concatenate(blocks + [floor])
    starts = np.cumsum([0] + [len(b) for b in blocks])
    indices = [np.arange(starts[i], starts[i + 1]) for i in range(3)]
    ids = np.array([7, 3, 12], np.int32)
    point_instance = np.full(len(xyz), -1, np.int32)
    for i, idx in zip(ids, indices):
        point_instance[idx] = i
    point_class = np.where(point_instance >= 0, 4, 1).astype(np.int32)
    if overlap:  # instance 12 also claims ten points that the fused labelling gave to 7
        indices[2] = np.concatenate([indices[2], indices[0][:10]])
    return Instances(xyz=xyz, rgb=None, point_instance=point_instance, point_class=point_class,
                     ids=ids, class_ids=np.array([6, 4, 2], np.int32),
                     scores=np.array([0.9, 0.55, 0.123456], np.float32), indices=indices,
                     timing_ms={"model": 12.3456, "grouping": 1.0})


def test_write_results_files_agree_with_instances(tmp_path):
    inst = scene_instances()
    paths = write_results(tmp_path / "out", "room", inst, {"read": 2.5, "model": 13.0},
                          model_name="geometric")
    assert paths == {"ply": tmp_path / "out" / "room.instances.ply",
                     "json": tmp_path / "out" / "room.instances.json",
                     "labels": tmp_path / "out" / "room.labels.npz"}

    labels = np.load(paths["labels"])
    assert set(labels.files) == {"instance", "instance_class", "instance_score", "semantic"}
    assert labels["instance"].dtype == np.int32 and labels["instance_class"].dtype == np.int32
    assert labels["instance_score"].dtype == np.float32
    np.testing.assert_array_equal(labels["instance_class"], [6, 4, 2])
    np.testing.assert_array_equal(labels["instance_score"], inst.scores)
    np.testing.assert_array_equal(labels["semantic"], inst.point_class)
    for k, idx in enumerate(inst.indices):  # ids are positions 0..K-1
        np.testing.assert_array_equal(np.flatnonzero(labels["instance"] == k), idx)
    assert np.count_nonzero(labels["instance"] == -1) == 50

    summary = json.loads(paths["json"].read_text())
    assert summary["model"] == "geometric" and summary["num_points"] == len(inst.xyz)
    assert summary["classes"][6] == "table" and summary["num_instances"] == 3
    assert summary["timing_ms"] == {"model": 13.0, "grouping": 1.0, "read": 2.5}
    assert summary["files"] == {"ply": "room.instances.ply", "labels": "room.labels.npz"}
    for k, entry in enumerate(summary["instances"]):
        pts = inst.xyz[inst.indices[k]].astype(np.float64)
        assert entry["id"] == k and entry["source_id"] == int(inst.ids[k])
        assert entry["class_id"] == int(inst.class_ids[k])
        assert entry["class_name"] == ("table", "chair", "cabinet")[k]
        assert entry["score"] == round(float(inst.scores[k]), 4)
        assert entry["num_points"] == len(pts)
        np.testing.assert_allclose(entry["centroid"], pts.mean(axis=0), atol=6e-5)
        np.testing.assert_allclose(entry["aabb"]["min"], pts.min(axis=0), atol=6e-5)
        np.testing.assert_allclose(entry["aabb"]["max"], pts.max(axis=0), atol=6e-5)
        assert entry["color"] == list(instance_color(int(inst.ids[k])))
    rotated = summary["instances"][0]["obb"]  # the 2 x 1 x 0.5 block turned by 30 degrees
    np.testing.assert_allclose(rotated["size"], [2.0, 1.0, 0.5], atol=1e-3)
    assert abs(rotated["yaw"] - np.pi / 6) < 1e-3
    assert "\n " in paths["json"].read_text()  # indented for people

    cloud = read_cloud(paths["ply"])
    np.testing.assert_array_equal(cloud.xyz, inst.xyz)
    np.testing.assert_array_equal(cloud.extra["instance_id"], labels["instance"])
    np.testing.assert_array_equal(cloud.extra["class_id"], inst.point_class)
    for k, idx in enumerate(inst.indices):
        assert (cloud.rgb[idx] == instance_color(int(inst.ids[k]))).all()
    assert (cloud.rgb[labels["instance"] == -1] == UNASSIGNED_COLOR).all()


def test_write_results_keeps_overlapping_masks(tmp_path):
    inst = scene_instances(overlap=True)
    paths = write_results(tmp_path, "olap", inst)
    labels = np.load(paths["labels"])
    masks = np.unpackbits(labels["masks"], axis=1, count=len(inst.xyz)).astype(bool)
    assert masks.shape == (3, len(inst.xyz))
    for k, idx in enumerate(inst.indices):
        np.testing.assert_array_equal(np.flatnonzero(masks[k]), np.sort(idx))
    assert np.count_nonzero(labels["instance"] == 2) == 90  # fused labelling is one id per point
    assert json.loads(paths["json"].read_text())["instances"][2]["num_points"] == 100
    assert "source_id" in json.loads(paths["json"].read_text())["instances"][0]


def test_write_results_contiguous_ids_and_no_instances(tmp_path):
    xyz = rotated_block([0, 0, 0], [1, 1, 1], 0.0, 30, 5)
    inst = Instances.from_point_labels(xyz, None, np.repeat([0, 1, -1], 10), [4, 5], [0.5, 0.6])
    summary = json.loads(write_results(tmp_path, "a", inst)["json"].read_text())
    assert [e["id"] for e in summary["instances"]] == [0, 1]
    assert all("source_id" not in e for e in summary["instances"])

    paths = write_results(tmp_path, "empty", Instances.empty(xyz), model_name="m")
    labels = np.load(paths["labels"])
    assert labels["instance_class"].shape == (0,) and labels["instance_score"].shape == (0,)
    assert (labels["instance"] == -1).all() and len(labels["instance"]) == 30
    summary = json.loads(paths["json"].read_text())
    assert summary["instances"] == [] and summary["num_points"] == 30
    assert (read_cloud(paths["ply"]).rgb == UNASSIGNED_COLOR).all()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-1, 40), min_size=1, max_size=60))
def test_contiguous_labels_property(point_ids):
    point_ids = np.array(point_ids)
    xyz = np.random.default_rng(0).random((len(point_ids), 3)).astype(np.float32)
    ids = np.unique(point_ids[point_ids >= 0])
    inst = Instances.from_point_labels(xyz, None, point_ids, {int(i): 4 for i in ids},
                                       {int(i): 0.5 for i in ids})
    labels = contiguous_instance_labels(inst)
    assert labels.min(initial=-1) >= -1 and labels.max(initial=-1) < inst.num_instances
    for i in range(len(point_ids)):  # slow reference: look every point's id up one by one
        want = -1 if point_ids[i] < 0 else list(inst.ids).index(point_ids[i])
        assert labels[i] == want


def test_write_instances_ply_rejects_bad_arrays(tmp_path):
    xyz = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="uint8"):
        write_instances_ply(tmp_path / "a.ply", xyz, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"instance_id must have shape \(4,\)"):
        write_instances_ply(tmp_path / "a.ply", xyz, np.zeros((4, 3), np.uint8), np.zeros(3))
