"""Per-segment reductions (voxel means, instance pooling: SoftGroup's ``global_avg_pool`` /
``sec_mean/min/max``, PointGroup's ``roipool``; docs/official-models.md §5.1).

``torch.Tensor.scatter_reduce`` does this on CPU and CUDA alike (and is differentiable), so there
is no custom kernel behind this op.
"""

from __future__ import annotations

import torch

from ._checks import check_index, check_tensor, same_device

__all__ = ["segment_reduce"]

_REDUCTIONS = {"sum": "sum", "mean": "mean", "max": "amax", "min": "amin"}


def segment_reduce(values: torch.Tensor, segment_ids: torch.Tensor, num_segments: int,
                   reduce: str = "mean") -> torch.Tensor:
    """Reduce the rows of ``values`` that share a segment id.

    Args:
        values: (N,) or (N, C) float (or integer for sum/max/min) tensor.
        segment_ids: (N,) int — segment of each row, in [0, num_segments); rows with a negative id
            are ignored (e.g. the -1 of :func:`connected_components`).
        num_segments: S, the number of output rows.
        reduce: ``'mean' | 'sum' | 'max' | 'min'``.

    Returns:
        (S,) or (S, C) tensor of ``values``' dtype (``mean`` of an integer tensor raises); a
        segment without rows gives 0. Gradients flow to ``values``.

    Example:
        >>> import torch
        >>> from ros2_inst3d.ops import segment_reduce
        >>> values = torch.tensor([[1.0], [3.0], [10.0], [7.0]])
        >>> segment_reduce(values, torch.tensor([0, 0, 2, -1]), 3, "mean").tolist()
        [[2.0], [0.0], [10.0]]
        >>> segment_reduce(values, torch.tensor([0, 0, 2, -1]), 3, "max").tolist()
        [[3.0], [0.0], [10.0]]
    """
    values = check_tensor(values, "values")
    segment_ids = check_index(segment_ids, "segment_ids")
    same_device(("values", values), ("segment_ids", segment_ids))
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {sorted(_REDUCTIONS)}, got {reduce!r}")
    if values.dim() not in (1, 2) or values.shape[0] != segment_ids.numel():
        raise ValueError(f"values must be (N,) or (N, C) with N = len(segment_ids) = {segment_ids.numel()}, "
                         f"got {tuple(values.shape)}")
    if reduce == "mean" and not values.is_floating_point():
        raise TypeError(f"reduce='mean' needs floating-point values, got {values.dtype}; pass values.float()")
    num_segments = int(num_segments)
    if num_segments < 0:
        raise ValueError(f"num_segments must be >= 0, got {num_segments}")
    ids = segment_ids.to(torch.int64)
    if ids.numel() and int(ids.max()) >= num_segments:
        raise ValueError(f"segment_ids has id {int(ids.max())} but num_segments is {num_segments}")
    used = ids >= 0
    if not bool(used.all()):
        values, ids = values[used], ids[used]
    column = values.dim() == 1
    table = values.unsqueeze(1) if column else values
    out = torch.zeros((num_segments, table.shape[1]), dtype=values.dtype, device=values.device)
    out = out.scatter_reduce(0, ids.unsqueeze(1).expand_as(table), table, reduce=_REDUCTIONS[reduce],
                             include_self=False)
    return out.squeeze(1) if column else out
