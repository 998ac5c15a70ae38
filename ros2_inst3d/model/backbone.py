"""The sparse-convolution U-Net shared by PointGroup, HAIS, SoftGroup and ISBNet.

Module and parameter names are the official ones (docs/official-models.md §1), so the
released checkpoints load with ``strict=True``: ``input_conv`` → ``unet`` (a recursive
:class:`UBlock`) → ``output_layer``. The sparse convolutions are spconv 2.x modules; their
weights use spconv 2's ``[out, kx, ky, kz, in]`` layout (``checkpoint.py`` converts spconv 1
files).

Numerics the official checkpoints depend on, all reproduced here because the modules *are*
spconv's (checked against ``shared/reference/*_pointwise.npz`` by ``test/test_backbone.py``):

* SubMConv3d is a correlation over the 3x3x3 neighbourhood in ``(x, y, z)`` index order;
* the k=2/s=2 down convolution drops voxels at coordinate ``S - 1`` when a level's size ``S`` is
  odd, and the paired inverse convolution gives them a zero decoder contribution;
* skip connections concatenate ``[skip, decoder]``; every BatchNorm uses ``eps = 1e-4``;
* sparse convolutions keep the voxel order of their input, so per-voxel outputs line up with the
  input rows and ``feats[point_to_voxel]`` maps them back to points.

spconv's CPU kernels give wrong, run-to-run different results with more than one torch thread
(reference/README.md §2.4: errors up to 0.9). :func:`single_threaded_spconv` runs the sparse part
on CPU with one thread, one call at a time. A pure-torch gather/GEMM/scatter implementation of
the same convolutions (deterministic with any thread count) was measured and dropped: on 2 cores,
for the ScanNet U-Net on 104k voxels, it took 1.2 s with 2 threads (2.2 s with 1) against 1.2 s
for spconv with 1 thread, and 35-70 s against 2-3.5 s while other processes kept the cores busy
(many small parallel regions stall in OpenMP barriers). Session 7 built it again (kernel maps once
per indice key, per-offset index_select/mm/index_add_; equal to spconv to 1e-6 with 1 and 2
threads) and measured the same: 1.03-1.18x spconv's CPU time with one thread on the shipped
16-channel U-Net, 45-52 s per forward with two threads on a busy machine; dropped again. That
work saw spconv 2.3.8 (CPU, one thread) return wrong values, off by up to 0.8 against a dense
conv3d, for one 403-voxel input whose rows were sorted lexicographically, and right ones for the
same voxels shuffled: :func:`voxelize` keeps first-occurrence order, which is not sorted.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any
from contextlib import contextmanager

import spconv.pytorch as spconv
import spconv.pytorch.ops as _spconv_ops
import torch
from spconv.core import ConvAlgo
from spconv.cppconstants import CPU_ONLY_BUILD as SPCONV_CPU_ONLY
from spconv.pytorch.conv import SparseConvolution
from torch import nn

from ..config import ConfigError
from .fusion import fused_input, fused_width, push_from_region

BN_EPS = 1e-4        # backbone, point-wise MLPs, SoftGroup's tiny U-Net (official norm_fn)
BN_MOMENTUM = 0.1

norm_fn = functools.partial(nn.BatchNorm1d, eps=BN_EPS, momentum=BN_MOMENTUM)
"""BatchNorm of the backbone and point-wise heads: ``norm_fn(channels)``."""

_SPCONV_CPU_LOCK = threading.RLock()


class _DropFxTracingNotice(logging.Filter):
    """spconv's ``SparseConvTensor`` is an fx-wrapped function, so every process's first sparse
    tensor makes torch log a notice about ``is_fx_tracing`` meant for fx users, not ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is_fx_tracing will return true" not in record.getMessage()


logging.getLogger("torch.fx._symbolic_trace").addFilter(_DropFxTracingNotice())


def _cuda_stream_or_zero() -> int:
    return torch.cuda.current_stream().cuda_stream if torch.cuda.is_available() else 0


# spconv 2.3.8's indice_conv_backward asks torch for the current CUDA stream even for CPU
# tensors, which raises "Torch not compiled with CUDA enabled" on CPU-only torch, so no sparse
# convolution could be trained on CPU. Its CPU branch never uses the stream; 0 is what spconv's
# forward passes for CPU tensors.
_spconv_ops.get_current_stream = _cuda_stream_or_zero


@contextmanager
def single_threaded_spconv(device: torch.device | str) -> Iterator[None]:
    """Run spconv CPU work inside with one torch thread, one call at a time; no-op off CPU.

    spconv 2.3.x's CPU gather/scatter races with several torch threads (traveller59/spconv#679;
    measured errors up to 0.9). The thread count is process-wide, so the block holds a lock:
    other threads' spconv CPU calls wait, and the previous count is restored on exit (also on
    error). Re-entrant within one thread. The backward pass of spconv ops runs outside any
    forward, so CPU training must call ``loss.backward()`` inside this block too.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    with _SPCONV_CPU_LOCK:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def match_conv_algorithm(network: nn.Module, device: torch.device) -> None:
    """Give every sparse convolution of ``network`` the algorithm that runs on ``device``.

    spconv's CUDA build gives each convolution an implicit-GEMM algorithm, which asserts on CPU
    tensors; its CPU-only build gives them all the native one. Both read the same weight layout,
    so the algorithm can follow the device: the one chosen at construction on CUDA, native on
    CPU. Without this, a CUDA install could not run a model on CPU (``model.device: cpu``, the
    benchmark's CPU baseline), as the first GPU check found.
    """
    for module in network.modules():
        if isinstance(module, SparseConvolution):
            cuda_algo = module.__dict__.setdefault("cuda_algo", module.algo)
            module.algo = cuda_algo if device.type == "cuda" else ConvAlgo.Native


def cuda_usable() -> bool:
    """Whether the sparse U-Net can run on CUDA here: torch sees a GPU and spconv is a CUDA build."""
    return torch.cuda.is_available() and not SPCONV_CPU_ONLY


def resolve_device(device: str | None, setting: str = "model.device") -> torch.device:
    """``torch.device`` for a device setting (``setting`` names it in errors): 'auto' (or empty)
    is CUDA when :func:`cuda_usable`, else CPU; an explicit device that cannot run the sparse
    U-Net is a ConfigError saying why."""
    if not device or device == "auto":
        return torch.device("cuda" if cuda_usable() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"{setting} {device!r} is not a torch device (auto, cpu, cuda, "
                          f"cuda:N): {err}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{setting} {device!r}: torch sees no CUDA device; use 'cpu' or "
                              "'auto'")
        if SPCONV_CPU_ONLY:
            raise ConfigError(f"{setting} {device!r}: the installed spconv is the CPU-only "
                              "wheel; install the spconv-cuXXX wheel matching torch's CUDA, or "
                              "use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{setting} {device!r}: only {torch.cuda.device_count()} CUDA "
                              "device(s) visible")
    elif dev.type != "cpu":
        raise ConfigError(f"{setting} {device!r}: only cpu and cuda devices are supported")
    return dev


class PointwiseSparseConv(spconv.SparseConv3d):
    """Bias-free 1x1x1 sparse convolution computed as ``features @ W.view(out, in).T``.

    Official name ``Custom1x1Subm3d`` (SoftGroup/ISBNet); PointGroup/HAIS use
    ``SubMConv3d(kernel_size=1)``, which computes the same thing with the same weight shape
    ``[out, 1, 1, 1, in]``. It keeps the voxel set and order of its input.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, bias=False)

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        weight = self.weight.view(self.out_channels, self.in_channels)
        return x.replace_feature(torch.mm(x.features, weight.T))


class ResidualBlock(spconv.SparseModule):
    """Pre-activation residual block: ``[BN, ReLU, SubM3, BN, ReLU, SubM3](x) + i_branch(x)``.

    ``i_branch`` is the identity when ``in_channels == out_channels``, else a 1x1 projection.
    State-dict names: ``conv_branch.{0,2,3,5}``, ``i_branch.0``.
    """

    def __init__(self, in_channels: int, out_channels: int, indice_key: str) -> None:
        super().__init__()
        if in_channels == out_channels:
            self.i_branch = spconv.SparseSequential(nn.Identity())
        else:
            self.i_branch = spconv.SparseSequential(PointwiseSparseConv(in_channels, out_channels))
        self.conv_branch = spconv.SparseSequential(
            norm_fn(in_channels), nn.ReLU(),
            spconv.SubMConv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False,
                              indice_key=indice_key),
            norm_fn(out_channels), nn.ReLU(),
            spconv.SubMConv3d(out_channels, out_channels, kernel_size=3, padding=1, bias=False,
                              indice_key=indice_key))

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        out = self.conv_branch(x)
        return out.replace_feature(out.features + self.i_branch(x).features)


class UBlock(nn.Module):
    """One U-Net level and (recursively) everything below it.

    planes: channel count per level, e.g. ``[32, 64, ..., 224]``. Level ``l`` (``indice_key_id``)
    runs ``blocks`` (``block_reps`` residual blocks), then, if a deeper level exists, ``conv``
    (BN, ReLU, k2/s2 SparseConv3d), ``u`` (the next level), ``deconv`` (BN, ReLU,
    SparseInverseConv3d back onto this level's voxels), ``cat([skip, decoder])`` and
    ``blocks_tail`` (first block ``2c → c``).
    """

    def __init__(self, planes: Sequence[int], block_reps: int = 2, indice_key_id: int = 1) -> None:
        super().__init__()
        self.planes = [int(p) for p in planes]
        if not self.planes or min(self.planes) <= 0:
            raise ValueError(f"UBlock needs at least one positive channel count, got {planes}")
        c = self.planes[0]
        subm_key = f"subm{indice_key_id}"
        self.blocks = spconv.SparseSequential(OrderedDict(
            (f"block{i}", ResidualBlock(c, c, subm_key)) for i in range(block_reps)))
        if len(self.planes) > 1:
            c_next = self.planes[1]
            down_key = f"spconv{indice_key_id}"
            self.conv = spconv.SparseSequential(
                norm_fn(c), nn.ReLU(),
                spconv.SparseConv3d(c, c_next, kernel_size=2, stride=2, bias=False,
                                    indice_key=down_key))
            self.u = UBlock(self.planes[1:], block_reps, indice_key_id + 1)
            self.deconv = spconv.SparseSequential(
                norm_fn(c_next), nn.ReLU(),
                spconv.SparseInverseConv3d(c_next, c, kernel_size=2, bias=False,
                                           indice_key=down_key))
            self.blocks_tail = spconv.SparseSequential(OrderedDict(
                (f"block{i}", ResidualBlock(c * (2 - min(i, 1)), c, subm_key))
                for i in range(block_reps)))

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        out = self.blocks(x)
        if len(self.planes) > 1:
            decoded = self.deconv(self.u(self.conv(out)))
            out = out.replace_feature(torch.cat((out.features, decoded.features), dim=1))
            out = self.blocks_tail(out)
        return out


def unet_planes(channels: int, num_blocks: int) -> list[int]:
    """Channels per U-Net level: ``[C, 2C, ..., num_blocks*C]`` (official ``block_channels``)."""
    return [channels * (i + 1) for i in range(num_blocks)]


class MLP(nn.Sequential):
    """``Linear(c, c) → [BN] → ReLU → Linear(c, out)``: SoftGroup/ISBNet's point-wise heads.

    With ``norm=True`` the state-dict indices are ``0`` (Linear), ``1`` (BN, eps 1e-4), ``3``
    (Linear); with ``norm=False`` they are ``0`` and ``2``.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: bool = True,
                 num_layers: int = 2) -> None:
        layers: list[nn.Module] = []
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(in_channels, in_channels))
            if norm:
                layers.append(norm_fn(in_channels))
            layers.append(nn.ReLU())
        layers.append(nn.Linear(in_channels, out_channels))
        super().__init__(*layers)


def voxels_to_points(voxel_values: torch.Tensor, point_to_voxel: torch.Tensor) -> torch.Tensor:
    """(N, ...) rows of ``voxel_values`` (M, ...) for every point; ``point_to_voxel``: (N,) int."""
    index = torch.as_tensor(point_to_voxel, device=voxel_values.device).long()
    if index.ndim != 1:
        raise ValueError(f"point_to_voxel must be (N,), got shape {tuple(index.shape)}")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= voxel_values.shape[0]):
        raise ValueError(f"point_to_voxel indexes voxels {int(index.min())}..{int(index.max())} "
                         f"but there are {voxel_values.shape[0]} voxels")
    return voxel_values[index]


def _as_tensor_coords(voxel_coords: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(M, 4) int32 ``[batch, x, y, z]`` from (M, 3) (batch 0) or (M, 4) voxel indices."""
    coords = torch.as_tensor(voxel_coords)
    if coords.ndim != 2 or coords.shape[1] not in (3, 4):
        raise ValueError(f"voxel_coords must be (M, 3) [x, y, z] or (M, 4) [batch, x, y, z] voxel "
                         f"indices, got shape {tuple(coords.shape)}")
    if coords.dtype.is_floating_point or coords.dtype == torch.bool:
        raise ValueError(f"voxel_coords must be integer voxel indices, got {coords.dtype}")
    if coords.shape[1] == 3:
        if batch_size != 1:
            raise ValueError("(M, 3) voxel_coords carry no batch index; pass (M, 4) "
                             f"[batch, x, y, z] coords for batch_size={batch_size}")
        coords = torch.cat([coords.new_zeros(coords.shape[0], 1), coords], dim=1)
    return coords.to(torch.int32).contiguous()


class SparseUNetBackbone(nn.Module):
    """``input_conv`` → ``unet`` → ``output_layer``: voxel features in, voxel features out.

    The method models (SoftGroup, ISBNet, PointGroup, HAIS) inherit from this class so these
    three modules sit at the top of their state dicts, where the official checkpoints have them.

    in_channels: input feature channels per voxel (6 = rgb + xyz for the indoor models).
    channels: width C of the first level; num_blocks: U-Net levels (C, 2C, ..., num_blocks*C).
    """

    def __init__(self, in_channels: int, channels: int, num_blocks: int) -> None:
        super().__init__()
        if in_channels <= 0 or channels <= 0 or num_blocks <= 0:
            raise ValueError("in_channels, channels and num_blocks must be positive, got "
                             f"{in_channels}, {channels}, {num_blocks}")
        self.in_channels = int(in_channels)
        self.channels = int(channels)
        self.num_blocks = int(num_blocks)
        self.input_conv = spconv.SparseSequential(
            spconv.SubMConv3d(in_channels, channels, kernel_size=3, padding=1, bias=False,
                              indice_key="subm1"))
        self.unet = UBlock(unet_planes(channels, num_blocks), block_reps=2, indice_key_id=1)
        self.output_layer = spconv.SparseSequential(norm_fn(channels), nn.ReLU())

    def sparse_input(self, voxel_feats: torch.Tensor, voxel_coords: torch.Tensor,
                     spatial_shape: Sequence[int], batch_size: int = 1) -> spconv.SparseConvTensor:
        """Check and pack the voxels into a ``SparseConvTensor`` on the model's device.

        voxel_feats: (M, in_channels) float32. voxel_coords: (M, 3) int ``[x, y, z]`` (one cloud)
        or (M, 4) ``[batch, x, y, z]``, non-negative, below ``spatial_shape``. spatial_shape: 3
        ints, the official ``max(coords) + 1`` clipped below at 128 — it decides which voxels the
        strided convolutions drop, so pass the value the input contract computed.
        """
        device = self.input_conv[0].weight.device
        if device.type != self.__dict__.get("conv_algorithm_device"):
            match_conv_algorithm(self, device)
            self.conv_algorithm_device = device.type
        feats = torch.as_tensor(voxel_feats)
        coords = _as_tensor_coords(voxel_coords, batch_size)
        if feats.ndim != 2 or feats.shape[1] != self.in_channels:
            raise ValueError(f"this model expects voxel features of shape (M, {self.in_channels}) "
                             f"(rgb/127.5-1 then xyz when with_coords), got {tuple(feats.shape)}")
        if feats.shape[0] != coords.shape[0]:
            raise ValueError(f"{feats.shape[0]} voxel feature rows but {coords.shape[0]} voxel "
                             "coordinates")
        if not feats.dtype.is_floating_point:
            raise ValueError(f"voxel_feats must be floating point, got {feats.dtype}")
        shape = [int(s) for s in spatial_shape]
        if len(shape) != 3 or min(shape) <= 0:
            raise ValueError(f"spatial_shape must be 3 positive ints, got {list(spatial_shape)}")
        levels = [shape]
        for _ in range(self.num_blocks - 1):  # spconv's k2/s2 output size: (S - 2) // 2 + 1
            levels.append([(s - 2) // 2 + 1 for s in levels[-1]])
        if min(levels[-1]) < 1:
            raise ValueError(
                f"spatial_shape {shape} is too small for a {self.num_blocks}-level U-Net: each "
                f"axis needs at least {2 ** (self.num_blocks - 1)} voxels (the official input "
                "contract clips it below at 128)")
        if coords.shape[0] == 0:
            raise ValueError("no voxels: the sparse U-Net needs at least one occupied voxel")
        low = coords.amin(dim=0)
        high = coords.amax(dim=0)
        if int(low.min()) < 0 or int(high[0]) >= batch_size or any(
                int(high[i + 1]) >= shape[i] for i in range(3)):
            raise ValueError(
                f"voxel coords span [{low.tolist()}, {high.tolist()}] ([batch, x, y, z]) but must "
                f"lie in [0, {[batch_size - 1, *[s - 1 for s in shape]]}]: shift them to start at "
                "0 and use spatial_shape = max(coords) + 1 (at least 128)")
        if device.type == "cuda" and SPCONV_CPU_ONLY:
            raise RuntimeError(
                "the installed spconv is the CPU-only wheel, so the sparse U-Net cannot run on "
                f"{device}: install the spconv-cuXXX wheel matching torch's CUDA "
                f"({torch.version.cuda}), e.g. pip install 'ros2_inst3d[cu121]', or use "
                "model.device: cpu")
        feats = feats.to(device=device, dtype=torch.float32).contiguous()
        return spconv.SparseConvTensor(feats, coords.to(device), shape, int(batch_size))

    def backbone_stages(self, voxel_feats: torch.Tensor, voxel_coords: torch.Tensor,
                        spatial_shape: Sequence[int], batch_size: int = 1
                        ) -> dict[str, torch.Tensor]:
        """(M, ·) float32 voxel features after ``input_conv``, ``unet`` and ``output_layer``.

        Keys are those module names; rows follow the input voxel order. See :meth:`sparse_input`
        for the arguments. On CPU the sparse part runs under :func:`single_threaded_spconv`.
        """
        x = self.sparse_input(voxel_feats, voxel_coords, spatial_shape, batch_size)
        with single_threaded_spconv(x.features.device):
            after_input = self.input_conv(x)
            after_unet = self.unet(after_input)
            out = self.output_layer(after_unet)
        return {"input_conv": after_input.features, "unet": after_unet.features,
                "output_layer": out.features}

    def forward_backbone(self, voxel_feats: torch.Tensor, voxel_coords: torch.Tensor,
                         spatial_shape: Sequence[int], batch_size: int = 1) -> torch.Tensor:
        """(M, C) float32 voxel features after ``output_layer`` (see :meth:`backbone_stages`)."""
        return self.backbone_stages(voxel_feats, voxel_coords, spatial_shape,
                                    batch_size)["output_layer"]


def input_channels(in_channels: int, with_coords: bool) -> int:
    """Channels the U-Net sees: the per-point features plus xyz when ``with_coords``."""
    return int(in_channels) + (3 if with_coords else 0)


class InstanceNetwork(SparseUNetBackbone):
    """The backbone plus the settings every method shares (SoftGroup, HAIS, ISBNet, PointGroup).

    in_channels: per-point input features before xyz (``data.inputs.point_features``: 3 = rgb,
    1 = a constant occupancy channel for clouds without colour); the U-Net sees
    ``input_channels(in_channels, with_coords)``. Heads are added by the subclasses.
    """

    def __init__(self, in_channels: int, channels: int, num_blocks: int, semantic_classes: int,
                 instance_classes: int, semantic_only: bool, with_coords: bool,
                 voxel_size: float) -> None:
        super().__init__(input_channels(in_channels, with_coords), channels, num_blocks)
        self.raw_in_channels = int(in_channels)
        self.with_coords = bool(with_coords)
        self.semantic_classes = int(semantic_classes)
        self.instance_classes = int(instance_classes)
        self.semantic_only = bool(semantic_only)
        self.voxel_size = float(voxel_size)
        # Top-level modules the trainer freezes (``train.freeze_modules``); set from a model
        # config's ``fixed_modules`` by ``registry.build_network``, the same for every method.
        self.fixed_modules: list[str] = []

    @property
    def needs_color(self) -> bool:
        """Whether the input features include the colour (``in_channels`` 3); the xyz-only
        models (``in_channels`` 1) ignore it."""
        from ..data.inputs import COLOR_CHANNELS

        return self.raw_in_channels == COLOR_CHANNELS

    # Whether ``predict`` reads the point-wise outputs of ``forward_batch``, so that the
    # test-time views of a batch (``batch["views"]``, ``model.augmented_views``) reach its
    # grouping. ISBNet and MTML group from their own per-voxel heads.
    averages_views = False

    def forward_batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``forward_pointwise`` of a batch from ``data.batching.collate``: ``point_feats``,
        ``semantic_logits`` (N, K) and ``offsets`` (N, 3) metres, per point of the batch. Models
        with SSAIFF ``fusion`` also get the points' xyz and batch offsets (per-cloud pooling).

        With ``batch["views"]`` (inference only: ``(view batch, (3, 3) back-rotation)`` pairs
        of the same points in other poses, ``LearnedModel.network_batch``), the semantic
        logits are the log of the mean softmax over the batch and its views and the offsets
        the mean of the offsets turned back; the features stay those of the batch itself."""
        out = self._forward_one_view(batch)
        views = batch.get("views")
        if not views:
            return out
        probs = out["semantic_logits"].softmax(-1)
        turned = {k: out[k].clone() for k in ("offsets", "region_offsets") if k in out}
        for view, back in views:
            view_out = self._forward_one_view(view)
            probs += view_out["semantic_logits"].softmax(-1)
            for key, total in turned.items():
                total += view_out[key] @ back
        count = len(views) + 1
        return {**out, "semantic_logits": (probs / count).log(),
                **{key: total / count for key, total in turned.items()}}

    def _forward_one_view(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        fusion_inputs = ({"xyz": batch["xyz"], "batch_offsets": batch["batch_offsets"]}
                         if getattr(self, "fusion", False) else {})
        return self.forward_pointwise(batch["feats"], batch["coords"],
                                      [int(s) for s in batch["spatial_shape"]],
                                      batch["point_to_voxel"], int(batch["batch_size"]),
                                      **fusion_inputs)

    fusion = False       # SSAIFF feature fusion (model/fusion.py); PointGroup and SoftGroup set it
    fusion_push = 0.0

    def grouping_offsets(self, pointwise: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, 3) offsets the grouping shifts points by: the predicted ones, pushed away from
        the semantic region centre with ``fusion`` (SSAIFF eq. 7)."""
        if not self.fusion:
            return pointwise["offsets"]
        return push_from_region(pointwise["offsets"], pointwise["region_offsets"],
                                self.fusion_push)

    @property
    def num_stuff_classes(self) -> int:
        """Semantic classes that never form instances: the first ones (ScanNet wall, floor).
        Instance-head class i is semantic class ``i + num_stuff_classes``."""
        return self.semantic_classes - self.instance_classes


class PointwiseHeads:
    """The point-wise forward of SoftGroup, HAIS and PointGroup, mixed into an
    :class:`InstanceNetwork`: backbone → point features → semantic logits and offsets (and with
    SSAIFF ``fusion`` the region-centre offsets).

    :meth:`build_pointwise_heads` builds SoftGroup's layout: ``semantic_linear`` and
    ``offset_linear``, each an :class:`MLP` on the backbone's point features, plus
    ``region_linear`` with ``fusion``; one layout, so the shared stage-1 checkpoint
    (config/train/backbone_synthetic.yaml) loads key for key into every method that uses it.
    Other layouts (PointGroup's official one) override :meth:`semantic_logits` and
    :meth:`instance_features`."""

    semantic_linear: nn.Module
    offset_linear: nn.Module
    region_linear: nn.Module

    def semantic_logits(self, point_feats: torch.Tensor) -> torch.Tensor:
        """(N, K) pre-softmax logits of the (N, C) point features."""
        return self.semantic_linear(point_feats)

    def instance_features(self, point_feats: torch.Tensor) -> torch.Tensor:
        """What the offset heads see (before fusion): the point features themselves."""
        return point_feats

    def build_pointwise_heads(self, channels: int, semantic_classes: int) -> None:
        """Create the heads; with ``self.fusion`` the offset heads see ``fused_width(channels)``
        inputs (``[semantic-pooled F, F, xyz]``)."""
        self.semantic_linear = MLP(channels, semantic_classes, norm=True)
        offset_in = fused_width(channels) if self.fusion else channels
        self.offset_linear = MLP(offset_in, 3, norm=True)
        if self.fusion:
            self.region_linear = MLP(offset_in, 3, norm=True)

    def forward_pointwise(self, voxel_feats: torch.Tensor, voxel_coords: torch.Tensor,
                          spatial_shape: Sequence[int], point_to_voxel: torch.Tensor,
                          batch_size: int = 1, xyz: torch.Tensor | None = None,
                          batch_offsets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Backbone and point-wise heads of one batch of clouds (the official ``forward_backbone``).

        voxel_feats: (M, in) float32; voxel_coords: (M, 3) or (M, 4) int; spatial_shape: 3 ints
        (see :meth:`SparseUNetBackbone.sparse_input`). point_to_voxel: (N,) int64 voxel row of
        every point (SoftGroup's ``v2p_map``).

        xyz (N, 3) / batch_offsets (B + 1,): needed only with ``fusion``.

        Returns ``voxel_feats`` (M, C), ``point_feats`` (N, C), ``semantic_logits`` (N, K)
        (pre-softmax) and ``offsets`` (N, 3) float32, metres, in the frame of the xyz features;
        with ``fusion`` also ``region_offsets`` (N, 3) to the semantic region centre.
        """
        voxel_out = self.forward_backbone(voxel_feats, voxel_coords,  # type: ignore[attr-defined]
                                          spatial_shape, batch_size)
        point_feats = voxels_to_points(voxel_out, point_to_voxel)
        logits = self.semantic_logits(point_feats)
        instance_feats = self.instance_features(point_feats)
        out = {"voxel_feats": voxel_out, "point_feats": point_feats, "semantic_logits": logits}
        if self.fusion:  # type: ignore[attr-defined]
            fused = fused_input(instance_feats, logits, xyz, batch_offsets)
            out["offsets"] = self.offset_linear(fused)
            out["region_offsets"] = self.region_linear(fused)
        else:
            out["offsets"] = self.offset_linear(instance_feats)
        return out
