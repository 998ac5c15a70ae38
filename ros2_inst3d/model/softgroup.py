"""SoftGroup (CVPR 2022, and SoftGroup++: same weights) and HAIS, its pretraining source.

Module names and shapes are the official ones (research/official-models.md §2.1, §4), so
``softgroup_*_spconv2.pth`` and converted HAIS checkpoints load with ``strict=True``:

* backbone (``input_conv``, ``unet``, ``output_layer``) and the point-wise ``semantic_linear``
  (logits over ``semantic_classes``) and ``offset_linear`` (offsets to the instance centre,
  metres) — implemented in :meth:`SoftGroup.forward_pointwise`;
* the top-down refinement (absent when ``semantic_only``): ``tiny_unet`` (a 2-level U-Net with
  indice keys 11/12), ``tiny_unet_outputlayer``, ``cls_linear``, ``mask_linear``,
  ``iou_score_linear``, all over ``instance_classes + 1`` outputs. Their forward (soft grouping,
  proposal voxelisation, refinement) builds on ``ros2_inst3d.ops`` and is not written yet.

HAIS keeps the same backbone and point-wise heads; its refinement modules are
``intra_ins_unet``, ``intra_ins_outputlayer``, ``score_linear`` (1 output) and ``mask_linear``
(1 output). SoftGroup's ``tools/convert_checkpoint.py`` renames the first three to SoftGroup's
names; ``checkpoint.py`` applies those renames when a HAIS file meets a SoftGroup model.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import spconv.pytorch as spconv
import torch
from torch import nn

from .backbone import MLP, InstanceNetwork, UBlock, norm_fn, voxels_to_points

# Official ScanNet v2 values (configs/softgroup/softgroup_scannet.yaml); used when a key is absent.
SCANNET_CLASS_NUMPOINT_MEAN = [-1.0, -1.0, 3917.0, 12056.0, 2303.0, 8331.0, 3948.0, 3166.0,
                               5629.0, 11719.0, 1003.0, 3317.0, 4912.0, 10221.0, 3889.0, 4136.0,
                               2120.0, 945.0, 3967.0, 2589.0]
DEFAULT_GROUPING_CFG = {"score_thr": 0.2, "radius": 0.04, "mean_active": 300,
                        "class_numpoint_mean": SCANNET_CLASS_NUMPOINT_MEAN, "npoint_thr": 0.05,
                        "ignore_classes": [0, 1]}
DEFAULT_INSTANCE_VOXEL_CFG = {"scale": 50, "spatial_shape": 20}
DEFAULT_TRAIN_CFG = {"max_proposal_num": 200, "pos_iou_thr": 0.5}
DEFAULT_TEST_CFG = {"x4_split": False, "cls_score_thr": 0.001, "mask_score_thr": -0.5,
                    "min_npoint": 100, "eval_tasks": ["semantic", "instance"]}


def _cfg(value: dict[str, Any] | None, default: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(default if value is None else dict(value))


class _PointwiseMixin:
    """Point-wise forward shared by SoftGroup and HAIS (same backbone, same MLP heads)."""

    semantic_linear: nn.Module
    offset_linear: nn.Module

    def forward_pointwise(self, voxel_feats: torch.Tensor, voxel_coords: torch.Tensor,
                          spatial_shape: Sequence[int], point_to_voxel: torch.Tensor,
                          batch_size: int = 1) -> dict[str, torch.Tensor]:
        """Backbone and point-wise heads of one batch of clouds (the official ``forward_backbone``).

        voxel_feats: (M, in) float32; voxel_coords: (M, 3) or (M, 4) int; spatial_shape: 3 ints
        (see :meth:`SparseUNetBackbone.sparse_input`). point_to_voxel: (N,) int64 voxel row of
        every point (SoftGroup's ``v2p_map``).

        Returns ``voxel_feats`` (M, C), ``point_feats`` (N, C), ``semantic_logits`` (N, K)
        (pre-softmax) and ``offsets`` (N, 3) float32, metres, in the frame of the xyz features.
        """
        voxel_out = self.forward_backbone(voxel_feats, voxel_coords, spatial_shape, batch_size)
        point_feats = voxels_to_points(voxel_out, point_to_voxel)
        return {"voxel_feats": voxel_out, "point_feats": point_feats,
                "semantic_logits": self.semantic_linear(point_feats),
                "offsets": self.offset_linear(point_feats)}


class SoftGroup(_PointwiseMixin, InstanceNetwork):
    """SoftGroup's network; arguments are the keys of ``config/models/softgroup_*.yaml``.

    in_channels: per-point features before xyz (3 = rgb, 1 = LiDAR remission); with_coords:
    append xyz (the U-Net then sees ``in_channels + 3``). channels / num_blocks: U-Net width and
    depth. semantic_classes / instance_classes: label counts (instance classes are the last
    ``instance_classes`` semantic ones). semantic_only: build only the backbone and point-wise
    heads (the released backbone pretrains). voxel_size: metres (1 / official ``scale``). The
    remaining keys keep the official names and values (research/official-models.md §2.4).
    """

    name = "softgroup"

    def __init__(self, in_channels: int = 3, channels: int = 32, num_blocks: int = 7,
                 semantic_classes: int = 20, instance_classes: int = 18,
                 semantic_only: bool = False, with_coords: bool = True, voxel_size: float = 0.02,
                 sem2ins_classes: Sequence[int] = (), ignore_label: int = -100,
                 semantic_weight: Sequence[float] | None = None,
                 grouping_cfg: dict[str, Any] | None = None,
                 instance_voxel_cfg: dict[str, Any] | None = None,
                 train_cfg: dict[str, Any] | None = None, test_cfg: dict[str, Any] | None = None,
                 fixed_modules: Sequence[str] = ()) -> None:
        super().__init__(in_channels, channels, num_blocks, semantic_classes, instance_classes,
                         semantic_only, with_coords, voxel_size)
        self.sem2ins_classes = [int(c) for c in sem2ins_classes]
        self.ignore_label = int(ignore_label)
        self.semantic_weight = None if not semantic_weight else [float(w) for w in semantic_weight]
        self.grouping_cfg = _cfg(grouping_cfg, DEFAULT_GROUPING_CFG)
        self.instance_voxel_cfg = _cfg(instance_voxel_cfg, DEFAULT_INSTANCE_VOXEL_CFG)
        self.train_cfg = _cfg(train_cfg, DEFAULT_TRAIN_CFG)
        self.test_cfg = _cfg(test_cfg, DEFAULT_TEST_CFG)
        self.fixed_modules = list(fixed_modules)

        self.semantic_linear = MLP(channels, semantic_classes, norm=True)
        self.offset_linear = MLP(channels, 3, norm=True)
        if not semantic_only:
            self.tiny_unet = UBlock([channels, 2 * channels], block_reps=2, indice_key_id=11)
            self.tiny_unet_outputlayer = spconv.SparseSequential(norm_fn(channels), nn.ReLU())
            self.cls_linear = nn.Linear(channels, instance_classes + 1)
            self.mask_linear = MLP(channels, instance_classes + 1, norm=False)
            self.iou_score_linear = nn.Linear(channels, instance_classes + 1)


class HAIS(_PointwiseMixin, InstanceNetwork):
    """HAIS (ICCV 2021) network; arguments as :class:`SoftGroup` (``config/models/hais_*.yaml``).

    Kept for its checkpoints: ``hais_ckpt_spconv2.pth`` initialises SoftGroup's training, and the
    original HAIS ScanNet model runs its point-wise part unchanged. HAIS's hierarchical
    aggregation is not implemented.
    """

    name = "hais"

    def __init__(self, in_channels: int = 3, channels: int = 32, num_blocks: int = 7,
                 semantic_classes: int = 20, instance_classes: int = 18,
                 semantic_only: bool = False, with_coords: bool = True,
                 voxel_size: float = 0.02) -> None:
        super().__init__(in_channels, channels, num_blocks, semantic_classes, instance_classes,
                         semantic_only, with_coords, voxel_size)

        self.semantic_linear = MLP(channels, semantic_classes, norm=True)
        self.offset_linear = MLP(channels, 3, norm=True)
        if not semantic_only:
            self.intra_ins_unet = UBlock([channels, 2 * channels], block_reps=2, indice_key_id=11)
            self.intra_ins_outputlayer = spconv.SparseSequential(norm_fn(channels), nn.ReLU())
            self.score_linear = nn.Linear(channels, 1)
            self.mask_linear = MLP(channels, 1, norm=False)


__all__ = ["HAIS", "SoftGroup"]
