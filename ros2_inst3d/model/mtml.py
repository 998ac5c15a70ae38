"""MTML (Lahoud et al., ICCV 2019): 3D instance segmentation via multi-task metric learning.

The paper's network is a dense 3D CNN on 10 cm voxels; here its heads sit on the sparse U-Net
every other method shares (``backbone.py``), per voxel (a voxel's labels are its first
point's):

* ``semantic_linear`` → semantic logits (the paper takes classes from a separate semantic
  network; one head on the same backbone gives every instance a class);
* ``embedding_linear`` → an ``embedding_dim`` feature embedding, trained with the
  discriminative loss (variance term within ``delta_v``, distance term beyond ``2 delta_d``,
  regularisation ``gamma_reg``; paper eq. 1-4, weights 1, 1, 0.001);
* ``direction_linear`` → a 3-vector towards the instance centre, trained with the cosine
  direction loss (eq. 5). Joint loss = CE + ``alpha_fe`` L_FE + ``alpha_dir`` L_dir (paper:
  0.5 and 1).

Inference (paper §3.2 post-processing): mean-shift (``ops.mean_shift``) on the embeddings of the
voxels predicted as thing classes, once per bandwidth of ``bandwidths``; every cluster is a
proposal, scored by its direction consistency (mean cosine between the predicted directions and
the vectors to the cluster's centre, clamped at 0) times its embedding coherence (fraction of
its embeddings within ``delta_v`` of their mean); class = the most frequent predicted semantic
class among its voxels; class-agnostic greedy mask NMS at ``nms_iou``. The paper's "connected
components for suggested splitting": every cluster that falls apart in space (voxels linked
within ``split_radius``) also proposes its parts, scored the same way, so NMS keeps whichever
the direction and embedding scores prefer. The embedding alone does not know where a voxel is:
two distant chairs can share a mode, and bandwidths wide enough to keep one chair whole merge
them. Ours: with ``xyz_weight`` the mean-shift runs on the embedding and the scaled voxel
position together, so a mode is also compact in space. Not reproduced: the object-size prior of
the paper's final score (tried: no gain, README).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .. import ops
from ..ops import SparseMasks
from . import proposal_ops
from .backbone import MLP, InstanceNetwork, voxels_to_points
from .losses import direction_loss, discriminative_loss
from .proposals import Proposals


class MTML(InstanceNetwork):
    """MTML's heads on the shared sparse U-Net; arguments are the keys of
    ``config/models/mtml_*.yaml``.

    in_channels / with_coords / channels / num_blocks / semantic_classes / instance_classes
    (the last ones; instances of the first ``semantic_classes - instance_classes`` are never
    formed) / semantic_only / voxel_size (metres) as for SoftGroup. embedding_dim: width of the
    instance embedding. delta_v / delta_d: the discriminative loss margins (embedding units;
    De Brabandere et al.'s 0.5 / 1.5). gamma_reg, alpha_fe, alpha_dir: loss weights (paper
    0.001, 0.5, 1). bandwidths: mean-shift bandwidths, each giving one proposal set (embedding
    units). max_seeds / mean_shift_iters: mean-shift cost caps. min_points: smallest instance,
    points. nms_iou: mask NMS threshold. score_thresh: proposals scoring at most this are
    dropped. split_radius: metres; voxels of one cluster closer than this are connected, and a
    cluster with several connected parts also proposes each part (0 = no split proposals).
    split_factor / class_length (ours, 0 = off): clusters longer than ``split_factor`` typical
    objects of their class also propose their object-sized pieces (SoftGroup's ``grouping_cfg``
    keys of the same names; :meth:`split_long_clusters`). xyz_weight (ours, 0 = off): embedding
    units per metre of the voxel position appended to the embedding for mean-shift
    (:meth:`mean_shift`).
    """

    name = "mtml"

    def __init__(self, in_channels: int = 3, channels: int = 16, num_blocks: int = 5,
                 semantic_classes: int = 20, instance_classes: int = 18,
                 semantic_only: bool = False, with_coords: bool = True, voxel_size: float = 0.05,
                 ignore_label: int = -100, embedding_dim: int = 8, delta_v: float = 0.5,
                 delta_d: float = 1.5, gamma_reg: float = 0.001, alpha_fe: float = 0.5,
                 alpha_dir: float = 1.0, bandwidths: Sequence[float] = (0.5, 0.75, 1.0),
                 max_seeds: int = 256, mean_shift_iters: int = 15, min_points: int = 40,
                 nms_iou: float = 0.3, score_thresh: float = 0.05,
                 split_radius: float = 0.0, split_factor: float = 0.0,
                 class_length: Sequence[float] | None = None, xyz_weight: float = 0.0) -> None:
        super().__init__(in_channels, channels, num_blocks, semantic_classes, instance_classes,
                         semantic_only, with_coords, voxel_size)
        if not 0 < instance_classes <= semantic_classes:
            raise ValueError(f"instance_classes ({instance_classes}) must be 1..semantic_classes "
                             f"({semantic_classes})")
        if not 0 < delta_v < delta_d:
            raise ValueError(f"MTML needs 0 < delta_v ({delta_v}) < delta_d ({delta_d})")
        if not bandwidths or min(float(b) for b in bandwidths) <= 0:
            raise ValueError(f"bandwidths must be positive numbers, got {list(bandwidths)}")
        self.ignore_label = int(ignore_label)
        self.embedding_dim = int(embedding_dim)
        self.delta_v, self.delta_d = float(delta_v), float(delta_d)
        self.gamma_reg, self.alpha_fe, self.alpha_dir = (float(gamma_reg), float(alpha_fe),
                                                         float(alpha_dir))
        self.bandwidths = [float(b) for b in bandwidths]
        self.max_seeds = int(max_seeds)
        self.mean_shift_iters = int(mean_shift_iters)
        self.min_points = int(min_points)
        self.nms_iou = float(nms_iou)
        self.score_thresh = float(score_thresh)
        if split_radius < 0:
            raise ValueError(f"split_radius must be >= 0 metres, got {split_radius}")
        self.split_radius = float(split_radius)
        if xyz_weight < 0:
            raise ValueError(f"xyz_weight must be >= 0 (embedding units per metre), "
                             f"got {xyz_weight}")
        self.xyz_weight = float(xyz_weight)
        self.split_factor = float(split_factor)
        self.class_length = proposal_ops.class_lengths(split_factor, class_length,
                                                       semantic_classes)
        self.semantic_linear = MLP(channels, semantic_classes, norm=True)
        if not semantic_only:
            self.embedding_linear = MLP(channels, self.embedding_dim, norm=True)
            self.direction_linear = MLP(channels, 3, norm=True)

    def forward_batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per point (the trainer's point-wise validation): ``point_feats`` (N, C) and
        ``semantic_logits`` (N, K) of each point's voxel. MTML predicts no offsets."""
        out = self.voxel_heads(batch)
        p2v = batch["point_to_voxel"].long().to(out["voxel_feats"].device)
        return {"point_feats": out["voxel_feats"][p2v],
                "semantic_logits": out["semantic_logits"][p2v]}

    def voxel_heads(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per voxel of a ``collate`` batch: ``voxel_feats`` (M, C), ``semantic_logits`` (M, K),
        ``embedding`` (M, E), ``direction`` (M, 3, unnormalised), ``voxel_xyz`` (M, 3) mean xyz,
        metres."""
        p2v = batch["point_to_voxel"].long()
        num_voxels = batch["coords"].shape[0]
        feats = self.forward_backbone(batch["feats"], batch["coords"],
                                      [int(v) for v in batch["spatial_shape"]],
                                      int(batch["batch_size"]))
        out = {"voxel_feats": feats, "semantic_logits": self.semantic_linear(feats),
               "voxel_xyz": proposal_ops.voxel_mean_xyz(batch["xyz"], p2v,
                                                        num_voxels).to(feats.device)}
        if not self.semantic_only:
            out["embedding"] = self.embedding_linear(feats)
            out["direction"] = self.direction_linear(feats)
        return out

    def forward_train(self, batch: dict[str, Any], epoch: int = 0
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (scalar, with grad) and its parts: ``semantic_loss`` (CE), and unless
        ``semantic_only`` ``var_loss``, ``dist_loss``, ``reg_loss`` (each batch item's
        discriminative terms, averaged over items; weighted by ``alpha_fe``, reg also by
        ``gamma_reg``) and ``dir_loss`` (weighted by ``alpha_dir``). epoch is unused."""
        del epoch
        out = self.voxel_heads(batch)
        logits = out["semantic_logits"]
        first = proposal_ops.voxel_first_point(batch["point_to_voxel"], logits.shape[0])
        v_sem = batch["semantic"].long()[first]
        v_inst = batch["instance"].long()[first]
        losses: dict[str, torch.Tensor] = {}
        if bool((v_sem != self.ignore_label).any()):
            losses["semantic_loss"] = F.cross_entropy(logits, v_sem, ignore_index=self.ignore_label)
        else:
            losses["semantic_loss"] = logits.sum() * 0
        if not self.semantic_only:
            # Only thing-class instances are embedded (wall/floor instances never are).
            thing = v_inst >= 0
            inst_cls = batch["instance_class"].long()
            thing &= inst_cls[v_inst.clamp_min(0)] >= self.num_stuff_classes
            v_inst = torch.where(thing, v_inst, torch.full_like(v_inst, -1))
            offsets = batch["voxel_batch_offsets"].long().tolist()
            terms = []
            for b in range(len(offsets) - 1):
                v0, v1 = offsets[b], offsets[b + 1]
                terms.append(discriminative_loss(out["embedding"][v0:v1], v_inst[v0:v1],
                                                 self.delta_v, self.delta_d, gamma=1.0))
            var, dist, reg = (torch.stack(t).mean() for t in zip(*terms))
            losses["var_loss"] = self.alpha_fe * var
            losses["dist_loss"] = self.alpha_fe * dist
            losses["reg_loss"] = self.alpha_fe * self.gamma_reg * reg
            centre = batch["instance_center"].float()
            target = centre[v_inst.clamp_min(0)] - out["voxel_xyz"]
            losses["dir_loss"] = self.alpha_dir * direction_loss(out["direction"], target, v_inst)
        total = sum(losses.values())
        return total, {k: float(v.detach()) for k, v in losses.items()}

    def mean_shift(self, embedding: torch.Tensor, xyz: torch.Tensor) -> list[torch.Tensor]:
        """One clustering ((V,) ids, -1 none) per bandwidth of the rows with ``embedding``
        (V, E) at ``xyz`` (V, 3) metres: mean-shift on the embedding, with ``xyz_weight`` > 0
        on the embedding and ``xyz_weight`` x xyz side by side (ours: a mode must then also be
        compact in space, so distant objects that share an embedding mode stay apart)."""
        space = embedding.float()
        if self.xyz_weight > 0:
            space = torch.cat([space, self.xyz_weight * xyz.to(space)], 1)
        space = space.contiguous()
        return [ops.mean_shift(space, bandwidth, max_iters=self.mean_shift_iters,
                               max_seeds=self.max_seeds) for bandwidth in self.bandwidths]

    def score_clusters(self, cluster: torch.Tensor, embedding: torch.Tensor,
                       direction: torch.Tensor, xyz: torch.Tensor, semantic: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(K,) score and (K,) instance class of clusters 0..K-1 of ``cluster`` (V,) (-1 none)
        over rows with ``embedding`` (V, E), ``direction`` (V, 3), ``xyz`` (V, 3) metres and
        predicted semantic class ``semantic`` (V,).

        score = clamp(mean cos(direction, centre - xyz), 0) x fraction of the cluster's
        embeddings within ``delta_v`` of their mean; class = the most frequent predicted thing
        class (ties: the lower one).
        """
        k = int(cluster.max()) + 1 if cluster.numel() and int(cluster.max()) >= 0 else 0
        device = embedding.device
        if k == 0:
            return torch.zeros(0, device=device), torch.zeros(0, dtype=torch.int64, device=device)
        keep = cluster >= 0
        cid = cluster[keep]
        centre = ops.segment_reduce(xyz[keep], cid, k, "mean")
        to_centre = F.normalize(centre[cid] - xyz[keep], dim=1, eps=1e-8)
        cosine = (F.normalize(direction[keep], dim=1, eps=1e-8) * to_centre).sum(1)
        consistency = ops.segment_reduce(cosine, cid, k, "mean").clamp_min(0)
        mean_emb = ops.segment_reduce(embedding[keep], cid, k, "mean")
        inside = ((embedding[keep] - mean_emb[cid]).norm(dim=1) < self.delta_v).float()
        coherence = ops.segment_reduce(inside, cid, k, "mean")
        cls = (self.cluster_classes(cluster, semantic) - self.num_stuff_classes).clamp(
            0, self.instance_classes - 1)
        return consistency * coherence, cls

    def cluster_classes(self, cluster: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        """(K,) the most frequent ``semantic`` class (V,) among the rows of each cluster
        0..K-1 of ``cluster`` (V,) (-1 none); ties: the lower class."""
        keep = cluster >= 0
        k = int(cluster.max()) + 1 if keep.any() else 0
        votes = torch.zeros(k, self.semantic_classes, device=cluster.device)
        votes.index_put_((cluster[keep].long(), semantic[keep].long()),
                         torch.ones(int(keep.sum()), device=cluster.device), accumulate=True)
        return votes.argmax(1)

    def split_clusters(self, clusters: Sequence[torch.Tensor], xyz: torch.Tensor
                       ) -> list[torch.Tensor]:
        """The spatial parts of ``clusters`` (each (V,) ids, -1 none) over voxels at ``xyz``
        (V, 3) metres: one clustering per input whose clusters fall apart into more parts
        (voxels of one cluster closer than ``split_radius`` are connected).

        Spatial only: also splitting by predicted class (tried, session 8) cut objects along
        semantic noise, and those fragments outscored the whole objects (6 validation rooms:
        51 against 58 of 150 objects found at IoU 0.5)."""
        parts = []
        for cluster in clusters:
            if cluster.numel() == 0 or int(cluster.max()) < 0:
                continue
            split = ops.cluster_points(xyz.float().contiguous(), cluster, self.split_radius,
                                       min_size=1, max_neighbors=64)
            if int(split.max()) > int(cluster.max()):
                parts.append(split)
        return parts

    def split_long_clusters(self, clusters: Sequence[torch.Tensor], semantic: torch.Tensor,
                            xyz: torch.Tensor) -> list[torch.Tensor]:
        """The pieces of the clusters too long for one object of their class (each cluster's
        class: :meth:`cluster_classes`), one clustering per input that has any
        (:func:`proposal_ops.split_long_masks` at ``split_factor`` / ``class_length``)."""
        parts = []
        for cluster in clusters:
            if cluster.numel() == 0 or int(cluster.max()) < 0:
                continue
            masks = proposal_ops.clusters_to_masks(cluster)
            pieces = proposal_ops.split_long_masks(masks, self.cluster_classes(cluster, semantic),
                                                   xyz, self.class_length, self.split_factor)
            if pieces.num_masks:
                labels = torch.full_like(cluster, -1)
                labels[pieces.point_idx] = pieces.mask_idx.to(labels.dtype)
                parts.append(labels)
        return parts

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> list[Proposals]:
        """Instances of every cloud of ``batch`` (eval mode): per item, mean-shift proposals of
        every bandwidth over the thing voxels, scored (:meth:`score_clusters`), masks mapped to
        points, those under ``min_points`` or scoring ``<= score_thresh`` dropped, then
        class-agnostic mask NMS at ``nms_iou``. Returns one :class:`Proposals` per item (by
        descending score; ``timing_ms``: ``backbone``, ``grouping`` (mean-shift), ``refinement``
        (scoring + NMS))."""
        device = batch["feats"].device
        clock = proposal_ops.StageClock(device)
        out = self.voxel_heads(batch)
        p2v = batch["point_to_voxel"].long().to(device)
        semantic = out["semantic_logits"].argmax(1)
        point_class = voxels_to_points(semantic, p2v)
        timing = {"backbone": clock.lap(), "grouping": 0.0, "refinement": 0.0}
        parts: list[SparseMasks] = []
        classes, scores = [], []
        v_off = batch["voxel_batch_offsets"].long().tolist()
        p_off = batch["batch_offsets"].long().tolist()
        for b in range(len(v_off) - 1):
            if self.semantic_only:
                break
            v0, v1 = v_off[b], v_off[b + 1]
            p0, p1 = p_off[b], p_off[b + 1]
            rows = v0 + torch.nonzero(semantic[v0:v1] >= self.num_stuff_classes).squeeze(1)
            if rows.numel() == 0:
                continue
            emb = out["embedding"][rows].float().contiguous()
            clusters = self.mean_shift(emb, out["voxel_xyz"][rows])
            if self.split_radius > 0:
                clusters += self.split_clusters(clusters, out["voxel_xyz"][rows])
            if self.split_factor > 0:
                clusters += self.split_long_clusters(clusters, semantic[rows],
                                                     out["voxel_xyz"][rows])
            timing["grouping"] += clock.lap()
            # Voxel → item point masks: point p of the item is in cluster c when its voxel is.
            voxel_slot = torch.full((v1 - v0,), -1, dtype=torch.int64, device=device)
            voxel_slot[rows - v0] = torch.arange(rows.numel(), device=device)
            point_slot = voxel_slot[p2v[p0:p1] - v0]
            on = point_slot >= 0
            item_masks, item_cls, item_score = [], [], []
            for cluster in clusters:
                score, cls = self.score_clusters(cluster, emb, out["direction"][rows],
                                                 out["voxel_xyz"][rows], semantic[rows])
                if score.numel() == 0:
                    continue
                point_cluster = torch.full((p1 - p0,), -1, dtype=torch.int64, device=device)
                point_cluster[on] = cluster[point_slot[on]]
                masks = proposal_ops.clusters_to_masks(point_cluster)
                sizes = proposal_ops.mask_sizes(masks)
                good = torch.nonzero((sizes >= self.min_points)
                                     & (score[:masks.num_masks] > self.score_thresh)).squeeze(1)
                if good.numel() == 0:
                    continue
                item_masks.append(proposal_ops.select_masks(masks, good))
                item_cls.append(cls[good])
                item_score.append(score[good])
            if item_masks:
                masks = proposal_ops.concat_masks(item_masks, device=device)
                cls, score = torch.cat(item_cls), torch.cat(item_score)
                keep = ops.mask_nms(masks, score, self.nms_iou)
                masks = proposal_ops.select_masks(masks, keep)
                parts.append(SparseMasks(masks.mask_idx, masks.point_idx + p0, masks.num_masks))
                classes.append(cls[keep])
                scores.append(score[keep])
            timing["refinement"] += clock.lap()
        masks = proposal_ops.concat_masks(parts, device=device)
        cls = torch.cat(classes) if classes else torch.zeros(0, dtype=torch.int64, device=device)
        score = torch.cat(scores) if scores else torch.zeros(0, device=device)
        return proposal_ops.split_per_item(masks, cls + self.num_stuff_classes, score,
                                           point_class, batch["batch_offsets"], timing)


__all__ = ["MTML"]
