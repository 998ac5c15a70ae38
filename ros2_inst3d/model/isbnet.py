"""ISBNet (CVPR 2023): the network with the official module names (docs/official-models.md §3.1).

Everything is per **voxel** until the very end (ISBNet maps to points only when it writes the
masks). Implemented: backbone + the point-wise heads (:meth:`ISBNet.forward_pointwise`):

* ``semantic_linear`` → logits over ``semantic_classes``;
* ``offset_linear`` → offset to the instance centroid (metres);
* ``offset_vertices_linear`` → offsets to the axis-aligned box min (0:3) and max (3:6);
* ``box_conf_linear`` → box confidence (a raw logit, trained as box IoU, used only in the loss).

The instance stage (absent when ``semantic_only``; module names and shapes official, so the
released checkpoints load): ``point_aggregator1/2`` (PointNet++-style local aggregators around
farthest-point samples), ``inst_shared_mlp`` and the class / confidence / box heads (3DETR
``GenericMLP``s), ``mask_tower`` (mask features) and ``inst_mask_head`` (the controller
generating the dynamic-convolution parameters). These instance-head BatchNorms keep PyTorch's
default ``eps = 1e-5``, unlike the backbone's 1e-4. :meth:`ISBNet.forward_train` and
:meth:`ISBNet.predict` run it (docs/official-models.md §3.2) with these differences:

* superpoints are per voxel (live clouds have no mesh segments), so ``use_spp_pool`` pools
  nothing and the masks are over voxels;
* IA-FPS (``ops.instance_aware_fps``) measures distances on the predicted centroids (xyz +
  offset), so queries spread over instances, and the test-time chunks continue from the
  candidates that no earlier mask covers, indexed by the candidates' own voxels (the official
  code's coverage test indexes through a mismatched id table, docs/official-models.md §3.2 step 6);
  the official code's pointnet2 FPS quirk (points with |xyz|^2 <= 1e-3 never picked) is not
  reproduced;
* the dynamic convolution runs in chunks of voxels (bounded memory for any cloud size);
* training: the mask losses see a random subset of ``train_cfg.mask_sample_voxels`` voxels per
  cloud; loss weights, the matching cost and the background weight are ours (``train_cfg``),
  the official criterion is not in docs/official-models.md; the object voxels the aggregators see
  during training are the predicted ones plus the labelled thing voxels;
* test: the voxel-count filter is ``npoint_thresh`` scaled by the cloud's voxels per point
  (official: the same number for voxels and points, at 2 cm voxels holding ~1 point each);
  S3DIS ``x4_split`` is not implemented.

``criterion.empty_weight`` exists only in checkpoints written by the official ``train.py``;
``checkpoint.py`` ignores ``criterion.*``.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .. import ops
from ..config import ConfigError
from ..ops import SparseMasks
from . import proposal_ops
from .losses import aabb_giou, aabb_iou, dice_cost, dice_loss, one_to_many_match
from .backbone import MLP, InstanceNetwork, voxels_to_points
from .proposals import Proposals

DEFAULT_INSTANCE_HEAD_CFG = {"num_dyco_layer": 3, "dec_dim": 128, "n_sample_pa1": 2048,
                             "n_queries": 256, "radius_scale": 1, "radius": 0.4, "neighbor": 32}
# nms_iou is ours, not official, and off by default (None = the official output): matrix NMS
# only decays scores and the top-300 (query, class) pairs repeat one query's mask under several
# classes, so one object comes out as several overlapping instances; SoftGroup's 0.3 removes
# them, but on the shipped weights it cost AP (20 val rooms: agnostic AP50 0.160 -> 0.138,
# class-aware 0.110 -> 0.067; README, ISBNet, MTML and feature fusion).
DEFAULT_TEST_CFG = {"x4_split": False, "logit_thresh": 0.0, "score_thresh": 0.2,
                    "npoint_thresh": 100, "type_nms": "matrix", "topk": 100, "nms_iou": None}
INSTANCE_HEAD_KEYS = frozenset(DEFAULT_INSTANCE_HEAD_CFG)
# Ours (the official training code's criterion is not reproduced key for key): loss weights,
# the one-to-many duplication, the background class weight of the classification loss (DETR's
# eos_coef), the voxels the mask losses see per item (a fresh random subset each step, as
# Mask2Former's sampled-point mask loss: with per-voxel superpoints an item has 10^4-10^5 voxels
# where ScanNet has a few hundred mesh superpoints; 0 = all), and the element budget of one
# dynamic-convolution chunk.
DEFAULT_TRAIN_CFG = {"dup_gt": 4, "mask_sample_voxels": 4096, "cost_mask": 1.0, "cost_cls": 1.0,
                     "bg_weight": 0.1,
                     "w_cls": 1.0, "w_mask_bce": 1.0, "w_mask_dice": 1.0, "w_box": 1.0,
                     "w_mask_score": 1.0, "w_point_box": 1.0, "w_box_conf": 1.0}
DYCO_CHUNK_ELEMENTS = 2**25  # (query, voxel, channel) activations per chunk: 128 MiB float32
OFFICIAL_ITERATIVE_CHUNKS = (192, 128, 64)  # test-time IA-FPS chunks at n_queries 256
TOPK_HYPOTHESES = 300  # official get_instance: top-300 (query, class) scores before NMS
MATRIX_NMS_SIGMA = 2.0


class ConvBNAct(nn.Sequential):
    """PointNet++ ``pt_utils`` block: ``conv`` (1x1, no bias) → ``bn.bn`` → ``activation``.

    The doubly nested ``bn.bn`` name is the official one. ``dims`` 1 → Conv1d/BatchNorm1d,
    2 → Conv2d/BatchNorm2d.
    """

    def __init__(self, in_channels: int, out_channels: int, dims: int, activation: bool) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        norm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        self.add_module("conv", conv(in_channels, out_channels, kernel_size=1, bias=False))
        self.add_module("bn", nn.Sequential())
        self.bn.add_module("bn", norm(out_channels))
        if activation:
            self.add_module("activation", nn.ReLU(inplace=True))


class SharedMLP(nn.Sequential):
    """Stack of 1x1 Conv2d blocks named ``layer0, layer1, ...`` over (B, C, n, k) neighbourhoods."""

    def __init__(self, channels: Sequence[int], activation_last: bool = True) -> None:
        super().__init__()
        for i in range(len(channels) - 1):
            act = activation_last or i < len(channels) - 2
            self.add_module(f"layer{i}", ConvBNAct(channels[i], channels[i + 1], 2, act))


class LocalAggregator(nn.Module):
    """ISBNet's local aggregation around sampled points (``point_aggregator1/2``).

    mlp_dim D: channels of the incoming features; the output has 2D channels. Grouped inputs
    carry 6 geometric channels (relative xyz / radius and box-size differences) before the
    features: ``mlp_module1`` [D+6 → D → 2D], ``mlp_module2`` [2D+6 → 2D] (no activation),
    ``mlp_module3`` [2D → 8D → 2D] as Conv1d, then ``ReLU(x + identity)``.
    n_sample: points sampled (FPS); radius (m) / n_neighbor: first ball query; n_neighbor_post:
    second grouping among the samples (radius 2x).
    """

    def __init__(self, mlp_dim: int, n_sample: int, radius: float, n_neighbor: int,
                 n_neighbor_post: int) -> None:
        super().__init__()
        self.n_sample = int(n_sample)
        self.radius = float(radius)
        self.radius_post = 2.0 * float(radius)
        self.n_neighbor = int(n_neighbor)
        self.n_neighbor_post = int(n_neighbor_post)
        d = int(mlp_dim)
        self.mlp_module1 = SharedMLP([d + 6, d, 2 * d])
        self.mlp_module2 = SharedMLP([2 * d + 6, 2 * d], activation_last=False)
        self.mlp_module3 = nn.Sequential(ConvBNAct(2 * d, 8 * d, 1, activation=True),
                                         ConvBNAct(8 * d, 2 * d, 1, activation=False))
        self.skip_act = nn.ReLU()

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor, box_dims: torch.Tensor,
                query: torch.Tensor) -> torch.Tensor:
        """Features of the queries, aggregated from their neighbourhoods (one batch item).

        xyz: (n, 3) metres, feats: (n, D), box_dims: (n, 3) predicted box sizes (metres) of the
        source points; query: (m,) int64 rows of the source points (the samples). First grouping:
        the first ``n_neighbor`` sources by index within ``radius`` of each query (padded with the
        first hit, the official ``ballquery_batchflat``), input ``[(x_nbr - x_q) / radius,
        |dims_nbr - dims_q|, f_nbr]`` → ``mlp_module1`` → max over neighbours = identity (2D);
        second grouping among the queries themselves (``radius_post``, ``n_neighbor_post``) over
        the identity features → ``mlp_module2`` → max → ``mlp_module3`` →
        ``ReLU(x + identity)``.
        Returns (m, 2D).
        """
        q_xyz, q_dims = xyz[query], box_dims[query]
        nbr = padded_ball_query(xyz, q_xyz, self.radius, self.n_neighbor)
        identity = self._group(self.mlp_module1, xyz, feats, box_dims, nbr, q_xyz, q_dims,
                               self.radius)
        post = padded_ball_query(q_xyz, q_xyz, self.radius_post, self.n_neighbor_post)
        x = self._group(self.mlp_module2, q_xyz, identity, q_dims, post, q_xyz, q_dims,
                        self.radius_post)
        x = self.mlp_module3(x.T[None])[0].T
        return self.skip_act(x + identity)

    @staticmethod
    def _group(mlp: nn.Module, xyz: torch.Tensor, feats: torch.Tensor, box_dims: torch.Tensor,
               nbr: torch.Tensor, q_xyz: torch.Tensor, q_dims: torch.Tensor,
               radius: float) -> torch.Tensor:
        grouped = torch.cat([(xyz[nbr] - q_xyz[:, None]) / radius,
                             (box_dims[nbr] - q_dims[:, None]).abs(), feats[nbr]], dim=-1)
        out = mlp(grouped.permute(2, 0, 1)[None])  # (1, C', m, k)
        return out.amax(dim=3)[0].T


def _box_dims(box: torch.Tensor) -> torch.Tensor:
    """(n, 3) sizes (max - min) of (n, 6) ``[min xyz, max xyz]`` boxes."""
    return box[:, 3:] - box[:, :3]


def padded_ball_query(xyz: torch.Tensor, query: torch.Tensor, radius: float,
                      num_neighbors: int) -> torch.Tensor:
    """(m, num_neighbors) int64 rows of ``xyz`` within ``radius`` of each query: the first hits
    by index (``ops.ball_query``), lists shorter than ``num_neighbors`` padded with their first
    hit (ISBNet's ``ballquery_batchflat``; a query without hits gets row 0). One batch item."""
    index, ptr = ops.ball_query(xyz.detach().float().contiguous(), radius, num_neighbors,
                                query=query.detach().float().contiguous())
    count = ptr[1:] - ptr[:-1]
    slot = torch.arange(num_neighbors, device=ptr.device)
    pos = ptr[:-1, None] + torch.where(slot[None, :] < count[:, None], slot[None, :], 0)
    if index.numel() == 0:
        return torch.zeros(query.shape[0], num_neighbors, dtype=torch.int64, device=xyz.device)
    pos = pos.clamp(max=index.numel() - 1)
    out = index[pos]
    return torch.where(count[:, None] > 0, out, torch.zeros_like(out)).to(xyz.device)


class GenericMLP(nn.Module):
    """3DETR's ``GenericMLP`` with 1x1 Conv1d layers, as ISBNet configures it.

    ``layers``: per hidden width ``Conv1d (no bias) → BN → ReLU``, then ``Conv1d(out)`` with
    bias,
    followed by BN and ReLU when ``output_norm_act`` (``inst_shared_mlp``).
    """

    def __init__(self, input_dim: int, hidden_dims: Sequence[int], output_dim: int,
                 output_norm_act: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = int(input_dim)
        for width in hidden_dims:
            layers += [nn.Conv1d(prev, width, 1, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
            prev = int(width)
        layers.append(nn.Conv1d(prev, output_dim, 1, bias=True))
        if output_norm_act:
            layers += [nn.BatchNorm1d(output_dim), nn.ReLU()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _conv_bn_relu_1d(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(channels, channels, 1, bias=False), nn.BatchNorm1d(channels),
                         nn.ReLU())


def dynamic_conv_param_count(mask_dim_out: int, num_dyco_layer: int) -> int:
    """Length of the controller's output: weights then biases of the dynamic mask convolution.

    Input per (query, point) is ``6 + mask_dim_out`` (relative position, box-size difference,
    mask features); 3 layers go ``38 → 32 → 16 → 1`` and 2 layers ``38 → 32 → 1`` for
    ``mask_dim_out = 32`` (1793 and 1281 parameters, as in the released checkpoints).
    """
    if num_dyco_layer == 3:
        dims = [mask_dim_out + 6, mask_dim_out, mask_dim_out // 2, 1]
    elif num_dyco_layer == 2:
        dims = [mask_dim_out + 6, mask_dim_out, 1]
    else:
        raise ConfigError(f"instance_head_cfg.num_dyco_layer must be 2 or 3, got {num_dyco_layer}")
    weights = sum(a * b for a, b in itertools.pairwise(dims))
    return weights + sum(dims[1:])


class ISBNet(InstanceNetwork):
    """ISBNet's network; arguments are the keys of ``config/models/isbnet_*.yaml``.

    in_channels / with_coords / channels / num_blocks / semantic_classes / instance_classes /
    semantic_only / voxel_size as for :class:`~ros2_inst3d.model.softgroup.SoftGroup`. The rest
    keep the official names and values (docs/official-models.md §3.3).
    """

    name = "isbnet"

    def __init__(self, in_channels: int = 3, channels: int = 32, num_blocks: int = 7,
                 semantic_classes: int = 20, instance_classes: int = 18,
                 semantic_only: bool = False, with_coords: bool = True, voxel_size: float = 0.02,
                 sem2ins_classes: Sequence[int] = (), ignore_label: int = -100,
                 semantic_weight: Sequence[float] | bool | None = None,
                 use_spp_pool: bool = True, filter_bg_thresh: float = 0.1,
                 iterative_sampling: bool = True, mask_dim_out: int = 32,
                 instance_head_cfg: dict[str, Any] | None = None,
                 test_cfg: dict[str, Any] | None = None,
                 train_cfg: dict[str, Any] | None = None) -> None:
        super().__init__(in_channels, channels, num_blocks, semantic_classes, instance_classes,
                         semantic_only, with_coords, voxel_size)
        head_cfg = copy.deepcopy(DEFAULT_INSTANCE_HEAD_CFG)
        unknown = set(instance_head_cfg or {}) - INSTANCE_HEAD_KEYS
        if unknown:
            raise ConfigError(f"unknown instance_head_cfg keys {sorted(unknown)}; known: "
                             f"{sorted(INSTANCE_HEAD_KEYS)}")
        head_cfg.update(instance_head_cfg or {})
        self.sem2ins_classes = [int(c) for c in sem2ins_classes]
        self.ignore_label = int(ignore_label)
        self.semantic_weight = (None if not semantic_weight  # the official configs write False
                                else [float(w) for w in semantic_weight])
        self.use_spp_pool = bool(use_spp_pool)
        self.filter_bg_thresh = float(filter_bg_thresh)
        self.iterative_sampling = bool(iterative_sampling)
        self.mask_dim_out = int(mask_dim_out)
        self.instance_head_cfg = head_cfg
        self.test_cfg = copy.deepcopy(DEFAULT_TEST_CFG if test_cfg is None else dict(test_cfg))
        unknown = set(train_cfg or {}) - set(DEFAULT_TRAIN_CFG)
        if unknown:
            raise ConfigError(f"unknown train_cfg keys {sorted(unknown)}; known: "
                              f"{sorted(DEFAULT_TRAIN_CFG)}")
        self.train_cfg = {**DEFAULT_TRAIN_CFG, **dict(train_cfg or {})}

        self.semantic_linear = MLP(channels, semantic_classes, norm=True)
        self.offset_linear = MLP(channels, 3, norm=True)
        self.offset_vertices_linear = MLP(channels, 6, norm=True)
        self.box_conf_linear = MLP(channels, 1, norm=True)
        if semantic_only:
            return
        dec_dim = int(head_cfg["dec_dim"])
        radius_scale = float(head_cfg["radius_scale"])
        neighbor = int(head_cfg["neighbor"])
        self.point_aggregator1 = LocalAggregator(
            channels, n_sample=head_cfg["n_sample_pa1"], radius=0.2 * radius_scale,
            n_neighbor=neighbor, n_neighbor_post=2 * neighbor)
        self.point_aggregator2 = LocalAggregator(
            2 * channels, n_sample=head_cfg["n_queries"], radius=0.4 * radius_scale,
            n_neighbor=neighbor, n_neighbor_post=neighbor)
        self.inst_shared_mlp = GenericMLP(4 * channels, [4 * channels], dec_dim,
                                          output_norm_act=True)
        self.inst_sem_head = GenericMLP(dec_dim, [dec_dim, dec_dim], instance_classes + 1)
        self.inst_conf_head = GenericMLP(dec_dim, [dec_dim, dec_dim], 1)
        self.inst_box_head = GenericMLP(dec_dim, [dec_dim, dec_dim], 6)
        self.mask_tower = nn.Sequential(*[_conv_bn_relu_1d(channels) for _ in range(3)],
                                        nn.Conv1d(channels, mask_dim_out, 1))
        num_gen_params = dynamic_conv_param_count(self.mask_dim_out,
                                                  int(head_cfg["num_dyco_layer"]))
        self.inst_mask_head = nn.Sequential(_conv_bn_relu_1d(dec_dim), _conv_bn_relu_1d(dec_dim),
                                            nn.Conv1d(dec_dim, num_gen_params, 1))

    def forward_pointwise(self, voxel_feats: torch.Tensor, voxel_coords: torch.Tensor,
                          spatial_shape: Sequence[int], voxel_coords_float: torch.Tensor,
                          batch_size: int = 1) -> dict[str, torch.Tensor]:
        """Backbone and the four point-wise heads, all per voxel.

        voxel_feats / voxel_coords / spatial_shape: see
        :meth:`~ros2_inst3d.model.backbone.SparseUNetBackbone.sparse_input`.
        voxel_coords_float: (M, 3) float32, metres — mean xyz of each voxel's points, in the
        frame of the xyz features.

        Returns (M, ·) float32: ``voxel_feats`` (C), ``semantic_logits`` (K, pre-softmax),
        ``centroid_offset`` (3), ``corners_offset`` (6: to box min, then max), ``box_conf``
        (M,) raw, ``box_preds`` (6) = ``corners_offset + [xyz, xyz]`` (box min and max, metres).
        """
        feats = self.forward_backbone(voxel_feats, voxel_coords, spatial_shape, batch_size)
        centres = torch.as_tensor(voxel_coords_float, device=feats.device, dtype=feats.dtype)
        if centres.shape != (feats.shape[0], 3):
            raise ValueError(f"voxel_coords_float must be ({feats.shape[0]}, 3) (one mean xyz per "
                             f"voxel), got {tuple(centres.shape)}")
        corners = self.offset_vertices_linear(feats)
        return {"voxel_feats": feats,
                "semantic_logits": self.semantic_linear(feats),
                "centroid_offset": self.offset_linear(feats),
                "corners_offset": corners,
                "box_conf": self.box_conf_linear(feats).squeeze(-1),
                "box_preds": corners + centres.repeat(1, 2)}

    # ------------------------------------------------------------------------------------------
    # Instance stage (official forward_aggregator / forward_head / mask_heads_forward)
    # ------------------------------------------------------------------------------------------

    def _voxel_pointwise(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """:meth:`forward_pointwise` on a collated batch, plus ``voxel_xyz`` (M, 3)."""
        p2v = batch["point_to_voxel"].long()
        num_voxels = batch["coords"].shape[0]
        voxel_xyz = proposal_ops.voxel_mean_xyz(batch["xyz"], p2v, num_voxels)
        out = self.forward_pointwise(batch["feats"], batch["coords"],
                                     [int(v) for v in batch["spatial_shape"]], voxel_xyz,
                                     int(batch["batch_size"]))
        out["voxel_xyz"] = voxel_xyz.to(out["voxel_feats"].device)
        return out

    def forward_batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per-point view of the voxel heads (what the trainer's point-wise validation reads):
        ``point_feats`` (N, C), ``semantic_logits`` (N, K) of each point's voxel and ``offsets``
        (N, 3) metres from the point to its voxel's predicted centroid."""
        out = self._voxel_pointwise(batch)
        p2v = batch["point_to_voxel"].long().to(out["voxel_feats"].device)
        centre = out["voxel_xyz"] + out["centroid_offset"]
        return {"point_feats": out["voxel_feats"][p2v],
                "semantic_logits": out["semantic_logits"][p2v],
                "offsets": centre[p2v] - batch["xyz"].to(centre)}

    def _object_voxels(self, semantic_logits: torch.Tensor) -> torch.Tensor:
        """(M,) bool: voxels whose softmax gives some thing class ``>= filter_bg_thresh``
        (official background filter, per voxel = per-voxel superpoints)."""
        prob = semantic_logits.detach().softmax(-1)[:, self.num_stuff_classes:]
        return (prob >= self.filter_bg_thresh).any(1)

    def _query_heads(self, feats: torch.Tensor, q_xyz: torch.Tensor) -> dict[str, torch.Tensor]:
        """Official ``forward_head`` on (Q, 4C) query features at (Q, 3) locations: ``cls_logits``
        (Q, I+1), ``conf`` (Q,) raw mask-IoU score, ``box`` (Q, 6) min/max metres, ``params``
        (Q, P) dynamic-convolution parameters."""
        x = self.inst_shared_mlp(feats.T[None])
        return {"cls_logits": self.inst_sem_head(x)[0].T,
                "conf": self.inst_conf_head(x)[0, 0],
                "box": self.inst_box_head(x)[0].T + q_xyz.repeat(1, 2),
                "params": self.inst_mask_head(x)[0].T}

    def _dyco_layers(self) -> list[tuple[int, int]]:
        c = self.mask_dim_out
        if int(self.instance_head_cfg["num_dyco_layer"]) == 3:
            dims = [c + 6, c, c // 2, 1]
        else:
            dims = [c + 6, c, 1]
        return list(itertools.pairwise(dims))

    def mask_logits(self, params: torch.Tensor, q_xyz: torch.Tensor, q_box: torch.Tensor,
                    mask_feats: torch.Tensor, v_xyz: torch.Tensor, v_box: torch.Tensor
                    ) -> torch.Tensor:
        """(Q, M) box-aware dynamic convolution (official ``mask_heads_forward``).

        params: (Q, P) controller output, split ``[W0, W1, (W2), b0, b1, (b2)]`` with weights
        ``[in, out]`` row-major; input per (query, voxel): ``[q_xyz - v_xyz (3), |q_dims -
        v_dims| (3), mask_feats (mask_dim_out)]`` (dims = box max - min); ReLU between layers,
        no bias on the last. Runs in chunks of voxels so one chunk holds at most
        ``DYCO_CHUNK_ELEMENTS`` activations; with gradients each chunk is recomputed in the
        backward pass (activation checkpointing), so training memory is bounded too.
        """
        layers = self._dyco_layers()
        q = params.shape[0]
        weights, biases, at = [], [], 0
        for a, b in layers:
            weights.append(params[:, at:at + a * b].reshape(q, a, b))
            at += a * b
        for _, b in layers:
            biases.append(params[:, at:at + b])
            at += b
        q_dims = q_box[:, 3:] - q_box[:, :3]
        v_dims = v_box[:, 3:] - v_box[:, :3]
        # The first layer's mask-feature columns are shared by every query: one (Q*b, F) x (F, n)
        # product instead of a (Q, 6 + F, n) input tensor.
        w0 = weights[0]
        first_out = w0.shape[2]
        w0_feats = w0[:, 6:].transpose(1, 2).reshape(q * first_out, -1)

        def run(xyz: torch.Tensor, dims: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
            n = xyz.shape[0]
            geometry = torch.cat([q_xyz[:, :, None] - xyz.T[None],
                                  (q_dims[:, :, None] - dims.T[None]).abs()], dim=1)  # (Q, 6, n)
            x = torch.einsum("qab,qan->qbn", w0[:, :6], geometry)
            x = x + (w0_feats @ feats.T).view(q, first_out, n)
            for i in range(1, len(weights)):
                x = torch.relu(x + biases[i - 1][:, :, None])
                x = torch.einsum("qab,qan->qbn", weights[i], x)
            return x[:, 0]

        m = v_xyz.shape[0]
        width = 6 + max(b for _, b in layers)
        chunk = max(1, DYCO_CHUNK_ELEMENTS // max(1, q * width))
        if m <= chunk:
            return run(v_xyz, v_dims, mask_feats)
        pieces = []
        for c0 in range(0, m, chunk):
            args = (v_xyz[c0:c0 + chunk], v_dims[c0:c0 + chunk], mask_feats[c0:c0 + chunk])
            if torch.is_grad_enabled():
                pieces.append(torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False))
            else:
                pieces.append(run(*args))
        return torch.cat(pieces, dim=1)

    def _aggregate_pa1(self, out: dict[str, torch.Tensor], rows: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """``point_aggregator1`` over the object voxels ``rows`` (R,) of one item: FPS samples
        (S,) (rows of ``rows``) and their (S, 2C) features."""
        xyz = out["voxel_xyz"][rows].float().contiguous()
        dims = _box_dims(out["box_preds"][rows].detach())
        num = min(int(self.point_aggregator1.n_sample), rows.numel())
        sample = ops.farthest_point_sample(xyz, num)
        feats = self.point_aggregator1(xyz, out["voxel_feats"][rows], dims, sample)
        return sample, feats

    def _instance_queries(self, out: dict[str, torch.Tensor], rows: torch.Tensor,
                          pa1_sample: torch.Tensor, pa1_feats: torch.Tensor,
                          query: torch.Tensor) -> dict[str, torch.Tensor]:
        """``point_aggregator2`` + heads for the queries ``query`` (rows of ``pa1_sample``)."""
        src = rows[pa1_sample]
        xyz = out["voxel_xyz"][src].float().contiguous()
        dims = _box_dims(out["box_preds"][src].detach())
        feats = self.point_aggregator2(xyz, pa1_feats, dims, query)
        heads = self._query_heads(feats, xyz[query])
        heads["xyz"] = xyz[query]
        return heads

    def _item_masks(self, out: dict[str, torch.Tensor], mask_feats: torch.Tensor,
                    voxels: torch.Tensor | slice, heads: dict[str, torch.Tensor]) -> torch.Tensor:
        """(Q, V) mask logits of the queries over ``voxels`` (rows or a slice)."""
        return self.mask_logits(heads["params"], heads["xyz"], heads["box"], mask_feats[voxels],
                                out["voxel_xyz"][voxels], out["box_preds"][voxels].detach())

    def _ia_points(self, out: dict[str, torch.Tensor], src: torch.Tensor) -> torch.Tensor:
        """Where IA-FPS measures distance: the predicted centroids (xyz + offset)."""
        return (out["voxel_xyz"][src] + out["centroid_offset"][src].detach()).float().contiguous()

    # ------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------

    def forward_train(self, batch: dict[str, Any], epoch: int = 0
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (scalar, with grad) and its parts as floats.

        Everything is per voxel; a voxel's labels are its first point's. Point-wise losses:
        semantic CE, centroid-offset L1 (voxels with an instance), box corners L1 + (1 - gIoU)
        against the instance's axis-aligned box, and the box confidence (MSE to the IoU of the
        voxel's predicted box). Instance stage (unless ``semantic_only``), per batch item:
        aggregator 1 on the object voxels (predicted by ``filter_bg_thresh`` or labelled as a
        thing), ``n_queries`` queries by IA-FPS at once (the paper samples all training queries
        in one go), heads and box-aware dynamic convolution over all the item's voxels, then the
        one-to-many matching (cost ``cost_mask * dice + cost_cls * -p(class)``, each GT
        ``dup_gt`` times) and the losses: class CE (unmatched = background, weight
        ``bg_weight``), mask BCE + dice, box L1 + (1 - gIoU), mask-score MSE (the conf head
        against the IoU of the predicted mask, sigmoid > 0.5). Weights ``train_cfg.w_*``.
        Parts: those losses and ``num_queries``, ``num_matched``. epoch is unused.
        """
        del epoch
        cfg = self.train_cfg
        out = self._voxel_pointwise(batch)
        device = out["voxel_feats"].device
        p2v = batch["point_to_voxel"].long()
        first = proposal_ops.voxel_first_point(p2v, out["voxel_feats"].shape[0])
        v_sem = batch["semantic"].long()[first]
        v_inst = batch["instance"].long()[first]
        inst_cls = batch["instance_class"].long() - self.num_stuff_classes
        num_inst = int(batch["instance_num_points"].numel())
        # GT axis-aligned boxes from the points of each instance.
        has = batch["instance"] >= 0
        p_inst = batch["instance"].long()[has]
        p_xyz = batch["xyz"].float()[has]
        gt_box = torch.cat([ops.segment_reduce(p_xyz, p_inst, num_inst, "min"),
                            ops.segment_reduce(p_xyz, p_inst, num_inst, "max")], dim=1)
        gt_center = batch["instance_center"].float()

        losses: dict[str, torch.Tensor] = {}
        logits = out["semantic_logits"]
        if bool((v_sem != self.ignore_label).any()):
            weight = (None if self.semantic_weight is None else
                      torch.tensor(self.semantic_weight, dtype=logits.dtype, device=device))
            losses["semantic_loss"] = F.cross_entropy(logits, v_sem, weight=weight,
                                                      ignore_index=self.ignore_label)
        else:
            losses["semantic_loss"] = logits.sum() * 0
        pos = v_inst >= 0
        if bool(pos.any()):
            vi = v_inst[pos]
            vx = out["voxel_xyz"][pos]
            losses["offset_loss"] = (out["centroid_offset"][pos] - (gt_center[vi] - vx)
                                     ).abs().sum(1).mean()
            box_pred = out["box_preds"][pos]
            box_l1 = (box_pred - gt_box[vi]).abs().sum(1).mean()
            giou = aabb_giou(box_pred, gt_box[vi])
            losses["point_box_loss"] = cfg["w_point_box"] * (box_l1 + (1 - giou).mean())
            iou_target = aabb_iou(box_pred.detach(), gt_box[vi])
            losses["box_conf_loss"] = cfg["w_box_conf"] * F.mse_loss(out["box_conf"][pos],
                                                                     iou_target)
        else:
            zero = out["centroid_offset"].sum() * 0
            losses.update(offset_loss=zero, point_box_loss=zero, box_conf_loss=zero)
        stats = {"num_queries": 0.0, "num_matched": 0.0}
        if not self.semantic_only:
            inst_losses = self._instance_losses(out, batch, v_sem, v_inst, inst_cls, gt_box,
                                                stats)
            losses.update(inst_losses)
        total = sum(losses.values())
        parts = {k: float(v.detach()) for k, v in losses.items()}
        parts.update(stats)
        return total, parts

    def _instance_losses(self, out: dict[str, torch.Tensor], batch: dict[str, Any],
                         v_sem: torch.Tensor, v_inst: torch.Tensor, inst_cls: torch.Tensor,
                         gt_box: torch.Tensor, stats: dict[str, float]
                         ) -> dict[str, torch.Tensor]:
        cfg = self.train_cfg
        device = out["voxel_feats"].device
        mask_feats = self.mask_tower(out["voxel_feats"].T[None])[0].T
        object_voxel = self._object_voxels(out["semantic_logits"])
        object_voxel |= (v_sem >= self.num_stuff_classes) & (v_inst >= 0)
        voxel_offsets = batch["voxel_batch_offsets"].long().tolist()
        num_bg = self.instance_classes
        class_weight = torch.ones(num_bg + 1, device=device)
        class_weight[num_bg] = float(cfg["bg_weight"])
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in (
            "cls_loss", "mask_bce_loss", "mask_dice_loss", "box_loss", "mask_score_loss")}
        anchor = mask_feats.sum() * 0  # keeps every part attached when an item has no queries
        for b in range(len(voxel_offsets) - 1):
            v0, v1 = voxel_offsets[b], voxel_offsets[b + 1]
            rows = v0 + torch.nonzero(object_voxel[v0:v1]).squeeze(1)
            if rows.numel() == 0:
                continue
            pa1_sample, pa1_feats = self._aggregate_pa1(out, rows)
            src = rows[pa1_sample]
            query, _ = ops.instance_aware_fps(
                self._ia_points(out, src), int(self.instance_head_cfg["n_queries"]),
                torch.ones(src.numel(), dtype=torch.bool, device=device))
            heads = self._instance_queries(out, rows, pa1_sample, pa1_feats, query)
            stats["num_queries"] += float(query.numel())
            item_inst = v_inst[v0:v1]
            ids = torch.unique(item_inst[item_inst >= 0])
            budget = int(cfg["mask_sample_voxels"])
            voxels = torch.arange(v0, v1, device=device)
            if 0 < budget < voxels.numel():
                voxels = v0 + torch.sort(torch.randperm(v1 - v0)[:budget].to(device)).values
            logits = self._item_masks(out, mask_feats, voxels, heads)  # (Q, V)
            item_inst = v_inst[voxels]
            # Foreground GT instances of this item, as masks over the sampled voxels.
            ids = ids[inst_cls[ids] >= 0]
            labels = torch.full((query.numel(),), num_bg, dtype=torch.int64, device=device)
            if ids.numel():
                gt_masks = (item_inst[None, :] == ids[:, None]).float()  # (G, Mb)
                prob = heads["cls_logits"].detach().softmax(-1)
                cost = (float(cfg["cost_mask"]) * dice_cost(logits.detach(), gt_masks)
                        - float(cfg["cost_cls"]) * prob[:, inst_cls[ids]])
                q_idx, g_idx = one_to_many_match(cost, int(cfg["dup_gt"]))
                labels[q_idx] = inst_cls[ids[g_idx]]
                matched_logits, target = logits[q_idx], gt_masks[g_idx]
                parts["mask_bce_loss"].append(F.binary_cross_entropy_with_logits(
                    matched_logits, target, reduction="none").mean(1).mean())
                parts["mask_dice_loss"].append(dice_loss(matched_logits, target).mean())
                box, box_t = heads["box"][q_idx], gt_box[ids[g_idx]]
                parts["box_loss"].append((box - box_t).abs().sum(1).mean()
                                         + (1 - aabb_giou(box, box_t)).mean())
                with torch.no_grad():
                    pred = (matched_logits > 0).float()
                    inter = (pred * target).sum(1)
                    union = pred.sum(1) + target.sum(1) - inter
                    mask_iou = torch.where(union > 0, inter / union.clamp_min(1), 0 * union)
                parts["mask_score_loss"].append(F.mse_loss(heads["conf"][q_idx], mask_iou))
                stats["num_matched"] += float(q_idx.numel())
            parts["cls_loss"].append(F.cross_entropy(heads["cls_logits"], labels,
                                                     weight=class_weight))
        weights = {"cls_loss": cfg["w_cls"], "mask_bce_loss": cfg["w_mask_bce"],
                   "mask_dice_loss": cfg["w_mask_dice"], "box_loss": cfg["w_box"],
                   "mask_score_loss": cfg["w_mask_score"]}
        return {k: float(weights[k]) * (torch.stack(v).mean() + anchor if v else anchor)
                for k, v in parts.items()}

    # ------------------------------------------------------------------------------------------
    # Inference
    # ------------------------------------------------------------------------------------------

    def _query_chunks(self) -> list[int]:
        """Test-time IA-FPS chunk sizes: official [192, 128, 64] at ``n_queries`` 256, scaled to
        this model's ``n_queries``; one chunk of ``n_queries`` without ``iterative_sampling``."""
        n = int(self.instance_head_cfg["n_queries"])
        if not self.iterative_sampling:
            return [n]
        return [max(1, round(c * n / 256)) for c in OFFICIAL_ITERATIVE_CHUNKS]

    def _predict_item(self, out: dict[str, torch.Tensor], mask_feats: torch.Tensor, v0: int,
                      v1: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Kept queries of one item: (cls probs (Q, I+1), conf (Q,), mask logits (Q, Mb),
        query voxel rows (Q,))."""
        device = mask_feats.device
        empty = (torch.zeros(0, self.instance_classes + 1, device=device),
                 torch.zeros(0, device=device), torch.zeros(0, v1 - v0, device=device),
                 torch.zeros(0, dtype=torch.int64, device=device))
        rows = v0 + torch.nonzero(self._object_voxels(out["semantic_logits"][v0:v1])).squeeze(1)
        if rows.numel() == 0:
            return empty
        pa1_sample, pa1_feats = self._aggregate_pa1(out, rows)
        src = rows[pa1_sample]
        points = self._ia_points(out, src)
        remaining = torch.ones(src.numel(), dtype=torch.bool, device=device)
        seeds = torch.zeros(0, dtype=torch.int64, device=device)
        kept: list[tuple[torch.Tensor, ...]] = []
        for chunk in self._query_chunks():
            query, _ = ops.instance_aware_fps(points, chunk, remaining, seeds=seeds)
            if query.numel() == 0:
                break
            seeds = torch.cat([seeds, query])
            heads = self._instance_queries(out, rows, pa1_sample, pa1_feats, query)
            prob = heads["cls_logits"].softmax(-1)
            thing = prob.argmax(1) != self.instance_classes
            if not bool(thing.any()):
                continue
            logits = self._item_masks(out, mask_feats, slice(v0, v1),
                                      {k: v[thing] for k, v in heads.items()})
            kept.append((prob[thing], heads["conf"][thing], logits, src[query[thing]]))
            # Candidates covered by a predicted mask leave the pool (the official quirk of
            # indexing over object-voxel ids is fixed: these are the candidates' own voxels).
            remaining &= ~(logits[:, src - v0] > 0).any(0)
        if not kept:
            return empty
        return tuple(torch.cat(parts) for parts in zip(*kept))  # type: ignore[return-value]

    def get_instances(self, prob: torch.Tensor, conf: torch.Tensor, logits: torch.Tensor,
                      min_voxels: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Official ``get_instance`` on one item's kept queries, at voxel level.

        score = ``sqrt(softmax(cls)[:, :-1] * clamp(conf, 0, 1))``; the top 300 (query, class)
        pairs; mask = ``logit >= test_cfg.logit_thresh``; masks with fewer than ``min_voxels``
        voxels dropped; class-aware matrix NMS (Gaussian, sigma 2) on
        the scores; (ours) class-agnostic greedy mask NMS at ``test_cfg.nms_iou`` on the decayed
        scores (None, the default = official: none); the ``test_cfg.topk`` best decayed scores kept. Returns (H, Mb) bool masks,
        (H,) int64 instance class, (H,) float32 score, by descending score.
        """
        cfg = self.test_cfg
        device = logits.device
        none = (torch.zeros(0, logits.shape[1], dtype=torch.bool, device=device),
                torch.zeros(0, dtype=torch.int64, device=device),
                torch.zeros(0, dtype=torch.float32, device=device))
        if prob.shape[0] == 0:
            return none
        num_cls = self.instance_classes
        scores = torch.sqrt(prob[:, :num_cls] * conf.clamp(0, 1)[:, None]).reshape(-1)
        top = torch.topk(scores, min(TOPK_HYPOTHESES, scores.numel())).indices
        query, cls = top // num_cls, top % num_cls
        scores = scores[top]
        masks = logits[query] >= float(cfg["logit_thresh"])
        big = masks.sum(1) >= min_voxels
        masks, cls, scores = masks[big], cls[big], scores[big]
        if masks.shape[0] == 0:
            return none
        if cfg.get("type_nms", "matrix") == "matrix":
            scores = ops.matrix_nms(masks, scores, cls, sigma=MATRIX_NMS_SIGMA)
            order = torch.sort(scores, descending=True, stable=True).indices
        else:  # "standard": greedy class-aware NMS (S3DIS config, IoU 0.2)
            order = ops.mask_nms(masks, scores, float(cfg.get("nms_thresh", 0.2)), labels=cls)
        nms_iou = cfg.get("nms_iou")
        if nms_iou is not None:  # ours: class-agnostic, on the (decayed) scores
            order = order[ops.mask_nms(masks[order], scores[order], float(nms_iou))]
        order = order[:int(cfg["topk"])]
        return masks[order], cls[order], scores[order].float()

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> list[Proposals]:
        """Instances of every cloud of ``batch`` (the caller has set eval mode).

        Per item: the test-time pipeline of official-models.md §3.2 with per-voxel superpoints
        (background filter, aggregator 1, IA-FPS in chunks, each chunk's covered candidates
        leaving the pool, dynamic convolution, :meth:`get_instances`), then voxel masks become
        point masks through ``point_to_voxel``, and masks below ``npoint_thresh`` points are
        dropped. Returns one :class:`Proposals` per item (class ids in the semantic table,
        ``point_class`` = semantic argmax of the point's voxel, ``timing_ms``: ``backbone``,
        ``grouping`` (aggregators + IA-FPS + heads + masks), ``refinement`` (NMS + masks to
        points)). Deterministic.
        """
        device = batch["feats"].device
        clock = proposal_ops.StageClock(device)
        out = self._voxel_pointwise(batch)
        p2v = batch["point_to_voxel"].long().to(device)
        point_class = voxels_to_points(out["semantic_logits"].argmax(1), p2v)
        timing = {"backbone": clock.lap(), "grouping": 0.0, "refinement": 0.0}
        voxel_offsets = batch["voxel_batch_offsets"].long().tolist()
        point_offsets = batch["batch_offsets"].long().tolist()
        mask_parts: list[SparseMasks] = []
        classes, scores = [], []
        mask_feats = None if self.semantic_only else \
            self.mask_tower(out["voxel_feats"].T[None])[0].T
        for b in range(len(voxel_offsets) - 1):
            if mask_feats is None:
                break
            v0, v1 = voxel_offsets[b], voxel_offsets[b + 1]
            prob, conf, logits, _ = self._predict_item(out, mask_feats, v0, v1)
            timing["grouping"] += clock.lap()
            p0, p1 = point_offsets[b], point_offsets[b + 1]
            # Official: npoint_thresh voxels, then points (2 cm voxels hold about one point);
            # here the voxel bound is the same physical size at this cloud's points per voxel.
            min_points = max(1, int(self.test_cfg["npoint_thresh"]))
            min_voxels = max(1, math.ceil(min_points * (v1 - v0) / max(1, p1 - p0) - 1e-6))
            masks, cls, score = self.get_instances(prob, conf, logits, min_voxels)
            point_masks = masks[:, p2v[p0:p1] - v0]  # (H, Nb)
            big = point_masks.sum(1) >= min_points
            hyp, point = torch.nonzero(point_masks[big], as_tuple=True)
            num = int(big.sum())
            mask_parts.append(SparseMasks(hyp, point + p0, num))
            classes.append(cls[big])
            scores.append(score[big])
            timing["refinement"] += clock.lap()
        masks = proposal_ops.concat_masks(mask_parts, device=device)
        cls = torch.cat(classes) if classes else torch.zeros(0, dtype=torch.int64, device=device)
        score = torch.cat(scores) if scores else torch.zeros(0, device=device)
        results = proposal_ops.split_per_item(masks, cls + self.num_stuff_classes, score,
                                              point_class, batch["batch_offsets"], timing)
        proposal_ops.add_semantic_instances(results, self.sem2ins_classes,
                                            self.num_stuff_classes)
        return results


__all__ = ["GenericMLP", "ISBNet", "LocalAggregator", "dynamic_conv_param_count"]
