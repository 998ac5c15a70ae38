"""Batches for the networks: :class:`Sample` (one scan ready for the network), the un-augmented
sample of a whole cloud (``centred_sample``) and ``collate``, which voxelizes each scan with
``inputs.network_input`` (the official input contract) and concatenates them with the batch index
in ``coords[:, 0]``, as the official collate does.

Below the dataset readers (``datasets``) and the models: inference builds its one-cloud batch
here without importing any file reader.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..classes import IGNORE_LABEL
from .inputs import (COLOR_CHANNELS, DEFAULT_VOXEL_SIZE, MIN_SPATIAL_SHAPE, network_input,
                     yaw_matrix)

log = logging.getLogger(__name__)


@dataclass
class Sample:
    """One scan ready for ``collate``.

    xyz: (N, 3) float32, metres — centred on the scene mean, then augmented (or turned by the
        dataset's test yaw): the xyz features.
    grid_xyz: (N, 3) float32 or None — voxel-assignment coordinates (elastic distortion).
    rgb: (N, 3) float32, 0..255 units (colour noise included); None for a cloud without colour
        (only the xyz-only models, ``in_channels`` 1, accept it).
    semantic, instance: (N,) int64 (-100 ignore / none), all -100 for unlabelled scenes.
    point_index: (N,) int64 — index of each point in the scene file (crops drop points).
    """

    name: str
    xyz: np.ndarray
    grid_xyz: np.ndarray | None
    rgb: np.ndarray | None
    semantic: np.ndarray
    instance: np.ndarray
    point_index: np.ndarray
    has_labels: bool


def centred_sample(name: str, xyz: np.ndarray, rgb: np.ndarray | None,
                   semantic: np.ndarray | None = None, instance: np.ndarray | None = None,
                   yaw: float = 0.0) -> Sample:
    """The un-augmented :class:`Sample` of a whole cloud: xyz (N, 3) metres centred on their
    mean (as ``prepare_data_inst.py`` does), then turned by ``yaw`` about z; rgb (N, 3) 0..255
    or None; labels (N,) or None (all -100, ``has_labels`` False). Evaluation and inference both use it,
    so the network sees a cloud the same way in both."""
    n = len(xyz)
    points = np.asarray(xyz, np.float64)
    points = points - points.mean(axis=0)
    if yaw:
        points = points @ yaw_matrix(yaw)
    has_labels = semantic is not None and instance is not None
    no_label = np.full(n, IGNORE_LABEL, np.int64)
    colors = None if rgb is None else np.asarray(rgb).astype(np.float32)
    return Sample(name, points.astype(np.float32), None, colors,
                  no_label if semantic is None else np.asarray(semantic).astype(np.int64),
                  no_label.copy() if instance is None else np.asarray(instance).astype(np.int64),
                  np.arange(n, dtype=np.int64), has_labels)


# --------------------------------------------------------------------------------------------
# Collation
# --------------------------------------------------------------------------------------------

def collate(samples: Sequence[Sample | None], voxel_size: float = DEFAULT_VOXEL_SIZE, *,
            with_coords: bool = True, min_spatial_shape: int = MIN_SPATIAL_SHAPE,
            as_torch: bool = True, in_channels: int = COLOR_CHANNELS) -> dict[str, Any]:
    """Voxelize and concatenate scans into one batch (None samples, dropped by a crop, are skipped).
    in_channels: the model's per-point features before xyz (``inputs.point_features``).

    Returns (torch tensors, or numpy arrays with ``as_torch=False``):
      coords (M, 4) int32 [batch, x, y, z] voxel indices, batch-contiguous, first-occurrence order;
      feats (M, C) float32 voxel means of ``[rgb/127.5-1, xyz]``;
      point_to_voxel (N,) int64 row of ``coords`` of every point;
      batch_offsets (B+1,) int64 point offsets; voxel_batch_offsets (B+1,) int64;
      point_batch (N,) int64; xyz (N, 3) float32 (the xyz features); point_feats (N, C) float32;
      semantic (N,) int64 (-100 ignore); instance (N,) int64 ids 0..I-1 unique over the batch
      (-100 none); instance_num_points (I,) int64; instance_class (I,) int64 (class of the
      instance's first point, as the official getInstanceInfo); instance_center (I, 3) float32
      mean xyz; offset_target (N, 3) float32 ``center - xyz`` (0 for points without instance);
      point_index (N,) int64 index into each scene file;
      spatial_shape (3,) int64 max over the batch, >= ``min_spatial_shape``;
      batch_size int; scene_names list[str]; has_labels list[bool].
    """
    kept = [s for s in samples if s is not None]
    if not kept:
        raise ValueError(f"empty batch: all {len(samples)} samples were dropped (too few points "
                         "after cropping; lower Augmentation.min_points or max_points)")
    if len(kept) < len(samples):
        log.info("batch truncated from %d to %d samples", len(samples), len(kept))
    coords, feats, p2v, xyz, pfeats = [], [], [], [], []
    semantic, instance, point_batch, point_index = [], [], [], []
    inst_points, inst_class, inst_center, offset = [], [], [], []
    point_offsets, voxel_offsets = [0], [0]
    spatial = np.full(3, min_spatial_shape, np.int64)
    num_instances = 0
    for b, s in enumerate(kept):
        net = network_input(s.xyz, s.rgb, voxel_size, center=False, with_coords=with_coords,
                            grid_xyz=s.grid_xyz, min_spatial_shape=min_spatial_shape,
                            in_channels=in_channels)
        m = net.num_voxels
        coords.append(np.concatenate([np.full((m, 1), b, np.int32), net.voxel_coords], axis=1))
        feats.append(net.voxel_feats)
        p2v.append(net.point_to_voxel + voxel_offsets[-1])
        xyz.append(net.xyz)
        pfeats.append(net.point_feats)
        spatial = np.maximum(spatial, net.spatial_shape)
        n = net.num_points
        point_batch.append(np.full(n, b, np.int64))
        point_index.append(s.point_index)
        semantic.append(s.semantic.astype(np.int64))
        # Renumber instances 0..I-1 across the batch (the official collate offsets them too).
        has = s.instance >= 0
        ids, local = np.unique(s.instance[has], return_inverse=True)
        local = local.reshape(-1)
        inst = np.full(n, IGNORE_LABEL, np.int64)
        inst[has] = local + num_instances
        instance.append(inst)
        counts = np.bincount(local, minlength=ids.size)
        first_point = np.full(ids.size, n, np.int64)
        np.minimum.at(first_point, local, np.flatnonzero(has))
        inst_points.append(counts.astype(np.int64))
        inst_class.append(s.semantic[first_point].astype(np.int64) if ids.size
                          else np.zeros(0, np.int64))
        sums = np.stack([np.bincount(local, weights=net.xyz[has, d], minlength=ids.size)
                         for d in range(3)], axis=1) if ids.size else np.zeros((0, 3))
        centers = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        inst_center.append(centers)
        off = np.zeros((n, 3), np.float32)
        off[has] = centers[local] - net.xyz[has]
        offset.append(off)
        num_instances += ids.size
        point_offsets.append(point_offsets[-1] + n)
        voxel_offsets.append(voxel_offsets[-1] + m)
    batch: dict[str, Any] = {
        "coords": np.concatenate(coords).astype(np.int32),
        "feats": np.concatenate(feats).astype(np.float32),
        "point_to_voxel": np.concatenate(p2v).astype(np.int64),
        "batch_offsets": np.asarray(point_offsets, np.int64),
        "voxel_batch_offsets": np.asarray(voxel_offsets, np.int64),
        "point_batch": np.concatenate(point_batch),
        "xyz": np.concatenate(xyz).astype(np.float32),
        "point_feats": np.concatenate(pfeats).astype(np.float32),
        "semantic": np.concatenate(semantic),
        "instance": np.concatenate(instance),
        "instance_num_points": np.concatenate(inst_points),
        "instance_class": np.concatenate(inst_class),
        "instance_center": np.concatenate(inst_center).astype(np.float32).reshape(-1, 3),
        "offset_target": np.concatenate(offset),
        "point_index": np.concatenate(point_index).astype(np.int64),
        "spatial_shape": spatial,
    }
    if as_torch:
        import torch

        batch = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    batch["batch_size"] = len(kept)
    batch["scene_names"] = [s.name for s in kept]
    batch["has_labels"] = [s.has_labels for s in kept]
    return batch


def batch_to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    """``batch`` (from ``collate``) with every tensor moved to ``device`` (``non_blocking``, so
    pinned CPU tensors overlap the copy with compute); other entries are passed unchanged."""
    import torch

    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}
