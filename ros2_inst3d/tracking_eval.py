"""Tracking quality on generated sequences with ground truth: ``ros2-inst3d bench --tracking``.

A generated scene's raw scans (``synthetic.scene.ScanSequence``: per-pose sensor-frame points
with per-point ground-truth instance, poses, stamps) are replayed through the same
:class:`~ros2_inst3d.pipeline.StreamPipeline` the bag tool and the node use (PointCloud2 encode →
decode → TF at each scan's stamp → accumulate → segment → track), segmenting after every scan.
Each result is one *frame*: its ground truth is the instance of each point of the result's cloud
(the accumulated points are copies of scan points, found again with a KD-tree), and a
ground-truth instance is *present* when it has at least ``min_gt_points`` points in that cloud.
Hypotheses are the published, observed instances (remembered objects have no points and are not
scored).

Matching: point IoU >= 0.5 within the frame's cloud. Metrics (the usual definitions):

* CLEAR-MOT (Bernardin & Stiefelhagen 2008): a match of the previous frame is kept while its
  IoU stays >= 0.5; the remaining pairs are assigned by maximum total IoU (Hungarian). An *ID
  switch* is a ground-truth object matched to a different track id than at its last match; a
  *fragmentation* is a ground-truth object going from tracked to untracked while present, and
  being tracked again later. MOTA = 1 - (FN + FP + IDSW) / GT, GT = present ground-truth
  instance-frames.
* IDF1 (Ristani et al. 2016): one-to-one assignment of ground-truth to track identities over the
  whole sequence maximising the frames where the pair matches (IDTP);
  IDF1 = 2 IDTP / (GT + hypotheses).

Sequences are scored one by one and their counts summed (ids never cross sequences).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from .model.registry import BENCHMARK_METHODS

IOU_THRESHOLD = 0.5
# Result points farther than this from every raw scan point get no ground truth (never happens
# for copies of scan points; guards against a change that would move points).
GT_LOOKUP_TOLERANCE_M = 1e-4


@dataclass
class Frame:
    """One segmentation result against ground truth.

    gt_ids: (G,) present ground-truth instances. hyp_ids: (H,) published track ids.
    iou: (G, H) point IoU within the result's cloud.
    """

    gt_ids: np.ndarray
    hyp_ids: np.ndarray
    iou: np.ndarray


@dataclass
class MotCounts:
    """CLEAR-MOT and identity counts of one or more sequences (sums)."""

    gt: int = 0           # present ground-truth instance-frames
    hypotheses: int = 0   # published instance-frames
    matches: int = 0
    false_positives: int = 0
    misses: int = 0
    id_switches: int = 0
    fragmentations: int = 0
    idtp: int = 0
    frames: int = 0
    gt_objects: int = 0
    tracks: int = 0
    iou_sum: float = 0.0

    def __add__(self, other: "MotCounts") -> "MotCounts":
        return MotCounts(**{k: getattr(self, k) + getattr(other, k)
                            for k in self.__dataclass_fields__})

    @property
    def mota(self) -> float:
        if self.gt == 0:
            return float("nan")
        return 1.0 - (self.misses + self.false_positives + self.id_switches) / self.gt

    @property
    def idf1(self) -> float:
        total = self.gt + self.hypotheses
        return 2.0 * self.idtp / total if total else float("nan")

    @property
    def id_switches_per_100(self) -> float:
        return 100.0 * self.id_switches / self.gt if self.gt else float("nan")

    @property
    def mean_iou(self) -> float:
        return self.iou_sum / self.matches if self.matches else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out.update(mota=self.mota, idf1=self.idf1, id_switches_per_100=self.id_switches_per_100,
                   mean_iou=self.mean_iou)
        return out


def _assign_max(weights: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (row, col) of a maximum-weight assignment over the positive entries of ``weights``."""
    if weights.size == 0 or not (weights > 0).any():
        return []
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-weights)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if weights[r, c] > 0]


def mot_counts(frames: Sequence[Frame], iou_threshold: float = IOU_THRESHOLD) -> MotCounts:
    """CLEAR-MOT and IDF1 counts of one sequence of frames (module docstring)."""
    counts = MotCounts(frames=len(frames))
    current: dict[int, int] = {}       # gt id -> hyp id matched in the previous frame
    last_match: dict[int, int] = {}    # gt id -> hyp id of its last match, ever
    was_tracked: dict[int, bool] = {}  # gt id -> tracked at its previous presence
    interrupted: set[int] = set()      # gt ids that lost their track and wait for it back
    pair_frames: dict[tuple[int, int], int] = {}
    gt_seen: set[int] = set()
    hyp_seen: set[int] = set()
    for frame in frames:
        gt_ids = [int(g) for g in frame.gt_ids]
        hyp_ids = [int(h) for h in frame.hyp_ids]
        iou = np.asarray(frame.iou, dtype=np.float64).reshape(len(gt_ids), len(hyp_ids))
        counts.gt += len(gt_ids)
        counts.hypotheses += len(hyp_ids)
        gt_seen.update(gt_ids)
        hyp_seen.update(hyp_ids)
        gt_pos = {g: i for i, g in enumerate(gt_ids)}
        hyp_pos = {h: j for j, h in enumerate(hyp_ids)}
        ok = iou >= iou_threshold
        for i, j in zip(*np.nonzero(ok)):
            key = (gt_ids[i], hyp_ids[j])
            pair_frames[key] = pair_frames.get(key, 0) + 1
        matched: dict[int, int] = {}
        for g, h in current.items():
            if g in gt_pos and h in hyp_pos and ok[gt_pos[g], hyp_pos[h]]:
                matched[g] = h
        free_g = [i for i, g in enumerate(gt_ids) if g not in matched]
        used_h = set(matched.values())
        free_h = [j for j, h in enumerate(hyp_ids) if h not in used_h]
        weights = np.where(ok, iou, 0.0)[np.ix_(free_g, free_h)]
        for a, b in _assign_max(weights):
            g, h = gt_ids[free_g[a]], hyp_ids[free_h[b]]
            if g in last_match and last_match[g] != h:
                counts.id_switches += 1
            matched[g] = h
        for g in gt_ids:
            tracked = g in matched
            if tracked:
                counts.iou_sum += float(iou[gt_pos[g], hyp_pos[matched[g]]])
                last_match[g] = matched[g]
                if g in interrupted:
                    counts.fragmentations += 1
                    interrupted.discard(g)
            elif was_tracked.get(g, False):
                interrupted.add(g)
            was_tracked[g] = tracked
        counts.matches += len(matched)
        counts.misses += len(gt_ids) - len(matched)
        counts.false_positives += len(hyp_ids) - len(matched)
        current = matched
    gts, hyps = sorted(gt_seen), sorted(hyp_seen)
    table = np.zeros((len(gts), len(hyps)))
    gi = {g: i for i, g in enumerate(gts)}
    hi = {h: j for j, h in enumerate(hyps)}
    for (g, h), n in pair_frames.items():
        table[gi[g], hi[h]] = n
    counts.idtp = int(sum(table[a, b] for a, b in _assign_max(table)))
    counts.gt_objects, counts.tracks = len(gts), len(hyps)
    return counts


def frame_of(gt_labels: np.ndarray, hyp_ids: np.ndarray, hyp_indices: Sequence[np.ndarray],
             min_gt_points: int) -> Frame:
    """The :class:`Frame` of one result: ``gt_labels`` (N,) ground-truth instance per point of the
    result's cloud (negative: none); hypotheses by id with their point indices into that cloud."""
    gt_labels = np.asarray(gt_labels)
    ids, gt_size = np.unique(gt_labels[gt_labels >= 0], return_counts=True)
    present = gt_size >= min_gt_points
    ids, gt_size = ids[present], gt_size[present]
    iou = np.zeros((len(ids), len(hyp_ids)))
    for j, idx in enumerate(hyp_indices):
        labels = gt_labels[np.unique(idx)]
        pos = np.searchsorted(ids, labels)
        hit = (labels >= 0) & (pos < len(ids))
        hit[hit] &= ids[pos[hit]] == labels[hit]
        inter = np.bincount(pos[hit], minlength=len(ids))
        iou[:, j] = inter / (gt_size + len(np.unique(idx)) - inter)
    return Frame(ids.astype(np.int64), np.asarray(hyp_ids, dtype=np.int64), iou)


@dataclass
class SequenceRun:
    """A replayed sequence: its frames and the pipeline's timings (ms per result)."""

    frames: list[Frame] = field(default_factory=list)
    segment_ms: list[float] = field(default_factory=list)
    tracking_ms: list[float] = field(default_factory=list)


def _stream_results(seq: Any, cfg: Any, segmenter: Any
                    ) -> Iterator[tuple[Any, int, np.ndarray]]:
    """Replay ``seq`` through a fresh pipeline configured by ``cfg``, segmenting after every scan;
    yields each result's ``Instances``, its newest scan's stamp and the ground-truth instance of
    each of its cloud's points (negative: none)."""
    from scipy.spatial import cKDTree

    from .cloud import encode_xyz, ns_to_stamp
    from .msgs import MessageFactory, make_typestore
    from .errors import TransformUnavailable
    from .pipeline import StreamPipeline
    from .transforms import apply_transform

    segmenter.cfg = cfg
    pipe = StreamPipeline(cfg, segmenter)
    factory = MessageFactory.for_rosbags(make_typestore("humble"))
    poses = {int(seq.stamps_ns[s]): seq.poses[s] for s in range(seq.num_scans)}

    def lookup(target: str, source: str, stamp_ns: int) -> np.ndarray:
        if source != seq.frame_id or stamp_ns not in poses:
            raise TransformUnavailable(f"no pose for {source} at {stamp_ns}")
        return poses[stamp_ns]

    room = np.concatenate([apply_transform(seq.poses[s], seq.scan(s)[0])
                           for s in range(seq.num_scans)]) if seq.num_scans else np.zeros((0, 3))
    tree = cKDTree(room)
    for s in range(seq.num_scans):
        xyz, rgb, stamp_ns, _ = seq.scan(s)
        header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, stamp_ns),
                         frame_id=seq.frame_id)
        pipe.ingest("points", encode_xyz(factory, header, xyz, rgb), lookup)
        if not pipe.poll(stamp_ns / 1e9):
            continue
        result = pipe.segment()
        if result is None:
            continue
        inst = result.instances
        dist, nearest = tree.query(inst.xyz, k=1)
        yield inst, result.newest_stamp_ns, np.where(dist <= GT_LOOKUP_TOLERANCE_M,
                                                     seq.instance[nearest], -1)


def _sequence_cfg(seq: Any, cfg: Any, **overrides: Any) -> Any:
    return cfg.replace(**{"input.fixed_frame": seq.fixed_frame, "segment.rate_hz": 0.0,
                          "segment.every_n_scans": 1, **overrides})


def replay_sequence(seq: Any, cfg: Any, segmenter: Any, min_gt_points: int | None = None
                    ) -> SequenceRun:
    """Replay ``seq`` (a ``ScanSequence``) through a fresh pipeline, segmenting after every scan.

    ``cfg``: the pipeline config (its fixed frame is replaced by the sequence's, the trigger by
    every scan); ``segmenter``: a :class:`~ros2_inst3d.segmenter.Segmenter` (reused across
    sequences). min_gt_points: presence threshold, default ``cfg.segment.min_points``.
    """
    cfg = _sequence_cfg(seq, cfg)
    min_gt = cfg.segment.min_points if min_gt_points is None else int(min_gt_points)
    run = SequenceRun()
    for inst, _, gt in _stream_results(seq, cfg, segmenter):
        run.frames.append(frame_of(gt, inst.ids, inst.indices, min_gt))
        run.segment_ms.append(inst.timing_ms.get("total", float("nan")))
        run.tracking_ms.append(inst.timing_ms.get("tracking", float("nan")))
    return run


@dataclass
class RecordedResult:
    """One untracked result of :func:`record_sequence`: what the tracker would have received."""

    instances: Any          # Instances, ids per result
    stamp_ns: int           # the newest scan's stamp, the tracker's clock
    gt: np.ndarray          # (N,) ground-truth instance per point of the result's cloud
    min_gt_points: int


def record_sequence(seq: Any, cfg: Any, segmenter: Any) -> list[RecordedResult]:
    """:func:`replay_sequence` with tracking off, keeping every result, so that
    :func:`track_recorded` can score many tracking settings on one segmentation pass (the
    tracker only sees the results and their stamps: the same frames as a pipeline that tracks)."""
    cfg = _sequence_cfg(seq, cfg, **{"tracking.enabled": False})
    return [RecordedResult(inst, stamp_ns, gt, cfg.segment.min_points)
            for inst, stamp_ns, gt in _stream_results(seq, cfg, segmenter)]


def track_recorded(results: Sequence[RecordedResult], tracking_cfg: Any) -> list[Frame]:
    """The frames a pipeline with ``tracking_cfg`` (a ``TrackingConfig``) produces from
    ``results``."""
    from .tracking import Tracker

    tracker = Tracker(tracking_cfg)
    frames = []
    for rec in results:
        inst = tracker.update(rec.instances, rec.stamp_ns).instances
        frames.append(frame_of(rec.gt, inst.ids, inst.indices, rec.min_gt_points))
    return frames


def replay_sequences(sequences: Sequence[Any], cfg: Any, segmenter: Any
                     ) -> tuple[MotCounts, list[float], list[float]]:
    """:func:`replay_sequence` over ``sequences`` with one ``cfg`` and ``segmenter``: the summed
    counts and every result's segment and tracking ms."""
    total = MotCounts()
    segment_ms: list[float] = []
    tracking_ms: list[float] = []
    for seq in sequences:
        run = replay_sequence(seq, cfg, segmenter)
        total = total + mot_counts(run.frames)
        segment_ms += run.segment_ms
        tracking_ms += run.tracking_ms
    return total, segment_ms, tracking_ms


# ---------------------------------------------------------------------------------- benchmark

TRACKING_MODELS = BENCHMARK_METHODS
"""Default methods of the tracking benchmark, those of the pipeline benchmark."""


def sequence_params(sensor: str, small: bool = False) -> Any:
    """Scene parameters of the tracking benchmark's sequences for ``sensor`` (rgbd / lidar)."""
    from .synthetic.scene import SceneParams

    if small:
        return SceneParams.small(sensor=sensor, max_poses=8, lidar_azimuth_steps=512)
    return SceneParams(sensor=sensor, max_poses=40)


def bench_tracking(models: Sequence[str] = TRACKING_MODELS, sensors: Sequence[str] = ("rgbd", "lidar"),
                   num_sequences: int = 3, first_index: int = 0, small: bool = False,
                   progress: bool = False, tracking: bool = True) -> dict:
    """Tracking metrics per method and sensor on generated test-split sequences.

    Returns ``{sequences: {sensor: [seeds]}, runs: [{model, sensor, weights, ...MotCounts.to_dict,
    segment_ms, tracking_ms}]}``.
    """
    from .config import Config
    from .synthetic.scene import generate_scene, split_seed
    from .segmenter import Segmenter
    from .bench import bench_point_model

    seeds = [split_seed("test", first_index + i) for i in range(num_sequences)]
    report: dict[str, Any] = {"sequences": {}, "runs": [], "iou_threshold": IOU_THRESHOLD}
    for sensor in sensors:
        params = sequence_params(sensor, small)
        scenes = []
        for seed in seeds:
            t0 = time.perf_counter()
            scenes.append(generate_scene(seed, params, keep_sequence=True, threads=1).sequence)
            if progress:
                print(f"tracking: generated {sensor} sequence {seed} "
                      f"({scenes[-1].num_scans} scans, {time.perf_counter() - t0:.1f} s)",
                      flush=True)
        report["sequences"][sensor] = seeds
        for model in models:
            cfg = Config().replace(**{"model.name": model, "model.device": "cpu",
                                      "tracking.enabled": tracking})
            point_model, weights = bench_point_model(model, "cpu")
            total, seg_ms, trk_ms = replay_sequences(scenes, cfg, Segmenter(cfg, point_model))
            row = {"model": model, "sensor": sensor, "weights": weights, **total.to_dict(),
                   "segment_ms": float(np.median(seg_ms)) if seg_ms else float("nan"),
                   "tracking_ms": float(np.nanmedian(trk_ms)) if trk_ms and tracking
                   else float("nan")}
            report["runs"].append(row)
            if progress:
                print(f"tracking: {model}/{sensor}: {format_row(row)}", flush=True)
    return report


TABLE_HEAD = ("| method | sensor | GT inst-frames | IDSW | IDSW/100 | frag | MOTA | IDF1 | "
              "FP | FN | mean IoU | segment ms | tracking ms |")


def format_row(row: dict) -> str:
    return (f"| {row['model']} | {row['sensor']} | {row['gt']} | {row['id_switches']} | "
            f"{row['id_switches_per_100']:.2f} | {row['fragmentations']} | {row['mota']:.3f} | "
            f"{row['idf1']:.3f} | {row['false_positives']} | {row['misses']} | "
            f"{row['mean_iou']:.2f} | {row['segment_ms']:.0f} | {row['tracking_ms']:.1f} |")


def format_tracking(report: dict) -> str:
    lines = [TABLE_HEAD, "|" + "---|" * (TABLE_HEAD.count("|") - 1)]
    lines += [format_row(r) for r in report["runs"]]
    seqs = ", ".join(f"{s}: seeds {v}" for s, v in report["sequences"].items())
    lines.append(f"\nsequences ({seqs}); match = point IoU >= {report['iou_threshold']}")
    return "\n".join(lines)
