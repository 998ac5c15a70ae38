"""Inference-only sparse convolutions in plain torch ops: the CPU backend ``model.cpu_sparse_conv:
torch`` of the sparse U-Net, deterministic with any number of torch threads.

spconv's CPU kernels race with more than one torch thread (``model/backbone.py``), so spconv
runs the U-Net on one thread. This module computes the same three convolutions of the U-Net
(``SubMConv3d`` 3x3x3, ``SparseConv3d`` k=2/s=2 and its ``SparseInverseConv3d``) from the same
modules' weights, as gather -> GEMM -> scatter per kernel offset:

    out = X @ W[centre]                                   (submanifold only: every voxel is its
    for each offset k:                                     own centre neighbour)
        out.index_add_(0, out_rows[k], X[in_rows[k]] @ W[k])

Within one offset every output row occurs at most once, and the offsets are summed in a fixed
order (spconv's: on the U-Net layers the results are bit-identical to spconv's with one thread),
so no two threads ever add into the same row and the result does not depend on the thread
count beyond what ``torch.mm`` itself does.

Kernel maps (the ``in_rows`` / ``out_rows`` pairs per offset, "rulebooks") are built from the
voxel coordinates once per forward and indice key and reused by every layer sharing the key, as
spconv does: a dense lookup grid over the voxels' bounding box when it is small
(:data:`DENSE_GRID_CELLS`), else a sorted key table and ``searchsorted``.

Conventions (spconv 2.x, checked against it by ``test/test_sparse_conv.py``): indices are
``(M, 4)`` int32 ``[batch, x, y, z]``; weights ``[out, kx, ky, kz, in]``; the submanifold
convolution is a correlation, ``out[p] = sum_d W[d + 1] @ in[p + d]`` over ``d`` in
``{-1, 0, 1}^3``; the down convolution sends voxel ``c`` to ``c // 2`` with weight ``W[c % 2]``
and drops voxels whose ``c // 2`` falls outside the output size ``(S - 2) // 2 + 1``; the inverse
convolution sends them back with the same weight index, so dropped voxels get zeros.

Use: :func:`attach_kernel_maps` on the input ``SparseConvTensor`` of a network whose convolution
modules are the :class:`SubMConv3d` / :class:`SparseConv3d` / :class:`SparseInverseConv3d`
subclasses below (``model/backbone.py`` builds them); their forward then runs here, elsewhere
(training, CUDA, no maps attached) it is spconv's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import spconv.pytorch as spconv
import torch

__all__ = ["BACKENDS", "DENSE_GRID_CELLS", "KernelMaps", "SparseConv3d", "SparseInverseConv3d",
           "SubMConv3d", "attach_kernel_maps", "down_conv", "down_map", "has_kernel_maps",
           "inverse_conv", "submanifold_conv", "submanifold_map"]

BACKENDS = ("spconv", "torch")
"""Choices of ``model.cpu_sparse_conv``."""

DENSE_GRID_CELLS = 1 << 24
"""Largest voxel bounding box (cells, times the batch size) looked up through a dense int64 grid
(128 MiB); larger ones use a sorted key table instead (slower, no memory bound)."""

_MAPS_KEY = "__ros2_inst3d_torch_kernel_maps__"
"""Where :func:`attach_kernel_maps` puts the maps: the tensor's ``indice_dict``, which spconv
shares between every tensor derived from the input (``replace_feature``), and which it only ever
reads by its own indice keys."""

# Offsets of the 3x3x3 kernel in weight order: index (dx + 1) * 9 + (dy + 1) * 3 + (dz + 1).
_OFFSETS_3 = torch.tensor([(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                           for dz in (-1, 0, 1)], dtype=torch.int64)
_CENTRE_3 = 13


@dataclass
class SubmanifoldMap:
    """Pairs of a 3x3x3 submanifold convolution on M voxels (the centre offset is the identity
    and not stored). in_rows[k] / out_rows[k]: (P_k,) int64 for kernel offset k (weight order),
    empty for the centre."""

    num_voxels: int
    in_rows: list[torch.Tensor]
    out_rows: list[torch.Tensor]


@dataclass
class DownMap:
    """Pairs of a k=2/s=2 convolution and of its inverse.

    fine_indices (M, 4) int32 and fine_shape: the input voxels; coarse_indices (Mc, 4) int32,
    sorted, and coarse_shape: the output voxels. in_rows[k] (fine rows) / out_rows[k] (coarse
    rows): (P_k,) int64 per kernel offset k = 4 * (x % 2) + 2 * (y % 2) + (z % 2).
    """

    fine_indices: torch.Tensor
    fine_shape: list[int]
    coarse_indices: torch.Tensor
    coarse_shape: list[int]
    in_rows: list[torch.Tensor]
    out_rows: list[torch.Tensor]


@dataclass
class KernelMaps:
    """The kernel maps of one forward, by spconv indice key (built on first use)."""

    subm: dict[str, SubmanifoldMap] = field(default_factory=dict)
    down: dict[str, DownMap] = field(default_factory=dict)
    dense_grid_cells: int = DENSE_GRID_CELLS


def _neighbour_rows(indices: torch.Tensor, offsets: torch.Tensor, dense_grid_cells: int
                    ) -> torch.Tensor:
    """(M, K) int64: row of the voxel at ``indices[m] + offsets[k]`` ((K, 3) spatial offsets),
    or -1 where there is none. indices: (M, 4) integer ``[batch, x, y, z]``, distinct rows."""
    coords = indices.long()
    low = coords[:, 1:].amin(0) + offsets.amin(0)
    extent = coords[:, 1:].amax(0) + offsets.amax(0) - low + 1      # offsets stay inside the box
    strides = torch.stack([extent[1] * extent[2], extent[2], extent.new_ones(())])
    cells = int(extent.prod())
    keys = coords[:, 0] * cells + ((coords[:, 1:] - low) * strides).sum(1)
    queries = keys[:, None] + (offsets * strides).sum(1)[None, :]
    rows = torch.arange(coords.shape[0], dtype=torch.int64)
    batches = int(coords[:, 0].max()) + 1
    if batches * cells <= dense_grid_cells:
        grid = torch.full((batches * cells,), -1, dtype=torch.int64)
        grid[keys] = rows
        return grid[queries]
    sorted_keys, order = torch.sort(keys)
    pos = torch.searchsorted(sorted_keys, queries).clamp_(max=coords.shape[0] - 1)
    return torch.where(sorted_keys[pos] == queries, order[pos], -1)


def submanifold_map(indices: torch.Tensor, dense_grid_cells: int = DENSE_GRID_CELLS
                    ) -> SubmanifoldMap:
    """Pairs of the 3x3x3 submanifold convolution (dilation 1) on the (M, 4) voxel indices."""
    neighbours = _neighbour_rows(indices, _OFFSETS_3, dense_grid_cells).T.contiguous()  # (27, M)
    neighbours[_CENTRE_3] = -1                           # the centre is the identity: no pairs
    offset, out = (neighbours >= 0).nonzero().unbind(1)  # sorted by offset, then output row
    counts = torch.bincount(offset, minlength=len(_OFFSETS_3)).tolist()
    in_rows = neighbours.view(-1).index_select(0, offset * neighbours.shape[1] + out)
    return SubmanifoldMap(int(indices.shape[0]), list(in_rows.split(counts)),
                          list(out.split(counts)))


def down_map(indices: torch.Tensor, spatial_shape: list[int]) -> DownMap:
    """Pairs of the k=2/s=2 convolution of the (M, 4) voxel indices on a grid of
    ``spatial_shape``; output voxels sorted by ``[batch, x, y, z]``."""
    coarse_shape = [(s - 2) // 2 + 1 for s in spatial_shape]
    coords = indices.long()
    parent = coords[:, 1:] // 2
    kept = (parent < torch.tensor(coarse_shape)).all(1).nonzero().squeeze(1)
    parity = coords[kept, 1:] % 2
    offset = parity[:, 0] * 4 + parity[:, 1] * 2 + parity[:, 2]
    # One int64 key per coarse voxel ([batch, x, y, z] order), so sorting keys sorts voxels.
    size = [int(coords[:, 0].max()) + 1, *coarse_shape]
    parent = torch.cat([coords[kept, :1], parent[kept]], 1)
    keys = ((parent[:, 0] * size[1] + parent[:, 1]) * size[2] + parent[:, 2]) * size[3] + parent[:, 3]
    coarse_keys, coarse_row = torch.unique(keys, sorted=True, return_inverse=True)
    coarse = torch.empty(len(coarse_keys), 4, dtype=torch.int32)
    remainder = coarse_keys
    for axis in (3, 2, 1):
        coarse[:, axis] = remainder % size[axis]
        remainder = remainder // size[axis]
    coarse[:, 0] = remainder
    order = torch.argsort(offset, stable=True)
    counts = torch.bincount(offset, minlength=8).tolist()
    return DownMap(indices, [int(s) for s in spatial_shape], coarse, coarse_shape,
                   list(kept[order].split(counts)), list(coarse_row[order].split(counts)))


def _kernel_weights(weight: torch.Tensor) -> torch.Tensor:
    """(K, in, out) per-offset matrices of a spconv weight ``[out, kx, ky, kz, in]``."""
    out_channels, in_channels = weight.shape[0], weight.shape[-1]
    return weight.reshape(out_channels, -1, in_channels).permute(1, 2, 0).contiguous()


def submanifold_conv(feats: torch.Tensor, weight: torch.Tensor, kmap: SubmanifoldMap,
                     bias: torch.Tensor | None = None) -> torch.Tensor:
    """(M, out) = 3x3x3 submanifold correlation of (M, in) ``feats`` with a ``[out, 3, 3, 3,
    in]`` weight over ``kmap``'s pairs."""
    w = _kernel_weights(weight)
    out = torch.mm(feats, w[_CENTRE_3])
    for k in range(w.shape[0]):
        if kmap.out_rows[k].numel():
            out.index_add_(0, kmap.out_rows[k],
                          torch.mm(feats.index_select(0, kmap.in_rows[k]), w[k]))
    return out if bias is None else out + bias


def down_conv(feats: torch.Tensor, weight: torch.Tensor, kmap: DownMap,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    """(Mc, out) coarse features of the k=2/s=2 convolution of (M, in) fine ``feats`` with a
    ``[out, 2, 2, 2, in]`` weight (rows follow ``kmap.coarse_indices``)."""
    w = _kernel_weights(weight)
    out = feats.new_zeros(kmap.coarse_indices.shape[0], w.shape[2])
    for k in range(w.shape[0]):
        if kmap.out_rows[k].numel():
            out.index_add_(0, kmap.out_rows[k],
                          torch.mm(feats.index_select(0, kmap.in_rows[k]), w[k]))
    return out if bias is None else out + bias


def inverse_conv(feats: torch.Tensor, weight: torch.Tensor, kmap: DownMap,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """(M, out) fine features of the inverse of ``kmap``'s down convolution applied to (Mc, in)
    coarse ``feats`` with a ``[out, 2, 2, 2, in]`` weight; fine voxels the down convolution
    dropped get zeros (plus bias)."""
    w = _kernel_weights(weight)
    out = feats.new_zeros(kmap.fine_indices.shape[0], w.shape[2])
    for k in range(w.shape[0]):
        if kmap.in_rows[k].numel():   # each fine voxel has one parent: a copy, not a sum
            out.index_copy_(0, kmap.in_rows[k], torch.mm(feats.index_select(0, kmap.out_rows[k]), w[k]))
    return out if bias is None else out + bias


def attach_kernel_maps(x: spconv.SparseConvTensor,
                       dense_grid_cells: int = DENSE_GRID_CELLS) -> KernelMaps:
    """Make the convolution modules of this module run ``x`` (and every tensor derived from it)
    through the torch kernels; returns the (still empty) maps."""
    maps = KernelMaps(dense_grid_cells=dense_grid_cells)
    x.indice_dict[_MAPS_KEY] = maps
    return maps


def has_kernel_maps(x: spconv.SparseConvTensor) -> bool:
    return _MAPS_KEY in x.indice_dict


def _unsupported(module: Any, what: str) -> NotImplementedError:
    return NotImplementedError(
        f"the torch sparse-convolution backend has no {what} ({type(module).__name__} kernel "
        f"{module.kernel_size}, stride {module.stride}, padding {module.padding}, dilation "
        f"{module.dilation}); use model.cpu_sparse_conv: spconv")


def _check_common(module: Any) -> None:
    if module.ndim != 3 or tuple(module.dilation) != (1, 1, 1) or module.groups != 1:
        raise _unsupported(module, "dilated, grouped or non-3D convolution")


class _TorchBackendConv:
    """Mixin: when the input carries :func:`attach_kernel_maps` maps, run the torch kernel of
    :meth:`_torch_forward`; otherwise spconv's forward. Weights and state-dict names are
    spconv's."""

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        maps = x.indice_dict.get(_MAPS_KEY)
        if maps is None:
            return super().forward(x)  # type: ignore[misc]
        return self._torch_forward(x, maps)

    def _torch_forward(self, x: spconv.SparseConvTensor, maps: KernelMaps
                       ) -> spconv.SparseConvTensor:
        raise NotImplementedError


class SubMConv3d(_TorchBackendConv, spconv.SubMConv3d):
    """spconv's ``SubMConv3d``; with kernel maps attached, 3x3x3 (padding 1) ones run
    :func:`submanifold_conv` (pairs cached per ``indice_key``)."""

    def _torch_forward(self, x, maps):
        _check_common(self)
        if tuple(self.kernel_size) != (3, 3, 3) or tuple(self.padding) != (1, 1, 1):
            raise _unsupported(self, "submanifold kernel other than 3x3x3 with padding 1")
        kmap = maps.subm.get(self.indice_key) if self.indice_key is not None else None
        if kmap is None or kmap.num_voxels != x.indices.shape[0]:
            kmap = submanifold_map(x.indices, maps.dense_grid_cells)
            if self.indice_key is not None:
                maps.subm[self.indice_key] = kmap
        return x.replace_feature(submanifold_conv(x.features, self.weight, kmap, self.bias))


class SparseConv3d(_TorchBackendConv, spconv.SparseConv3d):
    """spconv's ``SparseConv3d``; with kernel maps attached, k=2/s=2 (padding 0) ones run
    :func:`down_conv` and remember their pairs under ``indice_key`` for the inverse."""

    def _torch_forward(self, x, maps):
        _check_common(self)
        if (tuple(self.kernel_size) != (2, 2, 2) or tuple(self.stride) != (2, 2, 2)
                or tuple(self.padding) != (0, 0, 0)):
            raise _unsupported(self, "strided convolution other than kernel 2, stride 2")
        kmap = maps.down.get(self.indice_key) if self.indice_key is not None else None
        if kmap is None or kmap.fine_indices is not x.indices:
            kmap = down_map(x.indices, x.spatial_shape)
            if self.indice_key is not None:
                maps.down[self.indice_key] = kmap
        out = spconv.SparseConvTensor(down_conv(x.features, self.weight, kmap, self.bias),
                                      kmap.coarse_indices, kmap.coarse_shape, x.batch_size,
                                      indice_dict=x.indice_dict)
        return out


class SparseInverseConv3d(_TorchBackendConv, spconv.SparseInverseConv3d):
    """spconv's ``SparseInverseConv3d``; with kernel maps attached, runs :func:`inverse_conv`
    over the pairs its paired :class:`SparseConv3d` stored under the same ``indice_key``."""

    def _torch_forward(self, x, maps):
        _check_common(self)
        kmap = maps.down.get(self.indice_key)
        if kmap is None:
            raise ValueError(f"inverse convolution '{self.indice_key}': no strided convolution "
                             "with this indice_key ran before it in this forward")
        if tuple(self.kernel_size) != (2, 2, 2):
            raise _unsupported(self, "inverse convolution other than kernel 2")
        return spconv.SparseConvTensor(inverse_conv(x.features, self.weight, kmap, self.bias),
                                       kmap.fine_indices, kmap.fine_shape, x.batch_size,
                                       indice_dict=x.indice_dict)
