"""ISBNet (CVPR 2023): the network with the official module names (official-models.md §3.1).

Everything is per **voxel** until the very end (ISBNet maps to points only when it writes the
masks). Implemented: backbone + the point-wise heads (:meth:`ISBNet.forward_pointwise`):

* ``semantic_linear`` → logits over ``semantic_classes``;
* ``offset_linear`` → offset to the instance centroid (metres);
* ``offset_vertices_linear`` → offsets to the axis-aligned box min (0:3) and max (3:6);
* ``box_conf_linear`` → box confidence (a raw logit, trained as box IoU, used only in the loss).

The instance stage (absent when ``semantic_only``) has its modules and parameter shapes here so
the released checkpoints load, but no forward yet: ``point_aggregator1/2`` (PointNet++-style
local aggregators around farthest-point samples), ``inst_shared_mlp`` and the class / confidence /
box heads (3DETR ``GenericMLP``s), ``mask_tower`` (mask features) and ``inst_mask_head`` (the
controller generating the dynamic-convolution parameters). These instance-head BatchNorms keep
PyTorch's default ``eps = 1e-5``, unlike the backbone's 1e-4.

``criterion.empty_weight`` exists only in checkpoints written by the official ``train.py``;
``checkpoint.py`` ignores ``criterion.*``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..config import ConfigError
from .backbone import MLP, InstanceNetwork

DEFAULT_INSTANCE_HEAD_CFG = {"num_dyco_layer": 3, "dec_dim": 128, "n_sample_pa1": 2048,
                             "n_queries": 256, "radius_scale": 1, "radius": 0.4, "neighbor": 32}
DEFAULT_TEST_CFG = {"x4_split": False, "logit_thresh": 0.0, "score_thresh": 0.2,
                    "npoint_thresh": 100, "type_nms": "matrix", "topk": 100}
INSTANCE_HEAD_KEYS = frozenset(DEFAULT_INSTANCE_HEAD_CFG)


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
    keep the official names and values (research/official-models.md §3.3).
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
                 fixed_modules: Sequence[str] = ()) -> None:
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
        self.fixed_modules = list(fixed_modules)

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


__all__ = ["GenericMLP", "ISBNet", "LocalAggregator", "dynamic_conv_param_count"]
