"""Point-cloud files in and segmentation results out.

Readers (``read_cloud``) for ``.ply`` (ascii, binary little/big endian; meshes give their
vertices), ``.pcd`` (ascii, binary, binary_compressed), ``.npy``, ``.npz`` (our scene files
included) and KITTI ``.bin``. They are our own vectorised parsers rather than open3d's because
open3d drops every field it does not know (labels, rings, intensity of most PCDs).

Writers for one segmentation result: ``OUTDIR/<stem>.instances.ply`` (instance-coloured points),
``OUTDIR/<stem>.instances.json`` (a human-readable summary) and ``OUTDIR/<stem>.labels.npz``
(per-point instance ids for evaluation tools).

Every failure to read a file is a ``CloudFileError`` whose message is one line naming the file
and what is wrong with it.
"""

from __future__ import annotations

import json
import logging
import os
import lzma
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np

if TYPE_CHECKING:  # only the writers use Instances; reading a file needs none of it
    from ros2_inst3d.instances import Instances

log = logging.getLogger(__name__)

SUPPORTED_EXTENSIONS = (".ply", ".pcd", ".npy", ".npz", ".bin")
PREDICTION_SUFFIX = ".labels.npz"
"""``write_results``' per-point labels of scene ``<stem>``: ``<stem>.labels.npz`` (what ``eval
--pred`` reads; scene folders skip such files)."""
# float32 spacing reaches 1 mm at 8192 m: beyond it, float64 input coordinates lose precision.
_FLOAT32_EXACT_M = 8192.0

# Field names read as intensity, compared lower-case (CloudCompare writes "scalar_Intensity",
# SemanticKITTI calls it remission).
_INTENSITY_NAMES = ("intensity", "scalar_intensity", "reflectance", "remission")
_COLOR_TRIPLES = (("red", "green", "blue"), ("r", "g", "b"),
                  ("diffuse_red", "diffuse_green", "diffuse_blue"))
_PACKED_COLOR_NAMES = ("rgb", "rgba")


class CloudFileError(ValueError):
    """A point-cloud file cannot be read; the message names the file and the reason."""


# What numpy, struct, zlib, lzma, bz2 and zipfile raise on corrupt data (not programming errors).
_DATA_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, OverflowError, MemoryError, EOFError, struct.error, zlib.error, lzma.LZMAError,
    zipfile.BadZipFile, NotImplementedError, UnicodeDecodeError)


@dataclass
class PointCloudFile:
    """The points of one file, non-finite points already removed.

    xyz: (N, 3) float32, in the file's units and frame (metres for every format we know);
        float64 input farther than 8 km from the origin loses precision and is logged.
    rgb: (N, 3) uint8 or None.
    intensity: (N,) float32 or None, in the file's own scale (KITTI remission 0..1, Velodyne
        0..255).
    semantic, instance: (N,) int arrays from scene ``.npz`` files (-100 = ignore / none), else None.
    extra: other per-point fields the file carries, keyed by their name in the file
        (PCD ``label``, PLY ``nx``...), (N,) or (N, COUNT), dtype as stored.
    meta: the decoded ``meta`` JSON of a scene ``.npz``, else None.
    dropped_non_finite: how many points had NaN/inf coordinates and were removed.
    source_index: (N,) int64, the row of each point in the file (before non-finite points were
        removed): ``full[source_index] = per_point`` puts results back in the file's order.
    source_points: how many points the file holds (finite or not).
    organized_shape: (HEIGHT, WIDTH) of an organised PCD (HEIGHT > 1; rows of the image in
        file order), else None: ``full.reshape(organized_shape)`` is the per-pixel image.

    ``xyz, rgb, intensity = read_cloud(path)`` unpacks the three arrays every consumer needs.
    """

    path: str
    xyz: np.ndarray
    rgb: np.ndarray | None = None
    intensity: np.ndarray | None = None
    semantic: np.ndarray | None = None
    instance: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] | None = None
    dropped_non_finite: int = 0
    source_index: np.ndarray | None = None
    source_points: int = 0
    organized_shape: tuple[int, int] | None = None

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    def __iter__(self) -> Iterator[np.ndarray | None]:
        return iter((self.xyz, self.rgb, self.intensity))


def read_cloud(path: str | os.PathLike[str]) -> PointCloudFile:
    """Read a point cloud from ``path``; the format is chosen by the extension.

    ``.ply`` vertex element (x, y, z; red/green/blue as uchar or float 0..1; intensity; every
    other vertex property goes to ``extra``; faces are ignored). ``.pcd`` ascii / binary /
    binary_compressed (LZF) with x y z, packed ``rgb`` (float or uint32) or ``rgba``, intensity.
    ``.npy`` / ``.npz``: see ``_columns_to_cloud`` for the column layout rule. ``.bin``: KITTI
    Velodyne scans, float32 little-endian x, y, z, intensity per point.

    Raises CloudFileError (one line: file and reason) for missing, unknown, truncated or
    malformed files.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if p.is_dir():
        raise CloudFileError(f"{p}: is a directory; give one cloud file "
                             f"({', '.join(SUPPORTED_EXTENSIONS)})")
    if ext not in SUPPORTED_EXTENSIONS:
        raise CloudFileError(f"{p}: unknown extension {p.suffix!r}; supported: "
                             f"{', '.join(SUPPORTED_EXTENSIONS)}")
    if not p.is_file():
        raise CloudFileError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    try:
        if ext == ".npz":
            return _read_npz(p)
        data = p.read_bytes()
    except OSError as exc:
        raise CloudFileError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    except CloudFileError:
        raise
    except _DATA_ERRORS as exc:
        raise CloudFileError(f"{p}: cannot parse the file: {type(exc).__name__}: "
                             f"{_one_line(exc)}"[:400]) from None
    reader = {".ply": _read_ply, ".pcd": _read_pcd, ".npy": _read_npy}.get(ext, _read_kitti_bin)
    try:
        return reader(p, data)
    except CloudFileError:
        raise
    except _DATA_ERRORS as exc:
        # The parsers check what they can name; what the libraries below them (numpy, struct,
        # zlib) find in corrupt data still becomes one line naming the file.
        raise CloudFileError(f"{p}: cannot parse the file: {type(exc).__name__}: "
                             f"{_one_line(exc)}"[:400]) from None


# --------------------------------------------------------------------------------------------
# shared: named per-point fields -> PointCloudFile


def _finish(path: Path, xyz: np.ndarray, rgb: np.ndarray | None = None,
            intensity: np.ndarray | None = None, semantic: np.ndarray | None = None,
            instance: np.ndarray | None = None, extra: dict[str, np.ndarray] | None = None,
            meta: dict[str, Any] | None = None) -> PointCloudFile:
    """Cast to the documented dtypes and drop points whose coordinates are not finite."""
    if np.asarray(xyz).dtype == np.float64 and xyz.size:
        extent = float(np.nanmax(np.abs(np.where(np.isfinite(xyz), xyz, np.nan)), initial=0.0))
        if extent > _FLOAT32_EXACT_M:
            log.warning("%s: coordinates up to %.0f m are stored as float32 (resolution %.3f m "
                        "there); shift the cloud near the origin to keep mm precision", path,
                        extent, float(np.spacing(np.float32(extent))))
    xyz = np.ascontiguousarray(xyz, dtype=np.float32).reshape(-1, 3)
    keep = np.isfinite(xyz).all(axis=1)
    dropped = int(keep.size - np.count_nonzero(keep))

    def sel(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        return np.ascontiguousarray(a[keep]) if dropped else np.ascontiguousarray(a)

    return PointCloudFile(
        source_index=np.flatnonzero(keep).astype(np.int64), source_points=int(keep.size),
        path=str(path), xyz=sel(xyz),
        rgb=sel(None if rgb is None else np.asarray(rgb, dtype=np.uint8)),
        intensity=sel(None if intensity is None else np.asarray(intensity, dtype=np.float32)),
        semantic=sel(semantic), instance=sel(instance),
        extra={k: sel(v) for k, v in (extra or {}).items()}, meta=meta, dropped_non_finite=dropped)


def colors_to_uint8(values: np.ndarray, what: str = "colour") -> np.ndarray:
    """(N, 3) colours of any numeric dtype -> (N, 3) uint8.

    Rule: uint8 as is; other integers in 0..255 as is, in 0..65535 scaled by 255/65535 (16-bit
    colour); floats with every finite value in 0..1 scaled by 255, in 0..255 rounded. Non-finite
    float colours become 0. Anything else raises ValueError naming ``what``.
    """
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values
    if values.size == 0:
        return values.astype(np.uint8)
    if np.issubdtype(values.dtype, np.integer):
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0 and hi <= 255:
            return values.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return np.round(values.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        raise ValueError(f"{what} values span {lo}..{hi}; expected 0..255 (or 0..65535)")
    if np.issubdtype(values.dtype, np.floating):
        v = np.where(np.isfinite(values), values, 0.0).astype(np.float64)
        lo, hi = float(v.min()), float(v.max())
        if lo < 0.0 or hi > 255.0:
            raise ValueError(f"{what} values span {lo:g}..{hi:g}; expected 0..1 or 0..255")
        if hi <= 1.0:
            v = v * 255.0
        return np.round(v).astype(np.uint8)
    raise ValueError(f"{what} has dtype {values.dtype}; expected numbers")


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """PCL packed colour (uint32 0x00RRGGBB, or the same bits in a float32) -> (N, 3) uint8."""
    packed = np.asarray(packed)
    if packed.dtype.kind == "f":
        packed = packed.astype(np.float32).view(np.uint32)
    packed = packed.astype(np.uint32, copy=False).reshape(-1)
    out = np.empty((packed.size, 3), dtype=np.uint8)
    out[:, 0] = (packed >> 16) & 0xFF
    out[:, 1] = (packed >> 8) & 0xFF
    out[:, 2] = packed & 0xFF
    return out


def _named_fields_to_cloud(path: Path, fields: dict[str, np.ndarray], what: str) -> PointCloudFile:
    """Pick xyz / colour / intensity out of named per-point fields; the rest goes to ``extra``.

    ``what`` names the field source in error messages ("vertex properties", "PCD fields").
    """
    lower = {name.lower(): name for name in fields}
    missing = [c for c in "xyz" if c not in lower]
    if missing:
        raise CloudFileError(f"{path}: missing {'/'.join(missing)} among the {what} "
                             f"({' '.join(fields) or 'none'}); x, y and z are required")
    used = [lower[c] for c in "xyz"]
    num_points = np.asarray(fields[used[0]]).shape[0] if np.ndim(fields[used[0]]) else 0

    def scalar(name: str) -> np.ndarray:
        """A field that must hold one value per point (x, y, z, colour, intensity)."""
        a = np.asarray(fields[name])
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.shape != (num_points,):
            raise CloudFileError(f"{path}: {what} field {name!r} has shape {a.shape}; x, y, z, "
                                 f"colour and intensity must be one value per point "
                                 f"({num_points},) (COUNT 1)")
        return a

    xyz = np.stack([scalar(n).astype(np.float64) for n in used], axis=1)

    rgb = None
    for triple in _COLOR_TRIPLES:
        if all(c in lower for c in triple):
            names = [lower[c] for c in triple]
            try:
                rgb = colors_to_uint8(np.stack([scalar(n) for n in names], axis=1),
                                      f"colour ({'/'.join(names)})")
            except ValueError as exc:
                raise CloudFileError(f"{path}: {exc}") from exc
            used += names
            break
    if rgb is None:
        for name in _PACKED_COLOR_NAMES:
            if name in lower:
                packed = scalar(lower[name])
                if packed.dtype.itemsize != 4:
                    raise CloudFileError(
                        f"{path}: packed colour field {lower[name]!r} must be one 4-byte value per "
                        f"point (float32 or uint32), got {packed.dtype} shape {packed.shape}")
                rgb = unpack_rgb(packed)
                used.append(lower[name])
                break

    intensity = None
    for name in _INTENSITY_NAMES:
        if name in lower:
            intensity = scalar(lower[name]).astype(np.float32)
            used.append(lower[name])
            break

    extra = {n: _native(a) for n, a in fields.items() if n not in used}
    wrong = [n for n, a in extra.items() if a.ndim == 0 or a.shape[0] != num_points]
    if wrong:
        raise CloudFileError(f"{path}: {what} field {wrong[0]!r} has shape {extra[wrong[0]].shape}"
                             f"; expected {num_points} rows")
    return _finish(path, xyz, rgb, intensity, extra=extra)


def _native(a: np.ndarray) -> np.ndarray:
    """Copy into native byte order (structured-array columns may be big-endian views)."""
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))


def _parse_ascii_numbers(path: Path, text: bytes, expected: int, what: str) -> np.ndarray:
    """Whitespace-separated numbers -> float64 array of exactly ``expected`` values."""
    tokens = text.split()
    if len(tokens) < expected:
        raise CloudFileError(f"{path}: truncated ascii data: {what} = {expected} values, the "
                             f"file has {len(tokens)}")
    if len(tokens) > expected:
        raise CloudFileError(f"{path}: the file has {len(tokens)} ascii values, more than {what} "
                             f"= {expected}")
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError as exc:
        bad = next((t for t in tokens if not _is_number(t)), b"?")
        raise CloudFileError(f"{path}: non-numeric ascii value {bad.decode(errors='replace')!r} "
                             f"in {what}") from exc


def _is_number(token: bytes) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _ascii_to_dtype(path: Path, name: str, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """ASCII numbers of a field declared ``dtype``; integers out of the type's range (a uchar
    colour of 300) are an error, never a silent wrap-around."""
    if dtype.kind == "f":
        return values.astype(dtype)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    info = np.iinfo(dtype)
    if values.size and (values.min() < info.min or values.max() > info.max):
        raise CloudFileError(f"{path}: field {name!r} is declared {dtype} ({info.min}..{info.max}) "
                             f"but holds values {values.min():g}..{values.max():g}")
    return values.astype(dtype)


# --------------------------------------------------------------------------------------------
# PLY

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


@dataclass
class _PlyElement:
    name: str
    count: int
    properties: list[tuple[str, str]]  # (name, numpy type code without byte order)
    has_list: bool = False


def _read_ply(path: Path, data: bytes) -> PointCloudFile:
    if not data.startswith(b"ply"):
        raise CloudFileError(f"{path}: not a PLY file (it does not start with 'ply')")
    end = data.find(b"end_header")
    if end < 0:
        raise CloudFileError(f"{path}: bad PLY header: no 'end_header' line")
    body_start = data.find(b"\n", end)
    body_start = len(data) if body_start < 0 else body_start + 1
    fmt, elements = _parse_ply_header(path, data[:end].decode("ascii", errors="replace"))
    for e in elements:
        # Every record takes at least one byte: a count beyond the file size is a lie, and
        # refusing it here keeps counts beyond int64 away from numpy and str.split.
        if e.count > len(data):
            raise CloudFileError(f"{path}: PLY element {e.name!r} declares {e.count} records, "
                                 f"more than the file's {len(data)} bytes could hold")

    index = next((i for i, e in enumerate(elements) if e.name == "vertex"), None)
    if index is None:
        raise CloudFileError(f"{path}: PLY has no 'vertex' element (elements: "
                             f"{', '.join(e.name for e in elements) or 'none'})")
    vertex = elements[index]
    if vertex.has_list:
        raise CloudFileError(f"{path}: PLY vertex element has list properties, which are not "
                             "supported; store per-vertex scalars only")
    names = [n for n, _ in vertex.properties]
    if len(set(names)) != len(names):
        raise CloudFileError(f"{path}: PLY vertex element repeats a property name "
                             f"({' '.join(names)})")

    if fmt == "ascii":
        lines = data[body_start:].split(b"\n", sum(e.count for e in elements[:index + 1]))
        skip = sum(e.count for e in elements[:index])
        rows = lines[skip:skip + vertex.count]
        if len(rows) < vertex.count:
            raise CloudFileError(f"{path}: truncated PLY: {vertex.count} vertex lines declared, "
                                 f"{len(rows)} present")
        if index == len(elements) - 1 and b"".join(lines[skip + vertex.count:]).strip():
            raise CloudFileError(f"{path}: PLY holds more vertex lines than the {vertex.count} "
                                 "its header declares")
        values = _parse_ascii_numbers(path, b" ".join(rows), vertex.count * len(names),
                                      f"{vertex.count} vertices x {len(names)} properties")
        values = values.reshape(vertex.count, len(names))
        fields = {n: _ascii_to_dtype(path, n, values[:, i], np.dtype(t))
                  for i, (n, t) in enumerate(vertex.properties)}
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        offset = body_start
        for e in elements[:index]:
            if e.has_list:
                raise CloudFileError(
                    f"{path}: binary PLY element {e.name!r} with list properties comes before "
                    "'vertex'; only files with the vertex element first (or fixed-size elements "
                    "before it) are supported")
            offset += e.count * sum(np.dtype(t).itemsize for _, t in e.properties)
        dtype = np.dtype([(n, order + t) for n, t in vertex.properties])
        need = vertex.count * dtype.itemsize
        if offset + need > len(data):
            raise CloudFileError(
                f"{path}: truncated PLY: {vertex.count} vertices x {dtype.itemsize} bytes need "
                f"{need} bytes, {max(0, len(data) - offset)} follow")
        if index == len(elements) - 1 and len(data) - offset - need >= max(1, dtype.itemsize):
            raise CloudFileError(
                f"{path}: PLY holds {(len(data) - offset - need) // dtype.itemsize} more vertex "
                f"records than the {vertex.count} its header declares")
        table = np.frombuffer(data, dtype=dtype, count=vertex.count, offset=offset)
        fields = {n: table[n] for n in names}
    return _named_fields_to_cloud(path, fields, "PLY vertex properties")


def _parse_ply_header(path: Path, header: str) -> tuple[str, list[_PlyElement]]:
    fmt = None
    elements: list[_PlyElement] = []
    for lineno, raw in enumerate(header.splitlines()[1:], start=2):
        words = raw.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        key = words[0]
        if key == "format":
            if len(words) < 2 or words[1] not in ("ascii", "binary_little_endian",
                                                  "binary_big_endian"):
                raise CloudFileError(f"{path}: bad PLY header line {lineno}: unknown format "
                                     f"{' '.join(words[1:])!r}")
            fmt = words[1]
        elif key == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise CloudFileError(f"{path}: bad PLY header line {lineno}: {raw.strip()!r} "
                                     "(expected 'element NAME COUNT')")
            elements.append(_PlyElement(words[1], int(words[2]), []))
        elif key == "property":
            if not elements:
                raise CloudFileError(f"{path}: bad PLY header line {lineno}: property before "
                                     "any element")
            if len(words) == 5 and words[1] == "list":
                elements[-1].has_list = True
                elements[-1].properties.append((words[4], "list"))
                continue
            if len(words) != 3 or words[1] not in _PLY_TYPES:
                raise CloudFileError(f"{path}: bad PLY header line {lineno}: {raw.strip()!r} "
                                     f"(types: {', '.join(sorted(set(_PLY_TYPES)))})")
            elements[-1].properties.append((words[2], _PLY_TYPES[words[1]]))
        else:
            raise CloudFileError(f"{path}: bad PLY header line {lineno}: unknown keyword {key!r}")
    if fmt is None:
        raise CloudFileError(f"{path}: bad PLY header: no 'format' line")
    return fmt, elements


# --------------------------------------------------------------------------------------------
# PCD

_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8",
              ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8"}


def lzf_decompress(data: bytes | bytearray | memoryview, expected_size: int) -> bytes:
    """Decompress an LZF block (liblzf format, as PCL's binary_compressed uses).

    The stream is a sequence of tokens; a control byte ``c < 32`` starts a literal run of
    ``c + 1`` bytes, otherwise ``c >> 5`` (7: plus the next byte) + 2 bytes are copied from
    ``((c & 31) << 8) + next byte + 1`` bytes back in the output, overlapping allowed.

    One Python iteration per token (a slice copy each), about 0.4 us per token: 0.15-0.35 s for
    a 640x480 mOSD frame (6 MB out, 550k tokens), 2.4 s for 1M xyz+rgb points with poorly
    compressible coordinates (16 MB, 5.7M tokens); open3d's C++ reader is 5-10x faster. A
    vectorised variant (numpy token expansion + pointer jumping over the references) measured
    3-5x slower on the mOSD files, whose long NaN runs make deep reference chains.
    Raises ValueError on corrupt or truncated input.
    """
    src = bytes(data)
    out = bytearray()
    n = len(src)
    pos = 0
    while pos < n:
        ctrl = src[pos]
        pos += 1
        if ctrl < 32:
            run = ctrl + 1
            if pos + run > n:
                raise ValueError(f"LZF literal run of {run} bytes at input byte {pos - 1} "
                                 f"overruns the {n}-byte input (truncated data)")
            out += src[pos:pos + run]
            pos += run
            continue
        length = ctrl >> 5
        if length == 7:
            if pos >= n:
                raise ValueError("LZF stream ends inside a back-reference (truncated data)")
            length += src[pos]
            pos += 1
        if pos >= n:
            raise ValueError("LZF stream ends inside a back-reference (truncated data)")
        distance = ((ctrl & 0x1F) << 8) + src[pos] + 1
        pos += 1
        length += 2
        start = len(out) - distance
        if start < 0:
            raise ValueError(f"LZF back-reference {distance} bytes back at output byte "
                             f"{len(out)} points before the start (corrupt data)")
        if distance >= length:
            out += out[start:start + length]
        else:  # the copy overlaps its own output: a repeating pattern of `distance` bytes
            pattern = bytes(out[start:])
            out += (pattern * (length // distance + 1))[:length]
        if len(out) > expected_size:
            break
    if len(out) != expected_size:
        raise ValueError(f"LZF data decompresses to {len(out)}"
                         f"{'+' if len(out) > expected_size else ''} bytes, the header says "
                         f"{expected_size}")
    return bytes(out)


# LZF's best case: a 3-byte back-reference token yields 264 bytes.
_MAX_LZF_RATIO = 88


@dataclass
class _PcdHeader:
    fields: list[str]
    sizes: list[int]
    types: list[str]
    counts: list[int]
    width: int
    height: int
    points: int
    data: str


def _parse_pcd_header(path: Path, data: bytes) -> tuple[_PcdHeader, int]:
    """Parse the header; return it and the offset of the first data byte."""
    entries: dict[str, list[str]] = {}
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise CloudFileError(f"{path}: bad PCD header: no 'DATA' line")
        line = data[pos:nl].decode("ascii", errors="replace").strip()
        pos = nl + 1
        if not line or line.startswith("#"):
            continue
        words = line.split()
        key = words[0].upper()
        entries[key] = words[1:]
        if key == "DATA":
            break
        if pos > 1 << 16:
            raise CloudFileError(f"{path}: bad PCD header: no 'DATA' line in the first 64 KiB")
    fields = entries.get("FIELDS") or entries.get("COLUMNS")
    if not fields:
        raise CloudFileError(f"{path}: bad PCD header: no FIELDS line")
    nfields = len(fields)

    def ints(key: str, default: list[int] | None = None) -> list[int]:
        if key not in entries:
            if default is None:
                raise CloudFileError(f"{path}: bad PCD header: no {key} line")
            return default
        try:
            values = [int(v) for v in entries[key]]
        except ValueError:
            raise CloudFileError(f"{path}: bad PCD header: {key} {' '.join(entries[key])!r} "
                                 "is not a list of integers") from None
        return values

    sizes = ints("SIZE", [4] * nfields)
    types = [t.upper() for t in entries.get("TYPE", ["F"] * nfields)]
    counts = ints("COUNT", [1] * nfields)
    for key, values in (("SIZE", sizes), ("TYPE", types), ("COUNT", counts)):
        if len(values) != nfields:
            raise CloudFileError(f"{path}: bad PCD header: {key} has {len(values)} entries for "
                                 f"{nfields} FIELDS ({' '.join(fields)})")
    for name, t, s, c in zip(fields, types, sizes, counts):
        if (t, s) not in _PCD_TYPES:
            raise CloudFileError(f"{path}: bad PCD header: field {name!r} has TYPE {t} SIZE {s}; "
                                 "supported: F 4/8, U and I 1/2/4/8")
        if c < 1:
            raise CloudFileError(f"{path}: bad PCD header: field {name!r} has COUNT {c}")
    width = ints("WIDTH", [-1])[0]
    height = ints("HEIGHT", [1])[0]
    points = ints("POINTS", [width * height if width >= 0 else -1])[0]
    if points < 0:
        raise CloudFileError(f"{path}: bad PCD header: neither POINTS nor WIDTH is given")
    if width >= 0 and "WIDTH" in entries and width * height != points:
        raise CloudFileError(f"{path}: bad PCD header: WIDTH {width} x HEIGHT {height} = "
                             f"{width * height}, but POINTS says {points}")
    if height < 1 and points > 0:
        raise CloudFileError(f"{path}: bad PCD header: HEIGHT {height}")
    data_kind = entries["DATA"][0].lower() if entries["DATA"] else ""
    if data_kind not in ("ascii", "binary", "binary_compressed"):
        raise CloudFileError(f"{path}: bad PCD header: DATA {data_kind!r}; expected ascii, "
                             "binary or binary_compressed")
    return _PcdHeader(fields, sizes, types, counts, width, height, points, data_kind), pos


def _read_pcd(path: Path, data: bytes) -> PointCloudFile:
    header, start = _parse_pcd_header(path, data)
    n = header.points
    # PCL names padding fields "_"; they may repeat, so give each a unique internal name.
    names = [f"_pad{i}" if f == "_" else f for i, f in enumerate(header.fields)]
    if len(set(names)) != len(names):
        raise CloudFileError(f"{path}: bad PCD header: repeated field name in "
                             f"{' '.join(header.fields)}")
    types = [np.dtype("<" + _PCD_TYPES[(t, s)]) for t, s in zip(header.types, header.sizes)]
    point_bytes = sum(t.itemsize * c for t, c in zip(types, header.counts))
    if n * point_bytes > (len(data) - start) * _MAX_LZF_RATIO:
        # No encoding (ascii >= 2 bytes a value, binary 1:1, LZF at most 88:1) packs that
        # many points into this file: refuse before allocating anything for them.
        raise CloudFileError(f"{path}: PCD header declares POINTS {n} x {point_bytes} bytes, "
                             f"more than the file's {len(data) - start} data bytes can hold")

    columns: dict[str, np.ndarray] = {}
    if header.data == "ascii":
        ncols = sum(header.counts)
        values = _parse_ascii_numbers(path, data[start:], n * ncols,
                                      f"POINTS {n} x {ncols} columns").reshape(n, ncols)
        col = 0
        for name, field_name, t, c in zip(names, header.fields, types, header.counts):
            v = values[:, col:col + c]
            col += c
            if field_name.lower() in _PACKED_COLOR_NAMES and t.kind == "f":
                # PCL writes a float-typed packed colour as its uint32 bit pattern in ascii
                # (pcd_io.cpp: "store the rgb field as uint32"); a non-integral value is the float.
                finite = np.where(np.isfinite(v), v, 0.0)
                if np.all(finite == np.round(finite)) and np.all((finite >= 0) & (finite < 2**32)):
                    columns[name] = finite.astype(np.uint32)
                else:
                    columns[name] = finite.astype(np.float32)
            else:
                columns[name] = _ascii_to_dtype(path, field_name, v, t)
        columns = {k: (v[:, 0] if v.shape[1] == 1 else v) for k, v in columns.items()}
    elif header.data == "binary":
        need = n * point_bytes
        if len(data) - start < need:
            raise CloudFileError(f"{path}: truncated PCD binary data: {n} points x {point_bytes} "
                                 f"bytes = {need} bytes expected, {len(data) - start} present")
        dtype = np.dtype([(nm, t, (c,)) if c > 1 else (nm, t)
                          for nm, t, c in zip(names, types, header.counts)])
        if len(data) - start - need >= max(1, point_bytes):
            raise CloudFileError(
                f"{path}: PCD binary data holds {(len(data) - start - need) // point_bytes} more "
                f"points than the POINTS {n} its header declares")
        table = np.frombuffer(data, dtype=dtype, count=n, offset=start)
        columns = {nm: table[nm] for nm in names}
    else:
        if len(data) - start < 8:
            raise CloudFileError(f"{path}: truncated PCD binary_compressed data: the 8-byte size "
                                 "header is missing")
        compressed_size, raw_size = struct.unpack_from("<II", data, start)
        body = memoryview(data)[start + 8:start + 8 + compressed_size]
        if len(body) < compressed_size:
            raise CloudFileError(f"{path}: truncated PCD binary_compressed data: {compressed_size} "
                                 f"compressed bytes declared, {len(body)} present")
        if raw_size != n * point_bytes:
            # PCL writes exactly POINTS x point size; decompressing more (up to 88x the file)
            # for points the header does not declare would only be thrown away.
            raise CloudFileError(f"{path}: PCD binary_compressed data declares {raw_size} "
                                 f"uncompressed bytes, but POINTS {n} x {point_bytes} bytes = "
                                 f"{n * point_bytes}")
        if raw_size > compressed_size * _MAX_LZF_RATIO:
            raise CloudFileError(f"{path}: PCD binary_compressed data declares {raw_size} bytes "
                                 f"from {compressed_size} compressed bytes; LZF expands at most "
                                 f"{_MAX_LZF_RATIO}x (corrupt header)")
        try:
            raw = lzf_decompress(body, raw_size) if raw_size else b""
        except ValueError as exc:
            raise CloudFileError(f"{path}: corrupt PCD binary_compressed data: {exc}") from None
        # Decompressed, the data is field by field: all values of field 0, then field 1, ...
        offset = 0
        for nm, t, c in zip(names, types, header.counts):
            arr = np.frombuffer(raw, dtype=t, count=n * c, offset=offset)
            columns[nm] = arr if c == 1 else arr.reshape(n, c)
            offset += n * c * t.itemsize
    columns = {k: v for k, v in columns.items() if not k.startswith("_pad")}
    cloud = _named_fields_to_cloud(path, columns, "PCD fields")
    if header.height > 1 and header.width * header.height == n:
        cloud.organized_shape = (header.height, header.width)
    return cloud


# --------------------------------------------------------------------------------------------
# numpy files and KITTI .bin


def _columns_to_cloud(path: Path, array: np.ndarray, what: str
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Split an (N, C) numeric array into xyz, rgb and intensity by its column count.

    C = 3: x y z.  C = 4: x y z intensity.  C = 6: x y z r g b, colours in 0..1 (floats) or
    0..255 (see ``colors_to_uint8``). Other widths are ambiguous and rejected: store a ``.npz``
    with named ``xyz`` / ``rgb`` / ``intensity`` arrays instead.
    """
    if array.ndim != 2 or array.shape[1] not in (3, 4, 6):
        raise CloudFileError(
            f"{path}: {what} has shape {array.shape}; expected (N, 3) x y z, (N, 4) x y z "
            "intensity or (N, 6) x y z r g b (or an .npz with named xyz/rgb/intensity arrays)")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise CloudFileError(f"{path}: {what} has dtype {array.dtype}; expected numbers")
    xyz = array[:, :3]
    if array.shape[1] == 4:
        return xyz, None, array[:, 3]
    if array.shape[1] == 6:
        try:
            return xyz, colors_to_uint8(array[:, 3:6], f"{what} columns 4-6 (r g b)"), None
        except ValueError as exc:
            raise CloudFileError(f"{path}: {exc}") from None
    return xyz, None, None


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}


def _check_magic(path: Path, head: bytes, want: str) -> None:
    """Name the mix-ups (``.npy`` content in a ``.npz`` and the reverse, empty files) at once."""
    if not head:
        raise CloudFileError(f"{path}: the file is empty")
    if want == ".npz" and head.startswith(_NPY_MAGIC):
        raise CloudFileError(f"{path}: this is a single .npy array, not an .npz archive; "
                             "rename it to .npy")
    if want == ".npy" and head.startswith(_ZIP_MAGIC):
        raise CloudFileError(f"{path}: this is a zip (.npz) archive, not a .npy array; rename "
                             "it to .npz")
    magic = _ZIP_MAGIC if want == ".npz" else _NPY_MAGIC
    if not head.startswith(magic):
        kind = "archive" if want == ".npz" else "array"
        raise CloudFileError(f"{path}: not a readable {want} {kind} (it does not start with "
                             f"{magic!r})")


def read_npy_array(path: Path, stream: Any, size: int, what: str) -> np.ndarray:
    """One ``.npy`` array from ``stream``, its header checked before anything is allocated.

    size: bytes of the whole ``.npy`` (file, or zip member as declared); a header whose shape
    needs more data than follows it is refused, as are object arrays (pickles) and malformed
    headers. what: how messages name the array.
    """
    fmt = np.lib.format
    stream = _CountingReader(stream)
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise CloudFileError(f"{path}: {what}: .npy format version {version} is not "
                                 "supported (1.0, 2.0)")
    except CloudFileError:
        raise
    except _DATA_ERRORS as exc:
        raise CloudFileError(f"{path}: {what}: malformed .npy header: {_one_line(exc)}"[:300]
                             ) from None
    if dtype.hasobject:
        raise CloudFileError(f"{path}: {what} holds Python objects (dtype {dtype}); only numeric "
                             "arrays are read (objects would need pickle)")
    count = 1
    for dim in shape:
        count *= int(dim)
    need = count * dtype.itemsize
    available = size - stream.consumed
    if need > available:
        raise CloudFileError(f"{path}: {what}: the header declares shape {tuple(shape)} {dtype} "
                             f"= {need} bytes, the file holds {available}")
    data = stream.read(need)
    if len(data) != need:
        raise CloudFileError(f"{path}: {what} is truncated: {need} bytes declared, {len(data)} "
                             "present")
    return np.frombuffer(data, dtype=dtype, count=count).reshape(
        shape, order="F" if fortran else "C")


def _read_npy(path: Path, data: bytes) -> PointCloudFile:
    _check_magic(path, data[:8], ".npy")
    array = read_npy_array(path, BytesIO(data), len(data), "the array")
    if array.dtype.names:  # a structured array: fields by name, like a PCD
        flat = array.reshape(-1)   # one record per point; sub-array fields stay (N, ...)
        return _named_fields_to_cloud(path, {n: flat[n] for n in array.dtype.names},
                                      ".npy record fields")
    xyz, rgb, intensity = _columns_to_cloud(path, array, "the array")
    return _finish(path, xyz, rgb, intensity)


def _read_npz(path: Path) -> PointCloudFile:
    """Scene/cloud ``.npz``: ``xyz`` (N, 3) or ``points`` (N, 3|4|6) plus optional ``rgb``
    (uint8, or floats per ``colors_to_uint8``), ``intensity``, ``semantic``, ``instance`` and a
    ``meta`` JSON string; any other (N, ...) array goes to ``extra``."""
    arrays = read_npz_arrays(path)
    if "xyz" in arrays:
        xyz = arrays.pop("xyz")
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise CloudFileError(f"{path}: 'xyz' has shape {xyz.shape}; expected (N, 3)")
        rgb = intensity = None
    elif "points" in arrays:
        xyz, rgb, intensity = _columns_to_cloud(path, arrays.pop("points"), "'points'")
    else:
        raise CloudFileError(f"{path}: no 'xyz' or 'points' array (arrays: "
                             f"{', '.join(arrays) or 'none'})")
    n = xyz.shape[0]

    def per_point(key: str, trailing: tuple[int, ...] = ()) -> np.ndarray | None:
        if key not in arrays:
            return None
        a = arrays.pop(key)
        if a.shape != (n, *trailing):
            raise CloudFileError(f"{path}: {key!r} has shape {a.shape}; expected "
                                 f"{(n, *trailing)} for {n} points")
        return a

    rgb_arr = per_point("rgb", (3,))
    if rgb_arr is not None:
        try:
            rgb = colors_to_uint8(rgb_arr, "'rgb'")
        except ValueError as exc:
            raise CloudFileError(f"{path}: {exc}") from None
    intensity_arr = per_point("intensity")
    if intensity_arr is not None:
        intensity = intensity_arr
    semantic = per_point("semantic")
    instance = per_point("instance")
    meta = None
    if "meta" in arrays:
        text = arrays.pop("meta").reshape(-1)[:1].tolist()
        text = text[0] if text else ""
        try:
            meta = json.loads(text.decode() if isinstance(text, bytes) else str(text))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CloudFileError(f"{path}: 'meta' is not a JSON string: {exc}") from None
    extra = {k: a for k, a in arrays.items() if a.ndim >= 1 and a.shape[0] == n}
    return _finish(path, xyz, rgb, intensity, semantic, instance, extra, meta)


class _CountingReader:
    """A stream wrapper that knows how much has been read (to size the data after a header)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        out = self.stream.read(size)
        self.consumed += len(out)
        return out


def read_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, each member checked (encryption, compression method, .npy
    header against the member's size) before it is read. Raises CloudFileError."""
    with open(path, "rb") as f:
        _check_magic(path, f.read(8), ".npz")
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename
                if info.is_dir():
                    continue
                if info.flag_bits & 0x1:
                    raise CloudFileError(f"{path}: member {name!r} is encrypted")
                if info.compress_type not in _ZIP_METHODS:
                    raise CloudFileError(
                        f"{path}: member {name!r} uses zip compression method "
                        f"{info.compress_type}; supported: {', '.join(_ZIP_METHODS.values())}")
                if not name.endswith(".npy"):
                    raise CloudFileError(f"{path}: member {name!r} is not an array (.npy)")
                key = name[:-4]
                if key in arrays:
                    raise CloudFileError(f"{path}: member {name!r} appears twice")
                with archive.open(info) as member:
                    # The member's declared size bounds its array: read_npy_array refuses
                    # headers that need more before allocating.
                    arrays[key] = read_npy_array(path, member, info.file_size,
                                                 f"member {name!r}")
    except CloudFileError:
        raise
    except (RuntimeError, *_DATA_ERRORS) as exc:   # zipfile: RuntimeError for passwords
        raise CloudFileError(f"{path}: not a readable .npz archive: {type(exc).__name__}: "
                             f"{_one_line(exc)}"[:400]) from None
    return arrays


def _read_kitti_bin(path: Path, data: bytes) -> PointCloudFile:
    if len(data) % 16:
        raise CloudFileError(f"{path}: {len(data)} bytes is not a multiple of 16; a KITTI .bin "
                             "holds float32 x, y, z, intensity per point (truncated file?)")
    table = np.frombuffer(data, dtype="<f4").reshape(-1, 4)
    return _finish(path, table[:, :3], intensity=table[:, 3])


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --------------------------------------------------------------------------------------------
# result writers

RESULT_FORMAT = "ros2_inst3d.instances/1"
_JSON_DECIMALS = 4


def write_instances_ply(path: str | os.PathLike[str], xyz: np.ndarray, colors: np.ndarray,
                        instance_id: np.ndarray | None = None,
                        class_id: np.ndarray | None = None) -> Path:
    """Write a binary little-endian PLY point cloud (no faces); returns the path.

    xyz: (N, 3) float, metres -> float x, y, z. colors: (N, 3) uint8 -> uchar red, green, blue.
    instance_id: (N,) int, -1 = none -> int instance_id. class_id: (N,) int, class index or
    -100 -> int class_id. The two optional fields carry the PointCloud2 field names, so
    ``read_cloud`` returns them in ``extra`` and CloudCompare/MeshLab show them as scalars.
    """
    xyz = np.asarray(xyz)
    n = xyz.shape[0]
    if xyz.shape != (n, 3):
        raise ValueError(f"xyz must have shape (N, 3), got {xyz.shape}")
    colors = np.asarray(colors)
    if colors.shape != (n, 3) or colors.dtype != np.uint8:
        raise ValueError(f"colors must be (N, 3) uint8 for {n} points, got {colors.dtype} "
                         f"{colors.shape}")
    columns = [("x", "float", "<f4", xyz[:, 0]), ("y", "float", "<f4", xyz[:, 1]),
               ("z", "float", "<f4", xyz[:, 2]), ("red", "uchar", "u1", colors[:, 0]),
               ("green", "uchar", "u1", colors[:, 1]), ("blue", "uchar", "u1", colors[:, 2])]
    for name, values in (("instance_id", instance_id), ("class_id", class_id)):
        if values is not None:
            values = np.asarray(values)
            if values.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {values.shape}")
            columns.append((name, "int", "<i4", values))
    table = np.empty(n, dtype=[(name, code) for name, _, code, _ in columns])
    for name, _, _, values in columns:
        table[name] = values
    header = ("ply\nformat binary_little_endian 1.0\ncomment ros2_inst3d instance-coloured points:"
              " instance_id -1 = none, class_id -100 = unknown\n"
              f"element vertex {n}\n"
              + "".join(f"property {ply_type} {name}\n" for name, ply_type, _, _ in columns)
              + "end_header\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(table.tobytes())
    return path


def contiguous_instance_labels(inst: Instances) -> np.ndarray:
    """(N,) int32: each point's instance as a position 0..K-1 in ``inst.ids`` (-1 = none).

    The prediction files index per-instance arrays by id, so the ids written are the positions.
    """
    labels = np.full(inst.num_points, -1, dtype=np.int32)
    labelled = np.flatnonzero(inst.point_instance >= 0)
    if len(labelled):
        order = np.argsort(inst.ids, kind="stable")
        labels[labelled] = order[np.searchsorted(inst.ids, inst.point_instance[labelled],
                                                 sorter=order)]
    return labels


def _masks_if_overlapping(inst: Instances, labels: np.ndarray) -> np.ndarray | None:
    """(K, ceil(N/8)) uint8 packed masks when ``inst.indices`` say more than ``labels``, else None.

    The fused labelling gives each point one instance; overlapping proposals (SoftGroup) keep
    their full masks only here.
    """
    k = inst.num_instances
    labelled = np.flatnonzero(labels >= 0)
    by_label = labelled[np.argsort(labels[labelled], kind="stable")]
    groups = np.split(by_label, np.cumsum(np.bincount(labels[labelled], minlength=k))[:-1]) \
        if k else []
    if all(np.array_equal(g, np.unique(idx)) and len(idx) == len(g)
           for g, idx in zip(groups, inst.indices)):
        return None
    masks = np.zeros((k, inst.num_points), dtype=bool)
    for position, idx in enumerate(inst.indices):
        masks[position, idx] = True
    return np.packbits(masks, axis=1)


def _rounded(values: Any) -> Any:
    """JSON-ready floats: rounded to ``_JSON_DECIMALS``; NaN/inf become null."""
    arr = np.asarray(values, dtype=np.float64)
    out = [round(float(v), _JSON_DECIMALS) if np.isfinite(v) else None for v in arr.reshape(-1)]
    return out if arr.ndim else out[0]


def results_summary(inst: Instances, timing_ms: Mapping[str, float] | None = None,
                    model_name: str = "", files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``.instances.json`` content of one result (plain dict).

    Instances are listed in ``inst`` order with ``id`` = their position (the id in the PLY and
    ``.labels.npz``); ``source_id`` gives the id in ``inst`` when the two differ. Per instance:
    class_id / class_name, score, num_points (its own mask), centroid, ``aabb`` {min, max},
    ``obb`` {center, size, yaw (rad)} rotated about z, and its display ``color``. Metres, fixed
    frame of the cloud.
    """
    from ros2_inst3d.outputs import instance_colors

    colors = instance_colors(inst.ids)
    remapped = not np.array_equal(inst.ids, np.arange(inst.num_instances))
    instances = []
    for k in range(inst.num_instances):
        aabb, obb = inst.aabb(k), inst.obb(k)
        entry: dict[str, Any] = {"id": k}
        if remapped:
            entry["source_id"] = int(inst.ids[k])
        entry.update({
            "class_id": int(inst.class_ids[k]),
            "class_name": inst.class_name(k),
            "score": _rounded(inst.scores[k]),
            "num_points": int(len(inst.indices[k])),
            "centroid": _rounded(inst.centroid(k)),
            "aabb": {"min": _rounded(aabb.center - 0.5 * aabb.size),
                     "max": _rounded(aabb.center + 0.5 * aabb.size)},
            "obb": {"center": _rounded(obb.center), "size": _rounded(obb.size),
                    "yaw": _rounded(obb.yaw)},
            "color": [int(c) for c in colors[k]],
        })
        instances.append(entry)
    timing = {**inst.timing_ms, **(timing_ms or {})}
    return {
        "format": RESULT_FORMAT,
        "model": model_name,
        "num_points": inst.num_points,
        "num_instances": inst.num_instances,
        "classes": list(inst.class_names),
        "files": dict(files or {}),
        "instances": instances,
        "timing_ms": {str(k): _rounded(v) for k, v in timing.items()},
    }


def write_results(outdir: str | os.PathLike[str], stem: str, inst: Instances,
                  timing_ms: Mapping[str, float] | None = None,
                  model_name: str = "", source: PointCloudFile | None = None) -> dict[str, Path]:
    """Write one segmentation result as three files in ``outdir``; returns {kind: path}.

    ``<stem>.instances.ply`` ("ply"): every point of ``inst.xyz`` in its instance's colour
    (``outputs.instance_colors`` of the instance id, as RViz shows it; grey without one), with
    ``instance_id`` (position 0..K-1, -1 = none) and ``class_id`` (semantic class, -100).
    ``<stem>.instances.json`` ("json"): ``results_summary``, timing = ``inst.timing_ms``
    updated with ``timing_ms``.
    ``<stem>.labels.npz`` ("labels"): ``instance`` int32 [N] (-1 = none), ``instance_class``
    int32 [K], ``instance_score`` float32 [K] indexed by instance id (ids are 0..K-1, K = max
    id + 1), ``semantic`` int32 [N] (class per point, -100 = unknown) and, only when instances
    overlap, ``masks`` = ``np.packbits`` of the bool [K, N] masks along axis 1. With ``source``
    (the file ``inst`` was read from) also ``source_index`` int64 [N] (the row of each point
    in the file: non-finite points were dropped before segmenting), ``source_points`` (rows in
    the file) and, for an organised cloud, ``organized_shape`` [HEIGHT, WIDTH]; so
    ``full = np.full(source_points, -1); full[source_index] = instance`` has one label per
    input point (per pixel: ``full.reshape(organized_shape)``).
    """
    from ros2_inst3d.atomic import atomic_file
    from ros2_inst3d.outputs import instance_colors

    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise NotADirectoryError(f"output directory {outdir} is an existing file; give a "
                                 "directory (-o DIR)")
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"ply": outdir / f"{stem}.instances.ply", "json": outdir / f"{stem}.instances.json",
             "labels": outdir / f"{stem}{PREDICTION_SUFFIX}"}
    labels = contiguous_instance_labels(inst)
    # Each file appears whole or not at all (atomic_file): a failed run leaves no torn file.
    with atomic_file(paths["ply"]) as tmp:
        write_instances_ply(tmp, inst.xyz, instance_colors(inst.point_instance), labels,
                            inst.point_class)

    arrays: dict[str, np.ndarray] = {
        "instance": labels,
        "instance_class": inst.class_ids.astype(np.int32),
        "instance_score": inst.scores.astype(np.float32),
        "semantic": inst.point_class.astype(np.int32),
    }
    masks = _masks_if_overlapping(inst, labels)
    if masks is not None:
        arrays["masks"] = masks
    if source is not None and source.source_index is not None:
        if len(source.source_index) != len(labels):
            raise ValueError(f"source has {len(source.source_index)} points, the result "
                             f"{len(labels)}")
        arrays["source_index"] = source.source_index
        arrays["source_points"] = np.array(source.source_points, np.int64)
        if source.organized_shape is not None:
            arrays["organized_shape"] = np.array(source.organized_shape, np.int64)
    with atomic_file(paths["labels"]) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)

    summary = results_summary(inst, timing_ms, model_name,
                              files={"ply": paths["ply"].name, "labels": paths["labels"].name})
    with atomic_file(paths["json"]) as tmp:
        tmp.write_text(_json_text(summary) + "\n")
    return paths


def _json_text(value: Any, depth: int = 0) -> str:
    """JSON indented by one space per level, with lists of scalars (vectors, the class table)
    kept on one line so a box reads as ``"size": [2.0, 1.0, 0.5]``."""
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {_json_text(v, depth + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{inner}{_json_text(v, depth + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, allow_nan=False)
