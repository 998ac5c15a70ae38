"""The one TF buffer of the project: the live node and the offline bag tool both feed it.

``tf2_py``'s ``BufferCore`` needs a ROS install (tf2_ros is not on PyPI), so the project keeps its
own buffer with the tf2 semantics the pipeline relies on (research/ros2-ecosystem.md §5.4):

* the frames form a forest: every child frame has one parent (``header.frame_id`` of its
  ``TransformStamped``); a lookup walks both frames up to their closest common ancestor, so edges
  are used in either direction;
* ``/tf_static`` edges hold one value and never expire; ``/tf`` edges keep time-sorted samples and
  are interpolated between the two samples that bracket the stamp (translation linearly, rotation by
  slerp: :func:`ros2_inst3d.transforms.interpolate_transform`), as tf2 does;
* no extrapolation: a stamp before the first or after the last sample of a dynamic edge (by more
  than ``extrapolation_tolerance_s``) raises :class:`~ros2_inst3d.errors.TransformUnavailable`
  saying by how much, like tf2's ``ExtrapolationException``;
* a stamp of 0 means "the latest time every dynamic edge on the path has data for" (tf2's
  ``Time(0)``);
* memory is bounded: each dynamic edge keeps the samples of the last ``cache_s`` seconds of its
  own time line (and at most ``max_samples_per_edge``); data older than that is rejected as tf2
  does ("TF_OLD_DATA"), a repeated stamp is ignored ("TF_REPEATED_DATA").

Stamps are integer nanoseconds. Thread-safe: the node's executor thread adds ``/tf`` messages while
its ingest thread looks up (and waits for) transforms; one lock guards the edges, and
:meth:`TfBuffer.wait_lookup` sleeps on a condition that every stored transform notifies.
A front end whose clock jumps backwards (a looping bag) calls :meth:`TfBuffer.clear`.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cloud import stamp_to_ns
from .errors import TransformUnavailable
from .transforms import interpolate_transform, inverse_matrix, transform_msg_to_matrix

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
# tf2's BufferCore::MAX_GRAPH_DEPTH: deeper parent chains are taken as a loop.
MAX_GRAPH_DEPTH = 1000


@dataclass
class _Edge:
    """The transform from ``child`` into ``parent``: ``p_parent = T @ p_child``.

    Static edges hold exactly one sample (stamp ignored); dynamic ones are sorted by stamp.
    """

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)  # (4, 4) float64 each


class TfBuffer:
    """Transforms between frames at any stamp covered by the ``/tf`` and ``/tf_static`` data seen.

    ``cache_s``: seconds of history kept per dynamic edge (tf2's default is 10 s); must cover the
    accumulation window plus how far scans lag behind the newest TF data.
    ``extrapolation_tolerance_s``: how far before the first / after the last sample of a dynamic
    edge a stamp may be and still get that end sample (0: never, as tf2).
    ``max_samples_per_edge``: a second bound on memory for publishers with very high rates.
    """

    def __init__(self, cache_s: float = 10.0, *, extrapolation_tolerance_s: float = 0.0,
                 max_samples_per_edge: int = 100_000) -> None:
        if not cache_s > 0:
            raise ValueError(f"cache_s must be > 0 seconds, got {cache_s}")
        if not extrapolation_tolerance_s >= 0:
            raise ValueError(
                f"extrapolation_tolerance_s must be >= 0, got {extrapolation_tolerance_s}")
        if max_samples_per_edge < 2:
            raise ValueError("max_samples_per_edge must be >= 2 (interpolation needs two samples)")
        self.cache_ns = round(cache_s * NS_PER_S)
        self.tolerance_ns = round(extrapolation_tolerance_s * NS_PER_S)
        self.max_samples_per_edge = int(max_samples_per_edge)
        self._edges: dict[str, _Edge] = {}   # child frame -> edge to its parent
        self.rejected: Counter = Counter()   # reason -> transforms not stored
        # Re-entrant: add_message -> add_transform_msg -> add_transform, lookup -> frames.
        self._changed = threading.Condition(threading.RLock())

    # ---- input -----------------------------------------------------------------------------
    def add_message(self, tf_message: Any, static: bool) -> int:
        """Store every ``TransformStamped`` of a ``tf2_msgs/msg/TFMessage`` (rclpy or rosbags).

        ``static``: True for ``/tf_static`` (the edge never expires), False for ``/tf``.
        Returns how many transforms were stored; the others are counted in :attr:`rejected`
        by reason and logged.
        """
        stored = 0
        with self._changed:
            for transform in tf_message.transforms:
                stored += self.add_transform_msg(transform, static)
        return stored

    def add_transform_msg(self, transform: Any, static: bool) -> bool:
        """Store one ``geometry_msgs/msg/TransformStamped``; False (counted) when rejected."""
        parent = _strip_slash(str(transform.header.frame_id))
        child = _strip_slash(str(transform.child_frame_id))
        t, r = transform.transform.translation, transform.transform.rotation
        if not np.isfinite([t.x, t.y, t.z, r.x, r.y, r.z, r.w]).all():
            return self._reject("non_finite", parent, child,
                                "translation or rotation holds NaN or inf")
        try:
            matrix = transform_msg_to_matrix(transform)
        except ValueError as exc:  # a zero quaternion is no rotation
            return self._reject("invalid_rotation", parent, child, str(exc))
        return self.add_transform(parent, child, stamp_to_ns(transform.header.stamp), matrix,
                                  static)

    def add_transform(self, parent: str, child: str, stamp_ns: int, matrix: np.ndarray,
                      static: bool) -> bool:
        """Store ``matrix`` (4, 4), the pose of ``child`` in ``parent`` (``p_parent = M @ p_child``).

        Returns False (counted in :attr:`rejected`) for empty or equal frame ids, data older than
        the edge's cache, and a stamp the edge already has.
        """
        parent, child = _strip_slash(parent), _strip_slash(child)
        if not parent or not child:
            return self._reject("empty_frame_id", parent, child,
                                "header.frame_id and child_frame_id must both be set")
        if parent == child:
            return self._reject("self_transform", parent, child,
                                "a frame cannot be its own parent")
        matrix = np.array(matrix, dtype=np.float64)
        if matrix.shape != (4, 4):
            raise ValueError(f"matrix must be (4, 4), got {matrix.shape}")
        with self._changed:
            stored = self._store(parent, child, int(stamp_ns), matrix, static)
            if stored:
                self._changed.notify_all()
        return stored

    def _store(self, parent: str, child: str, stamp_ns: int, matrix: np.ndarray,
               static: bool) -> bool:
        edge = self._edges.get(child)
        if edge is not None and (edge.parent != parent or edge.static != static):
            log.warning("TF: frame '%s' now has %s parent '%s' (was %s parent '%s'); the old edge "
                        "is dropped", child, "static" if static else "dynamic", parent,
                        "static" if edge.static else "dynamic", edge.parent)
            edge = None
        if edge is None:
            edge = self._edges[child] = _Edge(parent, static)
        if static:
            edge.stamps[:] = [stamp_ns]
            edge.matrices[:] = [matrix]
            return True
        stamps = edge.stamps
        if stamps and stamp_ns < stamps[-1] - self.cache_ns:
            return self._reject(
                "old_data", parent, child,
                f"stamp {stamp_ns / NS_PER_S:.3f} s is {(stamps[-1] - stamp_ns) / NS_PER_S:.3f} s "
                f"older than the newest sample, beyond the {self.cache_ns / NS_PER_S:g} s cache "
                "(time jumped backwards? clear() the buffer)")
        index = bisect.bisect_left(stamps, stamp_ns)
        if index < len(stamps) and stamps[index] == stamp_ns:
            return self._reject("repeated_data", parent, child,
                                f"a sample at {stamp_ns / NS_PER_S:.9f} s exists already")
        stamps.insert(index, stamp_ns)
        edge.matrices.insert(index, matrix)
        self._trim(edge)
        return True

    def _trim(self, edge: _Edge) -> None:
        stamps = edge.stamps
        drop = bisect.bisect_left(stamps, stamps[-1] - self.cache_ns)
        drop = max(drop, len(stamps) - self.max_samples_per_edge)
        if drop > 0:
            del stamps[:drop]
            del edge.matrices[:drop]

    def _reject(self, reason: str, parent: str, child: str, detail: str) -> bool:
        with self._changed:
            self.rejected[reason] += 1
        log.warning("TF %s -> %s ignored (%s): %s", parent or "''", child or "''", reason, detail)
        return False

    def clear(self, include_static: bool = False) -> None:
        """Forget the dynamic edges (a time jump); static ones stay, as in tf2's ``clear()``."""
        with self._changed:
            self._edges = {child: edge for child, edge in self._edges.items()
                           if edge.static and not include_static}

    # ---- queries ---------------------------------------------------------------------------
    @property
    def frames(self) -> list[str]:
        """Every frame seen, as parent or child, sorted."""
        with self._changed:
            names = set(self._edges)
            names.update(edge.parent for edge in self._edges.values())
        return sorted(names)

    def edges(self) -> list[tuple[str, str, bool, int]]:
        """``(parent, child, static, number of samples)`` of every edge, sorted by child."""
        with self._changed:
            return [(e.parent, child, e.static, len(e.stamps))
                    for child, e in sorted(self._edges.items())]

    def can_transform(self, target: str, source: str, stamp_ns: int) -> bool:
        try:
            self.lookup(target, source, stamp_ns)
        except TransformUnavailable:
            return False
        return True

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """(4, 4) float64 transform taking points in ``source`` to ``target`` at ``stamp_ns``.

        ``p_target = T @ p_source`` (tf2's ``lookup_transform(target, source, time)``). Matches
        :data:`ros2_inst3d.pipeline.TransformLookup`. Raises TransformUnavailable when a frame is
        unknown, the frames are not connected, the parent chain loops, or the stamp is outside a
        dynamic edge's data.
        """
        with self._changed:
            return self._lookup(_strip_slash(target), _strip_slash(source), stamp_ns)

    def wait_lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        """:meth:`lookup`, waiting up to ``timeout_s`` seconds (wall clock) for the data to arrive.

        For a scan that arrives before the ``/tf`` sample after its stamp, as tf2's
        ``lookup_transform(..., timeout=)``. Raises the last TransformUnavailable on timeout.
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                try:
                    return self.lookup(target, source, stamp_ns)
                except TransformUnavailable:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise
                    self._changed.wait(left)

    def _lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        known = set(self.frames)
        for role, frame in (("source", source), ("target", target)):
            if frame not in known:
                listing = ", ".join(repr(f) for f in sorted(known)) or "none (no TF data yet)"
                raise TransformUnavailable(
                    f"{role} frame {frame!r} does not exist in the TF tree (known frames: "
                    f"{listing}); check the cloud's header.frame_id, fixed_frame and that the bag "
                    "holds /tf and /tf_static")
        if source == target:
            return np.identity(4)
        up_source = self._chain(source)
        up_target = self._chain(target)
        in_source = {frame: i for i, frame in enumerate(up_source)}
        common = next((i for i, frame in enumerate(up_target) if frame in in_source), None)
        if common is None:
            raise TransformUnavailable(
                f"no TF path from {source!r} to {target!r}: {source!r} is in the tree rooted at "
                f"{up_source[-1]!r} and {target!r} in the tree rooted at {up_target[-1]!r}; "
                "publish a transform connecting the two trees")
        source_edges = up_source[:in_source[up_target[common]]]   # child frames, walking up
        target_edges = up_target[:common]
        try:
            if stamp_ns == 0:
                stamp_ns = self._latest_common_stamp(source_edges + target_edges)
            source_pose = self._chain_pose(source_edges, stamp_ns)   # T_common_source
            target_pose = self._chain_pose(target_edges, stamp_ns)   # T_common_target
        except TransformUnavailable as exc:
            raise TransformUnavailable(f"{source!r} -> {target!r}: {exc}") from None
        return inverse_matrix(target_pose) @ source_pose

    def _chain(self, frame: str) -> list[str]:
        """``[frame, parent, grandparent, ..., root]``."""
        chain = [frame]
        seen = {frame}
        while frame in self._edges:
            frame = self._edges[frame].parent
            if frame in seen or len(chain) > MAX_GRAPH_DEPTH:
                raise TransformUnavailable(
                    f"the TF parent chain of {chain[0]!r} loops ({' -> '.join(chain)} -> "
                    f"{frame}); every frame must have one parent and the tree no cycle")
            seen.add(frame)
            chain.append(frame)
        return chain

    def _latest_common_stamp(self, children: Iterable[str]) -> int:
        dynamic = [self._edges[c] for c in children if not self._edges[c].static]
        if not dynamic:
            return 0
        return min(e.stamps[-1] for e in dynamic)

    def _chain_pose(self, children: list[str], stamp_ns: int) -> np.ndarray:
        pose = np.identity(4)
        for child in children:
            pose = self._edge_at(child, stamp_ns) @ pose
        return pose

    def _edge_at(self, child: str, stamp_ns: int) -> np.ndarray:
        edge = self._edges[child]
        if edge.static:
            return edge.matrices[0]
        stamps = edge.stamps
        first, last = stamps[0], stamps[-1]
        if stamp_ns < first - self.tolerance_ns or stamp_ns > last + self.tolerance_ns:
            past = stamp_ns < first
            gap = (first - stamp_ns) if past else (stamp_ns - last)
            raise TransformUnavailable(
                f"lookup would require extrapolation {gap / NS_PER_S:.3f} s into the "
                f"{'past' if past else 'future'}: edge {edge.parent!r} -> {child!r} has "
                f"{len(stamps)} sample(s) from {_fmt_s(first)} to {_fmt_s(last)}, requested "
                f"{_fmt_s(stamp_ns)} (tolerance {self.tolerance_ns / NS_PER_S:g} s)")
        stamp_ns = min(max(stamp_ns, first), last)
        index = bisect.bisect_left(stamps, stamp_ns)
        if stamps[index] == stamp_ns:
            return edge.matrices[index]
        t0, t1 = stamps[index - 1], stamps[index]
        return interpolate_transform(edge.matrices[index - 1], edge.matrices[index],
                                     (stamp_ns - t0) / (t1 - t0))


def _strip_slash(frame: str) -> str:
    # tf2 strips a leading '/' from frame ids (a ROS 1 habit) rather than failing on it.
    return frame.removeprefix("/")


def _fmt_s(stamp_ns: int) -> str:
    return f"{stamp_ns / NS_PER_S:.3f} s"
