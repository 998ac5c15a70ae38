"""PointGroup (CVPR 2020): the network with the official module names (official-models.md §4).

The released ScanNet model (``m: 16``) is a bare state dict in spconv 1's weight layout;
``checkpoint.py`` strips ``module.`` and permutes the 5-D weights, after which it loads here with
``strict=True``. Modules:

* backbone (``input_conv``, ``unet`` with levels ``m..7m``, ``output_layer``);
* ``linear``: one Linear to semantic logits (no MLP, unlike SoftGroup);
* ``offset`` (Linear, BN, ReLU) then ``offset_linear``: offsets to the instance centre, metres;
* ScoreNet (``score_unet`` [m, 2m], ``score_outputlayer``, ``score_linear``): scores clusters
  of the dual-set grouping. Its forward builds on ``ros2_inst3d.ops`` and is not written yet.

Only :meth:`PointGroup.forward_pointwise` is implemented.
"""

from __future__ import annotations

from collections.abc import Sequence

import spconv.pytorch as spconv
import torch
from torch import nn

from .backbone import InstanceNetwork, UBlock, norm_fn, voxels_to_points


class PointGroup(InstanceNetwork):
    """PointGroup's network; arguments are the keys of ``config/models/pointgroup_*.yaml``.

    in_channels / with_coords / channels (official ``m``) / num_blocks / semantic_classes
    (official ``classes``) / voxel_size as for :class:`~ros2_inst3d.model.softgroup.SoftGroup`.
    instance_classes: the thing classes (the last ``instance_classes`` semantic ones; PointGroup
    groups every point whose semantic prediction is not wall/floor). semantic_only: leave out
    ScoreNet. The grouping, ScoreNet and test keys keep the official names and values of
    ``config/pointgroup_default_scannet.yaml`` (GROUP, TRAIN and TEST sections).
    """

    name = "pointgroup"

    def __init__(self, in_channels: int = 3, channels: int = 16, num_blocks: int = 7,
                 semantic_classes: int = 20, instance_classes: int = 18,
                 semantic_only: bool = False, with_coords: bool = True, voxel_size: float = 0.02,
                 ignore_label: int = -100,
                 cluster_radius: float = 0.03, cluster_meanActive: int = 50,
                 cluster_shift_meanActive: int = 300, cluster_npoint_thre: int = 50,
                 prepare_epochs: int = 128, score_scale: float = 50, score_fullscale: int = 14,
                 score_mode: int = 4, fg_thresh: float = 0.75, bg_thresh: float = 0.25,
                 TEST_NMS_THRESH: float = 0.3, TEST_SCORE_THRESH: float = 0.09,
                 TEST_NPOINT_THRESH: int = 100, test_seed: int = 567) -> None:
        super().__init__(in_channels, channels, num_blocks, semantic_classes, instance_classes,
                         semantic_only, with_coords, voxel_size)
        self.ignore_label = int(ignore_label)
        self.cluster_radius = float(cluster_radius)
        self.cluster_meanActive = int(cluster_meanActive)
        self.cluster_shift_meanActive = int(cluster_shift_meanActive)
        self.cluster_npoint_thre = int(cluster_npoint_thre)
        self.prepare_epochs = int(prepare_epochs)
        self.score_scale = float(score_scale)
        self.score_fullscale = int(score_fullscale)
        self.score_mode = int(score_mode)
        self.fg_thresh = float(fg_thresh)
        self.bg_thresh = float(bg_thresh)
        self.TEST_NMS_THRESH = float(TEST_NMS_THRESH)
        self.TEST_SCORE_THRESH = float(TEST_SCORE_THRESH)
        self.TEST_NPOINT_THRESH = int(TEST_NPOINT_THRESH)
        self.test_seed = int(test_seed)

        self.linear = nn.Linear(channels, semantic_classes)
        self.offset = nn.Sequential(nn.Linear(channels, channels, bias=True), norm_fn(channels),
                                    nn.ReLU())
        self.offset_linear = nn.Linear(channels, 3, bias=True)
        if not semantic_only:
            self.score_unet = UBlock([channels, 2 * channels], block_reps=2, indice_key_id=1)
            self.score_outputlayer = spconv.SparseSequential(norm_fn(channels), nn.ReLU())
            self.score_linear = nn.Linear(channels, 1)

    def forward_pointwise(self, voxel_feats: torch.Tensor, voxel_coords: torch.Tensor,
                          spatial_shape: Sequence[int], point_to_voxel: torch.Tensor,
                          batch_size: int = 1) -> dict[str, torch.Tensor]:
        """Backbone, semantic logits and offsets per point.

        Arguments as :meth:`ros2_inst3d.model.softgroup.SoftGroup.forward_pointwise`
        (``point_to_voxel`` is what PointGroup's code calls ``p2v_map``). Returns
        ``voxel_feats`` (M, C), ``point_feats`` (N, C), ``semantic_logits`` (N, K) and
        ``offsets`` (N, 3) float32, metres.
        """
        voxel_out = self.forward_backbone(voxel_feats, voxel_coords, spatial_shape, batch_size)
        point_feats = voxels_to_points(voxel_out, point_to_voxel)
        return {"voxel_feats": voxel_out, "point_feats": point_feats,
                "semantic_logits": self.linear(point_feats),
                "offsets": self.offset_linear(self.offset(point_feats))}
