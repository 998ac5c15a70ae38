"""Helpers and fixtures shared by the test modules.

pytest loads this file first and puts test/ on sys.path, so test modules (and test/ros_driver.py,
run as a script from test/) import the plain helpers with ``from conftest import ...``; fixtures
need no import. Heavy imports stay inside the helpers so the ROS driver's venv loads little.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# The official manifests and fixtures ship with the repository (test/data/README.md).
REFERENCE = REPO / "test" / "data" / "reference"
MANIFEST_SUFFIX = "_state_dict.json.gz"
BOX_CLASSES = (2, 3, 4, 5)  # semantic ids of the boxes of box_scene


def lidar_config():
    """The default config with the geometric method: for xyz-only (LiDAR-like) test clouds
    that should not pay for a learned model."""
    from ros2_inst3d.config import Config

    return Config().replace(**{"model.name": "geometric"})


# ---- scenes -----------------------------------------------------------------------------------

def _box_surface(rng, centre, size, n):
    """Points on the surface of an axis-aligned box (what a scanner sees, roughly)."""
    p = rng.uniform(-0.5, 0.5, (n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = rng.choice([-0.5, 0.5], n)
    return p * np.asarray(size) + np.asarray(centre)


def room_scene(seed=0):
    """Floor 6x5 m, two walls, a table (top at 0.75 m on four legs) and three separate objects,
    sampled about as densely as a 2-3 cm RGB-D accumulation (~1 cm apart on objects).

    Returns xyz and the ground-truth object id per point (-1 = structure).
    """
    rng = np.random.default_rng(seed)
    parts, ids = [], []
    floor = np.c_[rng.uniform(0, 6, (30000, 2)) * [1, 5 / 6], rng.normal(0, 0.004, 30000)]
    wall_a = np.c_[rng.uniform(0, 6, 12000), np.full(12000, 5.0), rng.uniform(0, 2.5, 12000)]
    wall_b = np.c_[np.full(10000, 0.0), rng.uniform(0, 5, 10000), rng.uniform(0, 2.5, 10000)]
    for p in (floor, wall_a, wall_b):
        parts.append(p)
        ids.append(np.full(len(p), -1))
    table_top = np.c_[rng.uniform(2.0, 3.4, 12000), rng.uniform(2.0, 2.9, 12000),
                      rng.uniform(0.72, 0.76, 12000)]
    legs = [_box_surface(rng, [x, y, 0.37], [0.05, 0.05, 0.7], 900)
            for x in (2.05, 3.35) for y in (2.05, 2.85)]
    objects = [np.concatenate([table_top, *legs]),
               _box_surface(rng, [1.0, 1.0, 0.45], [0.5, 0.5, 0.9], 9000),
               _box_surface(rng, [4.8, 1.0, 0.6], [0.6, 0.8, 1.2], 12000),
               _box_surface(rng, [4.5, 4.0, 0.25], [0.4, 0.4, 0.5], 4500)]
    for k, p in enumerate(objects):
        parts.append(p)
        ids.append(np.full(len(p), k))
    return np.concatenate(parts).astype(np.float32), np.concatenate(ids)


def box_scene(seed: int, num_boxes: int = 4):
    """Solid 0.4 m cubes (4 cm grid) 1.5 m apart, one instance each (classes BOX_CLASSES), above
    a 2 x 2 m floor patch (class 1, no instance) 1 m lower; coloured per object."""
    from ros2_inst3d.data.datasets import Sample

    rng = np.random.default_rng(seed)
    axis = np.arange(0.0, 0.4, 0.04)
    cube = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    xyz, rgb, semantic, instance = [], [], [], []
    for k in range(num_boxes):
        keep = rng.random(len(cube)) < 0.8
        pts = cube[keep] + np.array([1.5 * k, 0.3 * (k % 2), 1.0])
        xyz.append(pts)
        rgb.append(np.tile(rng.uniform(0, 255, 3), (len(pts), 1)))
        semantic.append(np.full(len(pts), BOX_CLASSES[k % len(BOX_CLASSES)]))
        instance.append(np.full(len(pts), k))
    floor = np.stack(np.meshgrid(np.arange(0, 2, 0.05), np.arange(0, 2, 0.05), [0.0],
                                 indexing="ij"), -1).reshape(-1, 3)
    xyz.append(floor)
    rgb.append(np.full((len(floor), 3), 128.0))
    semantic.append(np.full(len(floor), 1))
    instance.append(np.full(len(floor), -100))
    xyz_all = np.concatenate(xyz)
    xyz_all += rng.normal(0, 0.003, xyz_all.shape)
    xyz_all -= xyz_all.mean(0)
    n = len(xyz_all)
    return Sample(f"boxes{seed}", xyz_all.astype(np.float32), None,
                  np.concatenate(rgb).astype(np.float32), np.concatenate(semantic).astype(np.int64),
                  np.concatenate(instance).astype(np.int64), np.arange(n), True)


# ---- messages ---------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["humble", "jazzy"])
def factory(request):
    """A rosbags message factory with the Humble, then the Jazzy message definitions."""
    from ros2_inst3d.msgs import MessageFactory, make_typestore

    return MessageFactory.for_rosbags(make_typestore(request.param))


def cloud_msg(factory, xyz, stamp_ns, frame="sensor"):
    """An xyz PointCloud2 in ``frame`` stamped ``stamp_ns``."""
    from ros2_inst3d.cloud import encode_xyz, ns_to_stamp

    header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, stamp_ns), frame_id=frame)
    return encode_xyz(factory, header, xyz)


def static_lookup(matrix):
    """A transform lookup that knows only ``sensor`` -> anything, as ``matrix``."""
    from ros2_inst3d.errors import TransformUnavailable

    def lookup(target, source, stamp_ns):
        if source != "sensor":
            raise TransformUnavailable(f"no edge {source} -> {target}")
        return matrix
    return lookup


def adam_steps(model, batch, steps: int, lr: float = 0.01) -> list[tuple[float, dict]]:
    """``steps`` Adam steps on ``model.forward_train(batch, 0)``, backward with spconv
    single-threaded as training runs it; each step's (total loss, loss parts)."""
    import torch

    from ros2_inst3d.model.backbone import single_threaded_spconv

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss, parts = model.forward_train(batch, 0)
        with single_threaded_spconv("cpu"):
            loss.backward()
        optimizer.step()
        history.append((float(loss.detach()), parts))
    return history
