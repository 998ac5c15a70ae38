"""Instance tracking: objects keep one id across segmentation results, and are remembered.

Each segmentation of the accumulated cloud gives instances numbered 0..K-1 for that result only.
:class:`Tracker` turns them into tracks (no ROS import; the streaming pipeline owns one, so the
node and the bag tool both get it):

* **Association** of the result's instances with the live tracks, by one cost per pair
  (lower is better, in [0, 1] plus a class penalty)::

      cost = 1 - (W_OVERLAP * overlap + W_BOX * box_iou + W_DISTANCE * (1 - d / max_distance))
             + class_mismatch_cost * [classes differ]

  ``overlap``: the fraction of the instance's fixed-frame voxels (``voxel_size`` grid,
  :func:`~ros2_inst3d.voxelize.voxel_keys`) that lie in the track's shape, the union of its last
  :data:`KEY_HISTORY` observations. Not IoU: a moving sensor sees an object partly, so a view
  inside the object's known shape should score 1; an instance that merges two objects scores
  about 0.5 with each (on generated RGB-D sequences, geometric method, this measure gave 14 ID
  switches where the overlap over the smaller set gave 23 and IoU 16; SoftGroup 2, 2, 3). ``box_iou``: axis-aligned 3D IoU with
  the last observed box. ``d``: centroid distance, metres. Pairs farther apart than
  ``max_distance`` or costing more than ``max_cost`` are never matched; the rest are assigned
  optimally (Hungarian, ``scipy.optimize.linear_sum_assignment``).
* **Life cycle**: an unmatched instance starts a *tentative* track; it is *confirmed* after
  ``min_hits`` matches (while the first ``min_hits`` results after a start or reset are
  processed, tentative tracks are published too, so a single result is not lost). A tentative
  track missed once is deleted. A confirmed track not observed for ``max_age_s`` is forgotten;
  until then it is *remembered*: published with its last geometry and ``observed = False``.
* **Ids** come from one counter per tracker and are never reused, also across :meth:`reset`.
* **Class and score**: the class is the score-weighted vote over the track's matches; the score
  an exponential moving average (weight ``score_smoothing`` on the newest match).

Units: metres, integer nanoseconds for stamps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .instances import Box3D, Instances
from .voxelize import voxel_keys

__all__ = ["Tracker", "TrackedResult", "TrackInfo", "RememberedTrack", "association_costs"]

# Weights of the association similarity (they sum to 1, so a perfect match costs 0).
W_OVERLAP = 0.5
W_BOX = 0.3
W_DISTANCE = 0.2
# Observations whose voxels make up a track's shape for the overlap term.
KEY_HISTORY = 5
# Stands for "never match" in the cost matrix (finite: linear_sum_assignment rejects inf rows).
FORBIDDEN = 1.0e6


@dataclass(frozen=True)
class TrackInfo:
    """Track facts published with an observed instance (``Instance`` message fields)."""

    first_seen_ns: int
    last_seen_ns: int
    hits: int
    observed: bool = True


@dataclass(frozen=True, eq=False)
class RememberedTrack:
    """A confirmed track not found in the current result: its last observed geometry.

    aabb / obb: boxes (metres, fixed frame); footprint: (H, 2) xy convex hull; centroid (3,).
    """

    id: int
    class_id: int
    score: float
    info: TrackInfo
    aabb: Box3D
    obb: Box3D
    footprint: np.ndarray
    centroid: np.ndarray
    min_z: float
    max_z: float

    def box(self, kind: str) -> Box3D:
        return self.aabb if kind == "aabb" else self.obb


@dataclass(eq=False)
class TrackedResult:
    """The tracker's answer for one result.

    instances: the observed, published instances, ``ids`` = track ids, class and score smoothed
    over the track. info: track id -> :class:`TrackInfo` of each of them. remembered: confirmed
    tracks not observed now (newest first).
    """

    instances: Instances
    info: dict[int, TrackInfo]
    remembered: list[RememberedTrack] = field(default_factory=list)


@dataclass(eq=False)
class _Track:
    id: int
    first_seen_ns: int
    last_seen_ns: int
    hits: int
    score: float
    class_votes: dict[int, float]
    keys: deque
    lo: np.ndarray          # (3,) last observed axis-aligned box corners
    hi: np.ndarray
    centroid: np.ndarray    # (3,) last observed centroid
    last: RememberedTrack | None = None   # geometry snapshot, filled when published

    @property
    def class_id(self) -> int:
        return max(self.class_votes.items(), key=lambda kv: (kv[1], -kv[0]))[0]

    def shape_keys(self) -> np.ndarray:
        return self.keys[0] if len(self.keys) == 1 else np.unique(np.concatenate(self.keys))


@dataclass(frozen=True)
class _Detection:
    keys: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    centroid: np.ndarray
    class_id: int
    score: float


def _box_iou(lo_a: np.ndarray, hi_a: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray) -> np.ndarray:
    """Axis-aligned 3D IoU of boxes a (A, 3) and b (B, 3) corners -> (A, B); 0 for empty boxes."""
    inter = np.clip(np.minimum(hi_a[:, None], hi_b[None]) - np.maximum(lo_a[:, None], lo_b[None]),
                    0.0, None).prod(axis=2)
    vol_a = (hi_a - lo_a).prod(axis=1)
    vol_b = (hi_b - lo_b).prod(axis=1)
    union = vol_a[:, None] + vol_b[None] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def voxel_overlap(detection: np.ndarray, track: np.ndarray) -> float:
    """Fraction of the detection's voxels inside the track's shape, in [0, 1]; both sorted unique
    key arrays (:func:`~ros2_inst3d.voxelize.voxel_keys`)."""
    shared = len(np.intersect1d(detection, track, assume_unique=True))
    return shared / max(1, len(detection))


def association_costs(dets: list[_Detection], tracks: list[_Track], cfg: Any) -> np.ndarray:
    """(D, T) float64 costs (module docstring); :data:`FORBIDDEN` where a pair may not match."""
    costs = np.full((len(dets), len(tracks)), FORBIDDEN)
    if not dets or not tracks:
        return costs
    det_c = np.stack([d.centroid for d in dets])
    trk_c = np.stack([t.centroid for t in tracks])
    dist = np.linalg.norm(det_c[:, None] - trk_c[None], axis=2)
    box_iou = _box_iou(np.stack([d.lo for d in dets]), np.stack([d.hi for d in dets]),
                       np.stack([t.lo for t in tracks]), np.stack([t.hi for t in tracks]))
    shapes: dict[int, np.ndarray] = {}
    for i, j in zip(*np.nonzero(dist <= cfg.max_distance)):
        if j not in shapes:
            shapes[j] = tracks[j].shape_keys()
        overlap = voxel_overlap(dets[i].keys, shapes[j])
        similarity = (W_OVERLAP * overlap + W_BOX * box_iou[i, j]
                      + W_DISTANCE * (1.0 - dist[i, j] / cfg.max_distance))
        cost = 1.0 - similarity
        if dets[i].class_id != tracks[j].class_id:
            cost += cfg.class_mismatch_cost
        if cost <= cfg.max_cost:
            costs[i, j] = cost
    return costs


class Tracker:
    """Keeps tracks over segmentation results (module docstring).

    cfg: a :class:`~ros2_inst3d.config.TrackingConfig` (read on every :meth:`update`, so runtime
    changes apply at once).
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._next_id = 0
        self._tracks: list[_Track] = []
        self._results = 0

    @property
    def num_tracks(self) -> int:
        return len(self._tracks)

    def reset(self) -> None:
        """Forget every track (time jumped backwards); ids keep counting up, never reused."""
        self._tracks = []
        self._results = 0

    def _detections(self, inst: Instances) -> list[_Detection]:
        dets = []
        for k in range(inst.num_instances):
            pts = inst.points(k)
            dets.append(_Detection(
                keys=voxel_keys(pts, self.cfg.voxel_size),
                lo=pts.min(axis=0).astype(np.float64), hi=pts.max(axis=0).astype(np.float64),
                centroid=inst.centroid(k), class_id=int(inst.class_ids[k]),
                score=float(inst.scores[k])))
        return dets

    def update(self, inst: Instances, stamp_ns: int) -> TrackedResult:
        """Associate the instances of one result (stamp: its newest scan) with the tracks."""
        cfg = self.cfg
        self._results += 1
        dets = self._detections(inst)
        costs = association_costs(dets, self._tracks, cfg)
        track_of = np.full(len(dets), -1, dtype=np.int64)
        if costs.size:
            from scipy.optimize import linear_sum_assignment

            rows, cols = linear_sum_assignment(costs)
            ok = costs[rows, cols] < FORBIDDEN
            track_of[rows[ok]] = cols[ok]
        matched = set(int(j) for j in track_of[track_of >= 0])

        tracks: list[_Track] = []
        det_track: list[_Track] = []
        for i, det in enumerate(dets):
            if track_of[i] >= 0:
                trk = self._tracks[int(track_of[i])]
                self._observe(trk, det, stamp_ns)
            else:
                trk = _Track(id=self._next_id, first_seen_ns=stamp_ns, last_seen_ns=stamp_ns,
                             hits=1, score=det.score, class_votes={det.class_id: det.score},
                             keys=deque([det.keys], maxlen=KEY_HISTORY), lo=det.lo, hi=det.hi,
                             centroid=det.centroid)
                self._next_id += 1
                tracks.append(trk)
            det_track.append(trk)
        horizon = stamp_ns - int(round(cfg.max_age_s * 1e9))
        for j, trk in enumerate(self._tracks):
            if j in matched:
                tracks.append(trk)
            elif trk.hits >= cfg.min_hits and trk.last_seen_ns >= horizon:
                tracks.append(trk)   # remembered
        self._tracks = tracks

        warm_up = self._results <= cfg.min_hits
        publish = [i for i, trk in enumerate(det_track) if trk.hits >= cfg.min_hits or warm_up]
        out = _relabel(inst.select(np.asarray(publish, dtype=np.int64)),
                       [det_track[i] for i in publish])
        info = {}
        for k, i in enumerate(publish):
            trk = det_track[i]
            info[trk.id] = TrackInfo(trk.first_seen_ns, trk.last_seen_ns, trk.hits, True)
            trk.last = _snapshot(out, k, trk)
        remembered = []
        if cfg.publish_remembered:
            observed = {trk.id for trk in det_track}
            for trk in sorted(self._tracks, key=lambda t: (-t.last_seen_ns, t.id)):
                if trk.id not in observed and trk.last is not None:
                    remembered.append(_with_info(trk.last, TrackInfo(
                        trk.first_seen_ns, trk.last_seen_ns, trk.hits, False), trk))
        return TrackedResult(out, info, remembered)

    def _observe(self, trk: _Track, det: _Detection, stamp_ns: int) -> None:
        alpha = self.cfg.score_smoothing
        trk.hits += 1
        trk.last_seen_ns = max(trk.last_seen_ns, stamp_ns)
        trk.score = (1.0 - alpha) * trk.score + alpha * det.score
        trk.class_votes[det.class_id] = trk.class_votes.get(det.class_id, 0.0) + det.score
        trk.keys.append(det.keys)
        trk.lo, trk.hi, trk.centroid = det.lo, det.hi, det.centroid


def _relabel(inst: Instances, tracks: list[_Track]) -> Instances:
    """``inst`` with ids = track ids, class = the track's vote, score = its smoothed score."""
    ids = np.array([t.id for t in tracks], dtype=np.int64)
    point_instance = inst.point_instance.copy()
    labelled = np.flatnonzero(point_instance >= 0)
    if len(labelled):
        order = np.argsort(inst.ids)
        position = order[np.searchsorted(inst.ids, point_instance[labelled], sorter=order)]
        point_instance[labelled] = ids[position]
    out = Instances(xyz=inst.xyz, rgb=inst.rgb, point_instance=point_instance,
                    point_class=inst.point_class, ids=ids,
                    class_ids=np.array([t.class_id for t in tracks], dtype=np.int64),
                    scores=np.array([t.score for t in tracks], dtype=np.float32),
                    indices=list(inst.indices), class_names=inst.class_names,
                    timing_ms=inst.timing_ms)
    out._cache.update(inst._cache)   # boxes and hulls depend on the points only
    return out


def _snapshot(inst: Instances, k: int, trk: _Track) -> RememberedTrack:
    pts = inst.points(k)
    return RememberedTrack(
        id=trk.id, class_id=int(inst.class_ids[k]), score=float(inst.scores[k]),
        info=TrackInfo(trk.first_seen_ns, trk.last_seen_ns, trk.hits, False),
        aabb=inst.aabb(k), obb=inst.obb(k), footprint=inst.footprint(k),
        centroid=inst.centroid(k), min_z=float(pts[:, 2].min()), max_z=float(pts[:, 2].max()))


def _with_info(snap: RememberedTrack, info: TrackInfo, trk: _Track) -> RememberedTrack:
    return RememberedTrack(id=snap.id, class_id=trk.class_id, score=float(trk.score), info=info,
                           aabb=snap.aabb, obb=snap.obb, footprint=snap.footprint,
                           centroid=snap.centroid, min_z=snap.min_z, max_z=snap.max_z)
