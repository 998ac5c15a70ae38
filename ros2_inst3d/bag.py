"""Offline front end: rosbag2 in → the node's pipeline → rosbag2 out, with ``rosbags`` (no ROS).

:func:`segment_bag` replays a bag through the same :class:`~ros2_inst3d.pipeline.StreamPipeline`
the node runs, in bag time:

* PointCloud2 topics are ingested in bag order, ``/tf`` and ``/tf_static`` go into a
  :class:`~ros2_inst3d.tf_buffer.TfBuffer`. A scan is ingested once the bag has moved ``tf_wait_s``
  past it, so the ``/tf`` samples after its stamp (needed to interpolate) are in the buffer: the
  live node's ``tf_timeout_s`` wait, without wall-clock time.
* The segmentation trigger runs on bag time (``poll(receive time)`` after every scan); a last
  segmentation covers scans still pending at the end, then every scan has a fate.
* The output bag (rosbag2 metadata version 8, which Humble opens) holds every input connection
  re-written byte for byte with its type, definition and QoS, plus the node's output topics
  under ``/`` with their message definitions, so it is self-describing. ``instances/labels`` is
  written once, with the transient-local QoS the node latches it with.
* ``OUT/summary.json`` accounts for every input scan: processed (newest scan of a result), merged
  (older scans of a result) or skipped with a reason; the three add up to the scans read.

Test bags (a moving sensor with TF) are written by :mod:`ros2_inst3d.testing`.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import atomic_directory
from .cloud import stamp_to_ns
from .config import Config
from .msgs import MessageFactory, make_typestore
from .pipeline import (OUTPUT_TYPES, TIME_JUMP_TOLERANCE_NS, TOPIC_LABELS, ScanRecord,
                       StreamPipeline)
from .tf_buffer import TfBuffer

if TYPE_CHECKING:
    from rosbags.interfaces import Qos

log = logging.getLogger(__name__)

POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
TFMESSAGE = "tf2_msgs/msg/TFMessage"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
# rosbag2 metadata version written: Humble reads v8 (its QoS field is a string there), not v9.
BAG_VERSION = 8
STORAGES = ("sqlite3", "mcap")
DISTROS = ("humble", "jazzy")
# The ROS distro recorded in a bag's metadata -> the typestore whose definitions match it.
_DISTRO_OF_BAG = {"humble": "humble", "iron": "jazzy", "jazzy": "jazzy", "kilted": "jazzy",
                  "rolling": "jazzy"}
DEFAULT_TF_WAIT_S = 0.5
SUMMARY_FILE = "summary.json"
MAX_DETAIL_LINES = 10   # distinct skip details format_summary lists
_MCAP_MAGIC = b"\x89MCAP"
_SQLITE_MAGIC = b"SQLite format 3\x00"
NS_PER_S = 1_000_000_000


class BagError(ValueError):
    """A bag (or an argument) the bag tool cannot use; the message says why and what to change."""


def output_topic(name: str) -> str:
    """The bag topic of a node output: the node's names are relative, the bag's are absolute."""
    return "/" + name


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def qos_profile(durability: str, depth: int) -> Qos:
    """A reliable keep-last QoS profile of ``depth`` with ``durability`` (TRANSIENT_LOCAL or
    VOLATILE), as rosbag2 records offered profiles."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)

    zero = QosTime(0, 0)  # "unspecified": no deadline, lifespan or lease
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE,
               QosDurability[durability], zero, zero, QosLiveliness.AUTOMATIC, zero, False)


def outputqos_profile(topic_name: str) -> Qos:
    """The QoS the node offers on an output topic (reliable; labels latched: transient local)."""
    if topic_name == TOPIC_LABELS:
        return qos_profile("TRANSIENT_LOCAL", 1)
    return qos_profile("VOLATILE", 2)


def storage_plugin(storage: str):
    """The rosbags storage plugin of 'mcap' or 'sqlite3' (BagError for others)."""
    from rosbags.rosbag2 import StoragePlugin

    if storage not in STORAGES:
        raise BagError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")
    return StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3


def input_storage(path: Path) -> str:
    """'mcap' or 'sqlite3': the storage of the bag at ``path`` (a bag directory or its file)."""
    if path.is_file():
        return "mcap" if path.suffix == ".mcap" else "sqlite3"
    return "mcap" if any(path.glob("*.mcap")) else "sqlite3"


# ----------------------------------------------------------------------------------------------
# segment a bag
# ----------------------------------------------------------------------------------------------


@dataclass
class _HeldScan:
    """A PointCloud2 read from the bag, waiting for the TF data after it."""

    bag_time_ns: int
    topic: str
    msg: Any          # the deserialised message, or None when it did not deserialise
    error: str = ""


class _OrderedWrites:
    """Writes to the output bag in timestamp order (results are produced ``tf_wait`` late)."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self._heap: list[tuple[int, int, Any, Any]] = []
        self._seq = 0
        self.counts: Counter = Counter()

    def push(self, time_ns: int, connection: Any, data: Any) -> None:
        heapq.heappush(self._heap, (time_ns, self._seq, connection, data))
        self._seq += 1

    def flush(self, until_ns: float = math.inf) -> None:
        while self._heap and self._heap[0][0] <= until_ns:
            time_ns, _, connection, data = heapq.heappop(self._heap)
            self.writer.write(connection, time_ns, data)
            self.counts[connection.topic] += 1


def segment_bag(
    in_path: str | Path,
    out_path: str | Path,
    cfg: Config,
    topics: Sequence[str] | None = None,
    fixed_frame: str | None = None,
    *,
    distro: str | None = None,
    storage: str | None = None,
    limit: int | None = None,
    tf_wait_s: float = DEFAULT_TF_WAIT_S,
    segmenter: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Segment the PointCloud2 topics of a rosbag2 and write the results to a new rosbag2.

    in_path: rosbag2 directory (or its ``.mcap`` / ``.db3`` file), sqlite3 or MCAP storage.
    out_path: output bag directory; must not exist. ``summary.json`` is written into it.
    cfg: the node's configuration (accumulation, trigger, model, outputs).
    topics: PointCloud2 topics to segment (``/points`` or ``points``); None or empty: every
        PointCloud2 topic except our own output topics (``cfg.input.topics`` is the node's).
    fixed_frame: overrides ``cfg.input.fixed_frame``. Scans already in it need no TF.
    distro: 'humble' or 'jazzy' message definitions for the outputs. None: the distro that
        recorded the bag (:func:`recorded_distro`; humble when it does not say), or the other one
        when the bag's own definitions of an output type (e.g. MarkerArray) agree only with that.
    storage: 'sqlite3' or 'mcap' for the output; None: the input's.
    limit: read only the first ``limit`` scans (the input is copied up to there).
    tf_wait_s: bag time a scan waits for the TF data after its stamp before it is ingested.
    segmenter: a ready :class:`~ros2_inst3d.segmenter.Segmenter` (None: built from ``cfg``).
    progress: show a tqdm bar over the bag's messages.

    Returns the summary (also written to ``out_path/summary.json``): counts of processed, merged
    and skipped scans by reason, every scan's record, the segmentations, messages written per
    topic, and input topics that could not be copied (with why).
    Raises BagError for unusable input (no PointCloud2 topic, a named topic missing, ROS 1 bag,
    output exists) and FileNotFoundError when ``in_path`` does not exist.
    """
    from rosbags.highlevel import AnyReader
    from tqdm import tqdm

    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.exists():
        raise FileNotFoundError(f"input bag {in_path} does not exist")
    if out_path.exists():
        raise BagError(f"output bag {out_path} exists already; remove it or choose another path")
    if in_path.is_dir() and not (in_path / "metadata.yaml").is_file() and \
            not any(in_path.glob("*.mcap")):
        raise BagError(f"{in_path} is a directory without metadata.yaml or an .mcap file, so "
                       "not a rosbag2; give the bag's directory or its .mcap/.db3 file")
    if in_path.is_file():
        with open(in_path, "rb") as f:
            head = f.read(16)
        if not (head.startswith(_MCAP_MAGIC) or head.startswith(_SQLITE_MAGIC)):
            raise BagError(f"{in_path} is neither an MCAP nor an SQLite (rosbag2 .db3) file "
                           f"(it starts with {head[:8]!r})")
    if distro is not None and distro not in DISTROS:
        raise BagError(f"unknown distro {distro!r}; choose one of {', '.join(DISTROS)}")
    if limit is not None and limit < 1:
        raise BagError(f"limit must be >= 1 scan, got {limit}")
    if not tf_wait_s >= 0:
        raise BagError(f"tf_wait_s must be >= 0 seconds, got {tf_wait_s}")
    if fixed_frame:
        cfg = cfg.replace(**{"input.fixed_frame": fixed_frame})
    storage = storage or input_storage(in_path)
    plugin = storage_plugin(storage)

    # Bags without embedded definitions (Humble's sqlite3) are read with the given distro's types.
    try:
        reader = AnyReader([in_path], default_typestore=make_typestore(distro or "humble"))
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags, sqlite3, yaml and mcap errors alike
        raise BagError(f"cannot open {in_path} as a rosbag2: {type(exc).__name__}: "
                       f"{' '.join(str(exc).split())}"[:400]) from None
    try:
        if not reader.is2:
            raise BagError(f"{in_path} is a ROS 1 bag; convert it first (rosbags-convert)")
        bag_distro = recorded_distro(in_path, reader.readers[0].ros_distro)
        if distro is None:
            distro = _choose_distro(reader.typestore, bag_distro)
        selected = _select_topics(reader, topics)
        if reader.message_count == 0:
            raise BagError(f"{in_path} holds no messages")
        # The bag is written under a temporary name and renamed when complete: a failed run
        # leaves no partial output directory (that a rerun would refuse as existing).
        with atomic_directory(out_path) as tmp_out:
            run = _BagRun(reader, tmp_out, plugin, cfg, distro, selected, limit, tf_wait_s,
                          segmenter)
            with tqdm(total=reader.message_count, unit="msg", disable=not progress,
                      desc=in_path.name) as bar:
                run.process(bar)
            summary = run.summary(in_path, storage, bag_distro)
            summary["output"] = str(out_path)
            _write_json(tmp_out / SUMMARY_FILE, summary)
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001 - closing a corrupt bag may fail again; already reported
            pass
    return summary


def recorded_distro(path: Path, metadata_distro: str | None) -> str | None:
    """The ROS distro that recorded the bag, lower case, or None when the bag does not say.

    rosbag2 metadata has ``ros_distro`` since version 8; older sqlite3 bags (Humble writes v5)
    keep it in the database's ``schema`` table. rosbags-written bags say ``rosbags``: unknown.
    """
    if metadata_distro and metadata_distro.lower() != "rosbags":
        return metadata_distro.lower()
    files = [path] if path.is_file() else sorted(path.glob("*.db3"))
    if not files or files[0].suffix != ".db3":
        return None
    import sqlite3

    try:
        with closing(sqlite3.connect(f"{files[0].resolve().as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT ros_distro FROM schema").fetchone()
    except sqlite3.Error:  # no schema table (older rosbag2): the bag does not say
        return None
    found = str(row[0]).lower() if row and row[0] else None
    return None if found == "rosbags" else found


def _choose_distro(input_types: Any, recorded: str | None) -> str:
    """The recorded distro's definitions, unless the input defines an output type differently
    (a bag stores one definition per type), in which case the distro that agrees with it."""
    preferred = _DISTRO_OF_BAG.get(recorded or "", "humble")
    for candidate in (preferred, *[d for d in DISTROS if d != preferred]):
        if not _conflicting_types(input_types, make_typestore(candidate)):
            return candidate
    return preferred  # every candidate conflicts: the connection check explains


def _conflicting_types(input_types: Any, output_types: Any) -> list[str]:
    """Output message types the input bag defines differently from ``output_types``."""
    return [msgtype for msgtype in sorted(set(OUTPUT_TYPES.values()))
            if msgtype in input_types.fielddefs
            and input_types.generate_msgdef(msgtype, ros_version=2)[0]
            != output_types.generate_msgdef(msgtype, ros_version=2)[0]]


def _select_topics(reader: Any, topics: Sequence[str] | None) -> list[str]:
    ours = {output_topic(name) for name in OUTPUT_TYPES}
    clouds = sorted(t for t, info in reader.topics.items()
                    if info.msgtype == POINTCLOUD2 and t not in ours)
    everything = ", ".join(f"{t} ({info.msgtype})" for t, info in sorted(reader.topics.items()))
    if not topics:
        if not clouds:
            raise BagError(
                f"the bag has no {POINTCLOUD2} topic to segment; it holds: {everything or 'nothing'}"
                ". Decode raw sensor packets into PointCloud2 first (e.g. play the bag into the "
                "driver's decoder and record its cloud topic)")
        return clouds
    wanted = [_absolute(t) for t in topics]
    missing = [t for t in wanted if t not in clouds]
    if missing:
        raise BagError(
            f"topic(s) {', '.join(missing)} not found as {POINTCLOUD2} in the bag; its "
            f"PointCloud2 topics: {', '.join(clouds) or 'none'} (all topics: {everything})")
    return list(dict.fromkeys(wanted))


class _BagRun:
    """One pass over the input bag: copy, TF, ingest, segment, write."""

    def __init__(self, reader: Any, out_path: Path, plugin: Any, cfg: Config, distro: str,
                 topics: list[str], limit: int | None, tf_wait_s: float, segmenter: Any) -> None:
        from .segmenter import Segmenter

        self.reader = reader
        self.out_path = out_path
        self.plugin = plugin
        self.cfg = cfg
        self.distro = distro
        self.topics = topics
        self.limit = limit
        self.wait_ns = round(tf_wait_s * NS_PER_S)
        self.store = make_typestore(distro)
        self.factory = MessageFactory.for_rosbags(self.store)
        self.segmenter = segmenter if segmenter is not None else Segmenter(cfg)
        self.pipeline = StreamPipeline(cfg, self.segmenter, keep_records=True)
        # The cache covers the window plus how far ingestion lags behind the newest TF data.
        self.tf = TfBuffer(cache_s=max(10.0, cfg.accumulate.window_s + 2 * tf_wait_s + 1.0))
        self.newest_tf_ns: int | None = None   # newest dynamic TF stamp, to see time jumps
        self.pipeline.reset_listeners.append(self._forget_tf)
        self.read_error: str | None = None     # why reading the input stopped early
        self.held: deque[_HeldScan] = deque()
        self.bag_time_of: dict[int, int] = {}   # scan index -> bag receive time
        self.segmentations: list[dict[str, Any]] = []
        self.not_copied: dict[str, str] = {}
        self.tf_undecodable = 0
        self.scans_read = 0
        self.messages_read = 0
        self.last_scan_ns: int | None = None   # bag time of the last scan read
        self.now_ns = 0                        # bag time of the last message read
        self.truncated_at_ns: int | None = None
        self.writes: _OrderedWrites | None = None
        self.out_connections: dict[str, Any] = {}

    # ---- output bag ------------------------------------------------------------------------
    def _add_connections(self, writer: Any) -> dict[int, Any]:
        """Output connections of every copyable input connection (by id), and of our outputs."""
        ours = {output_topic(name): name for name in OUTPUT_TYPES}
        copies: dict[int, Any] = {}
        for conn in self.reader.connections:
            if conn.topic in ours:
                self.not_copied[conn.topic] = (
                    "replaced: the output topic of the same name is written by this run")
                continue
            if conn.msgtype not in self.reader.typestore.fielddefs:
                self.not_copied[conn.topic] = (
                    f"type {conn.msgtype} has no definition in the input bag (nor in the "
                    f"{self.distro} typestore), and a rosbag2 connection needs one")
                log.warning("input topic %s not copied: %s", conn.topic,
                            self.not_copied[conn.topic])
                continue
            qos = list(conn.ext.offered_qos_profiles)
            if not qos and conn.topic == TF_STATIC_TOPIC:
                qos = [qos_profile("TRANSIENT_LOCAL", 1)]   # so ros2 bag play latches it
            copies[conn.id] = writer.add_connection(
                conn.topic, conn.msgtype, typestore=self.reader.typestore,
                serialization_format=conn.ext.serialization_format, offered_qos_profiles=qos)
        for topic, name in ours.items():
            self.out_connections[name] = writer.add_connection(
                topic, OUTPUT_TYPES[name], typestore=self.store,
                offered_qos_profiles=[outputqos_profile(name)])
        return copies

    def _write_output(self, time_ns: int, name: str, msg: Any) -> None:
        assert self.writes is not None
        data = self.store.serialize_cdr(msg, OUTPUT_TYPES[name])
        self.writes.push(time_ns, self.out_connections[name], data)

    # ---- the pass ---------------------------------------------------------------------------
    def process(self, bar: Any) -> None:
        from rosbags.rosbag2 import Writer

        conflicts = _conflicting_types(self.reader.typestore, self.store)
        if conflicts:
            # A bag stores one definition per type, so the input's and ours must agree.
            raise BagError(
                f"the input bag defines {', '.join(conflicts)} differently from the "
                f"{self.distro} definitions the outputs would use; choose the bag's distro "
                f"(--distro {' or '.join(d for d in DISTROS if d != self.distro)})")
        writer = Writer(self.out_path, version=BAG_VERSION, storage_plugin=self.plugin)
        with writer:
            copies = self._add_connections(writer)
            self.writes = _OrderedWrites(writer)
            start_ns = self.reader.start_time
            self._write_output(start_ns, TOPIC_LABELS,
                               self.pipeline.label_message(self.factory, start_ns))
            for conn, time_ns, raw in self._messages():
                bar.update(1)
                self.now_ns = time_ns
                if self._past_limit(time_ns):
                    # The output is the input up to the last scan read, plus the results; TF
                    # is still read for tf_wait so that scan can be interpolated.
                    if time_ns > self.last_scan_ns + self.wait_ns:
                        break
                    if conn.topic in (TF_TOPIC, TF_STATIC_TOPIC) and conn.msgtype == TFMESSAGE:
                        self._add_tf(conn, raw)
                    continue
                copy = copies.get(conn.id)
                if copy is not None:
                    self.writes.push(time_ns, copy, raw)
                if conn.topic in (TF_TOPIC, TF_STATIC_TOPIC) and conn.msgtype == TFMESSAGE:
                    self._add_tf(conn, raw)
                elif conn.topic in self.topics and conn.msgtype == POINTCLOUD2:
                    self._hold(conn, time_ns, raw)
                self._ingest_held(time_ns - self.wait_ns)
                self.writes.flush(time_ns - self.wait_ns)
            self._ingest_held(math.inf)
            if any(rec.fate == "pending" for rec in self.pipeline.records):
                # End of input: the last result is written at the bag time of the last message
                # copied (the last scan read, when ``limit`` cut the input short).
                end_ns = self.truncated_at_ns if self.truncated_at_ns is not None else self.now_ns
                self._segment(max(end_ns, start_ns))
            self.pipeline.finish()
            self.writes.flush()

    def _messages(self) -> Iterable[tuple[Any, int, Any]]:
        """The input's messages; a read error (truncated or corrupt storage) ends the input
        there, and ``read_error`` says why (the run still accounts for what it read)."""
        messages = iter(self.reader.messages())
        while True:
            try:
                item = next(messages)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - sqlite3, mcap and rosbags errors alike
                self.read_error = (f"reading stopped after {self.messages_read} messages: "
                                   f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:400])
                log.error("input bag: %s", self.read_error)
                return
            self.messages_read += 1
            yield item

    def _past_limit(self, time_ns: int) -> bool:
        """``limit`` scans were read and this message comes after the last of them."""
        if self.limit is not None and self.scans_read >= self.limit:
            assert self.last_scan_ns is not None
            if time_ns > self.last_scan_ns:
                self.truncated_at_ns = self.last_scan_ns
                return True
        return False

    def _forget_tf(self) -> None:
        """The pipeline's reset listener: dynamic TF goes with the scan window (static stays)."""
        self.tf.clear()
        self.newest_tf_ns = None

    def _add_tf(self, conn: Any, raw: Any) -> None:
        try:
            msg = self.reader.deserialize(raw, conn.msgtype)
        except Exception as exc:  # noqa: BLE001 - a corrupt message must not end the run
            self.tf_undecodable += 1
            log.warning("a %s message did not deserialise and was ignored: %s", conn.topic, exc)
            return
        static = conn.topic == TF_STATIC_TOPIC
        if not static:
            stamps = [stamp_to_ns(t.header.stamp) for t in msg.transforms]
            if stamps and self.newest_tf_ns is not None and \
                    min(stamps) < self.newest_tf_ns - TIME_JUMP_TOLERANCE_NS:
                # TF went back in time: the buffer would refuse every new sample as old data.
                # Scans read before the jump go in with the TF they had, then one reset clears
                # the window and the TF buffer together (pipeline.time_jump → _forget_tf).
                self._ingest_held(math.inf)
                self.pipeline.time_jump(self.newest_tf_ns - min(stamps))
            if stamps:
                self.newest_tf_ns = max(self.newest_tf_ns or max(stamps), max(stamps))
        self.tf.add_message(msg, static=static)

    def _hold(self, conn: Any, time_ns: int, raw: Any) -> None:
        self.scans_read += 1
        self.last_scan_ns = time_ns
        try:
            msg = self.reader.deserialize(raw, conn.msgtype)
        except Exception as exc:  # noqa: BLE001 - counted as an undecodable scan
            self.held.append(_HeldScan(time_ns, conn.topic, None,
                                       f"{type(exc).__name__}: {exc}"))
            return
        self.held.append(_HeldScan(time_ns, conn.topic, msg))

    def _ingest_held(self, until_ns: float) -> None:
        pipeline = self.pipeline
        while self.held and self.held[0].bag_time_ns <= until_ns:
            scan = self.held.popleft()
            if scan.msg is None:
                rec = pipeline.skip_message(scan.topic, "undecodable", scan.error)
            else:  # ingest never raises: a bad scan becomes a record with its reason
                rec = pipeline.ingest(scan.topic, scan.msg, self.tf.lookup)
            self.bag_time_of[rec.index] = scan.bag_time_ns
            if pipeline.poll(scan.bag_time_ns / NS_PER_S):
                self._segment(scan.bag_time_ns)

    def _segment(self, time_ns: int) -> None:
        result = self.pipeline.segment()
        if result is None:
            return
        msgs = self.pipeline.output_messages(self.factory, result)
        for name, msg in msgs.items():
            self._write_output(time_ns, name, msg)
        inst = result.instances
        self.segmentations.append({
            "bag_time_ns": time_ns, "stamp_ns": result.newest_stamp_ns,
            "oldest_stamp_ns": result.oldest_stamp_ns, "num_scans": result.num_scans,
            "scan_indices": list(result.scan_indices), "num_points": len(inst.xyz),
            "num_instances": int(inst.num_instances),
            "classes": [inst.class_name(k) for k in range(inst.num_instances)],
        })

    # ---- account ----------------------------------------------------------------------------
    def summary(self, in_path: Path, storage: str, bag_distro: str | None) -> dict[str, Any]:
        records = self.pipeline.records
        fates = Counter(rec.fate for rec in records)
        skipped = Counter(rec.reason for rec in records if rec.fate == "skipped")
        total = fates["processed"] + fates["merged"] + fates["skipped"]
        if total != len(records) or len(records) != self.scans_read:
            # The invariant the summary exists for; a break is a bug, never bad input.
            raise RuntimeError(
                f"scan account does not add up: {self.scans_read} scans read, {len(records)} "
                f"records, fates {dict(fates)}")
        assert self.writes is not None
        return {
            "input": str(in_path), "output": str(self.out_path),
            "storage": storage, "rosbag2_version": BAG_VERSION,
            "distro": self.distro, "input_ros_distro": bag_distro,
            "fixed_frame": self.cfg.input.fixed_frame, "model": self.segmenter.model_name,
            "topics": self.topics, "limit": self.limit, "truncated_at_ns": self.truncated_at_ns,
            "scans": {"total": len(records), "processed": fates["processed"],
                      "merged": fates["merged"], "skipped": fates["skipped"],
                      "skipped_by_reason": dict(sorted(skipped.items()))},
            "segmentations": self.segmentations,
            "messages_written": dict(sorted(self.writes.counts.items())),
            "not_copied": self.not_copied,
            "tf": {"frames": self.tf.frames,
                   "edges": [{"parent": p, "child": c, "static": s, "samples": n}
                             for p, c, s, n in self.tf.edges()],
                   "rejected": dict(self.tf.rejected), "undecodable": self.tf_undecodable},
            "stats": self.pipeline.stats.as_dict(),
            "read_error": self.read_error,
            "records": [_record_dict(rec, self.bag_time_of.get(rec.index)) for rec in records],
        }


def _record_dict(rec: ScanRecord, bag_time_ns: int | None) -> dict[str, Any]:
    return {"index": rec.index, "topic": rec.topic, "bag_time_ns": bag_time_ns,
            "stamp_ns": rec.stamp_ns, "fate": rec.fate, "reason": rec.reason,
            "detail": rec.detail}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None   # JSON has no NaN
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _write_json(path: Path, summary: dict[str, Any]) -> None:
    path.write_text(json.dumps(_json_safe(summary), indent=1, allow_nan=False) + "\n",
                    encoding="utf-8")


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable account of a :func:`segment_bag` run (what ``ros2-inst3d bag`` prints)."""
    scans = summary["scans"]
    lines = [
        (f"bag {summary['input']} -> {summary['output']} ({summary['storage']}, rosbag2 "
         f"v{summary['rosbag2_version']}, {summary['distro']} definitions, model "
         f"{summary['model']}, fixed frame {summary['fixed_frame']!r})"),
        (f"input scans on {', '.join(summary['topics'])}: {scans['total']} = "
         f"{scans['processed']} processed + {scans['merged']} merged + {scans['skipped']} "
         "skipped"),
    ]
    if scans["skipped_by_reason"]:
        lines.append("  skipped: " + ", ".join(f"{reason} {count}" for reason, count
                                               in scans["skipped_by_reason"].items()))
        # Identical (reason, detail) pairs are listed once with their count and scan indices:
        # a real bag repeats the same problem thousands of times.
        groups: dict[tuple[str, str], list[int]] = {}
        for rec in summary["records"]:
            if rec["fate"] == "skipped" and rec["detail"]:
                groups.setdefault((rec["reason"], rec["detail"]), []).append(rec["index"])
        for (reason, detail), indices in list(groups.items())[:MAX_DETAIL_LINES]:
            which = ", ".join(map(str, indices[:5])) + (", ..." if len(indices) > 5 else "")
            lines.append(f"    {reason} x{len(indices)} (scans {which}): {detail}")
        if len(groups) > MAX_DETAIL_LINES:
            lines.append(f"    ... {len(groups) - MAX_DETAIL_LINES} more distinct problems in "
                         f"{SUMMARY_FILE}")
    segs = summary["segmentations"]
    lines.append(f"segmentations: {len(segs)}" + (
        " (instances: " + ", ".join(str(s["num_instances"]) for s in segs) + ")" if segs else ""))
    lines.append("written: " + ", ".join(f"{t} {n}" for t, n in
                                         summary["messages_written"].items()))
    for topic, why in summary["not_copied"].items():
        lines.append(f"not copied: {topic}: {why}")
    if summary["limit"] is not None:
        lines.append(f"limited to the first {summary['limit']} scans")
    if summary.get("read_error"):
        lines.append(f"input bag corrupt: {summary['read_error']}")
    lines.append(f"account: {Path(summary['output']) / SUMMARY_FILE}")
    return "\n".join(lines)
