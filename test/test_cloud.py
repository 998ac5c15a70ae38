"""cloud.decode / encode against a slow struct-per-field reference, on real rosbags messages.

Every message here is a ``sensor_msgs/msg/PointCloud2`` of rosbags' Humble or Jazzy typestore.
The bytes of hand-made clouds are written point by point with ``struct.pack_into`` and read back
by ``reference_decode`` with ``struct.unpack_from``: obviously correct and slow, the oracle for
the vectorised decoder.
"""

from __future__ import annotations

import array
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rosbags.typesys import Stores, get_typestore

from ros2_inst3d import cloud as cloud_module
from ros2_inst3d.cloud import (
    FLOAT32, FLOAT64, INT8, INT16, INT32, UINT8, UINT16, UINT32, UNKNOWN_CLASS_ID,
    CloudDecodeError, Scan, decode, encode, encode_xyz, ns_to_stamp, stamp_to_ns,
)
from ros2_inst3d.msgs import MessageFactory

TYPESTORES = {
    "humble": get_typestore(Stores.ROS2_HUMBLE),
    "jazzy": get_typestore(Stores.ROS2_JAZZY),
}
PC2 = "sensor_msgs/msg/PointCloud2"
STRUCT_CODE = {INT8: "b", UINT8: "B", INT16: "h", UINT16: "H", INT32: "i", UINT32: "I",
               FLOAT32: "f", FLOAT64: "d"}
SIZE = {dt: struct.calcsize(code) for dt, code in STRUCT_CODE.items()}


@pytest.fixture(params=sorted(TYPESTORES))
def store(request):
    return TYPESTORES[request.param]


@pytest.fixture
def factory(store):
    return MessageFactory.for_rosbags(store)


# ----------------------------------------------------------------------- building test clouds


def make_msg(store, fields, data, *, height, width, point_step, row_step, bigendian=False,
             dense=False, stamp=(12, 345), frame_id="lidar"):
    """A rosbags PointCloud2; ``fields`` are (name, offset, datatype, count) tuples."""
    types = store.types
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=stamp[0], nanosec=stamp[1]),
        frame_id=frame_id)
    point_fields = [types["sensor_msgs/msg/PointField"](name=n, offset=o, datatype=d, count=c)
                    for n, o, d, c in fields]
    return types[PC2](
        header=header, height=height, width=width, fields=point_fields, is_bigendian=bigendian,
        point_step=point_step, row_step=row_step,
        data=np.frombuffer(bytes(data), np.uint8), is_dense=dense)


def pack_points(fields, points, *, width, point_step, row_step, bigendian=False, fill=0xAB):
    """Bytes of ``points`` (list of {name: value or tuple}) laid out row-major, one struct call
    per field per point; padding bytes get ``fill`` so that skipping them is tested."""
    height = -(-len(points) // width) if width else 0
    buf = bytearray([fill]) * (row_step * height)
    order = ">" if bigendian else "<"
    for i, point in enumerate(points):
        row, col = divmod(i, width)
        base = row * row_step + col * point_step
        for name, offset, datatype, count in fields:
            value = point[name]
            values = value if count > 1 else (value,)
            struct.pack_into(f"{order}{count}{STRUCT_CODE[datatype]}", buf, base + offset, *values)
    return bytes(buf)


def cloud(store, fields, points, *, width=None, point_step=None, row_pad=0, bigendian=False,
          dense=False, fill=0xAB):
    """Pack ``points`` and wrap them in a message; point_step defaults to the packed size."""
    width = len(points) if width is None else width
    if point_step is None:
        point_step = max((o + SIZE[d] * c for _, o, d, c in fields), default=0)
    row_step = width * point_step + row_pad
    height = len(points) // width if width else 0
    data = pack_points(fields, points, width=width, point_step=point_step, row_step=row_step,
                       bigendian=bigendian, fill=fill)
    return make_msg(store, fields, data, height=height, width=width, point_step=point_step,
                    row_step=row_step, bigendian=bigendian, dense=dense)


def reference_decode(msg):
    """The slow oracle: struct.unpack per point per field, row-major, non-finite xyz dropped."""
    order = ">" if msg.is_bigendian else "<"
    data = bytes(msg.data)
    by_name = {f.name: f for f in msg.fields}

    def read(field, base):
        return struct.unpack_from(order + STRUCT_CODE[field.datatype], data,
                                  base + field.offset)[0]

    packed = by_name.get("rgb", by_name.get("rgba"))
    channels = [by_name.get(c) for c in "rgb"]
    has_channels = packed is None and None not in channels
    intensity_field = by_name.get("intensity")
    xyz, rgb, intensity, dropped = [], [], [], 0
    for row in range(msg.height):
        for col in range(msg.width):
            base = row * msg.row_step + col * msg.point_step
            with np.errstate(over="ignore"):
                point = [np.float32(read(by_name[a], base)) for a in "xyz"]
            if not all(math.isfinite(v) for v in point):
                dropped += 1
                continue
            xyz.append(point)
            if packed is not None:
                bits = struct.unpack_from(order + "I", data, base + packed.offset)[0]
                rgb.append([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF])
            elif has_channels:
                rgb.append([read(f, base) for f in channels])
            if intensity_field is not None:
                with np.errstate(over="ignore"):
                    intensity.append(np.float32(read(intensity_field, base)))
    has_rgb = packed is not None or has_channels
    return (np.array(xyz, np.float32).reshape(-1, 3),
            np.array(rgb, np.uint8).reshape(-1, 3) if has_rgb else None,
            np.array(intensity, np.float32) if intensity_field is not None else None,
            dropped)


def assert_matches_reference(scan: Scan, msg):
    xyz, rgb, intensity, dropped = reference_decode(msg)
    assert scan.xyz.dtype == np.float32 and scan.xyz.shape == xyz.shape
    np.testing.assert_array_equal(scan.xyz, xyz)
    assert scan.dropped_non_finite == dropped
    if rgb is None:
        assert scan.rgb is None
    else:
        assert scan.rgb.dtype == np.uint8
        np.testing.assert_array_equal(scan.rgb, rgb)
    if intensity is None:
        assert scan.intensity is None
    else:
        assert scan.intensity.dtype == np.float32
        np.testing.assert_array_equal(scan.intensity, intensity)


XYZ_F32 = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1)]


def grid_points(n, seed=0, **extra):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-50, 50, (n, 3)).astype(np.float32)
    return [dict(x=float(p[0]), y=float(p[1]), z=float(p[2]),
                 **{k: v[i] for k, v in extra.items()}) for i, p in enumerate(xyz)]


# ------------------------------------------------------------------------------- decode cases


@pytest.mark.parametrize("datatype", sorted(STRUCT_CODE))
def test_every_datatype_for_xyz_and_intensity(store, datatype):
    code = STRUCT_CODE[datatype]
    info = np.iinfo if code in "bBhHiI" else np.finfo
    kind = np.dtype(code)
    # Extremes of each type as well as small values; FLOAT64's max overflows float32 → dropped.
    extremes = [info(kind).min, info(kind).max, 0, 1, 2, 3]
    if code in "fd":
        extremes += [0.5, -1.25]
    size = SIZE[datatype]
    fields = [("x", 0, datatype, 1), ("y", size, datatype, 1), ("z", 2 * size, datatype, 1),
              ("intensity", 3 * size, datatype, 1)]
    points = [dict(x=extremes[i % len(extremes)], y=extremes[(i + 1) % len(extremes)],
                   z=extremes[(i + 2) % len(extremes)], intensity=extremes[(i + 3) % len(extremes)])
              for i in range(12)]
    msg = cloud(store, fields, points)
    scan = decode(msg)
    assert_matches_reference(scan, msg)
    expected_dropped = 0 if datatype != FLOAT64 else sum(
        any(abs(p[a]) > np.finfo(np.float32).max for a in "xyz") for p in points)
    assert scan.dropped_non_finite == expected_dropped
    kept = [p for p in points if all(abs(p[a]) <= np.finfo(np.float32).max for a in "xyz")]
    np.testing.assert_array_equal(scan.xyz, np.float32([[p["x"], p["y"], p["z"]] for p in kept]))


@pytest.mark.parametrize("datatype", [UINT8, UINT16, FLOAT32, FLOAT64])
def test_intensity_is_cast_to_float32(store, datatype):
    fields = XYZ_F32 + [("intensity", 12, datatype, 1)]
    values = [0, 7, 200, 255]
    msg = cloud(store, fields, grid_points(4, intensity=values))
    scan = decode(msg)
    assert scan.intensity.dtype == np.float32
    np.testing.assert_array_equal(scan.intensity, np.float32(values))


def test_field_with_count_above_one_is_skipped(store):
    fields = [("x", 0, FLOAT32, 1), ("normal", 4, FLOAT32, 3), ("y", 16, FLOAT32, 1),
              ("z", 20, FLOAT32, 1), ("intensity", 24, UINT16, 1)]
    normals = [(1.0, 2.0, 3.0)] * 5
    msg = cloud(store, fields, grid_points(5, normal=normals, intensity=[1, 2, 3, 4, 5]))
    scan = decode(msg)
    assert_matches_reference(scan, msg)
    np.testing.assert_array_equal(scan.intensity, np.float32([1, 2, 3, 4, 5]))


def test_big_endian_reads_the_same_values_as_little_endian(store):
    fields = [("x", 0, FLOAT64, 1), ("y", 8, FLOAT32, 1), ("z", 12, INT16, 1),
              ("rgb", 16, UINT32, 1), ("intensity", 20, UINT16, 1)]
    rng = np.random.default_rng(3)
    points = [dict(x=float(rng.normal()), y=float(np.float32(rng.normal())),
                   z=int(rng.integers(-300, 300)), rgb=int(rng.integers(0, 2**24)),
                   intensity=int(rng.integers(0, 65535))) for _ in range(20)]
    little = decode(cloud(store, fields, points))
    big_msg = cloud(store, fields, points, bigendian=True)
    big = decode(big_msg)
    assert_matches_reference(big, big_msg)
    for name in ("xyz", "rgb", "intensity"):
        np.testing.assert_array_equal(getattr(big, name), getattr(little, name))
    np.testing.assert_array_equal(big.rgb[:, 0], [p["rgb"] >> 16 for p in points])


def test_padding_inside_points_is_skipped(store):
    # PCL's PointXYZI layout: x y z, 4 bytes padding, intensity, 12 bytes padding → 32 bytes.
    fields = XYZ_F32 + [("intensity", 16, FLOAT32, 1)]
    msg = cloud(store, fields, grid_points(9, intensity=[float(i) for i in range(9)]),
                point_step=32, fill=0xFF)  # 0xFF.. is a NaN float: reading padding would show
    scan = decode(msg)
    assert_matches_reference(scan, msg)
    assert scan.num_points == 9 and scan.dropped_non_finite == 0


def test_organised_cloud_with_row_padding_is_flattened_row_major(store):
    height, width = 3, 4
    points = [dict(x=float(r), y=float(c), z=float(r * width + c), rgb=r * 16 + c)
              for r in range(height) for c in range(width)]
    fields = XYZ_F32 + [("rgb", 12, UINT32, 1)]
    msg = cloud(store, fields, points, width=width, point_step=20, row_pad=6, fill=0xFF)
    assert (msg.height, msg.width, msg.row_step) == (3, 4, 86)
    scan = decode(msg)
    assert_matches_reference(scan, msg)
    np.testing.assert_array_equal(scan.xyz[:, 2], np.arange(12, dtype=np.float32))
    np.testing.assert_array_equal(scan.xyz[5], [1, 1, 5])  # row 1, column 1
    np.testing.assert_array_equal(scan.rgb[:, 2], [p["rgb"] for p in points])


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("name,datatype", [("rgb", FLOAT32), ("rgb", UINT32), ("rgb", INT32),
                                           ("rgba", UINT32), ("rgba", FLOAT32)])
def test_packed_colour(store, name, datatype, bigendian):
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [12, 34, 56], [255, 255, 255]])
    alpha = 0x80 if name == "rgba" else 0
    bits = [(alpha << 24) | (int(r) << 16) | (int(g) << 8) | int(b) for r, g, b in colours]
    # Write the bit pattern as the declared type, the way PCL and drivers do.
    as_type = {UINT32: bits,
               INT32: [struct.unpack("i", struct.pack("I", v))[0] for v in bits],
               FLOAT32: [struct.unpack("f", struct.pack("I", v))[0] for v in bits]}[datatype]
    fields = XYZ_F32 + [(name, 12, datatype, 1)]
    msg = cloud(store, fields, grid_points(5, **{name: as_type}), bigendian=bigendian)
    scan = decode(msg)
    np.testing.assert_array_equal(scan.rgb, colours)
    assert_matches_reference(scan, msg)


def test_separate_uint8_colour_channels(store):
    fields = XYZ_F32 + [("b", 12, UINT8, 1), ("g", 13, UINT8, 1), ("r", 14, UINT8, 1)]
    r, g, b = [1, 2, 3], [40, 50, 60], [200, 210, 220]
    msg = cloud(store, fields, grid_points(3, r=r, g=g, b=b), point_step=16)
    scan = decode(msg)
    np.testing.assert_array_equal(scan.rgb, np.array([r, g, b]).T)
    assert_matches_reference(scan, msg)


def test_no_colour_or_intensity_fields_give_none(store):
    scan = decode(cloud(store, XYZ_F32 + [("ring", 12, UINT16, 1)], grid_points(4, ring=[0] * 4)))
    assert scan.rgb is None and scan.intensity is None and scan.num_points == 4


@pytest.mark.parametrize("name", ["ring", "channel", "laser_id"])
def test_beam_index_field_is_read_as_the_ring(store, name):
    points = grid_points(6, **{name: [5, 0, 63, 7, 1, 2]})
    points[2]["x"] = math.nan  # dropped: the ring stays aligned with the finite points
    scan = decode(cloud(store, XYZ_F32 + [(name, 12, UINT16, 1)], points))
    np.testing.assert_array_equal(scan.ring, np.float32([5, 0, 7, 1, 2]))
    assert scan.ring.dtype == np.float32
    # a ring with count > 1 is not a beam index: ignored, not an error
    two = decode(cloud(store, XYZ_F32 + [("ring", 12, UINT16, 2)],
                       grid_points(3, ring=[(1, 2)] * 3)))
    assert two.ring is None and two.num_points == 3
    assert decode(cloud(store, XYZ_F32, grid_points(3))).ring is None
    empty = decode(cloud(store, XYZ_F32 + [(name, 12, UINT16, 1)], []))
    assert empty.ring is not None and empty.ring.shape == (0,)


@pytest.mark.parametrize("dense", [False, True])
def test_non_finite_points_are_dropped_whatever_is_dense_says(store, dense):
    bad = [math.nan, math.inf, -math.inf]
    points = grid_points(12, intensity=list(range(12)), rgb=list(range(12)))
    for i, (axis, value) in enumerate([("x", bad[0]), ("y", bad[1]), ("z", bad[2]),
                                       ("x", bad[1]), ("z", bad[0])]):
        points[2 * i + 1][axis] = value
    fields = XYZ_F32 + [("intensity", 12, FLOAT32, 1), ("rgb", 16, UINT32, 1)]
    msg = cloud(store, fields, points, dense=dense)
    scan = decode(msg)
    assert scan.dropped_non_finite == 5 and scan.num_points == 7
    assert np.isfinite(scan.xyz).all()
    kept = [0, 2, 4, 6, 8, 10, 11]
    np.testing.assert_array_equal(scan.intensity, np.float32(kept))  # the rows stay aligned
    np.testing.assert_array_equal(scan.rgb[:, 2], kept)
    assert_matches_reference(scan, msg)


def test_header_stamp_and_frame_are_kept(store):
    msg = cloud(store, XYZ_F32, grid_points(2))
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000, 999_999_999
    msg.header.frame_id = "os_sensor"
    scan = decode(msg)
    assert scan.stamp_ns == 1_700_000_000_999_999_999 and scan.frame_id == "os_sensor"


def test_empty_clouds_decode_to_empty_scans(store):
    fields = XYZ_F32 + [("rgb", 12, FLOAT32, 1)]
    scan = decode(make_msg(store, fields, b"", height=1, width=0, point_step=16, row_step=0))
    assert scan.xyz.shape == (0, 3) and scan.xyz.dtype == np.float32
    assert scan.rgb.shape == (0, 3) and scan.intensity is None
    blank = decode(make_msg(store, [], b"", height=0, width=0, point_step=0, row_step=0))
    assert blank.xyz.shape == (0, 3) and blank.rgb is None


def test_every_data_container_decodes_alike(store):
    fields = XYZ_F32 + [("rgb", 12, UINT32, 1)]
    msg = cloud(store, fields, grid_points(6, rgb=[0x123456] * 6))
    raw = bytes(msg.data)
    expected = decode(msg)
    containers = [raw, bytearray(raw), array.array("B", raw), memoryview(raw),
                  np.frombuffer(raw, np.uint8), list(raw),
                  np.frombuffer(raw, np.int8),  # signed bytes, same bits
                  np.repeat(np.frombuffer(raw, np.uint8), 2)[::2]]  # a strided view
    for data in containers:
        msg.data = data
        scan = decode(msg)
        np.testing.assert_array_equal(scan.xyz, expected.xyz)
        np.testing.assert_array_equal(scan.rgb, expected.rgb)


def test_data_longer_than_needed_is_accepted(store):
    msg = cloud(store, XYZ_F32, grid_points(3))
    msg.data = np.concatenate([msg.data, np.full(7, 0xFF, np.uint8)])
    assert_matches_reference(decode(msg), msg)


@pytest.mark.parametrize("height,width,row_pad", [(1, 100_003, 0), (50, 2_001, 10), (3, 40_000, 4)])
def test_large_clouds_across_copy_blocks(store, height, width, row_pad):
    """Clouds bigger than the decoder's copy block, flat and organised, against known values."""
    rng = np.random.default_rng(5)
    n = height * width
    xyz = rng.uniform(-100, 100, (n, 3)).astype(np.float32)
    xyz[rng.choice(n, 50, replace=False), rng.integers(0, 3, 50)] = np.nan
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    intensity = rng.integers(0, 65536, n).astype(np.uint16)
    record = np.dtype({"names": ["x", "y", "z", "rgb", "intensity"],
                       "formats": ["<f4", "<f4", "<f4", "<u4", "<u2"],
                       "offsets": [0, 4, 8, 16, 20], "itemsize": 24})
    points = np.zeros((height, width), record)
    points["x"], points["y"], points["z"] = (xyz[:, i].reshape(height, width) for i in range(3))
    points["rgb"] = ((rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8)
                     | rgb[:, 2]).reshape(height, width)
    points["intensity"] = intensity.reshape(height, width)
    rows = np.zeros((height, width * 24 + row_pad), np.uint8)
    rows[:, :width * 24] = points.view(np.uint8).reshape(height, -1)
    fields = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1),
              ("rgb", 16, UINT32, 1), ("intensity", 20, UINT16, 1)]
    msg = make_msg(store, fields, rows.tobytes(), height=height, width=width, point_step=24,
                   row_step=width * 24 + row_pad)
    scan = decode(msg)
    finite = np.isfinite(xyz).all(axis=1)
    assert scan.dropped_non_finite == 50
    np.testing.assert_array_equal(scan.xyz, xyz[finite])
    np.testing.assert_array_equal(scan.rgb, rgb[finite])
    np.testing.assert_array_equal(scan.intensity, intensity[finite].astype(np.float32))


# ------------------------------------------------------------------------------ decode errors


def test_missing_z_is_rejected_with_the_fields_named(store):
    msg = cloud(store, [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("intensity", 8, FLOAT32, 1)],
                [dict(x=1.0, y=2.0, intensity=3.0)])
    with pytest.raises(CloudDecodeError, match=r"no 'z' field \(fields: x, y, intensity\)"):
        decode(msg)


def test_short_data_is_rejected(store):
    msg = cloud(store, XYZ_F32, grid_points(4))
    msg.data = msg.data[:-1]
    with pytest.raises(CloudDecodeError, match=r"47 bytes but row_step \* height"):
        decode(msg)


def test_short_data_counts_row_padding(store):
    msg = cloud(store, XYZ_F32, grid_points(4), width=2, row_pad=4)
    msg.data = msg.data[:-2]  # every point is there, the last row's padding is not
    with pytest.raises(CloudDecodeError, match="truncated"):
        decode(msg)


@pytest.mark.parametrize("fields,point_step,pattern", [
    ([("x", 0, FLOAT32, 1), ("y", 2, FLOAT32, 1), ("z", 8, FLOAT32, 1)], 12,
     "'x' .* 'y' .* overlap"),
    ([("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1),
      ("normal", 8, FLOAT32, 3)], 24, "overlap"),
    (XYZ_F32 + [("intensity", 12, FLOAT32, 1)], 14, "'intensity' .* past point_step 14"),
    ([("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, 9, 1)], 12, "datatype 9"),
    ([("x", 0, FLOAT32, 2), ("y", 8, FLOAT32, 1), ("z", 12, FLOAT32, 1)], 16, "'x' has count 2"),
    (XYZ_F32 + [("rgb", 12, UINT8, 1)], 16, "'rgb' is UINT8"),
    (XYZ_F32 + [("r", 12, FLOAT32, 1), ("g", 16, FLOAT32, 1), ("b", 20, FLOAT32, 1)], 24,
     "'r' is FLOAT32"),
    (XYZ_F32 + [("x", 12, FLOAT32, 1)], 16, "more than one field named 'x'"),
])
def test_bad_layouts_are_rejected(store, fields, point_step, pattern):
    msg = make_msg(store, fields, bytes(point_step * 2), height=1, width=2,
                   point_step=point_step, row_step=2 * point_step)
    with pytest.raises(CloudDecodeError, match=pattern):
        decode(msg)


def test_row_step_smaller_than_a_row_is_rejected(store):
    msg = make_msg(store, XYZ_F32, bytes(48), height=2, width=2, point_step=12, row_step=20)
    with pytest.raises(CloudDecodeError, match="row_step 20 is smaller than width"):
        decode(msg)


def test_data_that_is_not_bytes_is_rejected(store):
    msg = cloud(store, XYZ_F32, grid_points(1))
    msg.data = [0] * 11 + [256]
    with pytest.raises(CloudDecodeError, match="byte values 0-255"):
        decode(msg)


# -------------------------------------------------------------------------------------- encode


def header(factory, ns=1_234_000_000_567, frame_id="map"):
    return factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, ns), frame_id=frame_id)


@pytest.mark.parametrize("with_rgb,with_intensity", [(False, False), (True, False), (True, True),
                                                     (False, True)])
def test_encode_xyz_round_trips(factory, with_rgb, with_intensity):
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (50, 3), dtype=np.uint8) if with_rgb else None
    intensity = rng.uniform(0, 100, 50).astype(np.float32) if with_intensity else None
    msg = encode_xyz(factory, header(factory), xyz, rgb, intensity)
    assert msg.point_step == 12 + 4 * with_rgb + 4 * with_intensity
    assert msg.is_dense and not msg.is_bigendian and msg.height == 1 and msg.width == 50
    scan = decode(msg)
    assert_matches_reference(scan, msg)
    np.testing.assert_array_equal(scan.xyz, xyz)
    assert (scan.rgb is None) == (rgb is None) and (scan.intensity is None) == (intensity is None)
    if rgb is not None:
        np.testing.assert_array_equal(scan.rgb, rgb)
    if intensity is not None:
        np.testing.assert_array_equal(scan.intensity, intensity)
    assert scan.stamp_ns == 1_234_000_000_567 and scan.frame_id == "map"


def test_encode_xyz_keeps_non_finite_points_and_says_so(factory):
    xyz = np.float32([[0, 0, 0], [np.nan, 1, 1], [2, 2, 2]])
    msg = encode_xyz(factory, header(factory), xyz)
    assert msg.width == 3 and msg.is_dense is False
    scan = decode(msg)
    np.testing.assert_array_equal(scan.xyz, xyz[[0, 2]])
    assert scan.dropped_non_finite == 1


def test_encode_labelled_cloud_layout_and_values(factory):
    rng = np.random.default_rng(2)
    n = 40
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    instance_id = rng.integers(-1, 7, n).astype(np.int32)
    instance_id[0] = -100  # any negative id means "no instance"
    class_id = rng.integers(0, 20, n)
    class_id[:3] = -100  # unknown
    score = rng.uniform(0, 1, n).astype(np.float32)
    msg = encode(factory, header(factory), xyz, rgb, instance_id, class_id, score)

    layout = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    assert layout == [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1),
                      ("rgb", 12, FLOAT32, 1), ("instance_id", 16, INT32, 1),
                      ("score", 20, FLOAT32, 1), ("class_id", 24, UINT16, 1)]
    assert (msg.point_step, msg.row_step, msg.height, msg.width) == (28, 28 * n, 1, n)
    assert msg.is_dense is True and msg.is_bigendian is False and len(msg.data) == 28 * n

    data = bytes(msg.data)
    for i in range(n):
        x, y, z, rgb_bits, inst, sc, cls = struct.unpack_from("<fffIifH", data, 28 * i)
        assert np.float32([x, y, z]).tolist() == xyz[i].tolist()
        assert rgb_bits == (int(rgb[i, 0]) << 16) | (int(rgb[i, 1]) << 8) | int(rgb[i, 2])
        assert inst == (instance_id[i] if instance_id[i] >= 0 else -1)
        assert cls == (UNKNOWN_CLASS_ID if class_id[i] < 0 else class_id[i])
        assert np.float32(sc) == score[i]
        assert data[28 * i + 26: 28 * i + 28] == b"\0\0"
    scan = decode(msg)
    np.testing.assert_array_equal(scan.xyz, xyz)
    np.testing.assert_array_equal(scan.rgb, rgb)


@pytest.mark.parametrize("bad", [np.inf, np.nan, 1e300])  # 1e300 is inf as FLOAT32
def test_encode_labelled_cloud_is_dense_is_truthful(factory, bad):
    xyz = np.float64([[0, 0, 0], [bad, 0, 0]])
    args = (np.zeros((2, 3), np.uint8), [1, 2], [3, 4], [0.5, 0.5])
    assert encode(factory, header(factory), xyz[:1], *(a[:1] for a in args)).is_dense is True
    msg = encode(factory, header(factory), xyz, *args)
    assert msg.is_dense is False
    assert decode(msg).dropped_non_finite == 1


def test_encode_empty_clouds(factory):
    empty = np.empty((0, 3), np.float32)
    msg = encode(factory, header(factory), empty, np.empty((0, 3), np.uint8),
                 np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.float32))
    assert msg.width == 0 and msg.row_step == 0 and len(msg.data) == 0 and msg.is_dense
    scan = decode(msg)
    assert scan.xyz.shape == (0, 3) and scan.rgb.shape == (0, 3)
    assert decode(encode_xyz(factory, header(factory), empty)).xyz.shape == (0, 3)


@pytest.mark.parametrize("change,pattern", [
    (dict(xyz=np.zeros((3, 2))), r"xyz must have shape \(N, 3\)"),
    (dict(rgb=np.zeros((2, 3), np.uint8)), r"rgb must have shape \(3, 3\)"),
    (dict(rgb=np.full((3, 3), 300)), "uint8 colours"),
    (dict(score=np.zeros(4)), r"score must have shape \(3,\)"),
    (dict(class_id=np.float32([1, 2, 3])), "must be integer arrays"),
    (dict(class_id=np.array([0, 1, 70000])), "does not fit UINT16"),
    (dict(instance_id=np.array([0, 1, 2**31])), "does not fit INT32"),
])
def test_encode_rejects_bad_arrays(factory, change, pattern):
    args = dict(xyz=np.zeros((3, 3), np.float32), rgb=np.zeros((3, 3), np.uint8),
                instance_id=np.zeros(3, np.int32), class_id=np.zeros(3, np.int32),
                score=np.zeros(3, np.float32))
    args.update(change)
    with pytest.raises(ValueError, match=pattern):
        encode(factory, header(factory), **args)


def test_encoded_cloud_survives_cdr_serialisation(store, factory):
    """The bytes a bag or DDS would carry: serialise, deserialise, decode."""
    rng = np.random.default_rng(4)
    xyz = rng.normal(size=(30, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (30, 3), dtype=np.uint8)
    msg = encode(factory, header(factory), xyz, rgb, np.arange(30), np.arange(30) % 20,
                 np.linspace(0, 1, 30))
    wire = store.serialize_cdr(msg, PC2)
    back = store.deserialize_cdr(wire, PC2)
    scan = decode(back)
    np.testing.assert_array_equal(scan.xyz, xyz)
    np.testing.assert_array_equal(scan.rgb, rgb)
    assert scan.stamp_ns == 1_234_000_000_567


# ------------------------------------------------------------------------------- stamp helpers


@given(st.integers(-(2**31) * 10**9, (2**31 - 1) * 10**9 + 999_999_999))
def test_stamp_round_trip(ns):
    factory = MessageFactory.for_rosbags(TYPESTORES["humble"])
    stamp = ns_to_stamp(factory, ns)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert stamp_to_ns(stamp) == ns


def test_stamp_out_of_range_is_rejected():
    factory = MessageFactory.for_rosbags(TYPESTORES["humble"])
    with pytest.raises(ValueError, match="int32 seconds"):
        ns_to_stamp(factory, 2**31 * 10**9)


# ------------------------------------------------------------------------- property: layouts


@st.composite
def layouts(draw):
    """A random valid PointCloud2 layout: field order, types, gaps, padding, byte order, shape."""
    names = ["x", "y", "z"]
    colour = draw(st.sampled_from([None, "rgb", "rgba", "channels"]))
    if colour in ("rgb", "rgba"):
        names.append(colour)
    elif colour == "channels":
        names += ["r", "g", "b"]
    if draw(st.booleans()):
        names.append("intensity")
    names += [f"extra{i}" for i in range(draw(st.integers(0, 2)))]
    names = draw(st.permutations(names))
    fields, offset = [], 0
    for name in names:
        if name in ("rgb", "rgba"):
            datatype = draw(st.sampled_from([FLOAT32, UINT32, INT32]))
        elif name in "rgb":
            datatype = UINT8
        else:
            datatype = draw(st.sampled_from(sorted(STRUCT_CODE)))
        count = draw(st.integers(1, 3)) if name.startswith("extra") else 1
        offset += draw(st.integers(0, 3))  # gaps, and unaligned fields
        fields.append((name, offset, datatype, count))
        offset += SIZE[datatype] * count
    point_step = offset + draw(st.integers(0, 5))
    width = draw(st.integers(1, 6))
    height = draw(st.integers(1, 4))
    row_step = width * point_step + draw(st.integers(0, 7))
    bigendian = draw(st.booleans())
    return fields, height, width, point_step, row_step, bigendian


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=layouts(), seed=st.integers(0, 2**32 - 1), distro=st.sampled_from(sorted(TYPESTORES)),
       dense=st.booleans(), block_points=st.sampled_from([1, 2, 5, cloud_module._BLOCK_POINTS]))
def test_decode_matches_reference_on_random_layouts(layout, seed, distro, dense, block_points):
    """``block_points``: the decoder copies big clouds in blocks; small blocks test the seams."""
    fields, height, width, point_step, row_step, bigendian = layout
    rng = np.random.default_rng(seed)
    data = bytearray(rng.integers(0, 256, row_step * height, dtype=np.uint8).tobytes())
    # Random bytes make mostly huge or tiny floats; write ordinary coordinates (and some
    # non-finite ones) into the float x/y/z fields so that most points survive.
    order = ">" if bigendian else "<"
    for name, offset, datatype, _ in fields:
        if name in "xyz" and datatype in (FLOAT32, FLOAT64):
            for row in range(height):
                for col in range(width):
                    value = rng.choice([rng.normal() * 20, math.nan, math.inf, -math.inf],
                                       p=[0.85, 0.05, 0.05, 0.05])
                    struct.pack_into(order + STRUCT_CODE[datatype], data,
                                     row * row_step + col * point_step + offset, value)
    msg = make_msg(TYPESTORES[distro], fields, data, height=height, width=width,
                   point_step=point_step, row_step=row_step, bigendian=bigendian, dense=dense)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cloud_module, "_BLOCK_POINTS", block_points)
        scan = decode(msg)
    assert_matches_reference(scan, msg)


@st.composite
def damaged_clouds(draw):
    """A valid random layout with up to three of its numbers changed at random."""
    fields, height, width, point_step, row_step, bigendian = draw(layouts())
    fields = [list(f) for f in fields]
    shape = {"height": height, "width": width, "point_step": point_step, "row_step": row_step}
    size = row_step * height
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(["field", "shape", "size"]))
        if target == "field":
            field = draw(st.sampled_from(fields))
            part = draw(st.integers(1, 3))  # offset, datatype or count
            field[part] = max(0, field[part] + draw(st.integers(-4, 4)))
        elif target == "shape":
            key = draw(st.sampled_from(sorted(shape)))
            shape[key] = max(0, shape[key] + draw(st.integers(-3, 3)))
        else:
            size = max(0, size + draw(st.integers(-10, 10)))
    data = draw(st.binary(min_size=size, max_size=size))
    return [tuple(f) for f in fields], shape, data, bigendian


@settings(max_examples=200, deadline=None)
@given(damaged=damaged_clouds())
def test_decode_of_damaged_clouds_returns_a_scan_or_a_clear_error(damaged):
    fields, shape, data, bigendian = damaged
    msg = make_msg(TYPESTORES["jazzy"], fields, data, bigendian=bigendian, **shape)
    try:
        scan = decode(msg)
    except CloudDecodeError as error:
        assert str(error).startswith("PointCloud2")
        return
    assert scan.xyz.shape == (scan.num_points, 3) and scan.xyz.dtype == np.float32
    assert scan.num_points + scan.dropped_non_finite == shape["height"] * shape["width"]
    assert_matches_reference(scan, msg)
