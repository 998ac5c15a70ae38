"""The LiDAR method (ground segmentation, range-adaptive clusters, filters), the table-top mode,
the gravity options and the presets, on ray-cast scans built here with known answers and on the
real nebula frames shipped in test/data/real/nebula."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ros2_inst3d.cli import cloud_fields, main
from ros2_inst3d.config import Config, ConfigError, LidarConfig, load_config
from ros2_inst3d.gravity import (
    gravity_transform,
    level_matrix,
    parse_transform,
    parse_up_axis,
    up_axis_matrix,
)
from ros2_inst3d.io import read_cloud
from ros2_inst3d.model.lidar import (
    LidarClusteringModel,
    beam_spacing_deg,
    grid_ground,
    patchworkpp_available,
    range_adaptive_components,
)
from ros2_inst3d.errors import SegmentationError
from ros2_inst3d.segmenter import Segmenter
from ros2_inst3d.transforms import apply_transform

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("lidar_outdoor", "lidar_indoor", "tabletop", "segment")
GROUND_METHODS = ["grid"] + (["patchworkpp"] if patchworkpp_available() else [])
SENSOR_HEIGHT = 1.7


def spinning_scan(boxes, beams=32, vfov=(-16.0, 15.0), steps=1800, max_range=80.0, seed=0):
    """Ray-cast one spinning-LiDAR revolution from (0, 0, 0) over flat ground at z = -1.7 and
    axis-aligned boxes ((centre, size) in metres). Returns xyz (N, 3) float32, the hit box per
    point (-1 = ground) and the ring (beam index) per point; 1 cm range noise."""
    rng = np.random.default_rng(seed)
    elev = np.radians(np.linspace(vfov[0], vfov[1], beams))
    azim = np.linspace(-math.pi, math.pi, steps, endpoint=False)
    el, az = np.meshgrid(elev, azim, indexing="ij")
    d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
    ring = np.repeat(np.arange(beams), steps)
    t_best = np.full(len(d), np.inf)
    hit = np.full(len(d), -2)
    down = d[:, 2] < -1e-6
    t_ground = np.where(down, -SENSOR_HEIGHT / np.where(down, d[:, 2], -1.0), np.inf)
    better = t_ground < t_best
    t_best[better], hit[better] = t_ground[better], -1
    for k, (centre, size) in enumerate(boxes):
        lo = np.asarray(centre) - np.asarray(size) / 2
        hi = np.asarray(centre) + np.asarray(size) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = lo / d, hi / d
        t_near = np.nanmax(np.minimum(t1, t2), axis=1)
        t_far = np.nanmin(np.maximum(t1, t2), axis=1)
        ok = (t_near <= t_far) & (t_near > 0) & (t_near < t_best)
        t_best[ok], hit[ok] = t_near[ok], k
    valid = t_best < max_range
    t = t_best[valid] + rng.normal(0, 0.01, valid.sum())
    return (d[valid] * t[:, None]).astype(np.float32), hit[valid], ring[valid]


def street(z=-SENSOR_HEIGHT):
    """A car at 6 m, a person at 12 m, a car at 25 m, a long wall at 20 m, a lamp post at 9 m."""
    def standing(x, y, size):
        return ((x, y, z + size[2] / 2), size)

    return [standing(6.0, -3.0, (4.2, 1.8, 1.5)), standing(-12.0, 2.0, (0.5, 0.5, 1.8)),
            standing(3.0, 25.0, (1.8, 4.5, 1.5)), standing(-5.0, -20.0, (30.0, 0.3, 3.0)),
            standing(-3.0, 9.0, (0.2, 0.2, 3.5))]


def best_iou(indices, mask):
    return max((np.count_nonzero(mask[ix]) / (mask.sum() + len(ix) - np.count_nonzero(mask[ix]))
                for ix in indices), default=0.0)


@pytest.fixture(scope="module")
def scan():
    return spinning_scan(street())


@pytest.mark.parametrize("method", GROUND_METHODS)
def test_ground_methods_separate_ground_from_objects(scan, method):
    xyz, hit, _ = scan
    cfg = LidarConfig(ground=method)
    rel = xyz.astype(np.float64)
    if method == "grid":
        ground, ground_z = grid_ground(rel, cfg)
        # the local ground height it reports is the plane the scan was cast on
        assert np.median(np.abs(ground_z[hit == -1] + SENSOR_HEIGHT)) < 0.05
    else:
        from ros2_inst3d.model.lidar import patchworkpp_ground

        ground = patchworkpp_ground(rel, None, cfg)
    is_ground = hit == -1
    recall = (ground & is_ground).sum() / is_ground.sum()
    # object points more than 0.45 m up are never ground: lower ones are within th_dist of a
    # ground plane fitted in a cell the object fills (its foot looks like ground there)
    raised = (hit >= 0) & (xyz[:, 2] > -SENSOR_HEIGHT + 0.45)
    assert recall > 0.95 and ground[raised].mean() < 0.03, (method, recall, ground[raised].mean())


@pytest.mark.parametrize("method", GROUND_METHODS)
def test_objects_found_whole_and_structure_dropped(scan, method):
    xyz, hit, ring = scan
    cfg = load_config(ROOT / "config" / "lidar_outdoor.yaml", {"lidar.ground": method})
    inst = Segmenter(cfg).segment(xyz, None, fields={"ring": ring})
    above_ground = xyz[:, 2] > -SENSOR_HEIGHT + cfg.lidar.ground_distance
    for k in (0, 1, 2, 4):  # two cars, a person, a lamp post
        assert best_iou(inst.indices, (hit == k) & above_ground) > 0.8, (method, k)
    # the 30 m wall is longer than lidar.max_length: no instance is mostly wall
    for ix in inst.indices:
        assert np.mean(hit[ix] == 3) < 0.5
    assert inst.num_instances <= 6


def test_range_adaptive_tolerance_keeps_far_objects_whole():
    # 16 beams 2 deg apart (VLP-16): at 25 m the rings on a car are 0.87 m apart
    car = [((0.0, 25.0, -SENSOR_HEIGHT + 0.75), (4.5, 1.8, 1.5))]
    xyz, hit, ring = spinning_scan(car, beams=16, vfov=(-15.0, 15.0))
    cfg = LidarConfig(ground="grid", min_height=0.0, max_reach=8, min_cluster_points=5)
    adaptive = LidarClusteringModel(cfg).predict_points(xyz, fields={"ring": ring})
    fixed = LidarClusteringModel(LidarConfig(ground="grid", min_height=0.0, min_cluster_points=5,
                                       tolerance_growth_deg=0.01)).predict_points(xyz)
    car_mask = hit == 0
    assert best_iou(adaptive.indices, car_mask) > 0.9
    assert best_iou(fixed.indices, car_mask) < 0.6  # a fixed 0.3 m radius breaks it into rings


def test_beam_spacing_from_ring_field():
    xyz, _, ring = spinning_scan([], beams=16, vfov=(-15.0, 15.0))
    assert beam_spacing_deg(xyz.astype(np.float64), ring) == pytest.approx(2.0, abs=0.05)
    assert beam_spacing_deg(xyz.astype(np.float64), np.zeros(len(xyz))) is None


def test_range_adaptive_components_joins_by_the_larger_tolerance():
    centres = np.array([[0.0, 0, 0], [0.25, 0, 0], [0.9, 0, 0], [40.0, 0, 0], [40.8, 0, 0],
                        [42.0, 0, 0]])
    ranges = np.linalg.norm(centres, axis=1)
    tol = np.array([0.3, 0.3, 0.3, 1.0, 1.0, 1.0])
    labels = range_adaptive_components(centres, ranges, tol)
    assert labels[0] == labels[1] != labels[2]          # 0.65 m > 0.3 m near the sensor
    assert labels[3] == labels[4] != labels[5]          # 0.8 m < 1.0 m far away, 1.2 m is not
    assert len(set(labels.tolist())) == 4
    assert range_adaptive_components(np.zeros((0, 3)), np.zeros(0), np.zeros(0)).size == 0


@pytest.fixture(scope="module")
def lidar_room():
    """A generated LiDAR scan of a furnished room (~1 s to make)."""
    from ros2_inst3d.synthetic.scene import SceneParams, generate_scene

    return generate_scene(3, SceneParams(sensor="lidar", max_poses=4, room_size=(5.0, 7.0)))


def test_generated_lidar_room_gives_objects(lidar_room):
    scene = lidar_room
    cfg = load_config(ROOT / "config" / "lidar_indoor.yaml",
                      {"lidar.ground": "grid", "lidar.origin": [float(v) for v in
                                                                 scene.xyz.mean(axis=0)]})
    inst = Segmenter(cfg).segment(scene.xyz)
    objects = [scene.instance == k for k in np.unique(scene.instance[scene.instance >= 0])
               if (scene.instance == k).sum() >= 100]
    assert objects and inst.num_instances > 0
    matched = sum(best_iou(inst.indices, m) >= 0.25 for m in objects)
    assert matched >= 0.3 * len(objects), (matched, len(objects))
    floor = scene.semantic == 1
    assert all(np.mean(floor[ix]) < 0.5 for ix in inst.indices)


@pytest.mark.parametrize("method", ["softgroup", "pointgroup"])
def test_default_learned_model_follows_the_cloud(lidar_room, method):
    scene = lidar_room
    cfg = Config().replace(**{"model.name": method, "model.device": "cpu"})
    segmenter = Segmenter(cfg)
    inst = segmenter.segment(scene.xyz)              # no colour: the shipped xyz-only weights
    xyz_model = segmenter.model_for(has_color=False)
    assert Path(xyz_model.source).name == f"{method}_lidar_synthetic.pth"
    assert not xyz_model.needs_color
    rgb_model = segmenter.model_for(has_color=True)  # colour: the rgb model, as configured
    assert rgb_model is segmenter.model and Path(rgb_model.source).name == f"{method}_synthetic.pth"
    objects = [scene.instance == k for k in np.unique(scene.instance[scene.instance >= 0])
               if (scene.instance == k).sum() >= 100]
    matched = sum(best_iou(inst.indices, m) >= 0.5 for m in objects)
    assert matched >= 0.3 * len(objects), (matched, len(objects))
    # An explicit choice of weights wins: the rgb model refuses the cloud without colour.
    explicit = Segmenter(cfg.replace(**{"model.checkpoint": rgb_model.source}))
    with pytest.raises(SegmentationError) as err:
        explicit.segment(scene.xyz)
    assert err.value.reason == "no_color"


def test_unknown_ground_method_and_missing_patchwork_are_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match="lidar.ground"):
        load_config(None, {"lidar.ground": "ransac"})
    import ros2_inst3d.model.lidar as lidar

    monkeypatch.setattr(lidar, "patchworkpp_available", lambda: False)
    assert lidar.resolve_ground_method("grid") == "grid"
    with pytest.raises(ConfigError, match="pip install pypatchworkpp"):
        lidar.resolve_ground_method("patchworkpp")


# ------------------------------------------------------------------------------------------
# table-top mode of the geometric method


TABLE_Z = 0.75
# The boxes here are sampled on all six faces, which no scan sees; the convexity cut (built for
# the visible surfaces, see test_convex_components_...) would chip their hidden faces off.
CLOSED_BOXES = {"geometric.concave_angle_deg": 0.0}


def tabletop_scene(seed=0):
    """A 1.2 x 0.8 m table top at 0.75 m on a floor, three objects on it (one 4 cm from
    another), a chair-like box beside the table on the floor."""
    rng = np.random.default_rng(seed)

    def plane(xr, yr, z, n):
        return np.column_stack([rng.uniform(*xr, n), rng.uniform(*yr, n), np.full(n, z)])

    def box(c, s, n):
        p = rng.uniform(-0.5, 0.5, (n, 3))
        ax = rng.integers(0, 3, n)
        p[np.arange(n), ax] = rng.choice([-0.5, 0.5], n)
        return p * np.asarray(s) + np.asarray(c)

    parts = [plane((-2, 2), (-2, 2), 0.0, 20000), plane((-0.6, 0.6), (-0.4, 0.4), TABLE_Z, 15000),
             box((-0.3, 0.0, 0.85), (0.1, 0.1, 0.2), 1500), box((-0.14, 0.0, 0.80), (0.08, 0.15, 0.1), 1500),
             box((0.3, 0.2, 0.9), (0.12, 0.12, 0.3), 1500), box((1.2, 0.0, 0.4), (0.5, 0.5, 0.8), 3000)]
    label = np.concatenate([np.full(len(p), k - 2) for k, p in enumerate(parts)])
    xyz = np.concatenate(parts).astype(np.float32)
    return xyz + rng.normal(0, 0.002, xyz.shape).astype(np.float32), label


def test_tabletop_preset_keeps_only_objects_on_the_table():
    xyz, label = tabletop_scene()
    inst = Segmenter(load_config(ROOT / "config" / "tabletop.yaml", CLOSED_BOXES)).segment(xyz)
    standing = xyz[:, 2] > TABLE_Z + 0.02  # the bottom faces and feet go with the table plane
    for k in (0, 1, 2):
        assert best_iou(inst.indices, (label == k) & standing) > 0.9, k
    assert inst.num_instances == 3  # not the table, not the floor, not the box beside the table


def test_tabletop_in_a_camera_frame_needs_up_and_level(tmp_path):
    xyz, label = tabletop_scene(1)
    # a camera optical frame looking down at 35 deg: y down, z forward
    tilt = np.radians(35.0)
    body_to_optical = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float)
    pitch = np.array([[math.cos(tilt), 0, math.sin(tilt)], [0, 1, 0],
                      [-math.sin(tilt), 0, math.cos(tilt)]])
    cam = ((xyz - [-1.0, 0.0, 1.4]) @ pitch @ body_to_optical.T).astype(np.float32)
    cfg = load_config(ROOT / "config" / "tabletop.yaml", CLOSED_BOXES)
    m = gravity_transform(cam, up="-y", level=True)
    levelled = apply_transform(m, cam)
    inst = Segmenter(cfg).segment(levelled)
    standing = xyz[:, 2] > TABLE_Z + 0.02
    for k in (0, 1, 2):
        assert best_iou(inst.indices, (label == k) & standing) > 0.9, k
    # levelled, the table top is horizontal; with the up axis alone it is still tilted 35 deg
    assert np.std(levelled[label == -1][:, 2]) < 0.01
    upright_only = apply_transform(gravity_transform(cam, up="-y"), cam)
    assert np.std(upright_only[label == -1][:, 2]) > 0.1
    # the CLI does the same with --up -y --level
    np.save(tmp_path / "cam.npy", cam)
    preset = (ROOT / "config" / "tabletop.yaml").read_text()
    assert "concave_angle_deg: 10.0" in preset
    (tmp_path / "closed.yaml").write_text(preset.replace("concave_angle_deg: 10.0",
                                                         "concave_angle_deg: 0.0"))
    assert main(["segment", str(tmp_path / "cam.npy"), "-c", str(tmp_path / "closed.yaml"),
                 "-o", str(tmp_path), "--up", "-y", "--level"]) == 0
    labels = np.load(tmp_path / "cam.labels.npz")["instance"]
    found = [np.flatnonzero(labels == i) for i in np.unique(labels[labels >= 0])]
    for k in (0, 1, 2):
        assert best_iou(found, (label == k) & standing) > 0.8, k


# ------------------------------------------------------------------------------------------
# gravity helpers


def test_up_axis_and_transform_parsing():
    np.testing.assert_allclose(up_axis_matrix("-y")[:3, :3] @ [0, -1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(up_axis_matrix("x")[:3, :3] @ [1, 0, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(up_axis_matrix("-z")[:3, :3] @ [0, 0, -1], [0, 0, 1], atol=1e-12)
    assert np.allclose(up_axis_matrix("z"), np.eye(4))
    for bad in ("w", "--y", "", "xy"):
        with pytest.raises(ValueError, match="--up"):
            parse_up_axis(bad)
    m = parse_transform("1,2,3, 0,0,0.7071068,0.7071068")
    np.testing.assert_allclose(m[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(m[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-6)
    eye = " ".join(str(v) for v in np.eye(4).ravel())
    assert np.allclose(parse_transform(eye), np.eye(4))
    with pytest.raises(ValueError, match="16 numbers"):
        parse_transform("1 2 3")
    with pytest.raises(ValueError, match="not a rotation"):
        parse_transform(" ".join(str(v) for v in np.diag([2.0, 1.0, 1.0, 1.0]).ravel()))
    with pytest.raises(ValueError, match="numbers"):
        parse_transform("a,b")


def test_level_matrix_makes_a_tilted_floor_horizontal():
    rng = np.random.default_rng(0)
    floor = np.column_stack([rng.uniform(-3, 3, 5000), rng.uniform(-3, 3, 5000), np.zeros(5000)])
    tilt = np.radians(12.0)
    r = np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]])
    levelled = apply_transform(level_matrix(floor @ r.T), floor @ r.T)
    assert np.ptp(levelled[:, 2]) < 0.01
    # a wall alone is not levelled onto
    wall = floor[:, [2, 0, 1]]
    assert np.allclose(level_matrix(wall), np.eye(4))


def test_cli_rejects_bad_up_axis(tmp_path, capsys):
    np.save(tmp_path / "c.npy", np.zeros((10, 3), np.float32))
    assert main(["segment", str(tmp_path / "c.npy"), "--model", "lidar", "--up", "q",
                 "-o", str(tmp_path)]) == 2
    assert "--up must be one of" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# presets


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_load(preset):
    cfg = load_config(ROOT / "config" / f"{preset}.yaml")
    assert cfg.model.name in ("lidar", "geometric", "softgroup")


# ------------------------------------------------------------------------------------------
# real frames (nebula, Apache-2.0): shipped in test/data/real/nebula with their licence

NEBULA = sorted((ROOT / "test" / "data" / "real" / "nebula").glob("*.pcd"))


def test_the_nebula_frames_ship_with_the_repository():
    assert len(NEBULA) == 4


@pytest.mark.parametrize("path", NEBULA, ids=lambda p: p.name.split("_1")[0])
def test_nebula_frames_give_plausible_instances(path):
    preset = "lidar_outdoor" if "vls128" in path.name else "lidar_indoor"
    cloud = read_cloud(path)
    inst = Segmenter(load_config(ROOT / "config" / f"{preset}.yaml")).segment(
        cloud.xyz, None, fields=cloud_fields(cloud))
    assert 1 <= inst.num_instances <= 200
    cfg = load_config(ROOT / "config" / f"{preset}.yaml").lidar
    for k in range(inst.num_instances):
        size = inst.obb(k).size
        assert max(size[0], size[1]) <= cfg.max_length + 1e-3
        assert size[2] <= cfg.max_height + 1e-3


def test_convex_components_cut_touching_objects_at_concave_creases():
    from ros2_inst3d.model.geometric import convex_components
    from ros2_inst3d.voxelize import voxel_mean, voxelize

    rng = np.random.default_rng(0)

    def visible_box(lo, hi, n, front_from=None):
        """Top and front (-x) face of an axis-aligned box as seen from the viewpoint (-x, +z);
        the front face only from height ``front_from`` up (below, something hides it)."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        top = np.column_stack([rng.uniform(lo[0], hi[0], n), rng.uniform(lo[1], hi[1], n),
                               np.full(n, hi[2])])
        front = np.column_stack([np.full(n, lo[0]), rng.uniform(lo[1], hi[1], n),
                                 rng.uniform(lo[2] if front_from is None else front_from,
                                             hi[2], n)])
        return np.concatenate([top, front])

    # a short box pressed against a taller one: the crease between the short top and the
    # visible part of the tall front face is concave
    short = visible_box((0.0, 0.0, 0.0), (0.1, 0.1, 0.08), 3000)
    tall = visible_box((0.1, 0.0, 0.0), (0.2, 0.1, 0.2), 3000, front_from=0.08)
    xyz = np.concatenate([short, tall])
    truth = np.repeat([0, 1], [len(short), len(tall)])
    grid = voxelize(xyz, 0.01)
    centres = voxel_mean(grid, xyz)
    labels = convex_components(centres, 0.0175, 10.0, viewpoint=(-1.0, 0.05, 1.0))
    point_labels = labels[grid.point_to_voxel]
    for k in (0, 1):  # each box is (mostly) one component of its own
        values, counts = np.unique(point_labels[truth == k], return_counts=True)
        main = values[np.argmax(counts)]
        assert counts.max() > 0.9 * (truth == k).sum()
        assert np.mean(truth[point_labels == main] == k) > 0.95
    # plain connectivity joins them
    from ros2_inst3d.model.geometric import voxel_components

    assert len(np.unique(voxel_components(grid.coords, 1))) == 1


def test_colour_cut_separates_flush_boxes_of_different_colour():
    """Two boxes side by side with flush tops and fronts: geometry sees one surface, the colour
    edge between them cuts it; same colours, no rgb or the cut disabled keep one cluster."""
    from ros2_inst3d.config import GeometricConfig
    from ros2_inst3d.model.geometric import GeometricModel

    rng = np.random.default_rng(1)
    n = 4000
    # top (z = 0.1) and front (x = 0) faces of a 0.1 x 0.3 x 0.1 m block made of two boxes
    top = np.column_stack([rng.uniform(0, 0.1, n), rng.uniform(0, 0.3, n), np.full(n, 0.1)])
    front = np.column_stack([np.zeros(n), rng.uniform(0, 0.3, n), rng.uniform(0, 0.1, n)])
    xyz = np.concatenate([top, front]).astype(np.float32)
    left = xyz[:, 1] < 0.15
    red, blue = np.array([200, 40, 30]), np.array([30, 60, 190])
    rgb = np.where(left[:, None], red, blue).astype(np.uint8)
    rgb = np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)  # sensor noise
    base = dict(max_planes=0, voxel_size=0.01, min_cluster_points=50, max_cluster_extent=0)

    def clusters(cfg, colours):
        return GeometricModel(GeometricConfig(**cfg)).predict_points(xyz, colours).indices

    cut = clusters({**base, "max_color_distance": 0.15}, rgb)
    assert len(cut) == 2
    for ix in cut:  # each cluster is one box (a voxel on the seam holds both colours)
        assert max(np.mean(left[ix]), np.mean(~left[ix])) > 0.99
    assert len(clusters({**base, "max_color_distance": 0.15},
                        np.broadcast_to(red, rgb.shape).astype(np.uint8))) == 1
    assert len(clusters({**base, "max_color_distance": 0.15}, None)) == 1
    assert len(clusters({**base, "max_color_distance": 0.0}, rgb)) == 1


def test_surface_variation_tells_foliage_from_surfaces():
    from ros2_inst3d.model.lidar import SURFACE_SAMPLES, cluster_surface_variation

    rng = np.random.default_rng(2)
    n = 2000
    # a car-like smooth surface (a bent sheet with 1 cm noise), a crown of random leaf points,
    # a pole (a thin cylinder) and a 6-point scrap smaller than a neighbourhood
    u, v = rng.uniform(0, 4, n), rng.uniform(0, 1.5, n)
    sheet = np.column_stack([u, 0.2 * np.sin(u), v]) + rng.normal(0, 0.01, (n, 3))
    crown = rng.normal(0, 1.0, (n, 3)) + (10.0, 0.0, 3.0)
    a, h = rng.uniform(0, 2 * math.pi, n), rng.uniform(0, 3, n)
    pole = np.column_stack([0.08 * np.cos(a) - 5.0, 0.08 * np.sin(a), h])
    scrap = rng.normal(0, 0.1, (6, 3)) + (0.0, 8.0, 0.0)
    pts = np.concatenate([sheet, crown, pole, scrap])
    labels = np.repeat([0, 1, 2, 3], [n, n, n, 6])
    which = np.array([True, True, True, True, False])  # cluster 4 has no points: not computed
    var = cluster_surface_variation(pts, labels, 5, which)
    assert var[0] < 0.02 and var[2] < 0.05, var
    assert var[1] > 0.1, var  # the outdoor preset drops clusters above 0.07
    assert np.isfinite(var[3]) and np.isnan(var[4])
    # the median over SURFACE_SAMPLES evenly spaced points is the median over all of them,
    # within the spread of the values
    from scipy.spatial import cKDTree

    _, nb = cKDTree(crown).query(crown, k=10)
    q = crown[nb] - crown[nb].mean(axis=1, keepdims=True)
    ev = np.linalg.eigvalsh(np.einsum("nki,nkj->nij", q, q))
    full = np.median(ev[:, 0] / ev.sum(axis=1))
    assert n > 10 * SURFACE_SAMPLES and abs(var[1] - full) < 0.02, (var[1], full)


def test_foliage_filter_drops_a_bush_and_keeps_the_car():
    """The outdoor preset's surface-variation test: a bush of random leaves (their corners taken
    as returns) is dropped, a car of flat faces is kept; without the test the bush is an
    instance."""
    from ros2_inst3d.synthetic.street import leaves

    xyz, hit, _ = spinning_scan([((8.0, -3.0, -SENSOR_HEIGHT + 0.75), (4.2, 1.8, 1.5))])
    bush = leaves(np.random.default_rng(3), (-12.0, 4.0, -SENSOR_HEIGHT + 1.0), (1.5, 0.6, 1.0),
                  400, box=True).build(0, "vegetation", recentre=False)
    pts = np.concatenate([xyz, bush.vertices]).astype(np.float32)
    is_leaf = np.r_[np.zeros(len(xyz), bool), np.ones(len(bush.vertices), bool)]
    on = load_config(ROOT / "config" / "lidar_outdoor.yaml")
    off = load_config(ROOT / "config" / "lidar_outdoor.yaml", {"lidar.max_surface_variation": 1.0})
    assert on.lidar.max_surface_variation < 1 / 3
    kept_on = Segmenter(on).segment(pts, None).indices
    kept_off = Segmenter(off).segment(pts, None).indices
    assert any(is_leaf[ix].mean() > 0.9 for ix in kept_off)
    assert not any(is_leaf[ix].mean() > 0.5 for ix in kept_on)
    car = np.r_[hit == 0, np.zeros(len(bush.vertices), bool)] & (pts[:, 2] > -SENSOR_HEIGHT + 0.3)
    assert best_iou(kept_on, car) > 0.8


def test_stream_pipeline_passes_the_ring_to_the_lidar_method(factory):
    """A 16-beam scan (2 degree spacing) through the node's pipeline: with the driver's ring
    field the clustering tolerance follows the measured beam spacing and a car at 14 m is one
    instance; the same points without the field fall back to the 0.5 degree default, which
    leaves the car's rings apart (each too flat to count as an object)."""
    from conftest import static_lookup

    from ros2_inst3d.cloud import _build_cloud, ns_to_stamp
    from ros2_inst3d.pipeline import StreamPipeline

    car = ((14.0, -2.0, -SENSOR_HEIGHT + 0.75), (4.2, 1.8, 1.5))
    xyz, hit, ring = spinning_scan([car], beams=16, vfov=(-15.0, 15.0))
    cfg = load_config(ROOT / "config" / "lidar_outdoor.yaml",
                      {"input.fixed_frame": "base_link"})
    results = {}
    for with_ring in (True, False):
        header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, 10**9),
                         frame_id="sensor")
        columns = [("x", np.float32, xyz[:, 0]), ("y", np.float32, xyz[:, 1]),
                   ("z", np.float32, xyz[:, 2])]
        if with_ring:
            columns.append(("ring", np.uint16, ring))
        msg = _build_cloud(factory, header, columns, len(xyz), is_dense=True)
        pipe = StreamPipeline(cfg, Segmenter(cfg))
        assert pipe.ingest("points", msg, static_lookup(np.eye(4))).fate == "pending"
        assert (pipe.accumulator.cloud().ring is not None) == with_ring
        results[with_ring] = pipe.segment().instances
    on_car = (hit == 0) & (xyz[:, 2] > -SENSOR_HEIGHT + 0.3)
    assert best_iou(results[True].indices, on_car) > 0.8
    assert best_iou(results[False].indices, on_car) < 0.5
