"""Grouping ops for point-cloud instance segmentation, one API over two back ends.

Every op takes torch tensors and returns tensors on the same device. CUDA tensors go to the
kernels in ``csrc/`` (ball query, connected components, farthest point sampling), compiled on
first use with ``torch.utils.cpp_extension`` and cached per user; CPU tensors — and CUDA tensors
when the kernels cannot be built, after one :class:`OpsBackendWarning` saying why — use a
vectorised torch/numpy/scipy path that returns the *same* result (same neighbour order, same
cluster numbering, same FPS picks). The other ops are plain torch on both devices.
Importing this package never compiles anything; :func:`backend` tells which path a device gets.

=========================  ========================================================  ============
op                         what                                                      CUDA kernel
=========================  ========================================================  ============
:func:`ball_query`         radius neighbours, first-K-by-index cap, batched -> CSR   yes
:func:`connected_components`  components of a neighbour graph, class constraint,     yes
                           min size, canonical numbering
:func:`cluster_points`     ball_query + connected_components per (batch, class)      (via both)
:func:`farthest_point_sample`  plain FPS, batched                                    yes
:func:`instance_aware_fps`  FPS over candidates only, continuing from earlier samples  yes
                           (ISBNet's IA-FPS)
:func:`mean_shift`         flat-kernel mean-shift clusters of embeddings (MTML)      yes (step)
:func:`matrix_nms`         Gaussian matrix NMS of point masks (ISBNet)               torch
:func:`voxelize_points`    point <-> voxel maps of integer [b, x, y, z] coords       torch
:func:`segment_reduce`     sum / mean / max / min per segment                        torch
:func:`mask_iou`, :func:`mask_nms`  IoU of point masks (dense or sparse), greedy NMS  torch
=========================  ========================================================  ============

Official counterparts: docs/official-models.md §5.
"""

from __future__ import annotations

from ._backend import OpsBackendWarning, backend
from .clustering import cluster_points, connected_components, renumber_clusters
from .masks import SparseMasks, mask_iou, mask_nms, matrix_nms
from .mean_shift import mean_shift, mean_shift_modes
from .neighbors import NeighborCSR, ball_query
from .sampling import farthest_point_sample, instance_aware_fps
from .segment_reduce import segment_reduce
from .voxel_maps import VoxelMaps, voxelize_points

__all__ = [
    "NeighborCSR",
    "OpsBackendWarning",
    "SparseMasks",
    "VoxelMaps",
    "backend",
    "ball_query",
    "cluster_points",
    "connected_components",
    "farthest_point_sample",
    "instance_aware_fps",
    "mask_iou",
    "mask_nms",
    "matrix_nms",
    "mean_shift",
    "mean_shift_modes",
    "renumber_clusters",
    "segment_reduce",
    "voxelize_points",
]
