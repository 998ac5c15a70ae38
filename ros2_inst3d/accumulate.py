"""Accumulate scans in the fixed frame over a sliding window with bounded memory.

A single sweep of a LiDAR or a depth camera sees one side of each object; segmentation works on
the union of the last few scans, transformed into the fixed frame (``map``/``odom``) first.
:class:`ScanAccumulator` keeps that union under three limits, all applied on every ``add``:

* time: scans older than ``newest_stamp - window_s`` are dropped;
* count: at most ``max_scans`` scans, newest kept;
* points: at most ``max_points`` stored points, oldest scans dropped whole first; a single scan
  larger than the budget is subsampled with a uniform stride.

Memory is therefore bounded by ``max_points`` whatever the input rate. Optional voxel-hash
dedupe (``dedupe_voxel`` > 0, metres, fixed frame) keeps one point per voxel: within a scan the
first point at ``add`` time, across scans the point of the newest scan at :meth:`cloud` time, so
a moving object overwrites where it used to be instead of leaving a trail. Voxels are on the
global grid ``floor(xyz / dedupe_voxel)``, so the answer does not depend on what else is stored.
Dedupe is idempotent: adding the same cloud twice gives the cloud once. The cross-scan dedupe
is kept up to date incrementally (:class:`_NewestPerVoxel`): a :meth:`cloud` after a new scan
costs about that scan's points, not the whole window's. Its bookkeeping (sorted voxel keys per
scan, the survivors' index and their cached copy) takes up to ~3x the bytes of the stored
points themselves, still bounded by ``max_points``.

Nothing leaves silently: every point added is either stored or counted in exactly one of
``expired_points`` (window or scan count), ``dropped_budget_points``, ``dropped_late_points`` or
``dropped_duplicate_points`` (same-voxel points within one scan).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ros2_inst3d.voxelize import first_points_of_voxels, key_groups, point_voxel_keys, voxel_coords

__all__ = ["AccumulatedCloud", "ScanAccumulator", "MISSING_RGB", "MISSING_SCALAR"]

# Fill values for scans without colour, intensity or ring when other scans in the window have
# them: mid grey is neutral for the models' rgb/127.5 - 1 features (it maps to ~0); NaN marks an
# unknown intensity or ring honestly instead of inventing a reading.
MISSING_RGB = np.array([128, 128, 128], dtype=np.uint8)
MISSING_SCALAR = np.float32(np.nan)
# The optional per-point scalars a window carries, each (n,) float32 with NaN where a scan in the
# window did not have it: the sensor's intensity, and its beam index (ring) for the lidar method.
SCALAR_FIELDS = ("intensity", "ring")


@dataclass(frozen=True)
class AccumulatedCloud:
    """The accumulated window, in the fixed frame, scans in stamp order (oldest first).

    xyz: (P, 3) float32, metres, fixed frame.
    rgb: (P, 3) uint8, or None when no scan in the window had colour. Points of scans without
        colour get :data:`MISSING_RGB` when other scans have it.
    intensity: (P,) float32, or None when no scan had intensity; missing ones are NaN.
    ring: (P,) float32 beam index, or None when no scan had one; missing ones are NaN.
    stamp_ns: (P,) int64, stamp of the scan each point came from, integer nanoseconds.
    newest_stamp_ns / oldest_stamp_ns: stamps of the newest / oldest scan in the window (ns), None
        when the window is empty.
    num_scans: scans in the window.
    """

    xyz: np.ndarray
    rgb: np.ndarray | None
    intensity: np.ndarray | None
    stamp_ns: np.ndarray
    newest_stamp_ns: int | None
    oldest_stamp_ns: int | None
    num_scans: int
    ring: np.ndarray | None = None

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    def fields(self) -> dict[str, np.ndarray]:
        """The per-point scalars the window has (``SCALAR_FIELDS``), by name, for
        ``Segmenter.segment(fields=...)``."""
        return {name: getattr(self, name) for name in SCALAR_FIELDS
                if getattr(self, name) is not None}


@dataclass(frozen=True)
class _StoredScan:
    xyz: np.ndarray  # (n, 3) float32
    rgb: np.ndarray | None  # (n, 3) uint8
    scalars: dict[str, np.ndarray]  # SCALAR_FIELDS the scan has, (n,) float32 each
    stamp_ns: int
    sequence: int  # insertion order; breaks ties between equal stamps (later = newer)
    # The scan's voxels at edge ``keys_voxel`` (the dedupe voxel at add time) as (sorted unique
    # global keys (m,) int64, index of the point in each (m,) int64), or None: the in-scan
    # dedupe sorts them anyway, and the cross-scan one (_NewestPerVoxel) reuses them.
    voxels: tuple[np.ndarray, np.ndarray] | None = None
    keys_voxel: float = 0.0

    @property
    def order_key(self) -> tuple[int, int]:
        return (self.stamp_ns, self.sequence)

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])


def _uniform_subsample(n: int, keep: int) -> np.ndarray:
    """``keep`` indices spread evenly over range(n), increasing, deterministic."""
    return (np.arange(keep, dtype=np.int64) * n) // keep


class ScanAccumulator:
    """Sliding window of scans in the fixed frame.

    window_s: time span in seconds (>= 0; 0 keeps only the newest stamp; ``math.inf`` = no limit).
    max_scans: most scans kept (>= 1).
    max_points: most points stored (>= 1); bounds memory.
    dedupe_voxel: voxel edge in metres for dedupe; 0 turns dedupe off.

    The four limits are attributes that may be changed at any time (validated, applied at once).
    Stamps may arrive out of order within the window. A scan older than ``newest - window_s`` is
    refused and counted (``dropped_late_*``). A backwards time jump (bag loop) is the caller's to
    detect: call :meth:`clear`, as the node does.
    """

    def __init__(self, window_s: float, max_scans: int, max_points: int, dedupe_voxel: float = 0.0):
        self._scans: deque[_StoredScan] = deque()
        self._num_points = 0
        self._sequence = 0
        self._cache: AccumulatedCloud | None = None
        self._newest: _NewestPerVoxel | None = None   # cross-scan dedupe, kept incrementally
        self.dropped_budget_points = 0
        self.dropped_late_points = 0
        self.dropped_late_scans = 0
        self.dropped_duplicate_points = 0
        self.expired_scans = 0
        self.expired_points = 0
        self.window_s = window_s
        self.max_scans = max_scans
        self.max_points = max_points
        self.dedupe_voxel = dedupe_voxel

    # Limits may change at runtime (node parameter callback): each setter validates the value
    # and applies it to the stored scans at once.
    @property
    def window_s(self) -> float:
        return self._window_s

    @window_s.setter
    def window_s(self, value: float) -> None:
        window_s = float(value)
        if not window_s >= 0.0:  # also rejects NaN
            raise ValueError(f"window_s must be >= 0 seconds (math.inf for no time limit), got {value!r}")
        self._window_s = window_s
        self._window_ns: int | None = None if math.isinf(window_s) else int(round(window_s * 1e9))
        self._enforce_limits()

    @property
    def max_scans(self) -> int:
        return self._max_scans

    @max_scans.setter
    def max_scans(self, value: int) -> None:
        self._max_scans = _positive_int("max_scans", value)
        self._enforce_limits()

    @property
    def max_points(self) -> int:
        return self._max_points

    @max_points.setter
    def max_points(self, value: int) -> None:
        self._max_points = _positive_int("max_points", value)
        self._enforce_limits()

    @property
    def dedupe_voxel(self) -> float:
        """Dedupe voxel edge, metres (0 = off). A new value applies to everything stored at the
        next :meth:`cloud`; what an old value removed at ``add`` time stays removed."""
        return self._dedupe_voxel

    @dedupe_voxel.setter
    def dedupe_voxel(self, value: float) -> None:
        dedupe_voxel = float(value)
        if not (math.isfinite(dedupe_voxel) and dedupe_voxel >= 0.0):
            raise ValueError(f"dedupe_voxel must be >= 0 metres (0 = off), got {value!r}")
        self._dedupe_voxel = dedupe_voxel
        self._cache = None
        self._newest = None

    # ---------------------------------------------------------------------------------------
    @property
    def num_points(self) -> int:
        """Points stored (before cross-scan dedupe); never above ``max_points``."""
        return self._num_points

    @property
    def num_scans(self) -> int:
        return len(self._scans)

    @property
    def newest_stamp_ns(self) -> int | None:
        return self._scans[-1].stamp_ns if self._scans else None

    @property
    def oldest_stamp_ns(self) -> int | None:
        return self._scans[0].stamp_ns if self._scans else None

    def stats(self) -> dict[str, int]:
        """Counters for diagnostics."""
        return {
            "num_points": self._num_points,
            "num_scans": len(self._scans),
            "dropped_budget_points": self.dropped_budget_points,
            "dropped_late_points": self.dropped_late_points,
            "dropped_late_scans": self.dropped_late_scans,
            "dropped_duplicate_points": self.dropped_duplicate_points,
            "expired_scans": self.expired_scans,
            "expired_points": self.expired_points,
        }

    @property
    def last_sequence(self) -> int:
        """Sequence number :meth:`add` gave the last scan it took (-1 before the first)."""
        return self._sequence - 1

    def held_sequences(self) -> set[int]:
        """Sequence numbers of the scans in the window now (evicted ones are gone, also those
        that share a stamp with a kept one)."""
        return {s.sequence for s in self._scans}

    def clear(self) -> None:
        """Forget every scan (e.g. after a backwards time jump); counters are kept."""
        self._scans.clear()
        self._num_points = 0
        self._cache = None
        self._newest = None

    # ---------------------------------------------------------------------------------------
    def add(self, xyz: Any, rgb: Any = None, intensity: Any = None, stamp_ns: int = 0,
            ring: Any = None) -> bool:
        """Add one scan already transformed into the fixed frame.

        xyz: (N, 3) float, metres, fixed frame, finite. rgb: (N, 3) uint8 or None.
        intensity, ring: (N,) numbers or None. stamp_ns: scan stamp, integer nanoseconds.
        Returns True when the scan is stored after the limits are applied (False when it was
        refused as too old or immediately evicted by the limits; either way it is counted).
        """
        points, colours, scalars, stamp = self._validate(
            xyz, rgb, {"intensity": intensity, "ring": ring}, stamp_ns)
        newest = self.newest_stamp_ns
        if newest is not None and self._window_ns is not None and stamp < newest - self._window_ns:
            self.dropped_late_scans += 1
            self.dropped_late_points += points.shape[0]
            return False

        voxels = None
        if self.dedupe_voxel > 0.0 and points.shape[0]:
            keys = point_voxel_keys(points, self.dedupe_voxel)
            if keys is None:   # beyond the global key range: group the rows themselves
                first = first_points_of_voxels(voxel_coords(points, self.dedupe_voxel, np.zeros(3)))
            else:
                unique, first_of_voxel = key_groups(keys)
                # The kept points in scan order, and each voxel's point renumbered among them,
                # by a mark and a running count (linear; a sort of `first` is not).
                kept = np.zeros(points.shape[0], dtype=bool)
                kept[first_of_voxel] = True
                first = np.flatnonzero(kept)
                voxels = (unique, (np.cumsum(kept) - 1)[first_of_voxel])
            if first.shape[0] < points.shape[0]:
                self.dropped_duplicate_points += points.shape[0] - first.shape[0]
                points, colours, scalars = _take(first, points, colours, scalars)
        if points.shape[0] > self.max_points:
            self.dropped_budget_points += points.shape[0] - self.max_points
            keep = _uniform_subsample(points.shape[0], self.max_points)
            points, colours, scalars = _take(keep, points, colours, scalars)
            voxels = None   # keyed again if the window needs them

        scan = _StoredScan(points, colours, scalars, stamp, self._sequence, voxels,
                           self.dedupe_voxel)
        self._sequence += 1
        # Keep the deque sorted by (stamp, arrival); out-of-order scans are rare and the deque
        # holds at most max_scans entries.
        position = bisect.bisect_right([s.order_key for s in self._scans], scan.order_key)
        self._scans.insert(position, scan)
        self._num_points += scan.num_points
        self._cache = None
        self._enforce_limits()
        return any(s is scan for s in self._scans)

    def _enforce_limits(self) -> None:
        if not self._scans:
            return
        self._cache = None
        if self._window_ns is not None:
            horizon = self._scans[-1].stamp_ns - self._window_ns
            while self._scans[0].stamp_ns < horizon:
                self._expire_oldest()
        while len(self._scans) > self.max_scans:
            self._expire_oldest()
        while self._num_points > self.max_points:
            dropped = self._scans.popleft().num_points
            self._num_points -= dropped
            self.dropped_budget_points += dropped

    def _expire_oldest(self) -> None:
        dropped = self._scans.popleft().num_points
        self._num_points -= dropped
        self.expired_scans += 1
        self.expired_points += dropped

    @staticmethod
    def _validate(xyz: Any, rgb: Any, scalars: dict[str, Any], stamp_ns: Any):
        points = np.asarray(xyz)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"xyz must have shape (N, 3), got {points.shape}")
        if not np.issubdtype(points.dtype, np.floating):
            raise ValueError(f"xyz must be floating point metres, got dtype {points.dtype}")
        points = points.astype(np.float32)  # always a copy: the caller may reuse its buffer
        if not np.all(np.isfinite(points)):
            raise ValueError("xyz has NaN/inf coordinates; drop them first (cloud.decode does)")
        n = points.shape[0]
        colours = None
        if rgb is not None:
            colours = np.asarray(rgb)
            if colours.shape != (n, 3):
                raise ValueError(f"rgb must have shape ({n}, 3) to match xyz, got {colours.shape}")
            if colours.dtype != np.uint8:
                raise ValueError(f"rgb must be uint8 (0..255), got dtype {colours.dtype}")
            colours = colours.copy()
        checked = {}
        for name, values in scalars.items():
            if values is None:
                continue
            values = np.asarray(values)
            if values.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) to match xyz, got {values.shape}")
            checked[name] = values.astype(np.float32)
        if isinstance(stamp_ns, (bool, np.bool_)) or not isinstance(stamp_ns, (int, np.integer)):
            raise ValueError(
                f"stamp_ns must be an integer number of nanoseconds, got {type(stamp_ns).__name__}; "
                "use cloud.stamp_to_ns(header.stamp)"
            )
        return points, colours, checked, int(stamp_ns)

    # ---------------------------------------------------------------------------------------
    def cloud(self) -> AccumulatedCloud:
        """The window as one cloud (oldest scan first); deduped across scans when enabled.

        The result is cached until the next add/clear; treat its arrays as read-only.
        """
        if self._cache is None:
            self._cache = self._build_cloud()
        return self._cache

    def _build_cloud(self) -> AccumulatedCloud:
        scans = list(self._scans)
        if scans and self.dedupe_voxel > 0.0:
            if self._newest is None:
                self._newest = _NewestPerVoxel(self.dedupe_voxel)
            if self._newest.update(scans):
                return self._newest.cloud(scans)
            self._newest = None   # keys out of range or an eviction it cannot follow
        return self._concatenate_and_dedupe(scans)

    def _concatenate_and_dedupe(self, scans: list[_StoredScan]) -> AccumulatedCloud:
        """The window built from scratch: every stored point, then dedupe over all of them."""
        if not scans:
            return AccumulatedCloud(
                xyz=np.zeros((0, 3), np.float32), rgb=None, intensity=None,
                stamp_ns=np.zeros(0, np.int64), newest_stamp_ns=None, oldest_stamp_ns=None, num_scans=0,
            )
        xyz = np.concatenate([s.xyz for s in scans])
        stamps = np.concatenate([np.full(s.num_points, s.stamp_ns, dtype=np.int64) for s in scans])
        rgb = None
        if any(s.rgb is not None for s in scans):
            rgb = np.concatenate(
                [s.rgb if s.rgb is not None else np.broadcast_to(MISSING_RGB, (s.num_points, 3)) for s in scans]
            )
        scalars = _concatenate_scalars([s.scalars for s in scans], [s.num_points for s in scans])
        if self.dedupe_voxel > 0.0 and xyz.shape[0]:
            # First occurrence over the reversed (newest-first) cloud = the newest scan's point;
            # each stored scan already has at most one point per voxel (unless dedupe_voxel grew).
            first_reversed = first_points_of_voxels(
                voxel_coords(xyz[::-1], self.dedupe_voxel, np.zeros(3)))
            keep = np.sort(xyz.shape[0] - 1 - first_reversed)
            xyz, rgb, scalars = _take(keep, xyz, rgb, scalars)
            stamps = stamps[keep]
        return AccumulatedCloud(
            xyz=xyz, rgb=rgb, stamp_ns=stamps, newest_stamp_ns=scans[-1].stamp_ns,
            oldest_stamp_ns=scans[0].stamp_ns, num_scans=len(scans),
            **{name: scalars.get(name) for name in SCALAR_FIELDS},
        )


# _NewestPerVoxel packs (scan sequence, point index) into one int64: a stored scan has at most
# max_points <= 50M < 2**32 points (config.py), and 2**31 sequences last years at 30 Hz.
_POINT_BITS = 32
_POINT_MASK = (1 << _POINT_BITS) - 1


class _NewestPerVoxel:
    """Which stored point is the newest of its dedupe voxel, kept up to date scan by scan.

    The window keeps, per voxel, the point of the newest scan holding that voxel (the last one
    of that scan if it has several, which only happens after ``dedupe_voxel`` changed). Scans
    leave the window oldest first, and an old scan never wins a voxel against a newer one, so
    an eviction never brings a point back: evicted scans just take their winners with them. So
    only scans new since the last :meth:`update` are looked up (O(new points x log survivors)
    plus a merge), instead of sorting the whole window's keys again for every result.

    State: the survivors as sorted unique voxel ``keys`` (S,) int64 and, per survivor, its
    ``owner`` (S,) int64: the scan's sequence << 32 | the point's index in that scan; per scan
    an ``alive`` mask (n,) bool and its surviving points, cached until one of them loses its
    voxel.
    """

    def __init__(self, voxel: float) -> None:
        self.voxel = voxel
        self.keys = np.zeros(0, dtype=np.int64)
        self.owner = np.zeros(0, dtype=np.int64)
        self.alive: dict[int, np.ndarray] = {}     # sequence -> (n,) bool
        self.parts: dict[int, tuple | None] = {}   # sequence -> (xyz, rgb, scalars) survivors
        self.order_keys: dict[int, tuple[int, int]] = {}   # sequence -> (stamp_ns, sequence)

    def update(self, scans: list[_StoredScan]) -> bool:
        """Follow the window to ``scans`` (stamp order). False when it cannot (a voxel key out
        of range, or a scan evicted that is newer than one kept): rebuild from scratch then."""
        held = {s.sequence for s in scans}
        gone = [sequence for sequence in self.alive if sequence not in held]
        if gone:
            indexed = [s for s in scans if s.sequence in self.alive]
            if indexed and max(self.order_keys[g] for g in gone) > indexed[0].order_key:
                return False
            keep = ~np.isin(self.owner >> _POINT_BITS, gone)
            self.keys, self.owner = self.keys[keep], self.owner[keep]
            for sequence in gone:
                del self.alive[sequence], self.parts[sequence], self.order_keys[sequence]
        for scan in scans:
            if scan.sequence not in self.alive and not self._insert(scan):
                return False
        return True

    def _insert(self, scan: _StoredScan) -> bool:
        voxels = scan.voxels if scan.keys_voxel == self.voxel else None
        if voxels is None:   # stored under another dedupe voxel (or none): key it now
            keys = point_voxel_keys(scan.xyz, self.voxel)
            if keys is None:
                return False
            voxels = key_groups(keys, last=True)   # the last point of a voxel is the newest
        unique, last = voxels
        alive = np.zeros(scan.num_points, dtype=bool)
        alive[last] = True
        size = len(self.keys)
        pos = np.searchsorted(self.keys, unique)
        hit = np.flatnonzero(self.keys[np.minimum(pos, size - 1)] == unique) if size else pos[:0]
        at = pos[hit]
        fresh = np.ones(len(unique), dtype=bool)   # voxels no stored scan holds yet
        fresh[hit] = False
        if self.order_keys and max(self.order_keys.values()) > scan.order_key:
            # A late scan: where a newer one holds the voxel, its own point loses.
            held = np.array(sorted(self.order_keys))
            stamps = np.array([self.order_keys[q][0] for q in held], dtype=np.int64)
            sequence_there = self.owner[at] >> _POINT_BITS
            stamp_there = stamps[np.searchsorted(held, sequence_there)]
            newer_there = (stamp_there > scan.stamp_ns) | (
                (stamp_there == scan.stamp_ns) & (sequence_there > scan.sequence))
            alive[last[hit[newer_there]]] = False
            hit, at = hit[~newer_there], at[~newer_there]
        self._kill(self.owner[at])
        mine = (scan.sequence << _POINT_BITS) | last
        self.owner[at] = mine[hit]
        # The fresh voxels are merged into the sorted survivor arrays.
        fresh_index = np.flatnonzero(fresh)
        target = pos[fresh_index] + np.arange(len(fresh_index))
        old_slots = np.ones(size + len(fresh_index), dtype=bool)
        old_slots[target] = False
        merged = []
        for array, values in ((self.keys, unique[fresh_index]), (self.owner, mine[fresh_index])):
            out = np.empty(len(old_slots), dtype=np.int64)
            out[old_slots] = array
            out[target] = values
            merged.append(out)
        self.keys, self.owner = merged
        self.order_keys[scan.sequence] = scan.order_key
        self.alive[scan.sequence] = alive
        self.parts[scan.sequence] = None
        return True

    def _kill(self, owners: np.ndarray) -> None:
        """The points ``owners`` (K,) (sequence << 32 | point) lost their voxel to a newer scan."""
        if len(owners) == 0:
            return
        # Grouped by scan with one plain sort of the packed values: a stable argsort of the
        # sequences is ~10x slower.
        packed = np.sort(owners)
        sequences, points = packed >> _POINT_BITS, packed & _POINT_MASK
        starts = np.flatnonzero(np.r_[True, sequences[1:] != sequences[:-1]])
        for lo, hi in zip(starts, np.r_[starts[1:], len(packed)]):
            sequence = int(sequences[lo])
            self.alive[sequence][points[lo:hi]] = False
            self.parts[sequence] = None

    def cloud(self, scans: list[_StoredScan]) -> AccumulatedCloud:
        """The surviving points of ``scans`` (all indexed by :meth:`update`), in stamp order."""
        any_rgb = any(s.rgb is not None for s in scans)
        xyz, rgb, scalars, counts = [], [], [], []
        for scan in scans:
            part = self.parts[scan.sequence]
            if part is None:
                part = _take(np.flatnonzero(self.alive[scan.sequence]), scan.xyz, scan.rgb,
                             scan.scalars)
                self.parts[scan.sequence] = part
            n = len(part[0])
            xyz.append(part[0])
            counts.append(n)
            if any_rgb:
                rgb.append(part[1] if part[1] is not None
                           else np.broadcast_to(MISSING_RGB, (n, 3)))
            scalars.append(part[2])
        merged = _concatenate_scalars(scalars, counts)
        return AccumulatedCloud(
            xyz=np.concatenate(xyz), rgb=np.concatenate(rgb) if any_rgb else None,
            stamp_ns=np.repeat(np.array([s.stamp_ns for s in scans], dtype=np.int64), counts),
            newest_stamp_ns=scans[-1].stamp_ns, oldest_stamp_ns=scans[0].stamp_ns,
            num_scans=len(scans), **{name: merged.get(name) for name in SCALAR_FIELDS})


def _take(index: np.ndarray, xyz: np.ndarray, rgb: np.ndarray | None,
          scalars: dict[str, np.ndarray]):
    # np.take along axis 0 copies whole rows; ``xyz[index]`` on an (n, 3) array is ~5x slower.
    return (
        np.take(xyz, index, axis=0),
        None if rgb is None else np.take(rgb, index, axis=0),
        {name: np.take(values, index) for name, values in scalars.items()},
    )


def _concatenate_scalars(parts: list[dict[str, np.ndarray]], counts: list[int]
                         ) -> dict[str, np.ndarray]:
    """The scalars of consecutive scans (``counts`` points each) joined per name; a scan without
    a name that another scan has contributes NaN (``MISSING_SCALAR``) there."""
    names = [name for name in SCALAR_FIELDS if any(name in part for part in parts)]
    return {name: np.concatenate([part.get(name, np.full(n, MISSING_SCALAR))
                                  for part, n in zip(parts, counts)]) for name in names}


def _positive_int(name: str, value: int) -> int:
    """``value`` as an int >= 1 (bools and non-integral numbers refused), else ValueError."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
