"""Config helpers shared by the test modules (imported as a plain module: pytest puts test/ on
sys.path)."""

from __future__ import annotations

from ros2_inst3d.config import Config


def lidar_config() -> Config:
    """The default config with the geometric method: for xyz-only (LiDAR-like) test clouds,
    since the learned default needs colour."""
    return Config().replace(**{"model.name": "geometric"})
