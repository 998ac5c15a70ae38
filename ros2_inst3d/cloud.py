"""``sensor_msgs/msg/PointCloud2`` ⇄ numpy, vectorised, for rclpy and ``rosbags`` messages alike.

:func:`decode` turns any object with PointCloud2's fields into a :class:`Scan`; :func:`encode`
builds the labelled output cloud and :func:`encode_xyz` a plain x/y/z[/rgb][/intensity] cloud.
Both encoders take a :class:`ros2_inst3d.msgs.MessageFactory`, so the same code fills rclpy
messages in the node and ``rosbags`` messages offline.

The decoder reads each field it needs through a strided numpy view of the data buffer
(``offset = field.offset``, ``strides = (row_step, point_step)``), so padding inside a point and at
the end of a row is skipped, and copies the views block by block into the output arrays. It avoids
the ``sensor_msgs_py.point_cloud2`` pitfalls listed in docs/ros2-ecosystem.md §4.2: organised
clouds are flattened row-major (not transposed, ros2/common_interfaces#236), mixed field types are
fine, ``row_step`` padding is honoured, and non-finite points are removed whatever ``is_dense``
claims.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# sensor_msgs/msg/PointField datatype constants (identical in Humble and Jazzy).
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)

_NUMPY_TYPE = {
    INT8: "i1", UINT8: "u1", INT16: "i2", UINT16: "u2",
    INT32: "i4", UINT32: "u4", FLOAT32: "f4", FLOAT64: "f8",
}
_DATATYPE_NAME = {
    INT8: "INT8", UINT8: "UINT8", INT16: "INT16", UINT16: "UINT16",
    INT32: "INT32", UINT32: "UINT32", FLOAT32: "FLOAT32", FLOAT64: "FLOAT64",
}
_DATATYPE_OF_NUMPY = {np.dtype(code).newbyteorder("<"): dt for dt, code in _NUMPY_TYPE.items()}
_ITEMSIZE = {dt: np.dtype(code).itemsize for dt, code in _NUMPY_TYPE.items()}

# The labelled cloud writes "no class" as the largest UINT16, since class_id is unsigned.
UNKNOWN_CLASS_ID = 0xFFFF


class CloudDecodeError(ValueError):
    """A PointCloud2 that cannot be decoded; the message says why and what to change."""


# Beam-index field names of common spinning-LiDAR drivers (Velodyne and Hesai ``ring``, Ouster
# ``channel``, others ``laser_id`` / ``line``); the first one a cloud has is its ring.
RING_FIELDS = ("ring", "channel", "laser_id", "line")


@dataclass
class Scan:
    """One decoded point cloud, finite points only, organised clouds flattened row-major.

    xyz: (N, 3) float32, metres, in ``frame_id``.
    rgb: (N, 3) uint8 or None when the cloud has no colour.
    intensity: (N,) float32 or None when the cloud has no ``intensity`` field (any numeric type,
        cast to float32; other names such as ``reflectivity`` are not read).
    stamp_ns: header stamp as integer nanoseconds.
    frame_id: header frame id.
    dropped_non_finite: how many points were removed because x, y or z was NaN or infinite.
    ring: (N,) float32 beam index of a spinning LiDAR (the first of :data:`RING_FIELDS` the
        cloud has, with count 1), or None.
    """

    xyz: np.ndarray
    rgb: np.ndarray | None
    intensity: np.ndarray | None
    stamp_ns: int
    frame_id: str
    dropped_non_finite: int = 0
    ring: np.ndarray | None = None

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/msg/Time`` (``sec``, ``nanosec``) → integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# builtin_interfaces/Time holds int32 seconds and nanoseconds in [0, 1e9): these are the
# integer-nanosecond times it can carry. Every output stamp is built from an input stamp, so
# input stamps outside this range are refused where they enter (decode), never at output time.
STAMP_MIN_NS = -(2**31) * 1_000_000_000
STAMP_MAX_NS = (2**31) * 1_000_000_000 - 1


def stamp_fits(ns: int) -> bool:
    """True when ``ns`` can be written as a ``builtin_interfaces/msg/Time``."""
    return STAMP_MIN_NS <= int(ns) <= STAMP_MAX_NS


def ns_to_stamp(factory: Any, ns: int) -> Any:
    """Integer nanoseconds → ``builtin_interfaces/msg/Time`` built by ``factory``.

    ``nanosec`` is always in [0, 1e9), also for times before the epoch (ROS's convention).
    Raises ValueError when ``ns`` does not fit (:func:`stamp_fits`).
    """
    if not stamp_fits(ns):
        raise ValueError(f"time {ns} ns does not fit builtin_interfaces/Time (int32 seconds)")
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return factory("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


# --------------------------------------------------------------------------------------- decode


@dataclass(frozen=True)
class _Field:
    name: str
    offset: int
    datatype: int
    count: int

    @property
    def nbytes(self) -> int:
        return _ITEMSIZE[self.datatype] * self.count


def decode(msg: Any) -> Scan:
    """Decode a ``sensor_msgs/msg/PointCloud2`` (rclpy's or ``rosbags``') into a :class:`Scan`.

    Reads fields by name, offset, datatype and byte order: every PointField datatype (INT8 …
    FLOAT64, cast to float32), fields with ``count > 1`` (ignored unless they are x/y/z/rgb/
    intensity, which must have count 1), padding in ``point_step`` and ``row_step``, organised
    clouds (``height > 1``, flattened row-major). Colour comes from a packed ``rgb`` or ``rgba``
    field (FLOAT32, UINT32 or INT32 whose bits are ``0x00RRGGBB`` / ``0xAARRGGBB``; alpha is
    dropped) or from separate UINT8 ``r``, ``g``, ``b`` fields. Points whose x, y or z is not finite
    (after the cast to float32) are removed whatever ``is_dense`` says, and counted in
    ``Scan.dropped_non_finite``.

    Raises :class:`CloudDecodeError` for clouds that cannot be decoded: a stamp no output stamp
    can carry (:func:`stamp_fits`), no x/y/z field, unknown
    datatypes, overlapping fields or fields past ``point_step``, ``row_step`` smaller than a row,
    or ``data`` shorter than ``row_step * height``.
    """
    height, width = int(msg.height), int(msg.width)
    stamp_ns = stamp_to_ns(msg.header.stamp)
    if not stamp_fits(stamp_ns):
        # Valid on the wire (e.g. sec 2**31-1 with nanosec >= 1e9) but no output stamp could
        # carry it: refused here so no result is built from it.
        raise CloudDecodeError(
            f"header stamp sec={msg.header.stamp.sec} nanosec={msg.header.stamp.nanosec} is "
            "outside builtin_interfaces/Time once normalised (int32 seconds, nanosec < 1e9)")
    frame_id = str(msg.header.frame_id)
    fields = [_Field(str(f.name), int(f.offset), int(f.datatype), int(f.count)) for f in msg.fields]
    if height * width == 0 and not fields:
        # A default-constructed cloud: nothing to read, nothing malformed.
        return _empty_scan(stamp_ns, frame_id, rgb=False, intensity=False, ring=False)

    point_step, row_step = int(msg.point_step), int(msg.row_step)
    by_name = _check_layout(fields, height, width, point_step, row_step)
    xyz_fields = [by_name.get(axis) for axis in ("x", "y", "z")]
    if any(f is None for f in xyz_fields):
        missing = ", ".join(repr(a) for a, f in zip("xyz", xyz_fields) if f is None)
        present = ", ".join(f.name for f in fields) or "none"
        raise CloudDecodeError(
            f"PointCloud2 has no {missing} field (fields: {present}); ros2_inst3d needs x, y and z"
        )
    colour = _colour_fields(by_name)
    intensity_field = by_name.get("intensity")
    for field in [*xyz_fields, *colour[1], intensity_field]:
        if field is not None and field.count != 1:
            raise CloudDecodeError(
                f"PointCloud2 field {field.name!r} has count {field.count}; ros2_inst3d reads "
                "x, y, z, rgb/rgba, r, g, b and intensity as single values (count 1)"
            )

    # A beam index is a hint for the lidar method, not needed: one with count > 1 is ignored.
    ring_field = next((by_name[name] for name in RING_FIELDS
                       if name in by_name and by_name[name].count == 1), None)
    if height * width == 0:
        return _empty_scan(stamp_ns, frame_id, colour[0] is not None, intensity_field is not None,
                           ring_field is not None)

    raw = _data_as_uint8(msg.data)
    needed = row_step * height
    if raw.size < needed:
        raise CloudDecodeError(
            f"PointCloud2 data has {raw.size} bytes but row_step * height = {row_step} * {height}"
            f" = {needed}; the message is truncated or row_step/height are wrong"
        )
    if row_step == width * point_step:  # no row padding: one run of records
        height, width, row_step = 1, height * width, height * width * point_step
    grid = _Grid(raw, ">" if msg.is_bigendian else "<", height, width, point_step, row_step)
    xyz, rgb, intensity, ring, all_finite = _read_points(grid, xyz_fields, colour,
                                                         intensity_field, ring_field)
    dropped = 0
    if not all_finite:
        finite = np.isfinite(xyz).all(axis=1)
        dropped = int(finite.size - np.count_nonzero(finite))
        xyz = xyz[finite]
        rgb = rgb[finite] if rgb is not None else None
        intensity = intensity[finite] if intensity is not None else None
        ring = ring[finite] if ring is not None else None
    return Scan(xyz, rgb, intensity, stamp_ns, frame_id, dropped, ring)


@functools.lru_cache(maxsize=64)
def _ordered_dtype(code: str, byte_order: str) -> np.dtype:
    """``np.dtype(code)`` in ``byte_order``, built once (dtype construction is a measurable part
    of decoding a 100k-point cloud)."""
    return np.dtype(code).newbyteorder(byte_order)


@dataclass(frozen=True)
class _Grid:
    """A (height, width) grid of point records in ``raw``; rows ``row_step`` bytes apart."""

    raw: np.ndarray  # uint8, at least row_step * height bytes
    byte_order: str  # "<" or ">"
    height: int
    width: int
    point_step: int
    row_step: int

    def view(self, offset: int, dtype: str) -> np.ndarray:
        """A no-copy (height, width) view of one ``dtype`` value per point at byte ``offset``.

        ``dtype`` is a numpy type code without byte order; the cloud's byte order is applied.
        """
        return np.ndarray(
            (self.height, self.width), _ordered_dtype(dtype, self.byte_order),
            buffer=self.raw, offset=offset, strides=(self.row_step, self.point_step),
        )

    def field(self, field: _Field) -> np.ndarray:
        return self.view(field.offset, _NUMPY_TYPE[field.datatype])

    def blocks(self, max_points: int) -> Iterator[tuple[slice, slice]]:
        """(rows, columns) index pairs that cut the grid into blocks of about ``max_points``."""
        if self.height == 1:
            for lo in range(0, self.width, max_points):
                yield slice(None), slice(lo, lo + max_points)
        else:
            rows = max(1, max_points // self.width)
            for top in range(0, self.height, rows):
                yield slice(top, top + rows), slice(None)


# Speed (``bench --stream``, layout table; benchmarks/bench_cloud.py): the cloud is copied in
# blocks of records, so each field pass after the first reads cached bytes, not memory. 16k points
# (about 200-800 kB of records) keep a block's records and outputs within this machine's L2 (2 MB
# a core): 5-15% faster than 64k-point blocks at 100k and 1M points; 4k-point blocks lose it again
# to per-block overhead. Every copy is a column of one value per point, which numpy does several
# times faster than an (N, 3) copy with a 3-long inner axis; adjacent values move together as one
# wider value.
_BLOCK_POINTS = 16384


def _read_points(
    grid: _Grid,
    xyz_fields: list[_Field],
    colour: tuple[str | None, list[_Field]],
    intensity_field: _Field | None,
    ring_field: _Field | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None, bool]:
    """xyz (N, 3) float32, rgb (N, 3) uint8 | None, intensity and ring (N,) float32 | None, all
    finite?"""
    shape = (grid.height, grid.width)
    xyz = np.empty((*shape, 3), np.float32)
    xyz_copies = _xyz_copies(grid, xyz_fields, xyz)
    other_copies = []
    rgb = None
    if colour[0] is not None:
        rgb = np.empty((*shape, 3), np.uint8)
        other_copies += _rgb_copies(grid, *colour, rgb)
    intensity = ring = None
    if intensity_field is not None:
        intensity = np.empty(shape, np.float32)
        other_copies.append((intensity, grid.field(intensity_field)))
    if ring_field is not None:
        ring = np.empty(shape, np.float32)
        other_copies.append((ring, grid.field(ring_field)))
    all_finite = True
    # Casting FLOAT64 to float32 may overflow to inf (then dropped as non-finite): not an error.
    with np.errstate(over="ignore", invalid="ignore"):
        for block in grid.blocks(_BLOCK_POINTS):
            for target, source in xyz_copies:
                target[block] = source[block]
            # Checked while the block's xyz is still in cache.
            all_finite = all_finite and _all_finite(xyz[block])
            for target, source in other_copies:
                target[block] = source[block]
    return (
        xyz.reshape(-1, 3),
        rgb.reshape(-1, 3) if rgb is not None else None,
        intensity.reshape(-1) if intensity is not None else None,
        ring.reshape(-1) if ring is not None else None,
        all_finite,
    )


def _all_finite(values: np.ndarray) -> bool:
    """Whether every value of the float array is finite. The sum of finite values is
    finite unless it overflows, and any NaN or inf makes it NaN or inf: one reduction without a
    temporary decides the usual case; the exact check runs only when the sum is not finite.
    ``einsum`` sums with a plain SIMD loop, 2-2.5x faster than ``np.add.reduce``'s pairwise
    summation and 2x faster than ``np.isfinite(...).all()``, which made the check cost as much
    as copying the xyz block (benchmarks: ``bench --stream`` layout table)."""
    if np.isfinite(np.einsum("i->", values.reshape(-1))):  # caller ignores over/invalid
        return True
    return bool(np.isfinite(values).all())


def _xyz_copies(grid: _Grid, xyz_fields: list[_Field], xyz: np.ndarray) -> list:
    """(target, source) (height, width) array pairs that fill ``xyz`` (height, width, 3)."""
    fx, fy, fz = xyz_fields
    if (fx.datatype, fy.datatype, fz.datatype) == (FLOAT32,) * 3 and (fy.offset, fz.offset) == (
        fx.offset + 4, fx.offset + 8
    ) and np.dtype(np.float32) == _ordered_dtype("f4", grid.byte_order):
        # x, y, z side by side in native float32 (the usual layout): one 12-byte record each.
        return [(xyz.view("V12")[..., 0], grid.view(fx.offset, "V12"))]
    return [(xyz[..., axis], grid.field(field)) for axis, field in enumerate(xyz_fields)]


def _rgb_copies(grid: _Grid, kind: str, fields: list[_Field], rgb: np.ndarray) -> list:
    """(target, source) (height, width) array pairs that fill ``rgb`` (height, width, 3) uint8."""
    if kind == "channels":
        return [(rgb[..., channel], grid.field(field)) for channel, field in enumerate(fields)]
    # A packed colour's 4 bytes are the uint32 0xAARRGGBB in the cloud's byte order, whatever the
    # datatype says (RViz's RGB8 transformer reads FLOAT32, UINT32 and INT32 alike): little-endian
    # stores B G R A, big-endian A R G B. R is one byte; G and B are adjacent in both orders, so
    # one 16-bit value (G << 8 | B) moves both, written big-endian to put G before B.
    (packed,) = fields
    little = grid.byte_order == "<"
    green_blue = np.ndarray(
        (grid.height, grid.width), ">u2", buffer=rgb, offset=1, strides=(3 * grid.width, 3)
    )
    return [
        (rgb[..., 0], grid.view(packed.offset + (2 if little else 1), "u1")),
        (green_blue, grid.view(packed.offset + (0 if little else 2), "u2")),
    ]


def _empty_scan(stamp_ns: int, frame_id: str, rgb: bool, intensity: bool, ring: bool) -> Scan:
    return Scan(
        xyz=np.empty((0, 3), np.float32),
        rgb=np.empty((0, 3), np.uint8) if rgb else None,
        intensity=np.empty((0,), np.float32) if intensity else None,
        stamp_ns=stamp_ns,
        frame_id=frame_id,
        ring=np.empty((0,), np.float32) if ring else None,
    )


def _check_layout(
    fields: list[_Field], height: int, width: int, point_step: int, row_step: int
) -> dict[str, _Field]:
    """Validate the point layout; returns the fields by name (names used twice are left out)."""
    for f in fields:
        if f.datatype not in _NUMPY_TYPE:
            raise CloudDecodeError(
                f"PointCloud2 field {f.name!r} has datatype {f.datatype}, which is not a "
                "PointField datatype (1=INT8 … 8=FLOAT64); fix the publisher's PointField list"
            )
        if f.offset < 0 or f.count < 0:
            raise CloudDecodeError(
                f"PointCloud2 field {f.name!r} has offset {f.offset} and count {f.count}; "
                "both must be >= 0"
            )
        if f.offset + f.nbytes > point_step:
            raise CloudDecodeError(
                f"PointCloud2 field {f.name!r} ({_DATATYPE_NAME[f.datatype]} x {f.count} at offset "
                f"{f.offset}) ends at byte {f.offset + f.nbytes}, past point_step {point_step}; "
                "point_step must cover every field"
            )
    laid_out = sorted((f for f in fields if f.nbytes > 0), key=lambda f: f.offset)
    for before, after in zip(laid_out, laid_out[1:]):
        if before.offset + before.nbytes > after.offset:
            raise CloudDecodeError(
                f"PointCloud2 fields {before.name!r} (bytes {before.offset}-"
                f"{before.offset + before.nbytes - 1}) and {after.name!r} (from byte "
                f"{after.offset}) overlap; each field needs its own bytes within point_step"
            )
    if height > 0 and width > 0 and row_step < width * point_step:
        raise CloudDecodeError(
            f"PointCloud2 row_step {row_step} is smaller than width * point_step = {width} * "
            f"{point_step} = {width * point_step}; row_step is the length of one row in bytes"
        )
    by_name: dict[str, _Field] = {}
    seen_twice: set[str] = set()
    for f in fields:
        if f.name in by_name:
            seen_twice.add(f.name)
        by_name[f.name] = f
    ambiguous = seen_twice & {"x", "y", "z", "rgb", "rgba", "r", "g", "b", "intensity"}
    if ambiguous:
        raise CloudDecodeError(
            f"PointCloud2 has more than one field named {sorted(ambiguous)[0]!r}; the fields "
            "ros2_inst3d reads must have unique names"
        )
    return {name: f for name, f in by_name.items() if name not in seen_twice}


def _colour_fields(by_name: dict[str, _Field]) -> tuple[str | None, list[_Field]]:
    """Which colour encoding the cloud uses: ("packed", [rgb]), ("channels", [r, g, b]) or None."""
    for name in ("rgb", "rgba"):
        field = by_name.get(name)
        if field is not None:
            if field.datatype not in (FLOAT32, UINT32, INT32):
                raise CloudDecodeError(
                    f"PointCloud2 field {name!r} is {_DATATYPE_NAME[field.datatype]}; a packed "
                    "colour must be FLOAT32, UINT32 or INT32 holding 0x00RRGGBB (or 0xAARRGGBB)"
                )
            return "packed", [field]
    channels = [by_name.get(c) for c in ("r", "g", "b")]
    if all(f is not None for f in channels):
        for f in channels:
            if f.datatype != UINT8:
                raise CloudDecodeError(
                    f"PointCloud2 colour field {f.name!r} is {_DATATYPE_NAME[f.datatype]}; "
                    "separate r, g, b fields must be UINT8 (0-255), or publish a packed 'rgb' field"
                )
        return "channels", channels
    return None, []


def _data_as_uint8(data: Any) -> np.ndarray:
    """``PointCloud2.data`` as a 1-D uint8 array, without copying whenever the buffer allows.

    rclpy gives ``array.array('B')``, ``rosbags`` a numpy uint8 array; bytes, bytearray and
    memoryviews are read in place too. Other sequences are taken as byte values 0-255 (slow).
    """
    if isinstance(data, np.ndarray):
        if data.dtype.itemsize == 1 and data.dtype.kind in "iu":
            return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        try:
            buffer = memoryview(data)
        except TypeError:
            buffer = None
        if buffer is not None and buffer.itemsize == 1:
            if not buffer.c_contiguous:
                buffer = memoryview(buffer.tobytes())
            return np.frombuffer(buffer, np.uint8)
    values = np.asarray(data)
    if values.size == 0:
        return np.empty(0, np.uint8)
    if values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 255:
        raise CloudDecodeError(
            f"PointCloud2 data must be bytes or a sequence of byte values 0-255, got "
            f"{type(data).__name__} of {values.dtype}"
        )
    return values.astype(np.uint8).reshape(-1)


# --------------------------------------------------------------------------------------- encode


def encode(
    factory: Any,
    header: Any,
    xyz: np.ndarray,
    rgb: np.ndarray,
    instance_id: np.ndarray,
    class_id: np.ndarray,
    score: np.ndarray,
) -> Any:
    """Build the labelled output cloud (``sensor_msgs/msg/PointCloud2``, little-endian, height 1).

    xyz: (N, 3) float, metres, in ``header.frame_id``.
    rgb: (N, 3) uint8 display colour, written as packed FLOAT32 ``rgb`` (0x00RRGGBB bits, what
        RViz's RGB8 transformer reads).
    instance_id: (N,) int, written as INT32; any negative id means "no instance" and is written -1.
    class_id: (N,) int, written as UINT16; negative ids (e.g. -100, unknown) are written as
        :data:`UNKNOWN_CLASS_ID` (65535).
    score: (N,) float, written as FLOAT32.

    Layout (point_step 28): x 0, y 4, z 8, rgb 12, instance_id 16, score 20, class_id 24, then two
    zero padding bytes so every point starts 4-byte aligned. ``is_dense`` is True exactly when
    every xyz is finite.
    """
    xyz = _points(xyz)
    n = xyz.shape[0]
    rgb = _colours(rgb, n)
    instance_id = _per_point("instance_id", instance_id, n)
    class_id = _per_point("class_id", class_id, n)
    score = _per_point("score", score, n)
    if instance_id.dtype.kind not in "iu" or class_id.dtype.kind not in "iu":
        raise ValueError(
            f"instance_id and class_id must be integer arrays, got {instance_id.dtype} and "
            f"{class_id.dtype}"
        )
    if n and instance_id.max() > np.iinfo(np.int32).max:
        raise ValueError(f"instance_id {instance_id.max()} does not fit INT32")
    if n and class_id.max() >= UNKNOWN_CLASS_ID:
        raise ValueError(
            f"class_id {class_id.max()} does not fit UINT16 below {UNKNOWN_CLASS_ID} (the 'unknown'"
            " value)"
        )
    columns = [
        ("x", np.float32, xyz[:, 0]),
        ("y", np.float32, xyz[:, 1]),
        ("z", np.float32, xyz[:, 2]),
        ("rgb", np.float32, _pack_rgb(rgb)),
        ("instance_id", np.int32, np.where(instance_id < 0, -1, instance_id)),
        ("score", np.float32, score),
        ("class_id", np.uint16, np.where(class_id < 0, UNKNOWN_CLASS_ID, class_id)),
    ]
    return _build_cloud(factory, header, columns, n, is_dense=bool(np.isfinite(xyz).all()))


def encode_xyz(
    factory: Any,
    header: Any,
    xyz: np.ndarray,
    rgb: np.ndarray | None = None,
    intensity: np.ndarray | None = None,
) -> Any:
    """Build a plain ``sensor_msgs/msg/PointCloud2``: x, y, z [, rgb] [, intensity], all FLOAT32.

    xyz: (N, 3) float, metres; rgb: (N, 3) uint8 or None (packed 0x00RRGGBB as FLOAT32);
    intensity: (N,) float or None. Little-endian, height 1, no padding (point_step 12, 16 or 20).
    Non-finite points are kept as given and ``is_dense`` says whether there are any.
    """
    xyz = _points(xyz)
    n = xyz.shape[0]
    columns = [
        ("x", np.float32, xyz[:, 0]),
        ("y", np.float32, xyz[:, 1]),
        ("z", np.float32, xyz[:, 2]),
    ]
    if rgb is not None:
        columns.append(("rgb", np.float32, _pack_rgb(_colours(rgb, n))))
    if intensity is not None:
        columns.append(("intensity", np.float32, _per_point("intensity", intensity, n)))
    return _build_cloud(factory, header, columns, n, is_dense=bool(np.isfinite(xyz).all()))


def _build_cloud(
    factory: Any,
    header: Any,
    columns: Sequence[tuple[str, type, np.ndarray]],
    n: int,
    is_dense: bool,
) -> Any:
    """Pack ``columns`` (name, numpy type, (N,) values) into a little-endian height-1 cloud."""
    names, formats, offsets = [], [], []
    offset = 0
    for name, numpy_type, _ in columns:
        dtype = np.dtype(numpy_type).newbyteorder("<")
        offset = -(-offset // dtype.itemsize) * dtype.itemsize  # align each field to its size
        names.append(name)
        formats.append(dtype)
        offsets.append(offset)
        offset += dtype.itemsize
    point_step = -(-offset // 4) * 4
    record = np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step}
    )
    points = np.zeros(n, record)  # zeros: padding bytes are deterministic
    for name, _, values in columns:
        points[name] = values
    fields = [
        factory(
            "sensor_msgs/msg/PointField",
            name=name, offset=off, datatype=_DATATYPE_OF_NUMPY[fmt], count=1,
        )
        for name, fmt, off in zip(names, formats, offsets)
    ]
    return factory(
        "sensor_msgs/msg/PointCloud2",
        header=header,
        height=1,
        width=n,
        fields=fields,
        is_bigendian=False,
        point_step=point_step,
        row_step=point_step * n,
        data=factory.byte_data(points.view(np.uint8).reshape(-1)),
        is_dense=is_dense,
    )


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 → (N,) float32 whose bits are 0x00RRGGBB (the PCL/RViz packed colour)."""
    rgb = rgb.astype(np.uint32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    return packed.view(np.float32)


def _points(xyz: np.ndarray) -> np.ndarray:
    """``xyz`` as (N, 3) float32, the values written (so ``is_dense`` is judged on them)."""
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must have shape (N, 3), got {xyz.shape}")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: not dense
        return xyz.astype(np.float32, copy=False)


def _colours(rgb: np.ndarray, n: int) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.shape != (n, 3):
        raise ValueError(f"rgb must have shape ({n}, 3) like xyz, got {rgb.shape}")
    if rgb.dtype != np.uint8:
        if rgb.dtype.kind not in "iu" or (n and (rgb.min() < 0 or rgb.max() > 255)):
            raise ValueError(f"rgb must be uint8 colours 0-255, got {rgb.dtype}")
    return rgb


def _per_point(name: str, values: np.ndarray, n: int) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like xyz, got {values.shape}")
    return values
