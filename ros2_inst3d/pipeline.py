"""The streaming pipeline shared by the ROS node and the bag tool, with no ROS import.

``PointCloud2 → decode → transform into the fixed frame → accumulate → (trigger) → segment →
output messages``. Front ends supply messages, a transform lookup and a clock; everything that
decides what happens to a scan lives here, so it is tested without rclpy:

* :class:`SegmentTrigger`: when to segment (``rate_hz`` timer and/or every N scans); triggers that
  fall due while a segmentation is running are counted as skipped, never queued.
* :class:`StreamPipeline`: the per-scan path with a reason for every scan it does not use, time
  jump detection (bag loops with ``use_sim_time``), and the output messages of a result.
* :class:`PipelineStats`: the counters and latencies that go to ``/diagnostics`` and the bag
  summary.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .accumulate import ScanAccumulator
from .cloud import CloudDecodeError, decode
from .config import Config
from .errors import TransformUnavailable
from .instances import Instances
from .tracking import RememberedTrack, Tracker, TrackInfo
from .transforms import apply_transform

log = logging.getLogger(__name__)

# Output topics, relative so a namespace or remap moves them.
TOPIC_INSTANCES = "instances"
TOPIC_CLOUD = "instances/cloud"
TOPIC_DETECTIONS = "instances/detections"
TOPIC_LABELS = "instances/labels"
TOPIC_MARKERS = "instances/markers"
OUTPUT_TYPES = {
    TOPIC_INSTANCES: "ros2_inst3d/msg/InstanceArray",
    TOPIC_CLOUD: "sensor_msgs/msg/PointCloud2",
    TOPIC_DETECTIONS: "vision_msgs/msg/Detection3DArray",
    TOPIC_LABELS: "vision_msgs/msg/LabelInfo",
    TOPIC_MARKERS: "visualization_msgs/msg/MarkerArray",
}

# Points farther than this from the fixed frame's origin are dropped as sensor junk.
MAX_COORDINATE_M = 1.0e5

# A stamp this far behind the newest one seen means time jumped backwards (a bag looped).
TIME_JUMP_TOLERANCE_NS = 1_000_000_000

# Input stamps farther than this from the front end's clock are on another time line (a bag
# replayed without use_sim_time): the end-to-end latency is then meaningless and not reported.
CLOCK_MISMATCH_S = 60.0


TransformLookup = Callable[[str, str, int], np.ndarray]
"""``lookup(target_frame, source_frame, stamp_ns) -> (4, 4) float64`` or raise TransformUnavailable."""


@dataclass
class PipelineStats:
    """Counters since start (or the last reset of the front end); all plain ints/floats."""

    scans_received: int = 0
    scans_accumulated: int = 0
    scans_skipped: Counter = field(default_factory=Counter)   # reason -> count
    points_dropped_non_finite: int = 0
    segmentations: int = 0
    segmentations_skipped: Counter = field(default_factory=Counter)  # reason -> count
    time_jumps: int = 0
    last_latency_ms: dict[str, float] = field(default_factory=dict)  # stage -> ms
    last_end_to_end_ms: float = float("nan")
    input_clock_offset_s: float = 0.0   # input stamps minus the front end's clock, when mismatched

    def as_dict(self) -> dict[str, Any]:
        return {
            "scans_received": self.scans_received,
            "scans_accumulated": self.scans_accumulated,
            "scans_skipped": dict(self.scans_skipped),
            "points_dropped_non_finite": self.points_dropped_non_finite,
            "segmentations": self.segmentations,
            "segmentations_skipped": dict(self.segmentations_skipped),
            "time_jumps": self.time_jumps,
            "last_latency_ms": dict(self.last_latency_ms),
            "last_end_to_end_ms": self.last_end_to_end_ms,
        }


@dataclass
class DiagnosticValues:
    """What the pipeline reports about itself (a front end turns it into ``/diagnostics``).

    values: key → value (numbers, or strings already formatted), in the order to show them.
    warning: why the state needs attention (the status is then WARN), or None when all is well.
    """

    values: dict[str, Any]
    warning: str | None = None


class SegmentTrigger:
    """Decides when to segment: every ``1/rate_hz`` seconds and/or every ``every_n_scans`` scans.

    ``poll(now_s)`` is called by the worker after each scan (and on idle ticks). It returns True
    when a segmentation is due and none is running. Periods that elapse while one is running are
    counted in ``skipped`` (never queued): a slow model lowers the output rate, not the freshness.
    """

    def __init__(self, rate_hz: float, every_n_scans: int) -> None:
        self.configure(rate_hz, every_n_scans)
        self.skipped = 0
        self._last_s: float | None = None
        self._scans = 0
        self._busy = False

    def configure(self, rate_hz: float, every_n_scans: int) -> None:
        self.period_s = 1.0 / rate_hz if rate_hz > 0 else None
        self.every_n_scans = every_n_scans

    def scan_added(self) -> None:
        self._scans += 1

    def poll(self, now_s: float) -> bool:
        if self._last_s is None:
            self._last_s = now_s
        due_by_time = self.period_s is not None and now_s - self._last_s >= self.period_s
        due_by_scans = self.every_n_scans > 0 and self._scans >= self.every_n_scans
        if not (due_by_time or due_by_scans):
            return False
        if self._busy:
            self.skipped += 1
            self._restart(now_s)
            return False
        if due_by_time and self.period_s is not None:
            missed = int((now_s - self._last_s) // self.period_s) - 1
            self.skipped += max(0, missed)
        self._restart(now_s)
        return True

    def _restart(self, now_s: float) -> None:
        self._last_s = now_s
        self._scans = 0

    def begin(self) -> None:
        self._busy = True

    def end(self) -> None:
        self._busy = False

    def reset(self) -> None:
        self._last_s = None
        self._scans = 0


@dataclass
class ScanRecord:
    """What happened to one received scan (the bag summary lists these)."""

    index: int
    topic: str
    stamp_ns: int
    fate: str = "pending"   # processed | merged | skipped
    reason: str = ""        # why it was skipped: a diagnostics counter name
    detail: str = ""        # the error message, when there is one
    sequence: int = -1      # the accumulator's sequence number of the scan, once added


@dataclass
class SegmentationResult:
    instances: Instances
    frame_id: str
    newest_stamp_ns: int
    oldest_stamp_ns: int
    num_scans: int
    scan_indices: list[int]
    model_name: str
    # Tracking (tracking.enabled): track facts per published instance id, and the confirmed
    # tracks not observed in this result. Empty when tracking is off.
    track_info: dict[int, TrackInfo] = field(default_factory=dict)
    remembered: list[RememberedTrack] = field(default_factory=list)


class StreamPipeline:
    """Decode → TF → accumulate → segment, with an account of every scan.

    Thread safety: ``ingest`` and ``segment`` may run on different threads (the node's worker and
    segmentation threads); the accumulator is guarded by a lock and ``segment`` works on a snapshot.
    """

    def __init__(self, cfg: Config, segmenter: Any, *, keep_records: bool = False) -> None:
        self.cfg = cfg
        self.segmenter = segmenter
        self.stats = PipelineStats()
        self.trigger = SegmentTrigger(cfg.segment.rate_hz, cfg.segment.every_n_scans)
        acc = cfg.accumulate
        self.accumulator = ScanAccumulator(acc.window_s, acc.max_scans, acc.max_points,
                                           acc.dedupe_voxel)
        self.tracker = Tracker(cfg.tracking) if cfg.tracking.enabled else None
        # Guards the tracker (reset() runs on the ingest thread); taken after _lock, never before.
        self._track_lock = threading.Lock()
        self._lock = threading.Lock()
        # Counters are bumped from the executor thread (mailbox) and the worker threads; never
        # take _lock while holding this one.
        self._stats_lock = threading.Lock()
        self._newest_stamp_ns: int | None = None
        self._pending: list[ScanRecord] = []   # accumulated, not yet part of a result
        self.keep_records = keep_records
        self.records: list[ScanRecord] = []
        # Called (no arguments) after every reset: front ends register what must be forgotten
        # together with the scan window, e.g. the bag tool's TF buffer on a time jump.
        self.reset_listeners: list[Callable[[], None]] = []
        self._warnings: Counter = Counter()   # throttles repeated warnings (see _warn)

    # ---- configuration -------------------------------------------------------------------
    def apply_runtime_config(self, cfg: Config) -> None:
        """Take new runtime-changeable values (the node's parameter callback calls this)."""
        acc = cfg.accumulate
        with self._lock:
            self.cfg = cfg
            self.segmenter.cfg = cfg
            self.trigger.configure(cfg.segment.rate_hz, cfg.segment.every_n_scans)
            self.accumulator.window_s = acc.window_s
            self.accumulator.max_scans = acc.max_scans
            self.accumulator.max_points = acc.max_points
            self.accumulator.dedupe_voxel = acc.dedupe_voxel
            if self.tracker is not None:
                self.tracker.cfg = cfg.tracking
            self._expire_pending()   # smaller limits evict scans at once

    def reset(self, reason: str) -> None:
        """Forget accumulated scans (time jumped backwards, or the front end asks)."""
        with self._lock:
            self.accumulator.clear()
            for rec in self._pending:
                self._skip(rec, reason)
            self._pending.clear()
            self._newest_stamp_ns = None
            self.trigger.reset()
            if self.tracker is not None:
                with self._track_lock:
                    self.tracker.reset()
        for listener in self.reset_listeners:
            listener()

    def note_clock_jump(self) -> None:
        """The front end's clock jumped backwards (the node's ROS time in a bag loop with
        ``use_sim_time``): count it and forget the window (and what ``reset_listeners`` hold)."""
        with self._stats_lock:
            self.stats.time_jumps += 1
        self.reset("time_jump")

    def time_jump(self, behind_ns: int) -> None:
        """Time went backwards by ``behind_ns`` (a bag loop, a clock reset): count it and reset
        the window and everything registered in ``reset_listeners`` (one reset for all)."""
        self.stats.time_jumps += 1
        log.warning("time jumped backwards by %.1f s (bag loop?): cleared the accumulated scans%s",
                    behind_ns / 1e9, " and TF" if self.reset_listeners else "")
        self.reset("time_jump")

    def _warn(self, key: str, message: str, *args: Any) -> None:
        """Log a warning the 1st, 10th, 100th... time ``key`` occurs (thousands of identical
        per-scan warnings would bury everything else); the counters keep the exact numbers."""
        self._warnings[key] += 1
        count = self._warnings[key]
        if count == 1 or math.log10(count).is_integer():
            suffix = f" ({count} times so far)" if count > 1 else ""
            log.warning(message + suffix, *args)

    # ---- per scan ------------------------------------------------------------------------
    def ingest(self, topic: str, msg: Any, lookup: TransformLookup) -> ScanRecord:
        """Take one PointCloud2; returns its record (``pending`` when accumulated).

        Never raises for bad input: an unexpected failure inside skips the scan as
        ``ingest_error`` with the exception in ``detail`` (and logs it), and the stream goes on.
        """
        rec = self._new_record(topic)
        try:
            return self._ingest(rec, topic, msg, lookup)
        except Exception as exc:  # noqa: BLE001 - one bad scan must not stop the stream
            log.exception("scan %d on %s failed", rec.index, topic)
            with self._lock:
                if rec in self._pending:
                    self._pending.remove(rec)
            return self._skip(rec, "ingest_error", repr(exc))

    def _ingest(self, rec: ScanRecord, topic: str, msg: Any, lookup: TransformLookup) -> ScanRecord:
        t0 = time.perf_counter()
        try:
            scan = decode(msg)
        except CloudDecodeError as exc:
            log.debug("scan on %s skipped: %s", topic, exc)
            return self._skip(rec, "malformed", str(exc))
        rec.stamp_ns = scan.stamp_ns
        t1 = time.perf_counter()
        self.stats.points_dropped_non_finite += scan.dropped_non_finite
        if scan.num_points == 0:
            return self._skip(rec, "empty")
        if scan.num_points > self.cfg.input.max_points_per_scan:
            return self._skip(rec, "too_many_points")
        if self._newest_stamp_ns is not None and \
                scan.stamp_ns < self._newest_stamp_ns - TIME_JUMP_TOLERANCE_NS:
            self.time_jump(self._newest_stamp_ns - scan.stamp_ns)
        fixed = self.cfg.input.fixed_frame
        frame_id = scan.frame_id or self.cfg.input.empty_frame_id
        if not frame_id:
            # Taking it as the fixed frame would put it wherever the sensor happens to be.
            return self._skip(rec, "no_frame_id", "header.frame_id is empty (set "
                              "input.empty_frame_id to name the frame such scans are in)")
        if frame_id != fixed:
            try:
                matrix = lookup(fixed, frame_id, scan.stamp_ns)
            except TransformUnavailable as exc:
                return self._skip(rec, "no_transform", str(exc))
            matrix = np.asarray(matrix, dtype=np.float64)
            if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
                # A TF message with NaN in it reaches the buffer as readily as a good one.
                return self._skip(rec, "no_transform", f"the transform {frame_id} -> {fixed} "
                                  "at the scan's stamp is not a finite 4x4 matrix")
            xyz = apply_transform(matrix, scan.xyz)
        else:
            xyz = scan.xyz
        # Drivers write "no return" as float max, and float max overflows to inf in the
        # transform: neither is a place, and either would break the voxel grids downstream.
        # Two whole-array reductions decide the usual case; the per-point mask only when needed.
        in_range = bool(xyz.size == 0 or (xyz.max() <= MAX_COORDINATE_M
                                          and xyz.min() >= -MAX_COORDINATE_M))
        valid = None if in_range else (np.abs(xyz) <= MAX_COORDINATE_M).all(axis=1)
        if valid is not None and not valid.all():
            self.stats.points_dropped_non_finite += int((~valid).sum())
            xyz = xyz[valid]
            scan.rgb = None if scan.rgb is None else scan.rgb[valid]
            scan.intensity = None if scan.intensity is None else scan.intensity[valid]
            scan.ring = None if scan.ring is None else scan.ring[valid]
            if len(xyz) == 0:
                return self._skip(rec, "empty")
        t2 = time.perf_counter()
        with self._lock:
            self.accumulator.add(xyz, scan.rgb, scan.intensity, scan.stamp_ns, ring=scan.ring)
            rec.sequence = self.accumulator.last_sequence
            self._newest_stamp_ns = max(self._newest_stamp_ns or scan.stamp_ns, scan.stamp_ns)
            self._pending.append(rec)
            self._expire_pending()
        self.trigger.scan_added()
        self.stats.scans_accumulated += 1
        t3 = time.perf_counter()
        self.stats.last_latency_ms.update(decode=(t1 - t0) * 1e3, transform=(t2 - t1) * 1e3,
                                          accumulate=(t3 - t2) * 1e3)
        return rec

    def poll(self, now_s: float) -> bool:
        """Whether a segmentation is due at ``now_s`` (seconds of the front end's clock) and
        none is running; see :class:`SegmentTrigger`. Call after each scan and on idle ticks."""
        return self.trigger.poll(now_s)

    def record_end_to_end(self, now_ns: int, newest_stamp_ns: int) -> float | None:
        """Record the end-to-end latency of a result published at ``now_ns`` (the front end's
        clock) whose newest scan is stamped ``newest_stamp_ns``.

        Returns the latency in seconds when it has just exceeded ``CLOCK_MISMATCH_S`` (the input
        stamps are on another clock; the front end says why, once), else None. While they
        disagree the latency is NaN and ``input_clock_offset_s`` holds the offset.
        """
        latency_s = (now_ns - newest_stamp_ns) / 1e9
        stats = self.stats
        with self._stats_lock:
            if abs(latency_s) <= CLOCK_MISMATCH_S:
                stats.input_clock_offset_s = 0.0
                stats.last_end_to_end_ms = latency_s * 1e3
                return None
            newly = stats.input_clock_offset_s == 0.0
            stats.input_clock_offset_s = -latency_s
            stats.last_end_to_end_ms = float("nan")
        return latency_s if newly else None

    def diagnostic_values(self) -> DiagnosticValues:
        """The counters, latencies and model of this pipeline for ``/diagnostics``, and a
        warning when most scans are skipped, none came yet, or stamps and clock disagree."""
        stats = self.stats
        with self._stats_lock:
            values: dict[str, Any] = {
                "scans_received": stats.scans_received,
                "scans_accumulated": stats.scans_accumulated,
                "segmentations": stats.segmentations,
                "triggers_skipped_busy": self.trigger.skipped,
                "time_jumps": stats.time_jumps,
                "points_dropped_non_finite": stats.points_dropped_non_finite,
                "accumulated_points": self.accumulator.num_points,
                "end_to_end_latency_ms": f"{stats.last_end_to_end_ms:.1f}",
                "input_clock_offset_s": f"{stats.input_clock_offset_s:.1f}",
                "model": self.segmenter.model_name,
                "device": getattr(self.segmenter, "device", "cpu"),
            }
            values.update({f"scans_skipped.{k}": v for k, v in stats.scans_skipped.items()})
            values.update({f"segmentations_skipped.{k}": v
                           for k, v in stats.segmentations_skipped.items()})
            values.update({f"latency_ms.{k}": f"{v:.1f}" for k, v in stats.last_latency_ms.items()})
            skipped = sum(stats.scans_skipped.values())
            warning = None
            if stats.scans_received == 0:
                warning = "no input clouds yet"
            elif skipped > stats.scans_accumulated:
                warning = "most scans are skipped (see scans_skipped.*)"
            elif stats.input_clock_offset_s != 0.0:
                warning = ("input stamps and node clock disagree (see input_clock_offset_s; "
                           "use_sim_time?)")
        return DiagnosticValues(values, warning)

    def count_superseded(self, topic: str) -> None:
        """A newer scan replaced this topic's unprocessed one in the node's mailbox."""
        self._skip(self._new_record(topic), "superseded")

    def count_error(self, reason: str) -> None:
        """An unexpected exception a front end caught (kept running); counted by reason."""
        with self._stats_lock:
            self.stats.segmentations_skipped[reason] += 1

    def skip_message(self, topic: str, reason: str, detail: str = "",
                     rec: ScanRecord | None = None) -> ScanRecord:
        """Account for a scan a front end could not hand to ``ingest``, or that ``ingest`` raised on.

        ``rec``: the still-pending record ``ingest`` made before it raised; None for a message
        that never reached ``ingest`` (the bag tool: it did not deserialise), which gets a record.
        """
        if rec is None:
            rec = self._new_record(topic)
        return self._skip(rec, reason, detail)

    def _new_record(self, topic: str) -> ScanRecord:
        with self._stats_lock:
            self.stats.scans_received += 1
            rec = ScanRecord(self.stats.scans_received - 1, topic, -1)
            if self.keep_records:
                self.records.append(rec)
        return rec

    def _skip(self, rec: ScanRecord, reason: str, detail: str = "") -> ScanRecord:
        rec.fate, rec.reason, rec.detail = "skipped", reason, detail
        with self._stats_lock:
            self.stats.scans_skipped[reason] += 1
        return rec

    def _expire_pending(self) -> None:
        """Scans the accumulator has dropped before any result used them are skipped: expired.

        By sequence number, not stamp: scans sharing a stamp may be evicted one by one (scan
        count, point budget), and only those still held go into a result as merged."""
        held = self.accumulator.held_sequences()
        keep = []
        for rec in self._pending:
            if rec.sequence not in held:
                self._skip(rec, "expired")
            else:
                keep.append(rec)
        self._pending = keep

    # ---- segmentation --------------------------------------------------------------------
    def segment(self) -> SegmentationResult | None:
        """Segment the accumulated cloud now; None (counted) when there is nothing to segment.

        Nothing to segment: an empty window (``empty_cloud``), or no scan added since the last
        result (``no_new_scans``): the window, and so the result, would be the same again.
        """
        with self._lock:
            cloud = self.accumulator.cloud()
            used = self._pending
            self._pending = []
        if cloud.num_points == 0 or cloud.newest_stamp_ns is None:
            self.stats.segmentations_skipped["empty_cloud"] += 1
            return None
        if not used:
            self.stats.segmentations_skipped["no_new_scans"] += 1
            return None
        self.trigger.begin()
        try:
            from .segmenter import SegmentationError

            try:
                # intensity and ring reach the methods that use them (lidar), NaN where a scan
                # of the window lacked them
                inst = self.segmenter.segment(cloud.xyz, cloud.rgb, fields=cloud.fields())
            except SegmentationError as exc:
                self.stats.segmentations_skipped[exc.reason] += 1
                self._warn(f"segmentation.{exc.reason}", "segmentation skipped (%s): %s",
                           exc.reason, exc)
                for rec in used:
                    self._skip(rec, f"segmentation_{exc.reason}")
                return None
            except Exception as exc:
                # Account for the scans, then let the front end log and count it (it keeps running).
                for rec in used:
                    self._skip(rec, "segmentation_error", repr(exc))
                raise
        finally:
            self.trigger.end()
        track_info: dict[int, TrackInfo] = {}
        remembered: list[RememberedTrack] = []
        if self.tracker is not None:
            t0 = time.perf_counter()
            with self._track_lock:
                tracked = self.tracker.update(inst, cloud.newest_stamp_ns)
            inst, track_info, remembered = tracked.instances, tracked.info, tracked.remembered
            inst.timing_ms["tracking"] = (time.perf_counter() - t0) * 1e3
        self.stats.segmentations += 1
        self.stats.last_latency_ms.update({f"segment.{k}": v for k, v in inst.timing_ms.items()})
        newest = max(used, key=lambda r: (r.stamp_ns, r.index), default=None)
        for rec in used:
            rec.fate = "processed" if rec is newest else "merged"
        return SegmentationResult(inst, self.cfg.input.fixed_frame, cloud.newest_stamp_ns,
                                  cloud.oldest_stamp_ns or cloud.newest_stamp_ns, cloud.num_scans,
                                  [r.index for r in used], self.segmenter.model_name,
                                  track_info, remembered)

    def finish(self) -> None:
        """End of input (bag tool): scans never segmented are skipped as ``not_segmented``."""
        with self._lock:
            for rec in self._pending:
                self._skip(rec, "not_segmented")
            self._pending = []

    # ---- outputs -------------------------------------------------------------------------
    def output_messages(self, factory: Any, result: SegmentationResult,
                        wanted: set[str] | None = None) -> dict[str, Any]:
        """The messages of one result, by output topic (labels excluded: see ``label_message``).

        ``wanted`` limits the heavy outputs to topics someone subscribes to (None: all enabled).
        """
        from . import outputs
        from .cloud import ns_to_stamp

        header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, result.newest_stamp_ns),
                         frame_id=result.frame_id)
        inst = result.instances
        out_cfg = self.cfg.output

        def enabled(topic: str, flag: bool) -> bool:
            return flag and (wanted is None or topic in wanted)

        msgs = {TOPIC_INSTANCES: outputs.instance_array(
            factory, inst, header, result.oldest_stamp_ns, result.model_name,
            box_type=out_cfg.box_type, track_info=result.track_info,
            remembered=result.remembered)}
        if enabled(TOPIC_CLOUD, out_cfg.publish_cloud):
            msgs[TOPIC_CLOUD] = outputs.labelled_cloud(factory, inst, header)
        if enabled(TOPIC_DETECTIONS, out_cfg.publish_detections):
            msgs[TOPIC_DETECTIONS] = outputs.detections(factory, inst, header,
                                                        box_type=out_cfg.box_type)
        if enabled(TOPIC_MARKERS, out_cfg.publish_markers):
            msgs[TOPIC_MARKERS] = outputs.markers(factory, inst, header,
                                                  lifetime_s=out_cfg.marker_lifetime_s,
                                                  box_type=out_cfg.box_type,
                                                  remembered=result.remembered)
        return msgs

    def label_message(self, factory: Any, stamp_ns: int) -> Any:
        """``vision_msgs/LabelInfo`` with the model's class table (latched by the node)."""
        from . import outputs
        from .cloud import ns_to_stamp

        header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, stamp_ns),
                         frame_id=self.cfg.input.fixed_frame)
        return outputs.label_info(factory, self.segmenter.class_names, header,
                                  self.cfg.segment.score_threshold)
