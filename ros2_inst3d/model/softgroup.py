"""SoftGroup (CVPR 2022, and SoftGroup++: same weights) and HAIS, its pretraining source.

Module names and shapes are the official ones (docs/official-models.md §2.1, §4), so
``softgroup_*_spconv2.pth`` and converted HAIS checkpoints load with ``strict=True``:

* backbone (``input_conv``, ``unet``, ``output_layer``) and the point-wise ``semantic_linear``
  (logits over ``semantic_classes``) and ``offset_linear`` (offsets to the instance centre,
  metres) — implemented in :meth:`SoftGroup.forward_pointwise`;
* the top-down refinement (absent when ``semantic_only``): ``tiny_unet`` (a 2-level U-Net with
  indice keys 11/12), ``tiny_unet_outputlayer``, ``cls_linear``, ``mask_linear``,
  ``iou_score_linear``, all over ``instance_classes + 1`` outputs: :meth:`SoftGroup.grouping`
  (soft grouping), :meth:`SoftGroup.forward_train` (official losses) and :meth:`SoftGroup.predict`
  (official ``get_instances`` plus an optional class-agnostic mask NMS, ``test_cfg.nms_iou``).

Where this differs from the official code (thangvubk/SoftGroup, docs/official-models.md §2):

* grouping runs every class through one :func:`ops.cluster_points` call (one row per
  (point, class) candidate); clusters are weakly connected components of the capped ball-query
  graph (the official BFS follows the capped lists one way, which only differs when the cap
  truncates), and the cap is ``mean_active`` (the official kernel's cap is 1000;
  ``mean_active`` only sizes its buffer);
* the mask loss is ``binary_cross_entropy_with_logits`` (the official BCE on sigmoids clamps the
  log at -100; otherwise equal);
* ``predict`` handles batches of several clouds (official test batches hold one scan), returns
  hypotheses by descending score (official: class by class) and, unless ``test_cfg.nms_iou`` is
  None, drops duplicates with a class-agnostic greedy mask NMS (not in the official code);
* not implemented: S3DIS ``x4_split`` and SoftGroup++'s ``with_pyramid`` / ``with_octree`` /
  ``lvl_fusion`` (a warning says so; the model then runs the plain SoftGroup path).

HAIS keeps the same backbone and point-wise heads; its refinement modules are
``intra_ins_unet``, ``intra_ins_outputlayer``, ``score_linear`` (1 output) and ``mask_linear``
(1 output). SoftGroup's ``tools/convert_checkpoint.py`` renames the first three to SoftGroup's
names; ``checkpoint.py`` applies those renames when a HAIS file meets a SoftGroup model.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import spconv.pytorch as spconv
import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..ops import SparseMasks
from ..ops._checks import expand_counts
from . import proposal_ops
from .backbone import (
    MLP,
    InstanceNetwork,
    PointwiseHeads,
    UBlock,
    norm_fn,
    single_threaded_spconv,
)
from .fusion import region_offset_loss
from .proposals import Proposals

log = logging.getLogger(__name__)

# Official ScanNet v2 values (configs/softgroup/softgroup_scannet.yaml); used when a key is absent.
SCANNET_CLASS_NUMPOINT_MEAN = [-1.0, -1.0, 3917.0, 12056.0, 2303.0, 8331.0, 3948.0, 3166.0,
                               5629.0, 11719.0, 1003.0, 3317.0, 4912.0, 10221.0, 3889.0, 4136.0,
                               2120.0, 945.0, 3967.0, 2589.0]
DEFAULT_GROUPING_CFG = {"score_thr": 0.2, "radius": 0.04, "mean_active": 300,
                        "class_numpoint_mean": SCANNET_CLASS_NUMPOINT_MEAN, "npoint_thr": 0.05,
                        "ignore_classes": [0, 1]}
DEFAULT_INSTANCE_VOXEL_CFG = {"scale": 50, "spatial_shape": 20}
DEFAULT_TRAIN_CFG = {"max_proposal_num": 200, "pos_iou_thr": 0.5}
# nms_iou is ours, not official (official get_instances has no NMS; None restores that): every
# proposal yields up to instance_classes overlapping hypotheses, fine for AP but useless to a
# consumer of instances. 0.3 is PointGroup's test-time mask-NMS threshold.
DEFAULT_NMS_IOU = 0.3
DEFAULT_TEST_CFG = {"x4_split": False, "cls_score_thr": 0.001, "mask_score_thr": -0.5,
                    "min_npoint": 100, "eval_tasks": ["semantic", "instance"],
                    "nms_iou": DEFAULT_NMS_IOU}


def _cfg(value: dict[str, Any] | None, default: dict[str, Any]) -> dict[str, Any]:
    """``default`` updated with the keys of ``value`` (a partial YAML mapping keeps the rest);
    each value must have its default's type (ConfigError otherwise)."""
    from .registry import type_error, value_fits_default

    merged = copy.deepcopy(default)
    for key, item in dict(value or {}).items():
        if key in default and not value_fits_default(item, default[key]):
            raise type_error(f"option {key!r}", item, default[key])
        merged[key] = copy.deepcopy(item)
    return merged


class RefinementOutput(NamedTuple):
    """Top-down refinement of K proposals with E entries (all logits over instance_classes + 1).

    cls_logits: (K, I+1) class logits (last = background). iou_scores: (K, I+1) predicted mask
    IoU per class. mask_logits: (E, I+1) per-entry mask logits, rows in the proposals' entry order.
    """

    cls_logits: torch.Tensor
    iou_scores: torch.Tensor
    mask_logits: torch.Tensor


class InstanceTargets(NamedTuple):
    """Training targets of K proposals with E entries (official ``instance_loss``).

    labels: (K,) int64 class, ``instance_classes`` = background. positive: (K,) bool, labels
    below background (these train the IoU score). matched: (K,) int64 GT instance with the best
    foreground IoU (the mask target where mask_weight is 1). mask_target / mask_weight: (E,)
    float32 (weight 1 only in proposals whose best IoU reaches ``pos_iou_thr``).
    fg_index: (F,) int64 the foreground GT instances.
    """

    labels: torch.Tensor
    positive: torch.Tensor
    matched: torch.Tensor
    mask_target: torch.Tensor
    mask_weight: torch.Tensor
    fg_index: torch.Tensor


class SoftGroup(PointwiseHeads, InstanceNetwork):
    """SoftGroup's network; arguments are the keys of ``config/models/softgroup_*.yaml``.

    in_channels: per-point features before xyz (3 = rgb, 1 = LiDAR remission); with_coords:
    append xyz (the U-Net then sees ``in_channels + 3``). channels / num_blocks: U-Net width and
    depth. semantic_classes / instance_classes: label counts (instance classes are the last
    ``instance_classes`` semantic ones). semantic_only: build only the backbone and point-wise
    heads (the released backbone pretrains). voxel_size: metres (1 / official ``scale``). The
    remaining keys keep the official names and values (docs/official-models.md §2.4),
    except fusion / fusion_push (ours, default off = official): SSAIFF (``model/fusion.py``),
    the offset head on ``[semantic-pooled features, features, xyz]``, a ``region_linear``
    head to the semantic region centre, grouping on offsets pushed ``fusion_push`` metres away
    from it.
    """

    name = "softgroup"
    averages_views = True

    def __init__(self, in_channels: int = 3, channels: int = 32, num_blocks: int = 7,
                 semantic_classes: int = 20, instance_classes: int = 18,
                 semantic_only: bool = False, with_coords: bool = True, voxel_size: float = 0.02,
                 sem2ins_classes: Sequence[int] = (), ignore_label: int = -100,
                 semantic_weight: Sequence[float] | None = None,
                 grouping_cfg: dict[str, Any] | None = None,
                 instance_voxel_cfg: dict[str, Any] | None = None,
                 train_cfg: dict[str, Any] | None = None, test_cfg: dict[str, Any] | None = None,
                 fusion: bool = False,
                 fusion_push: float = 0.05) -> None:
        super().__init__(in_channels, channels, num_blocks, semantic_classes, instance_classes,
                         semantic_only, with_coords, voxel_size)
        self.sem2ins_classes = [int(c) for c in sem2ins_classes]
        self.ignore_label = int(ignore_label)
        self.semantic_weight = None if not semantic_weight else [float(w) for w in semantic_weight]
        self.grouping_cfg = _cfg(grouping_cfg, DEFAULT_GROUPING_CFG)
        proposal_ops.class_lengths(self.grouping_cfg.get("split_factor", 0.0),  # fail early
                                   self.grouping_cfg.get("class_length"), semantic_classes)
        self.instance_voxel_cfg = _cfg(instance_voxel_cfg, DEFAULT_INSTANCE_VOXEL_CFG)
        self.train_cfg = _cfg(train_cfg, DEFAULT_TRAIN_CFG)
        self.test_cfg = _cfg(test_cfg, DEFAULT_TEST_CFG)
        unsupported = [f"test_cfg.{k}" for k in ("x4_split", "lvl_fusion") if self.test_cfg.get(k)]
        unsupported += [f"grouping_cfg.{k}" for k in ("with_pyramid", "with_octree")
                        if self.grouping_cfg.get(k)]
        if unsupported and not semantic_only:
            log.warning("SoftGroup: %s not implemented; running the plain SoftGroup path (the "
                        "backbone sees the whole cloud, grouping works on points)",
                        ", ".join(unsupported))

        self.fusion = bool(fusion)
        self.fusion_push = float(fusion_push)
        self.build_pointwise_heads(channels, semantic_classes)
        if not semantic_only:
            self.tiny_unet = UBlock([channels, 2 * channels], block_reps=2, indice_key_id=11)
            self.tiny_unet_outputlayer = spconv.SparseSequential(norm_fn(channels), nn.ReLU())
            self.cls_linear = nn.Linear(channels, instance_classes + 1)
            self.mask_linear = MLP(channels, instance_classes + 1, norm=False)
            self.iou_score_linear = nn.Linear(channels, instance_classes + 1)

    # ------------------------------------------------------------------------------------------
    # Soft grouping (official forward_grouping)
    # ------------------------------------------------------------------------------------------

    def _class_min_sizes(self) -> torch.Tensor:
        """(semantic_classes,) int64 smallest proposal size per semantic class: official
        ``bfs_cluster`` keeps ``size >= npoint_thr * class_numpoint_mean[c]`` (``>= npoint_thr``
        where the mean is -1); sizes are integers, so that is ``ceil`` of the bound."""
        means = [float(m) for m in self.grouping_cfg["class_numpoint_mean"]]
        if len(means) != self.semantic_classes:
            raise ValueError(f"grouping_cfg.class_numpoint_mean has {len(means)} entries but the "
                             f"model has {self.semantic_classes} semantic classes")
        thr = float(self.grouping_cfg["npoint_thr"])
        # The 1e-6 keeps 0.05 * 2000 = 100.00000000000001 from asking for 101 points.
        return torch.tensor([max(1, math.ceil((thr * m if m != -1 else thr) - 1e-6))
                             for m in means], dtype=torch.int64)

    def grouping(self, semantic_probs: torch.Tensor, offsets: torch.Tensor, xyz: torch.Tensor,
                 batch_offsets: torch.Tensor) -> SparseMasks:
        """Soft grouping: the official ``forward_grouping`` (docs/official-models.md §2.2 step 5).

        For every semantic class c outside ``grouping_cfg.ignore_classes`` the candidates are the
        points with ``semantic_probs[:, c] > score_thr`` (a point may be a candidate of several
        classes); classes with fewer than ``test_cfg.min_npoint`` candidates are skipped. The
        candidates' shifted coordinates ``xyz + offsets`` are linked within ``radius`` (ball query
        capped at ``mean_active`` neighbours among the class's candidates of the same batch item),
        and each connected component with at least ``npoint_thr * class_numpoint_mean[c]`` points
        is a proposal. All classes go through one :func:`ops.cluster_points` call, each
        (point, class) candidate being one row labelled with its class.
        ``grouping_cfg.merge_size`` (ours, metres; absent or 0 = official) merges each class's
        candidates per cell of that side first (``ops.cluster_points``' ``merge_size``).
        ``grouping_cfg.with_original`` (ours, absent or false = official) also links the
        candidates at their unshifted coordinates and appends those proposals after the shifted
        ones: PointGroup's dual-set grouping, which keeps whole objects where the predicted
        offsets scatter them (the refinement stage scores both sets; NMS keeps one per object).
        ``grouping_cfg.split_factor`` (ours, absent or 0 = official) with ``class_length`` (metres
        per semantic class, a typical object's length, <= 0 = never) appends the pieces of the
        proposals longer than ``split_factor`` typical objects (:func:`proposal_ops.
        split_long_masks`): rows of touching cabinets or bookshelves, which the offsets do not
        pull apart, are the commonest miss of the 10 cm models.

        semantic_probs: (N, semantic_classes) float, softmax scores. offsets: (N, 3) float,
        metres. xyz: (N, 3) float, metres (batch-contiguous). batch_offsets: (B + 1,) int point
        offsets of the batch items.

        Returns K proposals over the N points, entries sorted by proposal then point; proposals
        come class by class (ascending class id), within a class by their smallest point index
        (the official order); none spans two batch items.
        """
        cfg = self.grouping_cfg
        device = semantic_probs.device
        n = semantic_probs.shape[0]
        empty = SparseMasks(torch.zeros(0, dtype=torch.int64, device=device),
                            torch.zeros(0, dtype=torch.int64, device=device), 0)
        ignore = {int(c) for c in cfg.get("ignore_classes", [])}
        classes = torch.tensor([c for c in range(self.semantic_classes) if c not in ignore],
                               dtype=torch.int64, device=device)
        if n == 0 or classes.numel() == 0:
            return empty
        candidate = semantic_probs[:, classes] > float(cfg["score_thr"])  # (N, C')
        enough = candidate.sum(0) >= int(self.test_cfg["min_npoint"])
        if not bool(enough.any()):
            return empty
        classes, candidate = classes[enough], candidate[:, enough]
        # Rows (point, class) in point order, so they stay batch-contiguous.
        row_point, row_column = torch.nonzero(candidate, as_tuple=True)
        row_class = classes[row_column]
        bounds = torch.as_tensor(batch_offsets, device=device).long()
        row_offsets = torch.searchsorted(row_point, bounds)
        shifted = xyz[row_point].float() + offsets[row_point].float()
        parts = [self._link_candidates(shifted, row_point, row_class, row_offsets, n)]
        if cfg.get("with_original", False):
            parts.append(self._link_candidates(xyz[row_point].float(), row_point, row_class,
                                               row_offsets, n))
        masks = proposal_ops.concat_masks([part for part, _ in parts], device=device)
        factor = float(cfg.get("split_factor", 0.0))
        if factor > 0.0 and masks.num_masks:
            pieces = proposal_ops.split_long_masks(
                masks, torch.cat([classes for _, classes in parts]), xyz, cfg["class_length"],
                factor, min_points=int(self.test_cfg["min_npoint"]))
            masks = proposal_ops.concat_masks([masks, pieces], device=device)
        return masks

    def _link_candidates(self, coords: torch.Tensor, row_point: torch.Tensor,
                         row_class: torch.Tensor, row_offsets: torch.Tensor, n: int
                         ) -> tuple[SparseMasks, torch.Tensor]:
        """Proposals of one grouping set: the candidate rows (point ``row_point``, class
        ``row_class``) linked at ``coords`` (R, 3) metres, as documented in :meth:`grouping`,
        and the semantic class of each proposal."""
        cfg = self.grouping_cfg
        device = coords.device
        empty = (SparseMasks(torch.zeros(0, dtype=torch.int64, device=device),
                             torch.zeros(0, dtype=torch.int64, device=device), 0),
                 torch.zeros(0, dtype=torch.int64, device=device))
        cluster = ops.cluster_points(coords, row_class, radius=float(cfg["radius"]),
                                     min_size=self._class_min_sizes().to(device),
                                     max_neighbors=int(cfg["mean_active"]),
                                     batch_offsets=row_offsets,
                                     merge_size=float(cfg.get("merge_size", 0.0)))
        kept = cluster >= 0
        if not bool(kept.any()):
            return empty
        num = int(cluster.max()) + 1
        cluster_class = torch.zeros(num, dtype=torch.int64, device=device)
        cluster_class[cluster[kept]] = row_class[kept]
        first_point = ops.segment_reduce(row_point[kept], cluster[kept], num, "min")
        order = torch.argsort(cluster_class * n + first_point)
        new_id = torch.empty(num, dtype=torch.int64, device=device)
        new_id[order] = torch.arange(num, device=device)
        row_masks = proposal_ops.clusters_to_masks(torch.where(kept, new_id[cluster.clamp_min(0)],
                                                               cluster))
        # Rows of one cluster share a class, so their points are distinct and, like the rows,
        # ascending.
        return (SparseMasks(row_masks.mask_idx, row_point[row_masks.point_idx],
                            row_masks.num_masks), cluster_class[order])

    # ------------------------------------------------------------------------------------------
    # Top-down refinement (official clusters_voxelization + forward_instance)
    # ------------------------------------------------------------------------------------------

    def _refine(self, masks: SparseMasks, point_feats: torch.Tensor, xyz: torch.Tensor,
                random_shift: torch.Generator | None) -> RefinementOutput:
        """Classify, score and re-mask K >= 1 proposals.

        Each proposal is voxelised on its own ``instance_voxel_cfg`` grid from the backbone's
        per-point features (``point_feats`` (N, C)) at the unshifted ``xyz`` (N, 3) metres, run
        through ``tiny_unet`` → ``tiny_unet_outputlayer``; ``mask_linear`` scores every voxel and
        the voxel scores go back to the proposal entries; ``cls_linear`` / ``iou_score_linear``
        see the mean of the proposal's voxel features (``global_avg_pool``). random_shift: the
        training-time random placement (``rand_quantize``), None at test time.
        """
        sparse, entry_to_voxel = proposal_ops.voxelize_proposals(
            masks, point_feats, xyz, scale=float(self.instance_voxel_cfg["scale"]),
            spatial_shape=int(self.instance_voxel_cfg["spatial_shape"]), random_shift=random_shift)
        with single_threaded_spconv(point_feats.device):
            refined = self.tiny_unet_outputlayer(self.tiny_unet(sparse))
        voxel_feats = refined.features
        pooled = proposal_ops.pool_per_proposal(voxel_feats, refined.indices[:, 0].long(),
                                                masks.num_masks, "mean")
        return RefinementOutput(cls_logits=self.cls_linear(pooled),
                                iou_scores=self.iou_score_linear(pooled),
                                mask_logits=self.mask_linear(voxel_feats)[entry_to_voxel])

    # ------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------

    def gt_instance_classes(self, instance_class: torch.Tensor) -> torch.Tensor:
        """(I,) int64 head class of each GT instance from its semantic class (I,): semantic class
        minus ``semantic_classes - instance_classes``; negative (stuff, ignore) becomes -1."""
        cls = instance_class.long() - self.num_stuff_classes
        return torch.where(cls >= 0, cls, torch.full_like(cls, -1))

    def _instance_targets(self, masks: SparseMasks, instance: torch.Tensor,
                          instance_num_points: torch.Tensor, instance_cls: torch.Tensor
                          ) -> InstanceTargets:
        """Official SoftGroup proposal targets (``instance_loss``: ``get_mask_iou_on_cluster`` +
        ``get_mask_label``).

        A proposal is positive when its best IoU with a foreground GT instance (``instance_cls``
        (I,) >= 0) reaches ``train_cfg.pos_iou_thr``; its class label is that instance's class,
        everything else gets the background label ``instance_classes``. With
        ``train_cfg.match_low_quality`` (STPLS3D), each foreground instance whose best proposal
        has IoU >= ``min_pos_thr`` also labels that proposal (later instances win, as the
        official loop). The mask target (official ``get_mask_label``, which ignores the
        low-quality matches) of a proposal whose best IoU reaches ``pos_iou_thr`` is 1 on the
        points of that best instance, 0 elsewhere; entries of other proposals have weight 0.
        Needs at least one foreground instance.

        instance: (N,) int64 GT instance per point (negative = none). instance_num_points: (I,).
        """
        fg_index = torch.nonzero(instance_cls >= 0).squeeze(1)
        if fg_index.numel() == 0:
            raise ValueError("_instance_targets needs at least one foreground GT instance")
        iou = proposal_ops.gt_iou(masks, instance, instance_num_points)[:, fg_index]
        max_iou, best = iou.max(1)  # ties: the lowest instance index, as the official kernel
        mask_positive = max_iou >= float(self.train_cfg["pos_iou_thr"])
        assigned = torch.where(mask_positive, best, torch.full_like(best, -1))  # into fg_index
        if self.train_cfg.get("match_low_quality", False):
            gt_max_iou, gt_best = iou.max(0)
            ok = torch.nonzero(gt_max_iou >= float(self.train_cfg.get("min_pos_thr", 0))).squeeze(1)
            # The official loop over instances lets the last one win: the largest index.
            low = torch.full_like(best, -1).scatter_reduce(0, gt_best[ok], ok, "amax")
            assigned = torch.where(low >= 0, low, assigned)
        labels = torch.full_like(best, self.instance_classes)
        positive = assigned >= 0
        labels[positive] = instance_cls[fg_index[assigned[positive]]]
        matched = fg_index[best]
        entry_mask = masks.mask_idx.long()
        entry_weight = mask_positive[entry_mask].float()
        entry_target = (instance[masks.point_idx.long()] == matched[entry_mask]).float() * entry_weight
        return InstanceTargets(labels=labels, positive=positive, matched=matched,
                               mask_target=entry_target, mask_weight=entry_weight,
                               fg_index=fg_index)

    def _pointwise_losses(self, out: dict[str, torch.Tensor], batch: dict[str, Any]
                          ) -> dict[str, torch.Tensor]:
        """Official ``point_wise_loss``: semantic cross entropy and the mean L1 offset error over
        points that belong to an instance (a zero that keeps the graph when there are none)."""
        logits, offsets = out["semantic_logits"], out["offsets"]
        semantic = batch["semantic"].long()
        if bool((semantic != self.ignore_label).any()):
            weight = (None if self.semantic_weight is None
                      else torch.tensor(self.semantic_weight, dtype=logits.dtype, device=logits.device))
            semantic_loss = F.cross_entropy(logits, semantic, weight=weight,
                                            ignore_index=self.ignore_label)
        else:  # cross_entropy of only ignored points is 0/0
            semantic_loss = logits.sum() * 0
        positive = batch["instance"] != self.ignore_label
        num_pos = int(positive.sum())
        if num_pos:
            offset_loss = F.l1_loss(offsets[positive], batch["offset_target"][positive].to(offsets),
                                    reduction="sum") / num_pos
        else:
            offset_loss = offsets.sum() * 0
        losses = {"semantic_loss": semantic_loss, "offset_loss": offset_loss}
        if self.fusion:
            losses["region_loss"] = region_offset_loss(out["region_offsets"], batch,
                                                       self.num_stuff_classes)
        return losses

    def _instance_losses(self, masks: SparseMasks, refined: RefinementOutput,
                         batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], int]:
        """Official ``instance_loss``: (cls CE, mask BCE, IoU-score MSE) and the positive count."""
        instance_cls = self.gt_instance_classes(batch["instance_class"])
        cls_logits, iou_scores, mask_logits = refined
        if not bool((instance_cls >= 0).any()):
            return {"cls_loss": cls_logits.sum() * 0, "mask_loss": mask_logits.sum() * 0,
                    "iou_score_loss": iou_scores.sum() * 0}, 0
        instance = batch["instance"].long()
        num_points = batch["instance_num_points"]
        targets = self._instance_targets(masks, instance, num_points, instance_cls)
        cls_loss = F.cross_entropy(cls_logits, targets.labels)
        entry_mask = masks.mask_idx.long()
        # Logit of each entry in its proposal's target class column (background for negatives,
        # whose weight is 0). BCE on logits = the official BCE on sigmoids, without its clamp.
        entry_logit = mask_logits.gather(1, targets.labels[entry_mask][:, None]).squeeze(1)
        mask_loss = F.binary_cross_entropy_with_logits(
            entry_logit, targets.mask_target, weight=targets.mask_weight, reduction="sum"
        ) / (targets.mask_weight.sum() + 1)
        # IoU target: IoU of the predicted mask (sigmoid > 0.5) with the best foreground GT.
        pred_iou = proposal_ops.gt_iou(masks, instance, num_points,
                                       entry_weight=entry_logit.detach() > 0)
        iou_target = pred_iou[:, targets.fg_index].max(1).values
        score = iou_scores.gather(1, targets.labels[:, None]).squeeze(1)
        weight = targets.positive.float()
        iou_score_loss = (F.mse_loss(score, iou_target, reduction="none") * weight).sum() / (
            weight.sum() + 1)
        return ({"cls_loss": cls_loss, "mask_loss": mask_loss, "iou_score_loss": iou_score_loss},
                int(targets.positive.sum()))

    def forward_train(self, batch: dict[str, Any], epoch: int = 0
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total training loss (scalar, differentiable) and its parts as floats.

        batch: from ``data.batching.collate`` (+ ``batch_to_device``), labelled. Parts:
        ``semantic_loss``, ``offset_loss`` (with ``fusion`` also ``region_loss``, the region-centre
        offset L1) and, unless ``semantic_only``, ``cls_loss``,
        ``mask_loss``, ``iou_score_loss``, ``num_proposals``, ``num_positive``. The grouping runs
        on the current (detached) predictions and keeps its first ``train_cfg.max_proposal_num``
        proposals, as the official code. epoch is unused (SoftGroup has no warm-up stage). On
        CPU the caller must run ``backward()`` inside ``single_threaded_spconv``.
        """
        del epoch
        out = self.forward_batch(batch)
        losses = self._pointwise_losses(out, batch)
        stats: dict[str, float] = {}
        if not self.semantic_only:
            masks = self.grouping(out["semantic_logits"].detach().softmax(-1),
                                  self.grouping_offsets(out).detach(), batch["xyz"],
                                  batch["batch_offsets"])
            max_num = int(self.train_cfg["max_proposal_num"])
            if masks.num_masks > max_num:
                masks = proposal_ops.select_masks(
                    masks, torch.arange(max_num, device=masks.mask_idx.device))
            num_positive = 0
            if masks.num_masks == 0:
                zero = out["point_feats"].sum() * 0
                losses.update(cls_loss=zero, mask_loss=zero, iou_score_loss=zero)
            else:
                # One draw from torch's global RNG seeds the placement: seeded runs repeat.
                shift = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
                refined = self._refine(masks, out["point_feats"], batch["xyz"], shift)
                instance_losses, num_positive = self._instance_losses(masks, refined, batch)
                losses.update(instance_losses)
            stats = {"num_proposals": float(masks.num_masks), "num_positive": float(num_positive)}
        total = sum(losses.values())
        parts = {name: float(value.detach()) for name, value in losses.items()}
        parts.update(stats)
        return total, parts

    # ------------------------------------------------------------------------------------------
    # Inference
    # ------------------------------------------------------------------------------------------

    def get_instances(self, masks: SparseMasks, refined: RefinementOutput
                      ) -> tuple[SparseMasks, torch.Tensor, torch.Tensor]:
        """Official ``get_instances`` (§2.2 step 8), vectorised, then the optional mask NMS.

        Every proposal k and instance class i gives a hypothesis with score
        ``softmax(cls)[k, i] * clamp(iou[k, i], 0, 1)`` and mask = the proposal's entries with
        mask logit ``> test_cfg.mask_score_thr``; it is kept when ``softmax(cls)[k, i] >
        cls_score_thr`` and the mask has ``>= min_npoint`` points (and at least one). Then
        (ours) class-agnostic greedy mask NMS at ``test_cfg.nms_iou`` (None = official: no NMS).
        ``sem2ins_classes`` are not produced here (see :meth:`predict`).

        Returns (H hypotheses as SparseMasks over the batch's points, entries sorted by
        hypothesis then point; (H,) int64 instance class; (H,) float32 score), by descending
        score (ties: class, then proposal order).
        """
        cfg = self.test_cfg
        num_cls = self.instance_classes
        device = refined.cls_logits.device
        cls = refined.cls_logits.float().softmax(1)[:, :num_cls]
        score = cls * refined.iou_scores.float()[:, :num_cls].clamp(0, 1)
        candidate = cls > float(cfg["cls_score_thr"])  # (K, I): ~1-3 classes per proposal
        for c in self.sem2ins_classes:
            if 0 <= c < num_cls:
                candidate[:, c] = False
        # Only the (entry, class) pairs of candidate classes are read: testing all E x I mask
        # logits cost more than the rest of the refinement stage on a 100k-point room.
        pair_proposal, pair_class = torch.nonzero(candidate, as_tuple=True)  # proposal-major
        per_proposal = candidate.sum(1)
        pair_start = torch.cumsum(per_proposal, 0) - per_proposal
        entry_mask = masks.mask_idx.long()
        entry, within = expand_counts(per_proposal[entry_mask])
        pair = pair_start[entry_mask[entry]] + within
        member = refined.mask_logits[entry, pair_class[pair]] > float(cfg["mask_score_thr"])
        entry, pair = entry[member], pair[member]
        size = torch.bincount(pair, minlength=pair_class.numel())
        # At least one point even with min_npoint 0: an empty instance helps nobody.
        kept_pair = size >= max(int(cfg["min_npoint"]), 1)
        # Hypotheses are numbered class-major, then by proposal, as the official loop makes them.
        class_major = torch.argsort(pair_class * masks.num_masks + pair_proposal)
        class_major = class_major[kept_pair[class_major]]
        hyp_of_pair = torch.full((pair_class.numel(),), -1, dtype=torch.int64, device=device)
        num_hyp = class_major.numel()
        hyp_of_pair[class_major] = torch.arange(num_hyp, device=device)
        hyp_class, hyp_proposal = pair_class[class_major], pair_proposal[class_major]
        hyp = hyp_of_pair[pair]
        used = hyp >= 0
        hyp, point = hyp[used], masks.point_idx.long()[entry[used]]
        scores = score[hyp_proposal, hyp_class]
        nms_iou = cfg.get("nms_iou", DEFAULT_NMS_IOU)
        if nms_iou is not None and num_hyp:
            picked = ops.mask_nms(SparseMasks(hyp, point, num_hyp), scores, float(nms_iou))
        else:
            picked = torch.sort(scores, descending=True, stable=True).indices
        # Renumber the picked hypotheses 0..H'-1 in pick order; entries sorted by them, then point.
        rank = torch.full((num_hyp,), -1, dtype=torch.int64, device=device)
        rank[picked] = torch.arange(picked.numel(), device=device)
        new_hyp = rank[hyp]
        kept = new_hyp >= 0
        new_hyp, point = new_hyp[kept], point[kept]
        order = torch.argsort(new_hyp * (int(point.max()) + 1 if point.numel() else 1) + point)
        return (SparseMasks(new_hyp[order], point[order], int(picked.numel())), hyp_class[picked],
                scores[picked])

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> list[Proposals]:
        """Instances of every cloud of ``batch`` (the caller has set eval mode).

        Returns one :class:`Proposals` per batch item: point indices local to the item, class ids
        in the semantic class table, scores in [0, 1] (descending), ``point_class`` = semantic
        argmax (int32), ``timing_ms`` (``backbone``, ``grouping``, ``refinement``: wall time of
        the whole batch). ``sem2ins_classes`` give one instance per item (argmax mask, score 1),
        after the others. Deterministic.
        """
        device = batch["feats"].device
        clock = proposal_ops.StageClock(device)
        out = self.forward_batch(batch)
        semantic_logits = out["semantic_logits"]
        point_class = semantic_logits.argmax(1)
        timing = {"backbone": clock.lap()}
        empty = SparseMasks(torch.zeros(0, dtype=torch.int64, device=device),
                            torch.zeros(0, dtype=torch.int64, device=device), 0)
        masks = empty
        if not self.semantic_only:
            masks = self.grouping(semantic_logits.softmax(-1), self.grouping_offsets(out),
                                  batch["xyz"], batch["batch_offsets"])
        timing["grouping"] = clock.lap()
        hyps, hyp_class = empty, torch.zeros(0, dtype=torch.int64, device=device)
        hyp_score = torch.zeros(0, dtype=torch.float32, device=device)
        if masks.num_masks:
            refined = self._refine(masks, out["point_feats"], batch["xyz"], None)
            hyps, hyp_class, hyp_score = self.get_instances(masks, refined)
        timing["refinement"] = clock.lap()
        return self._split_by_item(batch, hyps, hyp_class, hyp_score, point_class, timing)

    def _split_by_item(self, batch: dict[str, Any], hyps: SparseMasks, hyp_class: torch.Tensor,
                       hyp_score: torch.Tensor, point_class: torch.Tensor,
                       timing: dict[str, float]) -> list[Proposals]:
        """Per-item :class:`Proposals` from batch-wide hypotheses, plus the ``sem2ins_classes``
        instances (official: each item's argmax mask of the class, score 1)."""
        results = proposal_ops.split_per_item(hyps, hyp_class + self.num_stuff_classes,
                                              hyp_score, point_class, batch["batch_offsets"],
                                              timing)
        proposal_ops.add_semantic_instances(results, self.sem2ins_classes,
                                            self.num_stuff_classes)
        return results


class HAIS(PointwiseHeads, InstanceNetwork):
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

        self.build_pointwise_heads(channels, semantic_classes)
        if not semantic_only:
            self.intra_ins_unet = UBlock([channels, 2 * channels], block_reps=2, indice_key_id=11)
            self.intra_ins_outputlayer = spconv.SparseSequential(norm_fn(channels), nn.ReLU())
            self.score_linear = nn.Linear(channels, 1)
            self.mask_linear = MLP(channels, 1, norm=False)


__all__ = ["HAIS", "SoftGroup"]
