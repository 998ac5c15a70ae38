"""What every method's prediction looks like before it becomes :class:`~ros2_inst3d.instances.Instances`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Proposals:
    """Instance proposals over the N input points of one cloud.

    indices: K int64 arrays of point indices, one per proposal; proposals may overlap (SoftGroup).
    class_ids: (K,) int32, contiguous class-table indices.
    scores: (K,) float32 in [0, 1].
    point_class: (N,) int32 semantic class per point (-100 = unknown), or None when the method has
        no semantic head.
    timing_ms: per-stage wall time of the method (``backbone``, ``grouping``, ...).
    """

    indices: list[np.ndarray]
    class_ids: np.ndarray
    scores: np.ndarray
    point_class: np.ndarray | None = None
    timing_ms: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.class_ids = np.asarray(self.class_ids, dtype=np.int32).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.indices = [np.asarray(i, dtype=np.int64).reshape(-1) for i in self.indices]
        if not (len(self.indices) == len(self.class_ids) == len(self.scores)):
            raise ValueError(f"Proposals: {len(self.indices)} index arrays, {len(self.class_ids)} "
                             f"classes and {len(self.scores)} scores must be the same count")

    def __len__(self) -> int:
        return len(self.indices)


def paste_by_score(num_points: int, proposals: Proposals) -> np.ndarray:
    """One proposal id per point from overlapping proposals: (N,) int32, -1 = none.

    Proposals are painted in ascending score order so the highest-scoring proposal that covers a
    point owns it; ties break by proposal index (later wins), which keeps the result deterministic.
    A proposal that ends up owning no point owns nothing here (:func:`partition_by_score` drops
    it).
    """
    owner = np.full(num_points, -1, dtype=np.int32)
    order = np.lexsort((np.arange(len(proposals)), proposals.scores))
    for k in order:
        owner[proposals.indices[k]] = k
    return owner


def partition_by_score(num_points: int, proposals: Proposals) -> tuple[np.ndarray, np.ndarray]:
    """:func:`paste_by_score` without the proposals that own no point: ``(owner, alive)`` with
    owner (N,) int32 ids 0..len(alive)-1 (-1 = none) and alive (K',) int64, ascending positions
    in ``proposals`` of the owners (owner id j is proposal ``alive[j]``)."""
    owner = paste_by_score(num_points, proposals)
    if len(proposals) == 0:
        return owner, np.zeros(0, dtype=np.int64)
    counts = np.bincount(owner[owner >= 0], minlength=len(proposals))
    alive = np.flatnonzero(counts > 0)
    new_id = np.full(len(proposals), -1, dtype=np.int32)
    new_id[alive] = np.arange(len(alive), dtype=np.int32)
    return np.where(owner >= 0, new_id[np.maximum(owner, 0)], -1).astype(np.int32), alive
