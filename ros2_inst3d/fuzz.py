"""Fuzzing campaign: random and corrupted inputs against every entry point (``ros2-inst3d fuzz``).

Five groups, each from its own seeded generator, each case classified as

* ``ok``: accepted (a scan accumulated, a file read, a config or checkpoint loaded, a bag run
  that exited 0);
* ``clean``: refused the documented way (a counted skip with a reason, ``CloudFileError``,
  ``ConfigError``/``CheckpointError``, a CLI exit 1/2 with one ``error:`` line);
* ``traceback``: anything else escaped (an exception type the entry point does not document,
  a scan skipped as ``ingest_error``, the CLI's ``internal error`` line), or an invariant
  broke: the scan account (input = processed + merged + skipped), a bag output directory left
  behind by a refused run.

Groups and entry points: ``clouds`` (PointCloud2 messages → ``StreamPipeline.ingest``, segment
and output messages every few scans), ``files`` (``.ply .pcd .npy .npz .bin`` mutations →
``io.read_cloud``), ``configs`` (node YAML → ``config.load_config``; model YAML →
``registry.build_network`` on the meta device), ``checkpoints`` (→ ``LearnedModel.from_config``),
``bags`` (rosbag2 mutations → the ``bag`` command in this process).

The CI subset is ``test/test_fuzz.py``; a long campaign is e.g.
``ros2-inst3d fuzz --clouds 10000 --files 400 --configs 300 --checkpoints 100 --bags 50``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import resource
import shutil
import struct
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

SEC = 1_000_000_000
GROUPS = ("clouds", "files", "configs", "checkpoints", "bags")
DEFAULT_COUNTS = {"clouds": 2000, "files": 400, "configs": 300, "checkpoints": 100, "bags": 50}
"""Cases per group of ``ros2-inst3d fuzz`` unless its flags say otherwise."""
# Values that break arithmetic, casts and allocation sizes.
NASTY_INTS = [0, 1, -1, 2, 3, 7, 255, 256, 65535, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1,
              10**14, 10**20, 2**70]
NASTY_FLOATS = [0.0, -0.0, 1e-45, 1e38, 3.5e38, -1e38, float("nan"), float("inf"),
                float("-inf"), 1e308]


@dataclass
class GroupResult:
    """Counts of one group; ``failures`` holds a description of each traceback case."""

    name: str
    cases: int = 0
    ok: int = 0
    clean: int = 0
    tracebacks: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    def add(self, outcome: str, what: str = "") -> None:
        self.cases += 1
        if outcome == "ok":
            self.ok += 1
        elif outcome == "clean":
            self.clean += 1
        else:
            self.tracebacks += 1
            if len(self.failures) < 50:
                self.failures.append(what)

    def attempt(self, call: Callable[[], Any], refused: type[BaseException] | tuple,
                label: str) -> None:
        """One case: ``call()`` returning is ok, raising ``refused`` with a one-line message is
        a clean error, anything else (or a multi-line message) is a traceback named ``label``."""
        try:
            call()
            self.add("ok")
        except refused as exc:
            self.add("clean" if "\n" not in str(exc) else "traceback",
                     f"{label}: multi-line {type(exc).__name__}")
        except Exception as exc:  # noqa: BLE001 - the campaign counts what escapes
            self.add("traceback", f"{label}: {_describe(exc)}")

    def row(self) -> dict[str, Any]:
        return {"group": self.name, "cases": self.cases, "clean_errors": self.clean,
                "ok": self.ok, "tracebacks": self.tracebacks,
                "seconds": round(self.seconds, 1), "peak_rss_mb": round(self.peak_rss_mb)}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _describe(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}{where}"


# ----------------------------------------------------------------------------------------------
# clouds
# ----------------------------------------------------------------------------------------------


def random_cloud_message(rng: np.random.Generator, factory: Any, stamp_ns: int) -> tuple[Any, str]:
    """A PointCloud2, valid or broken in one or more random ways; returns (msg, what was done)."""
    from .cloud import FLOAT32, FLOAT64, INT8, UINT32, UINT8

    notes = []
    n = int(rng.choice([0, 1, 7, 100, 1000, 3000]))
    height = 1 if rng.random() < 0.8 else int(rng.choice([2, 4, 10]))
    width = max(n // height, 0)
    names = ["x", "y", "z"]
    if rng.random() < 0.5:
        names.append(str(rng.choice(["rgb", "rgba", "intensity", "ring", "r"])))
    if rng.random() < 0.2:
        names += ["g", "b"] if "r" in names else ["intensity"]
    datatypes = [FLOAT32 if rng.random() < 0.7 else int(rng.integers(INT8, FLOAT64 + 1))
                 for _ in names]
    if rng.random() < 0.05:
        datatypes[int(rng.integers(len(datatypes)))] = int(rng.choice([0, 9, 255]))
        notes.append("bad datatype")
    counts = [1] * len(names)
    if rng.random() < 0.1:
        counts[int(rng.integers(len(counts)))] = int(rng.choice([0, 2, 3, 2**31]))
        notes.append("count")
    sizes = {INT8: 1, UINT8: 1, 2: 2, 3: 2, 4: 4, UINT32: 4, FLOAT32: 4, FLOAT64: 8}
    offsets, offset = [], 0
    for dt, c in zip(datatypes, counts):
        offsets.append(offset)
        offset += sizes.get(dt, 4) * min(c, 4)
    point_step = offset + int(rng.choice([0, 0, 0, 2, 4]))
    big_endian = bool(rng.random() < 0.15)
    raw = rng.bytes(n * point_step) if rng.random() < 0.3 else None
    if raw is None:
        buf = np.zeros(n * point_step, np.uint8)
        for name, dt, off, c in zip(names, datatypes, offsets, counts):
            code = {INT8: "i1", UINT8: "u1", 3: "i2", 2: "u2", 5: "i4", UINT32: "u4",
                    FLOAT32: "f4", FLOAT64: "f8"}.get(dt)
            if code is None or c != 1 or n == 0:
                continue
            dtype = np.dtype(code).newbyteorder(">" if big_endian else "<")
            if dtype.kind == "f":
                values = rng.normal(0, 5, n)
                if rng.random() < 0.3:
                    values[rng.random(n) < 0.2] = rng.choice(NASTY_FLOATS)
                    notes.append("nasty floats")
            else:
                info = np.iinfo(dtype)
                values = rng.integers(info.min, info.max, n, endpoint=True)
            column = np.asarray(values).astype(dtype)
            view = buf.reshape(n, point_step)[:, off:off + dtype.itemsize]
            view[:] = column.view(np.uint8).reshape(n, dtype.itemsize)
        raw = buf.tobytes()
    else:
        notes.append("random bytes")
    row_step = width * point_step
    if rng.random() < 0.1:
        point_step = int(rng.choice(NASTY_INTS[:12]))
        notes.append("point_step")
    if rng.random() < 0.1:
        row_step = int(rng.choice(NASTY_INTS[:12]))
        notes.append("row_step")
    if rng.random() < 0.05:
        width, height = int(rng.choice([10**7, 2**32 - 1])), int(rng.choice([10**7, 1]))
        notes.append("huge width")
    if rng.random() < 0.1:
        raw = raw[:int(rng.integers(0, len(raw) + 1))] if raw else raw
        notes.append("short data")
    if rng.random() < 0.05:
        offsets[int(rng.integers(len(offsets)))] = int(rng.choice(NASTY_INTS[:12]))
        notes.append("offset")
    if rng.random() < 0.05:
        names[int(rng.integers(len(names)))] = "x"   # repeated name
        notes.append("repeated name")
    sec, nanosec = divmod(stamp_ns, SEC)
    if rng.random() < 0.05:
        sec = int(rng.choice([2**31 - 1, -(2**31), 0, 1]))
        nanosec = int(rng.choice([0, 999_999_999, 10**9, 2**32 - 1]))
        notes.append("stamp")
    frame = "sensor"
    if rng.random() < 0.1:
        frame = str(rng.choice(["", "map", "/sensor", "unknown_frame", "sensør", " "]))
        notes.append(f"frame {frame!r}")
    header = factory("std_msgs/msg/Header",
                     stamp=factory("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec),
                     frame_id=frame)
    fields = [factory("sensor_msgs/msg/PointField", name=name, offset=off, datatype=dt, count=c)
              for name, off, dt, c in zip(names, offsets, datatypes, counts)]
    msg = factory("sensor_msgs/msg/PointCloud2", header=header, height=height, width=width,
                  fields=fields, is_bigendian=big_endian, point_step=point_step,
                  row_step=row_step, data=np.frombuffer(raw, np.uint8).copy(),
                  is_dense=bool(rng.random() < 0.5))
    return msg, ", ".join(notes) or "valid"


def fuzz_clouds(rng: np.random.Generator, count: int, workdir: Path) -> GroupResult:
    """``count`` messages through one pipeline (geometric model), segmenting every 25 scans."""
    from .config import Config
    from .msgs import MessageFactory, make_typestore
    from .errors import TransformUnavailable
    from .pipeline import StreamPipeline
    from .segmenter import Segmenter

    result = GroupResult("clouds")
    factory = MessageFactory.for_rosbags(make_typestore("humble"))
    cfg = Config().replace(**{"model.name": "geometric", "segment.min_points": 5,
                              "accumulate.max_points": 50_000})
    pipe = StreamPipeline(cfg, Segmenter(cfg), keep_records=True)

    def lookup(target: str, source: str, stamp_ns: int) -> np.ndarray:
        if source.lstrip("/") != "sensor":
            raise TransformUnavailable(f"no transform {source} -> {target}")
        if stamp_ns % 97 == 0:   # a TF whose values went bad
            return np.full((4, 4), np.nan)
        return np.eye(4)

    stamp = 1_700_000_000 * SEC
    for k in range(count):
        stamp += int(rng.integers(1, 200_000_000))
        if rng.random() < 0.01:
            stamp -= int(rng.integers(2, 100)) * SEC   # the bag looped
        msg, what = random_cloud_message(rng, factory, stamp)
        try:
            rec = pipe.ingest("points", msg, lookup)
        except Exception as exc:  # noqa: BLE001 - ingest must never raise
            result.add("traceback", f"cloud {k} ({what}): ingest raised {_describe(exc)}")
            continue
        if rec.reason == "ingest_error":
            result.add("traceback", f"cloud {k} ({what}): ingest_error {rec.detail[:200]}")
        else:
            result.add("clean" if rec.fate == "skipped" else "ok")
        if k % 25 == 24:
            try:
                res = pipe.segment()
                if res is not None:
                    pipe.output_messages(factory, res)
            except Exception as exc:  # noqa: BLE001
                result.add("traceback", f"segment/output after cloud {k}: {_describe(exc)}")
                result.cases -= 1   # counted against the scans, not as a case of its own
    pipe.finish()
    fates = [r.fate for r in pipe.records]
    total = fates.count("processed") + fates.count("merged") + fates.count("skipped")
    if total != len(pipe.records) or len(pipe.records) != pipe.stats.scans_received:
        result.add("traceback", f"scan account broken: {len(pipe.records)} records, "
                                f"{pipe.stats.scans_received} received, fates {total}")
        result.cases -= 1
    return result


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------


def _lzf_literals(data: bytes) -> bytes:
    """A valid LZF stream of literal runs only (32 bytes each)."""
    out = bytearray()
    for i in range(0, len(data), 32):
        chunk = data[i:i + 32]
        out.append(len(chunk) - 1)
        out += chunk
    return bytes(out)


def _pcd(kind: str, xyz: np.ndarray, rgb: np.ndarray) -> bytes:
    n = len(xyz)
    packed = ((rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8)
              | rgb[:, 2]).astype("<u4")
    head = (f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z rgb intensity\nSIZE 4 4 4 4 4\n"
            f"TYPE F F F U F\nCOUNT 1 1 1 1 1\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
            f"POINTS {n}\nDATA {kind}\n").encode()
    intensity = np.linspace(0, 1, n, dtype="<f4")
    if kind == "ascii":
        rows = [f"{a:.4f} {b:.4f} {c:.4f} {p} {i:.3f}" for (a, b, c), p, i
                in zip(xyz.tolist(), packed.tolist(), intensity.tolist())]
        return head + ("\n".join(rows) + "\n").encode()
    rec = np.zeros(n, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4"), ("i", "<f4")])
    rec["x"], rec["y"], rec["z"], rec["rgb"], rec["i"] = xyz[:, 0], xyz[:, 1], xyz[:, 2], \
        packed, intensity
    if kind == "binary":
        return head + rec.tobytes()
    soa = b"".join(rec[name].tobytes() for name in rec.dtype.names)
    body = _lzf_literals(soa)
    return head + struct.pack("<II", len(body), len(soa)) + body


def _ply(fmt: str, xyz: np.ndarray, rgb: np.ndarray) -> bytes:
    n = len(xyz)
    head = (f"ply\nformat {fmt} 1.0\nelement vertex {n}\nproperty float x\nproperty float y\n"
            "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
            "element face 1\nproperty list uchar int vertex_indices\nend_header\n").encode()
    if fmt == "ascii":
        rows = [f"{a:.4f} {b:.4f} {c:.4f} {r} {g} {bl}" for (a, b, c), (r, g, bl)
                in zip(xyz.tolist(), rgb.tolist())]
        return head + ("\n".join(rows) + "\n3 0 1 2\n").encode()
    order = "<" if fmt == "binary_little_endian" else ">"
    rec = np.zeros(n, [("x", order + "f4"), ("y", order + "f4"), ("z", order + "f4"),
                       ("r", "u1"), ("g", "u1"), ("b", "u1")])
    rec["x"], rec["y"], rec["z"] = xyz.T
    rec["r"], rec["g"], rec["b"] = rgb.T
    face = struct.pack(order + "B3i", 3, 0, 1, 2)
    return head + rec.tobytes() + face


def valid_files(rng: np.random.Generator) -> dict[str, bytes]:
    """One small valid file per format variant (name → bytes)."""
    n = int(rng.integers(3, 60))
    xyz = rng.normal(0, 2, (n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    files = {f"c.{k}.pcd": _pcd(k, xyz, rgb) for k in ("ascii", "binary", "binary_compressed")}
    files.update({f"c.{f}.ply": _ply(f, xyz, rgb)
                  for f in ("ascii", "binary_little_endian", "binary_big_endian")})
    buf = io.BytesIO()
    np.save(buf, np.hstack([xyz, rgb.astype(np.float32)]))
    files["c.npy"] = buf.getvalue()
    for name, saver in (("c.npz", np.savez), ("c.compressed.npz", np.savez_compressed)):
        buf = io.BytesIO()
        saver(buf, xyz=xyz, rgb=rgb, semantic=np.zeros(n, np.int32))
        files[name] = buf.getvalue()
    files["c.bin"] = np.hstack([xyz, np.ones((n, 1), np.float32)]).astype("<f4").tobytes()
    return files


def _mutate_header_number(rng: np.random.Generator, data: bytes) -> bytes:
    """Replace one integer in the first 400 bytes (counts, sizes, shapes) with a nasty one."""
    import re

    head = data[:400]
    numbers = list(re.finditer(rb"\d+", head))
    if not numbers:
        return data
    m = numbers[int(rng.integers(len(numbers)))]
    new = str(int(rng.choice(NASTY_INTS))).encode()
    return data[:m.start()] + new + data[m.end():]


def mutate_file(rng: np.random.Generator, data: bytes, name: str) -> tuple[bytes, str, str]:
    """(new bytes, new name, what was done) of one random corruption."""
    kind = str(rng.choice(["truncate", "flip", "header_number", "append", "empty", "swap_ext",
                           "zip_flags", "lzf_bomb", "duplicate_body"]))
    if kind == "truncate":
        return data[:int(rng.integers(0, max(len(data), 1)))], name, kind
    if kind == "flip":
        out = bytearray(data)
        for _ in range(int(rng.integers(1, 20))):
            if out:
                out[int(rng.integers(len(out)))] = int(rng.integers(256))
        return bytes(out), name, kind
    if kind == "header_number":
        return _mutate_header_number(rng, data), name, kind
    if kind == "append":
        return data + rng.bytes(int(rng.integers(1, 400))), name, kind
    if kind == "empty":
        return b"", name, kind
    if kind == "swap_ext":
        ext = str(rng.choice([".npy", ".npz", ".pcd", ".ply", ".bin"]))
        return data, name.rsplit(".", 1)[0] + ext, f"{kind} {ext}"
    if kind == "zip_flags" and data.startswith(b"PK"):
        out = bytearray(data)
        for sig, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
            at = out.find(sig)
            if at >= 0:
                if rng.random() < 0.5:
                    out[at + flag_at] |= 0x1
                else:
                    out[at + method_at:at + method_at + 2] = struct.pack(
                        "<H", int(rng.choice([1, 6, 12, 14, 98, 99])))
        return bytes(out), name, kind
    if kind == "lzf_bomb" and b"binary_compressed" in data:
        start = data.index(b"binary_compressed\n") + len(b"binary_compressed\n")
        tokens = int(rng.integers(1, 5000))
        body = b"\x00\x00" + bytes([0xE0, 0xFF, 0x00]) * tokens  # literal, then 264-byte copies
        raw = int(rng.choice([2 + 264 * tokens, 2**31, 4 * 10**9]))
        return data[:start] + struct.pack("<II", len(body), raw) + body, name, kind
    if kind == "duplicate_body":
        return data + data[len(data) // 2:], name, kind
    return data[:-1], name, "truncate 1"


def fuzz_files(rng: np.random.Generator, count: int, workdir: Path) -> GroupResult:
    from .io import CloudFileError, read_cloud

    result = GroupResult("files")
    folder = workdir / "files"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        originals = valid_files(rng)
        name = str(rng.choice(sorted(originals)))
        data, new_name, what = originals[name], name, "valid"
        for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
            data, new_name, what = mutate_file(rng, data, new_name)
        path = folder / f"{k:05d}_{new_name}"
        path.write_bytes(data)
        result.attempt(lambda: read_cloud(path), CloudFileError, f"{path.name} ({what})")
        path.unlink()
    return result


# ----------------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------------


def _random_value(rng: np.random.Generator, depth: int = 0) -> Any:
    choice = int(rng.integers(0, 10 if depth < 3 else 7))
    if choice == 0:
        return int(rng.choice(NASTY_INTS))
    if choice == 1:
        return float(rng.choice(NASTY_FLOATS))
    if choice == 2:
        return str(rng.choice(["", "x", "softgroup", "geometric", "cuda:7", "nan", "1e999"]))
    if choice == 3:
        return bool(rng.random() < 0.5)
    if choice == 4:
        return None
    if choice in (5, 6):
        return [float(v) for v in rng.choice(NASTY_FLOATS, size=int(rng.integers(0, 5)))]
    if choice in (7, 8):
        return [_random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))]
    return {str(rng.choice(["a", "b", "name", "radius"])): _random_value(rng, depth + 1)}


def _yaml_text(rng: np.random.Generator, data: Any) -> str:
    import yaml

    if rng.random() < 0.05:
        depth = int(rng.choice([40, 500, 5000]))
        return "a: " + "[" * depth + "]" * depth + "\n"
    if rng.random() < 0.03:
        return "".join(" " * i + f"k{i}:\n" for i in range(int(rng.choice([40, 1500]))))
    if rng.random() < 0.03:
        return rng.bytes(int(rng.integers(1, 300))).decode("latin-1")
    return yaml.safe_dump(data, allow_unicode=True)


def random_node_config(rng: np.random.Generator) -> Any:
    from .config import Config

    data: Any = Config().to_dict()
    for _ in range(int(rng.integers(1, 4))):
        sec = str(rng.choice(sorted(data))) if isinstance(data, dict) and data else "segment"
        what = int(rng.integers(0, 7))
        if what == 0 and isinstance(data.get(sec), dict) and data[sec]:
            key = str(rng.choice(sorted(data[sec])))
            data[sec][key] = _random_value(rng)
        elif what == 1:
            data[f"{sec}.{rng.choice(['rate_hz', 'roi_min', 'x'])}"] = _random_value(rng)
        elif what == 2:
            data[sec] = _random_value(rng)
        elif what == 3:
            data = {"/**": {"ros__parameters": data if rng.random() < 0.7
                            else _random_value(rng)}}
        elif what == 4:
            data[str(rng.choice(["unknown", "1", ""]))] = _random_value(rng)
        elif what == 5 and isinstance(data.get("segment"), dict):
            data["segment"]["roi_min" if rng.random() < 0.5 else "roi_max"] = [
                float(v) for v in rng.choice(NASTY_FLOATS, 3)]
        else:
            data = _random_value(rng)
        if not isinstance(data, dict):
            break
    return data


def random_model_config(rng: np.random.Generator) -> Any:
    model: dict[str, Any] = {"name": str(rng.choice(["softgroup", "pointgroup", "hais",
                                                      "isbnet", "nope"])),
                             "channels": 4, "num_blocks": 2, "semantic_classes": 5,
                             "instance_classes": 3}
    keys = ["channels", "num_blocks", "semantic_classes", "instance_classes", "voxel_size",
            "with_coords", "in_channels", "grouping_cfg", "test_cfg", "semantic_only",
            "sem2ins_classes", "unknown_option"]
    for _ in range(int(rng.integers(0, 3))):
        model[str(rng.choice(keys))] = _random_value(rng)
    return {"model": model} if rng.random() < 0.9 else _random_value(rng)


def fuzz_configs(rng: np.random.Generator, count: int, workdir: Path) -> GroupResult:
    from .config import ConfigError, load_config
    from .model.registry import build_network, load_model_config

    result = GroupResult("configs")
    folder = workdir / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        model_yaml = k % 3 == 2
        data = random_model_config(rng) if model_yaml else random_node_config(rng)
        path = folder / f"{k:05d}.yaml"
        path.write_text(_yaml_text(rng, data), encoding="utf-8", errors="surrogateescape")
        result.attempt(
            (lambda: build_network(load_model_config(path), device="meta")) if model_yaml
            else (lambda: load_config(path)),
            ConfigError, f"{path.name} ({'model' if model_yaml else 'node'})")
        path.unlink()
    return result


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------

_TINY_MODEL = {"name": "softgroup", "channels": 4, "num_blocks": 2, "semantic_classes": 20,
               "instance_classes": 18}


def random_checkpoint(rng: np.random.Generator, state: dict[str, Any], path: Path) -> str:
    """Write a (mostly broken) checkpoint of the tiny model to ``path``; returns what was done."""
    import torch

    from .classes import SCANNET20_CLASSES

    net = {k: v.clone() for k, v in state.items()}
    ckpt: Any = {"net": net, "config": dict(_TINY_MODEL), "class_names": list(SCANNET20_CLASSES)}
    what = str(rng.choice(["valid", "nan", "inf", "drop_key", "extra_key", "shape", "dtype",
                           "config_type", "config_key", "class_names", "container", "truncate",
                           "random_bytes", "pickle", "config_not_mapping"]))
    keys = sorted(net)
    key = keys[int(rng.integers(len(keys)))]
    floats = [k for k in keys if net[k].is_floating_point() and net[k].numel()]
    if what in ("nan", "inf"):
        k = floats[int(rng.integers(len(floats)))]
        net[k].view(-1)[int(rng.integers(net[k].numel()))] = float(what)
    elif what == "drop_key":
        del net[key]
    elif what == "extra_key":
        net["extra.weight"] = torch.zeros(3)
    elif what == "shape":
        net[key] = torch.zeros(tuple(int(d) + 1 for d in net[key].shape) or (2,))
    elif what == "dtype":
        k = floats[int(rng.integers(len(floats)))]
        net[k] = net[k].to(torch.int64)
    elif what == "config_type":
        ckpt["config"][str(rng.choice(["channels", "num_blocks", "voxel_size",
                                       "grouping_cfg"]))] = _random_value(rng)
    elif what == "config_key":
        ckpt["config"]["no_such_option"] = 1
    elif what == "config_not_mapping":
        ckpt["config"] = _random_value(rng)
    elif what == "class_names":
        ckpt["class_names"] = _random_value(rng)
    elif what == "container":
        ckpt = _random_value(rng) if rng.random() < 0.5 else [net]
    if what == "pickle":
        torch.save({"net": net, "obj": GroupResult("x")}, path)
    elif what == "random_bytes":
        path.write_bytes(rng.bytes(int(rng.integers(0, 2000))))
    else:
        torch.save(ckpt, path)
    if what == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[:int(rng.integers(0, len(data)))])
    return what


MUST_REFUSE = ("nan", "inf", "drop_key", "extra_key", "shape", "truncate", "random_bytes",
               "pickle", "config_key")


def fuzz_checkpoints(rng: np.random.Generator, count: int, workdir: Path) -> GroupResult:
    import torch

    from .config import ConfigError, ModelConfig
    from .model.checkpoint import CheckpointError
    from .model.inference import LearnedModel
    from .model.registry import build_network

    result = GroupResult("checkpoints")
    folder = workdir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    state = build_network(_TINY_MODEL).state_dict()
    for k in range(count):
        path = folder / f"{k:05d}.pth"
        what = random_checkpoint(rng, state, path)
        try:
            LearnedModel.from_config(ModelConfig(name="softgroup", checkpoint=str(path),
                                                 device="cpu"))
            # These must never load: the weights would be NaN, random or the wrong shape.
            result.add("traceback" if what in MUST_REFUSE else "ok",
                       f"{path.name} ({what}): loaded")
        except (ConfigError, CheckpointError):
            result.add("clean")
        except Exception as exc:  # noqa: BLE001
            result.add("traceback", f"{path.name} ({what}): {_describe(exc)}")
        path.unlink()
    return result


# ----------------------------------------------------------------------------------------------
# bags
# ----------------------------------------------------------------------------------------------


def random_bag(rng: np.random.Generator, path: Path) -> str:
    """Write a small rosbag2 of a moving sensor, broken in a random way; returns what was done."""
    from .bag import POINTCLOUD2
    from .testing import BagMessage, write_scan_bag
    from .msgs import MessageFactory, make_typestore
    from .transforms import transform_to_matrix

    t0 = 1_700_000_000 * SEC
    n_scans = int(rng.integers(1, 7))
    stamps = [t0 + 100_000_000 + k * 200_000_000 for k in range(n_scans)]
    scans = [rng.uniform(-2, 2, (int(rng.integers(50, 400)), 3)).astype(np.float32)
             for _ in stamps]
    tf_stamps = [t0 + k * 50_000_000 for k in range(4 * n_scans + 4)]
    what = str(rng.choice(["valid", "malformed_clouds", "no_tf", "truncate", "garbage",
                           "no_metadata", "bad_metadata", "stamp_jump", "not_a_bag",
                           "empty_dir", "color"]))
    storage = str(rng.choice(["sqlite3", "mcap"]))
    factory = MessageFactory.for_rosbags(make_typestore("humble"))
    extra = []
    if what == "malformed_clouds":
        for k in range(int(rng.integers(1, 6))):
            msg, _ = random_cloud_message(rng, factory, t0 + k * 70_000_000)
            extra.append(BagMessage("/points", POINTCLOUD2, t0 + k * 70_000_000 + 1, msg))
    if what == "stamp_jump":
        stamps = [s if k < n_scans // 2 else s - 30 * SEC for k, s in enumerate(stamps)]
    if what == "not_a_bag":
        path.write_bytes(rng.bytes(500))
        return what
    if what == "empty_dir":
        path.mkdir()
        return what
    rgbs = [rng.integers(0, 256, (len(s), 3), dtype=np.uint8) for s in scans] \
        if what == "color" else None
    pose = lambda s: transform_to_matrix([0.2 * (s - t0) / SEC, 0, 0], [0, 0, 0, 1])  # noqa
    write_scan_bag(path, scans, stamps, pose, [] if what == "no_tf" else tf_stamps,
                   extra=extra, storage=storage, rgbs=rgbs)
    data_file = next(p for p in path.iterdir() if p.suffix in (".db3", ".mcap"))
    if what == "truncate":
        data = data_file.read_bytes()
        data_file.write_bytes(data[:int(rng.integers(0, len(data)))])
    elif what == "garbage":
        data = bytearray(data_file.read_bytes())
        at = int(rng.integers(0, len(data)))
        data[at:at + 512] = rng.bytes(min(512, len(data) - at))
        data_file.write_bytes(bytes(data))
    elif what == "no_metadata":
        (path / "metadata.yaml").unlink()
    elif what == "bad_metadata":
        meta = path / "metadata.yaml"
        meta.write_text(_mutate_header_number(rng, meta.read_bytes())
                        .decode("utf-8", errors="replace"))
    return f"{what} ({storage})"


def fuzz_bags(rng: np.random.Generator, count: int, workdir: Path,
              cli_main: Callable[[list[str]], int]) -> GroupResult:
    """``ros2-inst3d bag`` (``cli_main``: the CLI's entry point) on random broken bags: each
    must end in exit 0 or a one-line error, never a traceback, with its scan account intact."""
    result = GroupResult("bags")
    folder = workdir / "bags"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        in_path, out_path = folder / f"in{k:04d}", folder / f"out{k:04d}"
        what = random_bag(rng, in_path)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = cli_main(["bag", str(in_path), str(out_path), "--model", "geometric",
                           "--no-progress"])
        except BaseException as exc:  # noqa: BLE001 - SystemExit included: main returns codes
            result.add("traceback", f"bag {k} ({what}): {_describe(exc)}")
        else:
            text = err.getvalue()
            lines = [line for line in text.splitlines() if line.startswith("ros2-inst3d")]
            if "Traceback" in text or "internal error" in text:
                result.add("traceback", f"bag {k} ({what}): {lines[-1:] or text[-300:]}")
            elif rc == 0:
                result.add("ok")
            elif rc == 2 and out_path.exists():
                result.add("traceback", f"bag {k} ({what}): refused but left {out_path.name}")
            elif rc in (1, 2) and lines:
                result.add("clean")
            else:
                result.add("traceback", f"bag {k} ({what}): exit {rc} without an error line")
            summary = out_path / "summary.json"
            if summary.is_file():
                scans = json.loads(summary.read_text())["scans"]
                if scans["processed"] + scans["merged"] + scans["skipped"] != scans["total"]:
                    result.add("traceback", f"bag {k} ({what}): account broken {scans}")
                    result.cases -= 1
        for p in (in_path, out_path):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    return result


# ----------------------------------------------------------------------------------------------
# campaign
# ----------------------------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[np.random.Generator, int, Path], GroupResult]] = {
    "clouds": fuzz_clouds, "files": fuzz_files, "configs": fuzz_configs,
    "checkpoints": fuzz_checkpoints, "bags": fuzz_bags}


def run_campaign(counts: dict[str, int], seed: int = 0, workdir: str | Path | None = None,
                 cli_main: Callable[[list[str]], int] | None = None) -> list[GroupResult]:
    """Run each group ``counts[group]`` times (0 skips it), each from ``seed``; returns results.

    cli_main: the CLI's entry point (``ros2_inst3d.cli.main``), which the bags group drives;
    passed in because the CLI sits above this module (it registers ``fuzz``).
    """
    if counts.get("bags", 0) > 0 and cli_main is None:
        raise ValueError("the bags group runs the CLI: pass cli_main=ros2_inst3d.cli.main")
    results = []
    with tempfile.TemporaryDirectory(prefix="ros2_inst3d_fuzz_") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        for group in GROUPS:
            if counts.get(group, 0) <= 0:
                continue
            rng = np.random.default_rng([seed, GROUPS.index(group)])
            start = time.perf_counter()
            # The campaign provokes warnings by the thousand: keep the report readable.
            previous = logging.root.manager.disable
            logging.disable(logging.ERROR)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    runner = RUNNERS[group]
                    if group == "bags":
                        runner = functools.partial(runner, cli_main=cli_main)
                    res = runner(rng, counts[group], root)
            finally:
                logging.disable(previous)
            res.seconds = time.perf_counter() - start
            res.peak_rss_mb = _peak_rss_mb()
            results.append(res)
    return results


def format_table(results: list[GroupResult]) -> str:
    lines = ["| group | cases | clean errors | ok / exit 0 | tracebacks | s | peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.cases} | {r.clean} | {r.ok} | {r.tracebacks} | "
                     f"{r.seconds:.0f} | {r.peak_rss_mb:.0f} |")
    return "\n".join(lines)


__all__ = ["GROUPS", "GroupResult", "run_campaign", "format_table", "random_cloud_message",
           "valid_files", "mutate_file", "random_node_config", "random_model_config",
           "random_checkpoint", "random_bag"]
