"""The network input contract of the official SoftGroup / ISBNet / PointGroup checkpoints.

This module is the one place that turns a cloud into what the sparse U-Net eats. Training
(``data.batching.collate``), ``segment``, ``bag`` and the ROS node all go through
``network_input``, so a model sees the same thing at training and at run time
(research/official-models.md §0 facts 6 and 8, §2.2 steps 1-4, §6):

* xyz are centred on their mean (``prepare_data_inst.py``: ``coords = xyz - xyz.mean(0)``),
  then optionally turned about z (``transform_test`` uses a fixed 0.35 pi; it matters only for
  bit-parity with the official test numbers, the networks were trained with random yaw);
* point features are ``cat([rgb / 127.5 - 1, xyz])`` in exactly that order (6 channels; 3 for
  the ``with_coords: False`` configs), with rgb in 0..255 units; ours for clouds without colour
  (``in_channels: 1``) put a constant 1 where the colour was (``point_features``);
* voxels of ``voxel_size`` (2 cm = 1/scale for the indoor models) numbered in order of first
  occurrence over the points, as the official hash-map ``voxelization_idx`` does; voxel features
  are the mean of their points' features;
* ``spatial_shape = max(max voxel coord + 1, 128)`` per axis (the official collate's clip).
  spconv drops the last voxel row of odd-sized levels (fact 4), so this value changes outputs and
  must be computed the official way.

Coordinates used for voxel assignment may differ from the xyz features: SoftGroup's training
elastically distorts only the voxel grid (``grid_xyz``), never the xyz features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..voxelize import VoxelGrid, voxel_mean, voxelize

OFFICIAL_TEST_YAW = 0.35 * math.pi  # transform_test: "slightly rotate the scene" (SoftGroup, ISBNet)
MIN_SPATIAL_SHAPE = 128             # voxel_cfg.spatial_shape[0] of every official config
DEFAULT_VOXEL_SIZE = 0.02           # 1 / voxel_cfg.scale (50) of the indoor models, metres


def yaw_matrix(yaw: float) -> np.ndarray:
    """(3, 3) float64 matrix ``R`` with ``xyz @ R`` turning points by ``yaw`` rad about +z.

    The official code multiplies row vectors by ``[[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]]``,
    which is this matrix.
    """
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


VIEW_COUNTS = (1, 2, 4, 8)
"""The view counts of test-time augmentation (``model.augmented_views``)."""


def view_matrices(count: int) -> list[np.ndarray]:
    """The (3, 3) float64 matrices ``M`` (``xyz @ M``) of ``count`` test-time views, the
    identity first: 2 = as is and mirrored in x; 4 = turned by 0, 90, 180 and 270 degrees about
    z; 8 = those four, each also mirrored. They are poses the training augmentation produces
    (random yaw, x mirror), so the network has seen clouds in every one of them."""
    if count not in VIEW_COUNTS:
        raise ValueError(f"the number of views must be one of {VIEW_COUNTS}, got {count}")
    mirror = np.diag([-1.0, 1.0, 1.0])
    turns = [yaw_matrix(k * math.pi / 2) for k in range(4 if count >= 4 else 1)]
    if count in (2, 8):
        return [m for turn in turns for m in (turn, mirror @ turn)]
    return turns


@dataclass
class NetworkInput:
    """Everything the backbone needs for one cloud, and how to map results back.

    xyz: (N, 3) float32, metres — centred (and turned by ``yaw``) point coordinates: the xyz
        features and the frame of predicted offsets / boxes.
    point_feats: (N, C) float32 — ``[rgb / 127.5 - 1, xyz]`` (C = 6) or the colour alone (C = 3).
    voxel_coords: (M, 3) int32 — voxel indices, first-occurrence order.
    voxel_feats: (M, C) float32 — mean of ``point_feats`` per voxel.
    point_to_voxel: (N,) int64 — voxel row of every point (``feats[point_to_voxel]`` = per point).
    spatial_shape: (3,) int64 — the sparse tensor's extent, >= 128 per axis.
    center: (3,) float64, metres — what was subtracted (zeros when ``center=False``).
    yaw: rad, the turn applied after centring.
    voxel_size: metres.
    """

    xyz: np.ndarray
    point_feats: np.ndarray
    voxel_coords: np.ndarray
    voxel_feats: np.ndarray
    point_to_voxel: np.ndarray
    spatial_shape: np.ndarray
    center: np.ndarray
    yaw: float
    voxel_size: float

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def num_voxels(self) -> int:
        return int(self.voxel_coords.shape[0])

    def to_input_frame(self, xyz: np.ndarray) -> np.ndarray:
        """Map (K, 3) coordinates of the caller's frame into the network frame."""
        return ((np.asarray(xyz, np.float64) - self.center) @ yaw_matrix(self.yaw)).astype(np.float32)

    def to_caller_frame(self, xyz: np.ndarray) -> np.ndarray:
        """Map (K, 3) network-frame coordinates (e.g. predicted centres) back to the caller's frame."""
        return (np.asarray(xyz, np.float64) @ yaw_matrix(self.yaw).T + self.center).astype(np.float32)


def color_features(rgb: np.ndarray, num_points: int) -> np.ndarray:
    """(N, 3) float32 ``rgb / 127.5 - 1`` from colours in 0..255 units (uint8 or float)."""
    if rgb is None:
        raise ValueError("the official checkpoints need colour (rgb/127.5-1 is 3 of their 6 input "
                         "channels): give the cloud an rgb field, or use a model trained without "
                         "colour (e.g. the geometric method)")
    colors = np.asarray(rgb)
    if colors.shape != (num_points, 3):
        raise ValueError(f"rgb must have shape ({num_points}, 3), got {colors.shape}")
    if not (np.issubdtype(colors.dtype, np.integer) or np.issubdtype(colors.dtype, np.floating)):
        raise ValueError(f"rgb must be numeric (0..255 units), got {colors.dtype}")
    return (colors.astype(np.float32) / np.float32(127.5) - np.float32(1.0)).astype(np.float32)


COLOR_CHANNELS = 3      # in_channels of the rgb models: rgb / 127.5 - 1
OCCUPANCY_CHANNELS = 1  # in_channels of the xyz-only (LiDAR) models: a constant 1 per point


def point_features(rgb: np.ndarray | None, num_points: int, in_channels: int = COLOR_CHANNELS
                   ) -> np.ndarray:
    """(N, in_channels) float32 per-point features before xyz.

    in_channels 3: the colour, ``rgb / 127.5 - 1`` (rgb required). in_channels 1: a constant
    1.0 per point (rgb ignored, may be None) — the occupancy channel of the models for clouds
    without colour: with xyz centred on the cloud's mean, the xyz features alone are ~0 near the
    centre, and the U-Net's input convolution has no bias, so a constant channel tells it a voxel
    is occupied. Remission is not used: the generator's LiDAR does not simulate it.
    """
    if in_channels == COLOR_CHANNELS:
        return color_features(rgb, num_points)
    if in_channels == OCCUPANCY_CHANNELS:
        return np.ones((num_points, 1), np.float32)
    raise ValueError(f"in_channels must be {COLOR_CHANNELS} (rgb) or {OCCUPANCY_CHANNELS} "
                     f"(xyz only: a constant occupancy channel), got {in_channels}")


def network_input(xyz: np.ndarray, rgb: np.ndarray | None,
                  voxel_size: float = DEFAULT_VOXEL_SIZE, *,
                  center: bool = True, yaw: float = 0.0, with_coords: bool = True,
                  grid_xyz: np.ndarray | None = None,
                  min_spatial_shape: int = MIN_SPATIAL_SHAPE,
                  in_channels: int = COLOR_CHANNELS) -> NetworkInput:
    """Features and voxels of one cloud, the official way (see the module docstring).

    xyz: (N, 3) float, metres, z up. rgb: (N, 3) colours in 0..255 units (uint8, or float when
    training adds colour noise). voxel_size: metres. center: subtract the mean of xyz first
    (training passes False: its samples were centred before augmentation, as the official
    preprocessing does, and a crop is not re-centred). yaw: turn about z after centring, rad
    (``OFFICIAL_TEST_YAW`` for bit-parity with the official test). with_coords: append xyz to
    the features. grid_xyz: (N, 3) float, metres, coordinates used only to assign voxels
    (training's elastic distortion); default the network-frame xyz. in_channels: the model's
    per-point features before xyz (``point_features``: 3 = rgb, 1 = xyz-only, rgb may be None).
    """
    points = np.asarray(xyz)
    if points.ndim != 2 or points.shape[1] != 3 or not np.issubdtype(points.dtype, np.floating):
        raise ValueError(f"xyz must be a (N, 3) float array in metres, got {points.dtype} "
                         f"{points.shape}")
    if points.shape[0] == 0:
        raise ValueError("the cloud is empty: nothing to feed the network (check the ROI crop "
                         "and the accumulation window)")
    n = points.shape[0]
    colors = point_features(rgb, n, in_channels)
    coords64 = points.astype(np.float64)
    mean = coords64.mean(axis=0) if center else np.zeros(3)
    coords64 = coords64 - mean
    if yaw:
        coords64 = coords64 @ yaw_matrix(yaw)
    coords = coords64.astype(np.float32)
    feats = np.concatenate([colors, coords], axis=1) if with_coords else colors
    if grid_xyz is None:
        grid_points = coords
    else:
        grid_points = np.asarray(grid_xyz)
        if grid_points.shape != (n, 3):
            raise ValueError(f"grid_xyz must have shape ({n}, 3), got {grid_points.shape}")
    grid: VoxelGrid = voxelize(grid_points, voxel_size)
    spatial_shape = np.maximum(grid.coords.max(axis=0).astype(np.int64) + 1, min_spatial_shape)
    return NetworkInput(
        xyz=coords, point_feats=feats.astype(np.float32), voxel_coords=grid.coords,
        voxel_feats=voxel_mean(grid, feats).astype(np.float32),
        point_to_voxel=grid.point_to_voxel, spatial_shape=spatial_shape,
        center=mean, yaw=float(yaw), voxel_size=float(voxel_size))
