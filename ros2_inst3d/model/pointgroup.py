"""PointGroup (CVPR 2020): the network with the official module names (official-models.md §4).

The released ScanNet model (``m: 16``) is a bare state dict in spconv 1's weight layout;
``checkpoint.py`` strips ``module.`` and permutes the 5-D weights, after which it loads here with
``strict=True``. Modules:

* backbone (``input_conv``, ``unet`` with levels ``m..7m``, ``output_layer``);
* ``linear``: one Linear to semantic logits (no MLP, unlike SoftGroup);
* ``offset`` (Linear, BN, ReLU) then ``offset_linear``: offsets to the instance centre, metres;
  (with ``pointwise_heads: softgroup`` instead SoftGroup's MLP heads ``semantic_linear`` /
  ``offset_linear``, so that the shared stage-1 checkpoint of the two-stage recipe loads);
* ScoreNet (``score_unet`` [m, 2m], ``score_outputlayer``, ``score_linear``): scores clusters
  of the dual-set grouping.

Training (:meth:`PointGroup.forward_train`) and inference (:meth:`PointGroup.predict`) follow
``model/pointgroup/pointgroup.py`` and ``train.py`` / ``test.py`` of dvlab-research/PointGroup,
with the custom CUDA ops replaced by ``ros2_inst3d.ops`` and ``model/proposal_ops.py``.
Deliberate differences from the official code:

* test time is deterministic: the official ScoreNet voxelisation moves every cluster by a random
  offset inside its 14³ cube even at test time (and ``test.py`` flips/rotates the scene, seeded
  by ``test_seed``); here the cube placement is fixed and ``test_seed`` is kept only as a config
  key. Training keeps the random placement, drawn from torch's default generator.
* the ball query caps each point's list at ``cluster_meanActive`` / ``cluster_shift_meanActive``
  neighbours of the same class (first by index); the official kernel uses these numbers only to
  size its buffer and caps at 1000. The graph is undirected, so a dense blob stays one component
  either way; the cap bounds memory when predicted offsets pile thousands of points together.
* the score loss is ``binary_cross_entropy_with_logits`` (the official ``BCELoss`` on
  ``sigmoid``: the same value, without its log(0) clamp).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import spconv.pytorch as spconv
import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..ops import SparseMasks
from . import proposal_ops
from .backbone import (
    InstanceNetwork,
    PointwiseHeads,
    UBlock,
    norm_fn,
    single_threaded_spconv,
)
from .fusion import fused_width, region_offset_loss
from .proposals import Proposals

# Official loss guards (train.py loss_fn): offset means divide by (sum(valid) + 1e-6), unit
# vectors by (norm + 1e-8).
_MEAN_EPS = 1e-6
_NORM_EPS = 1e-8

POINTWISE_HEADS = ("pointgroup", "softgroup")
"""Layouts of PointGroup's semantic / offset heads (``pointwise_heads``)."""


class PointGroup(PointwiseHeads, InstanceNetwork):
    """PointGroup's network; arguments are the keys of ``config/models/pointgroup_*.yaml``.

    in_channels / with_coords / channels (official ``m``) / num_blocks / semantic_classes
    (official ``classes``) / voxel_size as for :class:`~ros2_inst3d.model.softgroup.SoftGroup`.
    instance_classes: the thing classes (the last ``instance_classes`` semantic ones; PointGroup
    groups every point whose semantic prediction is not one of the first
    ``semantic_classes - instance_classes``, i.e. not wall/floor). semantic_only: leave out
    ScoreNet. The grouping, ScoreNet and test keys keep the official names and values of
    ``config/pointgroup_default_scannet.yaml`` (GROUP, TRAIN and TEST sections): cluster_radius
    (metres), cluster_meanActive / cluster_shift_meanActive (neighbour caps on the original /
    shifted coordinates), cluster_npoint_thre (minimum cluster size, points), prepare_epochs
    (epochs before ScoreNet trains), score_scale (voxels per metre cap) / score_fullscale (cube
    side, voxels) / score_mode (4 = mean voxel features, the only mode), fg_thresh / bg_thresh
    (soft score target ramp), TEST_NMS_THRESH / TEST_SCORE_THRESH / TEST_NPOINT_THRESH.
    cluster_merge_size (ours, metres, 0 = official): merge same-class points per cell of this
    side before the radius search (``ops.cluster_points``' ``merge_size``, SoftGroup++'s pyramid);
    keeps grouping near-linear once the offsets pile instances onto their centres.
    split_factor / class_length (ours, 0 = official): the clusters longer than ``split_factor``
    typical objects of their class (``class_length``, metres per semantic class) also enter
    ScoreNet cut into pieces (:func:`proposal_ops.split_long_masks`; SoftGroup's
    ``grouping_cfg`` keys of the same names).
    fusion (ours, default off = official): SSAIFF (``model/fusion.py``): the offset head sees
    ``[semantic-pooled F, F, xyz]`` (F = ``offset``'s output), a ``region_linear`` head predicts
    the offset to the semantic region centre, and grouping shifts points by the offset pushed
    ``fusion_push`` metres away from it (paper eq. 7; 0 = no push).
    pointwise_heads (ours): ``pointgroup`` (official: ``linear``, ``offset`` + ``offset_linear``,
    the layout of the released checkpoint) or ``softgroup`` (:class:`PointwiseHeads`:
    SoftGroup's ``semantic_linear`` / ``offset_linear`` MLPs, whose module names and shapes the
    shared stage-1 checkpoint has, so PointGroup's stage 2 starts from the same backbone and
    heads as SoftGroup's and ISBNet's). The two cannot be renamed into each other: the official
    semantic head is one Linear, SoftGroup's an MLP. With ``fusion`` the SoftGroup heads fuse the
    backbone features (as SoftGroup), the PointGroup heads the output of ``offset``.
    """

    name = "pointgroup"
    averages_views = True

    def __init__(self, in_channels: int = 3, channels: int = 16, num_blocks: int = 7,
                 semantic_classes: int = 20, instance_classes: int = 18,
                 semantic_only: bool = False, with_coords: bool = True, voxel_size: float = 0.02,
                 ignore_label: int = -100,
                 cluster_radius: float = 0.03, cluster_meanActive: int = 50,
                 cluster_shift_meanActive: int = 300, cluster_npoint_thre: int = 50,
                 prepare_epochs: int = 128, score_scale: float = 50, score_fullscale: int = 14,
                 score_mode: int = 4, fg_thresh: float = 0.75, bg_thresh: float = 0.25,
                 TEST_NMS_THRESH: float = 0.3, TEST_SCORE_THRESH: float = 0.09,
                 TEST_NPOINT_THRESH: int = 100, test_seed: int = 567,
                 cluster_merge_size: float = 0.0,
                 split_factor: float = 0.0, class_length: Sequence[float] | None = None,
                 fusion: bool = False, fusion_push: float = 0.05,
                 pointwise_heads: str = "pointgroup") -> None:
        super().__init__(in_channels, channels, num_blocks, semantic_classes, instance_classes,
                         semantic_only, with_coords, voxel_size)
        if pointwise_heads not in POINTWISE_HEADS:
            raise ValueError(f"pointwise_heads must be one of {', '.join(POINTWISE_HEADS)}, got "
                             f"{pointwise_heads!r}")
        self.pointwise_heads = pointwise_heads
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
        self.cluster_merge_size = float(cluster_merge_size)
        self.split_factor = float(split_factor)
        self.class_length = proposal_ops.class_lengths(split_factor, class_length,
                                                       semantic_classes)
        if self.score_mode != 4:
            raise ValueError(f"score_mode {score_mode} is not supported: only 4 (mean of the "
                             "points' features per voxel, the official setting) is implemented")
        if not 0 <= semantic_classes - instance_classes < semantic_classes:
            raise ValueError(f"instance_classes ({instance_classes}) must be 1..semantic_classes "
                             f"({semantic_classes}): they are the last semantic classes")
        if not self.bg_thresh < self.fg_thresh:
            raise ValueError(f"bg_thresh ({bg_thresh}) must be below fg_thresh ({fg_thresh})")

        self.fusion = bool(fusion)
        self.fusion_push = float(fusion_push)
        if pointwise_heads == "softgroup":
            self.build_pointwise_heads(channels, semantic_classes)
        else:
            self.linear = nn.Linear(channels, semantic_classes)
            self.offset = nn.Sequential(nn.Linear(channels, channels, bias=True),
                                        norm_fn(channels), nn.ReLU())
            offset_in = fused_width(channels) if self.fusion else channels
            self.offset_linear = nn.Linear(offset_in, 3, bias=True)
            if self.fusion:
                self.region_linear = nn.Linear(offset_in, 3, bias=True)
        if not semantic_only:
            self.score_unet = UBlock([channels, 2 * channels], block_reps=2, indice_key_id=1)
            self.score_outputlayer = spconv.SparseSequential(norm_fn(channels), nn.ReLU())
            self.score_linear = nn.Linear(channels, 1)

    def semantic_logits(self, point_feats: torch.Tensor) -> torch.Tensor:
        """(N, K) logits: ``linear`` (official layout) or SoftGroup's ``semantic_linear``."""
        if self.pointwise_heads == "softgroup":
            return super().semantic_logits(point_feats)
        return self.linear(point_feats)

    def instance_features(self, point_feats: torch.Tensor) -> torch.Tensor:
        """What ``offset_linear`` (and fusion) sees: the output of ``offset`` (Linear, BN, ReLU)
        in the official layout; the point features with SoftGroup's MLP heads.
        :meth:`PointwiseHeads.forward_pointwise` then returns ``voxel_feats``, ``point_feats``,
        ``semantic_logits``, ``offsets`` (metres) and with ``fusion`` ``region_offsets``."""
        if self.pointwise_heads == "softgroup":
            return point_feats
        return self.offset(point_feats)

    # ------------------------------------------------------------------------------------------
    # Dual-set grouping

    def cluster_sets(self, semantic_pred: torch.Tensor, offsets: torch.Tensor, xyz: torch.Tensor,
                     batch_offsets: torch.Tensor) -> tuple[SparseMasks, SparseMasks]:
        """The two cluster sets of the dual-set grouping: (original coords, shifted coords).

        semantic_pred: (N,) int semantic class per point (points of the stuff classes and
        negative labels are not grouped). offsets: (N, 3) metres, predicted shift to the instance
        centre. xyz: (N, 3) metres, network frame. batch_offsets: (B + 1,) int point offsets.

        Each set: masks over the N points (global indices), label-constrained radius
        components (``cluster_radius``) with at least ``cluster_npoint_thre`` points, numbered by
        their smallest point index, never spanning two batch items or two classes. The original
        set caps neighbour lists at ``cluster_meanActive``, the shifted one at
        ``cluster_shift_meanActive``.
        """
        labels = semantic_pred.long()
        labels = torch.where(labels >= self.num_stuff_classes, labels, torch.full_like(labels, -1))
        sets = []
        for coords, max_neighbors in ((xyz, self.cluster_meanActive),
                                      (xyz + offsets, self.cluster_shift_meanActive)):
            cluster = ops.cluster_points(coords.float().contiguous(), labels,
                                         radius=self.cluster_radius,
                                         min_size=self.cluster_npoint_thre,
                                         max_neighbors=max_neighbors,
                                         batch_offsets=batch_offsets,
                                         merge_size=self.cluster_merge_size)
            sets.append(proposal_ops.clusters_to_masks(cluster))
        return sets[0], sets[1]

    def clustering(self, semantic_pred: torch.Tensor, offsets: torch.Tensor, xyz: torch.Tensor,
                   batch_offsets: torch.Tensor) -> SparseMasks:
        """PointGroup's proposals: both cluster sets of :meth:`cluster_sets`, concatenated.

        The official order: clusters of the original coordinates first (ids 0..Kp-1), then those
        of the shifted coordinates (ids Kp..Kp+Kq-1). Entries are sorted by mask, then point, so
        a mask's first entry is its smallest point index (the official BFS seed).
        """
        original, shifted = self.cluster_sets(semantic_pred, offsets, xyz, batch_offsets)
        masks = proposal_ops.concat_masks([original, shifted], device=xyz.device)
        if self.split_factor > 0 and masks.num_masks:
            # A cluster holds one class (label-constrained), so its first point names it.
            first = masks.point_idx[proposal_ops.mask_offsets(masks)[:-1]]
            pieces = proposal_ops.split_long_masks(
                masks, semantic_pred.long()[first], xyz, self.class_length, self.split_factor,
                min_points=self.cluster_npoint_thre)
            masks = proposal_ops.concat_masks([masks, pieces], device=xyz.device)
        return masks

    # ------------------------------------------------------------------------------------------
    # ScoreNet

    def _scorenet_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.score_unet, self.score_outputlayer, self.score_linear)
                for p in m.parameters()]

    def score_logits(self, masks: SparseMasks, point_feats: torch.Tensor, xyz: torch.Tensor,
                     random_shift: torch.Generator | None = None) -> torch.Tensor:
        """(K,) ScoreNet logit of every proposal (official ``clusters_voxelization`` →
        ``score_unet`` → ``score_outputlayer`` → ``roipool`` (max) → ``score_linear``).

        masks: K >= 1 non-empty proposals over the N points. point_feats: (N, C) backbone
        features. xyz: (N, 3) metres. random_shift: generator of the training-time random cube
        placement, None for the deterministic placement.
        """
        sparse, entry_to_voxel = proposal_ops.voxelize_proposals(
            masks, point_feats, xyz, scale=self.score_scale, spatial_shape=self.score_fullscale,
            random_shift=random_shift)
        with single_threaded_spconv(point_feats.device):
            voxel_feats = self.score_outputlayer(self.score_unet(sparse)).features
        entry_feats = voxel_feats[entry_to_voxel]
        pooled = proposal_ops.pool_per_proposal(entry_feats, masks.mask_idx, masks.num_masks, "max")
        return self.score_linear(pooled).view(-1)

    # ------------------------------------------------------------------------------------------
    # Training

    def forward_train(self, batch: dict[str, Any], epoch: int = 0
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (scalar, with grad) and its parts as floats.

        batch: ``collate`` output on the model's device (coords, feats, point_to_voxel,
        spatial_shape, batch_size, batch_offsets, xyz, semantic, instance, instance_num_points,
        offset_target). epoch: the trainer's 0-based epoch; ScoreNet trains from
        ``epoch >= prepare_epochs`` on (the official 1-based ``epoch > prepare_epochs``).

        Loss = semantic CE (``ignore_label`` ignored) + offset L1 (sum of |Δ| over xyz, mean
        over points with an instance) + direction loss (mean of -cos(predicted, target) over the
        same points) + ScoreNet BCE (mean over proposals, soft targets from each proposal's best
        IoU with a GT instance); with ``fusion`` + region-centre offset L1 (same form as the
        offset one). Parts: ``semantic_loss``, ``offset_loss``, ``dir_loss``, (``region_loss``),
        ``score_loss`` (0 while ScoreNet does not train), ``num_proposals``.
        """
        out = self.forward_batch(batch)
        logits, offsets = out["semantic_logits"], out["offsets"]
        semantic = batch["semantic"].long()
        if bool((semantic != self.ignore_label).any()):
            semantic_loss = F.cross_entropy(logits, semantic, ignore_index=self.ignore_label)
        else:  # cross_entropy of nothing is NaN
            semantic_loss = logits.sum() * 0.0

        valid = (batch["instance"] != self.ignore_label).float()
        target = batch["offset_target"].float()
        offset_l1 = (offsets - target).abs().sum(dim=1)
        offset_loss = (offset_l1 * valid).sum() / (valid.sum() + _MEAN_EPS)
        target_dir = target / (target.norm(dim=1, keepdim=True) + _NORM_EPS)
        pred_dir = offsets / (offsets.norm(dim=1, keepdim=True) + _NORM_EPS)
        direction = -(target_dir * pred_dir).sum(dim=1)
        dir_loss = (direction * valid).sum() / (valid.sum() + _MEAN_EPS)

        total = semantic_loss + offset_loss + dir_loss
        region_loss = None
        if self.fusion:
            region_loss = region_offset_loss(out["region_offsets"], batch, self.num_stuff_classes)
            total = total + region_loss
        score_loss = None
        num_proposals = 0
        if not self.semantic_only and int(epoch) >= self.prepare_epochs:
            semantic_pred = logits.detach().argmax(dim=1)
            masks = self.clustering(semantic_pred, self.grouping_offsets(out).detach(),
                                    batch["xyz"], batch["batch_offsets"])
            num_proposals = masks.num_masks
            if num_proposals == 0:
                # Zero, but attached to ScoreNet so its parameters get (zero) gradients.
                score_loss = sum(p.sum() for p in self._scorenet_parameters()) * 0.0
            else:
                score_logit = self.score_logits(masks, out["point_feats"], batch["xyz"],
                                                random_shift=torch.default_generator)
                with torch.no_grad():
                    ious = proposal_ops.gt_iou(masks, batch["instance"],
                                               batch["instance_num_points"])
                    max_iou = (ious.max(dim=1).values if ious.shape[1]
                               else ious.new_zeros(num_proposals))
                    score_target = proposal_ops.soft_score_target(max_iou, self.fg_thresh,
                                                                  self.bg_thresh)
                score_loss = F.binary_cross_entropy_with_logits(score_logit, score_target)
            total = total + score_loss
        parts = {"semantic_loss": float(semantic_loss.detach()),
                 "offset_loss": float(offset_loss.detach()), "dir_loss": float(dir_loss.detach()),
                 "score_loss": 0.0 if score_loss is None else float(score_loss.detach()),
                 "num_proposals": float(num_proposals)}
        if region_loss is not None:
            parts["region_loss"] = float(region_loss.detach())
        return total, parts

    # ------------------------------------------------------------------------------------------
    # Inference

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> list[Proposals]:
        """One :class:`Proposals` per batch item (official ``test.py`` post-processing).

        See :meth:`instances_from_pointwise`. Indices are local to the item's points,
        ``class_ids`` semantic class ids, proposals by decreasing score, ``point_class`` the
        semantic argmax, ``timing_ms`` the whole batch's ``backbone`` / ``grouping`` /
        ``refinement`` (ScoreNet, filters, NMS) wall times. Deterministic (module docstring).
        """
        clock = proposal_ops.StageClock(batch["xyz"].device)
        pointwise = self.forward_batch(batch)
        timing = {"backbone": clock.lap()}
        masks, scores = self.instances_from_pointwise(batch, pointwise, timing)
        semantic_pred = pointwise["semantic_logits"].argmax(dim=1)
        # Official: a proposal's class is the semantic prediction of its first point.
        first_point = masks.point_idx.long()[proposal_ops.mask_offsets(masks)[:-1]]
        return proposal_ops.split_per_item(masks, semantic_pred[first_point], scores,
                                           semantic_pred, batch["batch_offsets"], timing)

    @torch.no_grad()
    def instances_from_pointwise(self, batch: dict[str, Any], pointwise: dict[str, torch.Tensor],
                                 timing: dict[str, float] | None = None
                                 ) -> tuple[SparseMasks, torch.Tensor]:
        """Grouping, ScoreNet and post-processing of :meth:`forward_pointwise`'s output.

        Proposals of the dual-set grouping (argmax of ``semantic_logits``, ``offsets``) get
        ``sigmoid(ScoreNet)`` scores (deterministic cube placement); those with score
        > ``TEST_SCORE_THRESH`` and more than ``TEST_NPOINT_THRESH`` points go through
        class-agnostic greedy NMS (IoU > ``TEST_NMS_THRESH`` suppresses), as the official
        ``test.py``. A ``semantic_only`` model has no proposals.

        Returns the kept masks over the batch's N points (global indices; mask k = k-th highest
        score) and their (K,) scores. timing: filled with ``grouping`` and ``refinement`` ms.
        """
        device = batch["xyz"].device
        clock = proposal_ops.StageClock(device)
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        masks = SparseMasks(empty, empty.clone(), 0)
        if not self.semantic_only:
            masks = self.clustering(pointwise["semantic_logits"].argmax(dim=1),
                                    self.grouping_offsets(pointwise), batch["xyz"],
                                    batch["batch_offsets"].long().to(device))
        grouping_ms = clock.lap()
        scores = torch.zeros(0, device=device)
        if masks.num_masks:
            scores = torch.sigmoid(self.score_logits(masks, pointwise["point_feats"],
                                                     batch["xyz"]))
            sizes = proposal_ops.mask_sizes(masks)
            keep = torch.nonzero((scores > self.TEST_SCORE_THRESH)
                                 & (sizes > self.TEST_NPOINT_THRESH)).squeeze(1)
            masks = proposal_ops.select_masks(masks, keep)
            scores = scores[keep]
        if masks.num_masks:
            # Class-agnostic NMS over the whole batch equals per-item NMS: masks of different
            # items share no point, so their IoU is 0 and never suppresses.
            keep = ops.mask_nms(masks, scores, self.TEST_NMS_THRESH)  # by decreasing score
            masks = proposal_ops.select_masks(masks, keep)
            scores = scores[keep]
        if timing is not None:
            timing["grouping"] = grouping_ms
            timing["refinement"] = clock.lap()
        return masks, scores



__all__ = ["POINTWISE_HEADS", "PointGroup"]
