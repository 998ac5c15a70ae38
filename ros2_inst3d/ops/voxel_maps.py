"""Point <-> voxel maps of integer, batched voxel coordinates, on any device.

The numpy twin for a single cloud of metric points is :func:`ros2_inst3d.voxelize.voxelize`
(same first-occurrence order); this one works on torch tensors that already hold integer
coordinates with a batch column, as the batched model inputs do, and runs on CPU or CUDA with
the same torch code (sorting and scatter only, no custom kernel needed).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._checks import check_index

__all__ = ["VoxelMaps", "voxelize_points"]

_KEY_LIMIT = 2**62


class VoxelMaps(NamedTuple):
    """Result of :func:`voxelize_points` (M voxels, N points).

    voxel_coords: (M, D) — the distinct coordinate rows, in order of first occurrence over the points.
    point_to_voxel: (N,) int64 — voxel row of each point (SoftGroup's ``v2p_map``, PointGroup's ``p2v_map``).
    voxel_ptr: (M + 1,) int64 and voxel_points: (N,) int64 — CSR voxel -> points: the points of
        voxel m are ``voxel_points[voxel_ptr[m]:voxel_ptr[m + 1]]``, in increasing point index.
    """

    voxel_coords: torch.Tensor
    point_to_voxel: torch.Tensor
    voxel_ptr: torch.Tensor
    voxel_points: torch.Tensor


def voxelize_points(coords: torch.Tensor) -> VoxelMaps:
    """Group points by equal integer coordinate rows, in first-occurrence order.

    This is SoftGroup/ISBNet's ``voxelization_idx`` (docs/official-models.md §0 fact 8, §5.1)
    with a CSR table instead of the padded ``[count, idx..., 0]`` rows.

    Args:
        coords: (N, D) integer tensor, usually D = 4 columns ``[batch, x, y, z]`` (voxel indices);
            two points share a voxel iff their rows are equal.

    Returns:
        :class:`VoxelMaps` on ``coords``' device; ``voxel_coords`` keeps ``coords``' dtype.

    Example:
        >>> import torch
        >>> from ros2_inst3d.ops import voxelize_points
        >>> coords = torch.tensor([[0, 5, 5, 5], [0, 1, 1, 1], [0, 5, 5, 5], [1, 5, 5, 5]])
        >>> maps = voxelize_points(coords)
        >>> maps.voxel_coords.tolist()
        [[0, 5, 5, 5], [0, 1, 1, 1], [1, 5, 5, 5]]
        >>> maps.point_to_voxel.tolist(), maps.voxel_ptr.tolist(), maps.voxel_points.tolist()
        ([0, 1, 0, 2], [0, 2, 3, 4], [0, 2, 1, 3])
    """
    coords = check_index(coords, "coords", dim=2)
    device = coords.device
    n = coords.shape[0]
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return VoxelMaps(coords[:0], empty, torch.zeros(1, dtype=torch.int64, device=device), empty)
    wide = coords.to(torch.int64)
    low = wide.min(0).values
    extent = (wide.max(0).values - low + 1).tolist()
    volume = 1
    for e in extent:
        volume *= e
    if volume < _KEY_LIMIT:
        shifted = wide - low
        key = shifted[:, 0]
        for column, size in zip(shifted.unbind(1)[1:], extent[1:]):
            key = key * size + column
        _, inverse = torch.unique(key, return_inverse=True)
    else:  # extents too large for one int64 key: compare rows (slower, still exact)
        _, inverse = torch.unique(wide, dim=0, return_inverse=True)
    num_voxels = int(inverse.max()) + 1
    rows = torch.arange(n, device=device)
    first = torch.full((num_voxels,), n, dtype=torch.int64, device=device)
    first.scatter_reduce_(0, inverse, rows, reduce="amin")
    # torch.unique numbers voxels by key; renumber them by their first point instead.
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(num_voxels, device=device)
    point_to_voxel = rank[inverse]
    voxel_points = torch.sort(point_to_voxel, stable=True).indices
    voxel_ptr = torch.zeros(num_voxels + 1, dtype=torch.int64, device=device)
    torch.cumsum(torch.bincount(point_to_voxel, minlength=num_voxels), 0, out=voxel_ptr[1:])
    return VoxelMaps(coords[first[order]], point_to_voxel, voxel_ptr, voxel_points)
