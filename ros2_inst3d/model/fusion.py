"""Semantic segmentation-assisted instance feature fusion (SSAIFF; Sun et al., "Semantic
Segmentation-Assisted Instance Feature Fusion for Multi-Level 3D Part Instance Segmentation"),
as the plug-in the paper adds to PointGroup / HAIS / DyCo3D (its §4.2), for PointGroup and
SoftGroup (``fusion: true`` in their model YAML; off by default so the official and shipped
checkpoints keep their layout).

* :func:`fuse_by_semantics` — paper eq. 3-4, per cloud: ``Z = (P / colsum P)^T F`` (one pooled
  instance feature per semantic class), ``F_hat = P Z``; the offset heads then see
  ``[F_hat, F, xyz]``. ``P`` is detached (the paper's gradient stop into the semantic branch).
* the semantic region centre (paper §3.3): the mean of the centres of the instances of one
  semantic class in a cloud; a second head predicts the offset ``O_S`` to it
  (:func:`region_centre_offsets` gives the target), and clustering shifts each point by
  ``O_I + lambda (O_I - O_S) / |O_I - O_S|`` (eq. 7, :func:`push_from_region`): instances of
  one class move apart, away from their common centre.

Single-level only: the paper's multi- and cross-level fusion needs a semantic hierarchy (PartNet's
three part levels), which ScanNet-20 labels do not have; the paper uses single-level fusion on
indoor scenes too.
"""

from __future__ import annotations

from typing import Any

import torch

from ..ops import segment_reduce
from ..ops._checks import batch_ids

__all__ = ["fuse_by_semantics", "fused_input", "fused_width", "push_from_region",
           "region_centre_offsets", "region_offset_loss"]

_EPS = 1e-6


def fused_width(channels: int) -> int:
    """Width of the fused instance feature ``[F_hat, F, xyz]``: 2C + 3."""
    return 2 * int(channels) + 3


def fuse_by_semantics(feats: torch.Tensor, semantic_logits: torch.Tensor, xyz: torch.Tensor,
                      batch_offsets: torch.Tensor) -> torch.Tensor:
    """(N, 2C + 3) ``[F_hat, feats, xyz]`` (paper eq. 3-4 and the fused feature of §3.2.1).

    feats: (N, C) instance features; semantic_logits: (N, K) (softmax taken here, gradient
    stopped); xyz: (N, 3) metres; batch_offsets: (B + 1,) rows of each cloud (classes are pooled
    within a cloud, never across clouds).
    """
    prob = semantic_logits.detach().softmax(-1).to(feats.dtype)
    offsets = torch.as_tensor(batch_offsets, device=feats.device).long()
    fused = torch.empty_like(feats)
    for b in range(offsets.numel() - 1):
        p0, p1 = int(offsets[b]), int(offsets[b + 1])
        if p1 == p0:
            continue
        p, f = prob[p0:p1], feats[p0:p1]
        pooled = (p.T @ f) / (p.sum(0)[:, None] + _EPS)  # (K, C): Z
        fused[p0:p1] = p @ pooled
    return torch.cat([fused, feats, xyz.to(feats.dtype)], dim=1)


def region_centre_offsets(batch: dict[str, Any], num_stuff_classes: int
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of the region-centre head: ``(offset (N, 3) float32, valid (N,) bool)``.

    A point of an instance whose class is a thing class gets ``region_centre - xyz``, where the
    region centre is the mean of the centres (``instance_center``) of that cloud's instances of
    the same class; other points are not valid. batch: ``collate`` output (instance,
    instance_class, instance_center, xyz, batch_offsets).
    """
    xyz = batch["xyz"].float()
    device = xyz.device
    instance = batch["instance"].long()
    inst_cls = batch["instance_class"].long().to(device)
    centres = batch["instance_center"].float().to(device)
    n = xyz.shape[0]
    valid = instance >= 0
    target = torch.zeros(n, 3, device=device)
    if not bool(valid.any()):
        return target, valid
    valid &= inst_cls[instance.clamp_min(0)] >= num_stuff_classes
    if not bool(valid.any()):
        return target, valid
    # The cloud of every instance: the item of its first point.
    item = batch_ids(torch.as_tensor(batch["batch_offsets"], device=device).long())
    num_inst = inst_cls.numel()
    inst_item = segment_reduce(item[valid], instance[valid], num_inst, "min")
    used = torch.unique(instance[valid])
    key = inst_item[used] * (int(inst_cls.max()) + 1) + inst_cls[used]  # one per (cloud, class)
    keys, region_of_used = torch.unique(key, return_inverse=True)
    region_centre = segment_reduce(centres[used], region_of_used, keys.numel(), "mean")
    region_of = torch.full((num_inst,), -1, dtype=torch.int64, device=device)
    region_of[used] = region_of_used
    target[valid] = region_centre[region_of[instance[valid]]] - xyz[valid]
    return target, valid


def push_from_region(offsets: torch.Tensor, region_offsets: torch.Tensor,
                     strength: float) -> torch.Tensor:
    """Offsets used for clustering (paper eq. 7): ``O_I + strength * unit(O_I - O_S)``
    (metres; ``strength`` 0 returns ``offsets``)."""
    if strength == 0:
        return offsets
    away = offsets - region_offsets
    return offsets + strength * away / (away.norm(dim=1, keepdim=True) + 1e-8)


def fused_input(feats: torch.Tensor, semantic_logits: torch.Tensor, xyz: torch.Tensor | None,
                batch_offsets: torch.Tensor | None) -> torch.Tensor:
    """:func:`fuse_by_semantics` for a model's ``forward_pointwise``, which must be given the
    points' ``xyz`` and ``batch_offsets`` when the model has ``fusion`` on."""
    if xyz is None or batch_offsets is None:
        raise ValueError("a model with fusion: true needs xyz and batch_offsets in "
                         "forward_pointwise (the semantic pooling is per cloud)")
    return fuse_by_semantics(feats, semantic_logits, xyz, batch_offsets)


def region_offset_loss(region_offsets: torch.Tensor, batch: dict[str, Any],
                       num_stuff_classes: int) -> torch.Tensor:
    """Mean L1 (summed over xyz) of the region-centre offsets over the points that have a
    region centre (:func:`region_centre_offsets`); an attached 0 when none has."""
    target, valid = region_centre_offsets(batch, num_stuff_classes)
    if not bool(valid.any()):
        return region_offsets.sum() * 0
    return (region_offsets[valid] - target[valid].to(region_offsets)).abs().sum(1).mean()
