"""The PNG picture of a result (ros2_inst3d/render.py), read back pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest

from ros2_inst3d.instances import axis_aligned_box
from ros2_inst3d.outputs import UNASSIGNED_COLOR, instance_colors
from ros2_inst3d.render import render_instances_png

WIDTH, HEIGHT = 800, 400


def scene(n_per_instance: int = 1500, seed: int = 0):
    """Three dense blocks (instances 0, 1, 2) standing on a grey floor."""
    rng = np.random.default_rng(seed)
    centers = np.array([[-2.0, 0.0, 0.5], [0.0, 1.5, 0.5], [2.0, -1.0, 0.5]])
    blocks = [c + (rng.random((n_per_instance, 3)) - 0.5) * [1.0, 1.0, 1.0] for c in centers]
    floor = np.column_stack([rng.uniform(-4, 4, (3000, 2)), np.zeros(3000)])
    xyz = np.concatenate(blocks + [floor]).astype(np.float32)
    point_instance = np.concatenate([np.full(n_per_instance, k) for k in range(3)]
                                    + [np.full(3000, -1)])
    return xyz, point_instance, blocks


def read_png(path) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(str(path))


def pixels_near(image: np.ndarray, rgb, tol: float = 2.5 / 255) -> np.ndarray:
    """(H, W) bool: pixels whose colour is within ``tol`` of ``rgb`` (0..255)."""
    return (np.abs(image[..., :3] - np.asarray(rgb, dtype=np.float32) / 255.0) <= tol).all(axis=-1)


def test_png_shows_every_instance_colour_in_both_views(tmp_path):
    xyz, point_instance, _ = scene()
    colors = instance_colors(point_instance)
    path = render_instances_png(tmp_path / "sub" / "scene.png", xyz, colors, "three blocks",
                                size_px=(WIDTH, HEIGHT))
    image = read_png(path)
    assert image.shape[:2] == (HEIGHT, WIDTH)
    white = pixels_near(image, (255, 255, 255))
    assert white.mean() > 0.4  # a white page with the drawings on it
    left, right = slice(0, WIDTH // 2), slice(WIDTH // 2, WIDTH)
    for k in range(3):
        hits = pixels_near(image, instance_colors([k])[0])
        assert hits[:, left].sum() > 30, f"instance {k} missing from the top view"
        assert hits[:, right].sum() > 30, f"instance {k} missing from the perspective view"
    assert pixels_near(image, UNASSIGNED_COLOR).sum() > 30


def test_top_view_is_a_top_view_with_equal_axes(tmp_path):
    # one instance left of x = 0, one right of it; a square of points must stay square
    rng = np.random.default_rng(1)
    square = rng.random((4000, 3)) * [2.0, 2.0, 0.1]
    xyz = np.concatenate([square - [3.0, 1.0, 0.0], square + [1.0, -1.0, 0.0]]).astype(np.float32)
    point_instance = np.repeat([0, 1], 4000)
    image = read_png(render_instances_png(tmp_path / "t.png", xyz, instance_colors(point_instance),
                                          size_px=(WIDTH, HEIGHT)))
    top = image[:, : WIDTH // 2]
    cols0 = np.flatnonzero(pixels_near(top, instance_colors([0])[0]).any(axis=0))
    cols1 = np.flatnonzero(pixels_near(top, instance_colors([1])[0]).any(axis=0))
    rows0 = np.flatnonzero(pixels_near(top, instance_colors([0])[0]).any(axis=1))
    assert cols0.max() < cols1.min()  # x increases to the right
    width_px, height_px = np.ptp(cols0), np.ptp(rows0)
    assert abs(width_px - height_px) <= 0.1 * width_px  # equal scale on x and y


def test_box_outlines_drawn_in_both_views(tmp_path):
    xyz, point_instance, blocks = scene()
    magenta = (255, 0, 255)  # instance colours of ids 0..2 are not magenta
    boxes = [axis_aligned_box(b) for b in blocks]
    path = render_instances_png(tmp_path / "b.png", xyz, instance_colors(point_instance),
                                boxes=boxes, box_colors=[magenta] * 3,
                                box_labels=["chair 0.9", "table 0.8", "sofa 0.7"],
                                size_px=(WIDTH, HEIGHT))
    image = read_png(path)
    lines = pixels_near(image, magenta, tol=0.1)
    assert lines[:, : WIDTH // 2].sum() > 40   # top view
    assert lines[:, WIDTH // 2:].sum() > 40    # perspective: the 12 edges of each box
    without = read_png(render_instances_png(tmp_path / "nb.png", xyz,
                                            instance_colors(point_instance),
                                            size_px=(WIDTH, HEIGHT)))
    assert pixels_near(without, magenta, tol=0.1).sum() == 0


def test_large_clouds_are_subsampled_deterministically(tmp_path):
    rng = np.random.default_rng(2)
    xyz = rng.normal(size=(20000, 3)).astype(np.float32)
    colors = instance_colors(rng.integers(-1, 5, 20000))
    first = read_png(render_instances_png(tmp_path / "a.png", xyz, colors, max_points=3000,
                                          size_px=(WIDTH, HEIGHT)))
    second = read_png(render_instances_png(tmp_path / "b.png", xyz, colors, max_points=3000,
                                           size_px=(WIDTH, HEIGHT)))
    np.testing.assert_array_equal(first, second)
    full = read_png(render_instances_png(tmp_path / "c.png", xyz, colors, max_points=20000,
                                         size_px=(WIDTH, HEIGHT)))
    assert not np.array_equal(first, full)  # the subset really is a subset


def test_empty_cloud_and_bad_colours(tmp_path):
    path = render_instances_png(tmp_path / "e.png", np.zeros((0, 3)), np.zeros((0, 3), np.uint8),
                                "nothing", size_px=(400, 200))
    assert read_png(path).shape[:2] == (200, 400)
    with pytest.raises(ValueError, match="3 rows for 4 points"):
        render_instances_png(tmp_path / "x.png", np.zeros((4, 3)), np.zeros((3, 3), np.uint8))


def test_unassigned_points_never_hide_instances(tmp_path):
    # a dense grey ceiling right above a small instance: the top view must still show it
    rng = np.random.default_rng(3)
    block = rng.random((800, 3)) * [0.5, 0.5, 0.5]
    ceiling = np.column_stack([rng.uniform(-0.5, 1.0, (20000, 2)), np.full(20000, 2.5)])
    xyz = np.concatenate([block, ceiling]).astype(np.float32)
    point_instance = np.concatenate([np.zeros(800, int), np.full(20000, -1)])
    image = read_png(render_instances_png(tmp_path / "c.png", xyz, instance_colors(point_instance),
                                          size_px=(WIDTH, HEIGHT)))
    visible = pixels_near(image, instance_colors([0])[0])
    assert visible[:, : WIDTH // 2].sum() > 200  # drawn by height alone, ~50 pixels peek through
    assert visible[:, WIDTH // 2:].sum() > 30
