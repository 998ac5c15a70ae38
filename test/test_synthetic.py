"""Synthetic scene generator: determinism, splits, labels, geometry, sensor model, file schema.

The scenes use ``SceneParams.small()`` (3-5 m rooms, a coarse camera) so the whole file runs in
a few seconds; the default-size generator is exercised by ``benchmarks/bench_synthetic.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from matplotlib.path import Path as MplPath
from scipy.spatial import cKDTree

from ros2_inst3d.classes import IGNORE_LABEL, SCANNET20_CLASSES, STUFF_CLASSES
from ros2_inst3d.cli import main
from ros2_inst3d.synthetic import furniture as fm
from ros2_inst3d.synthetic import layout, scanner
from ros2_inst3d.synthetic import scene as synthetic
from ros2_inst3d.synthetic.scene import (
    SPLIT_SIZE,
    SPLITS,
    SceneParams,
    downsample,
    furnish_room,
    generate_dataset,
    generate_scene,
    split_of_seed,
    split_seed,
)

SMALL = SceneParams.small()
SEEDS = list(range(10))


@pytest.fixture(scope="module")
def small_scenes():
    return {seed: generate_scene(seed, SMALL) for seed in SEEDS}


@pytest.fixture(scope="module")
def noise_free_scene():
    params = dataclasses.replace(SMALL, noise_scale=0.0)
    return 3, params, generate_scene(3, params, keep_sequence=True)


# ---------------------------------------------------------------------------------------------
# Determinism and splits


def test_same_seed_gives_identical_scene(small_scenes):
    again = generate_scene(4, SMALL)
    first = small_scenes[4]
    for name in ("xyz", "rgb", "semantic", "instance"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    assert again.meta == first.meta


def test_thread_count_does_not_change_the_scene(small_scenes):
    single = generate_scene(5, SMALL, threads=1)
    np.testing.assert_array_equal(single.xyz, small_scenes[5].xyz)
    np.testing.assert_array_equal(single.instance, small_scenes[5].instance)


def test_different_seeds_differ(small_scenes):
    signatures = {(s.num_points, float(s.xyz.sum())) for s in small_scenes.values()}
    assert len(signatures) == len(small_scenes)
    a, b = small_scenes[0], small_scenes[1]
    assert a.meta["room"] != b.meta["room"]


@given(st.sampled_from(SPLITS), st.integers(0, SPLIT_SIZE - 1),
       st.sampled_from(SPLITS), st.integers(0, SPLIT_SIZE - 1))
def test_split_seed_ranges_are_disjoint(split_a, i, split_b, j):
    a, b = split_seed(split_a, i), split_seed(split_b, j)
    assert (a == b) == ((split_a, i) == (split_b, j))
    assert split_of_seed(a) == split_a
    assert SPLITS.index(split_a) * SPLIT_SIZE <= a < (SPLITS.index(split_a) + 1) * SPLIT_SIZE


@pytest.mark.parametrize("split, index", [("train", -1), ("val", SPLIT_SIZE), ("dev", 0)])
def test_split_seed_rejects_bad_input(split, index):
    with pytest.raises(ValueError, match="split|index"):
        split_seed(split, index)


def test_meta_records_seed_split_and_params():
    scene = generate_scene(split_seed("val", 7), SMALL)
    assert scene.meta["seed"] == 100_007 and scene.meta["split"] == "val"
    assert SceneParams(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in scene.meta["params"].items()}) == SMALL


# ---------------------------------------------------------------------------------------------
# Labels


def test_stuff_has_no_instance_and_things_always_do(small_scenes):
    for scene in small_scenes.values():
        stuff = np.isin(scene.semantic, list(STUFF_CLASSES))
        assert np.all(scene.instance[stuff] == IGNORE_LABEL)
        ignored = scene.semantic == IGNORE_LABEL
        assert np.all(scene.instance[ignored] == IGNORE_LABEL)
        things = ~stuff & ~ignored
        assert np.all(scene.instance[things] >= 0)
        assert np.all((scene.semantic >= 0) | ignored)
        assert np.all(scene.semantic < len(SCANNET20_CLASSES))


def test_each_instance_has_one_class_and_ids_are_contiguous(small_scenes):
    for scene in small_scenes.values():
        ids = np.unique(scene.instance[scene.instance >= 0])
        np.testing.assert_array_equal(ids, np.arange(len(ids)))
        assert len(ids) == scene.num_instances
        for rec in scene.meta["instances"]:
            mask = scene.instance == rec["id"]
            classes = np.unique(scene.semantic[mask])
            assert classes.tolist() == [rec["class_id"]]
            assert SCANNET20_CLASSES[rec["class_id"]] == rec["class_name"]
            assert int(mask.sum()) == rec["num_points"] >= SMALL.min_instance_points


def test_small_scenes_cover_many_classes(small_scenes):
    thing_classes = set()
    for scene in small_scenes.values():
        thing_classes |= {c for c in np.unique(scene.semantic).tolist()
                          if c >= 0 and c not in STUFF_CLASSES}
    assert len(thing_classes) >= 8, sorted(thing_classes)
    assert all(any((s.semantic == c).any() for s in small_scenes.values()) for c in STUFF_CLASSES)


def test_instance_boxes_contain_their_points(small_scenes):
    """The generator's oriented boxes hold (nearly all) their instance's points."""
    for scene in small_scenes.values():
        for rec, box in zip(scene.meta["instances"], scene.boxes(), strict=True):
            pts = scene.xyz[scene.instance == rec["id"]].astype(np.float64)
            c, s = math.cos(box.yaw), math.sin(box.yaw)
            local = (pts - box.center) @ np.array([[c, -s, 0.0], [s, c, 0.0], [0, 0, 1.0]])
            inside = np.all(np.abs(local) <= box.size / 2 + 0.12, axis=1)
            assert inside.mean() > 0.97, (rec, inside.mean())


# ---------------------------------------------------------------------------------------------
# Geometry


def _distance_outside_polygon(xy: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """0 inside ``polygon``, else the distance to its nearest edge (slow obvious reference)."""
    inside = MplPath(polygon).contains_points(xy)
    a = polygon
    b = np.roll(polygon, -1, axis=0)
    ab = b - a
    t = np.clip(np.einsum("nkd,kd->nk", xy[:, None] - a[None], ab) / np.sum(ab * ab, 1), 0, 1)
    nearest = a[None] + t[..., None] * ab[None]
    dist = np.linalg.norm(xy[:, None] - nearest, axis=2).min(axis=1)
    return np.where(inside, 0.0, dist)


def test_points_stay_inside_the_room(small_scenes, noise_free_scene):
    # Noise-free points lie on the surfaces: within one voxel of the room.
    _, params, clean = noise_free_scene
    cases = [(clean, params.voxel_size * math.sqrt(3) + 1e-3)]
    # With noise, within a few sigma of the deepest range.
    sigma_max = SMALL.camera().sigma(np.array(SMALL.max_range))
    cases += [(s, 6 * float(sigma_max) + SMALL.voxel_size) for s in small_scenes.values()]
    frames = [SCANNET20_CLASSES.index("door"), SCANNET20_CLASSES.index("window")]
    for scene, tol in cases:
        polygon = np.asarray(scene.meta["room"]["polygon"])
        outside = _distance_outside_polygon(scene.xyz[:, :2].astype(np.float64), polygon)
        # Door and window frames line the openings, up to 15 cm deep into the wall.
        in_frame = np.isin(scene.semantic, frames)
        assert outside[~in_frame].max() <= tol
        assert outside[in_frame].max(initial=0.0) <= tol + 0.15
        assert scene.xyz[:, 2].min() >= -tol
        assert scene.xyz[:, 2].max() <= scene.meta["room"]["height"] + tol


def test_arrays_have_the_scene_schema(small_scenes):
    for scene in small_scenes.values():
        n = scene.num_points
        assert scene.xyz.dtype == np.float32 and scene.xyz.shape == (n, 3)
        assert np.isfinite(scene.xyz).all()
        assert scene.rgb.dtype == np.uint8 and scene.rgb.shape == (n, 3)
        assert scene.semantic.dtype == np.int16 and scene.semantic.shape == (n,)
        assert scene.instance.dtype == np.int32 and scene.instance.shape == (n,)
        # Real colour: varied, and neither blown out nor black.
        assert scene.rgb.std(axis=0).min() > 10
        assert np.mean(scene.rgb == 255) < 0.05 and np.mean(scene.rgb == 0) < 0.05


def test_points_are_one_per_voxel(small_scenes):
    for scene in small_scenes.values():
        vs = scene.meta["voxel_size"]
        tree = cKDTree(scene.xyz)
        # Two voxel means are at most one voxel diagonal apart only if neighbours; never
        # (nearly) on top of each other unless two surfaces meet in one voxel, which merges.
        pairs = tree.query_pairs(vs * 0.05)
        assert len(pairs) < 0.01 * scene.num_points


def _sample_surfaces(surfaces, spacing: float, rng: np.random.Generator):
    """Area-weighted random samples of every triangle: (xyz (N, 3), object index (N,))."""
    pts, objs = [], []
    for o, (v, tri, _, _) in enumerate(surfaces):
        corners = v[tri].astype(np.float64)
        area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0],
                                             corners[:, 2] - corners[:, 0]), axis=1)
        n = int(math.ceil(area.sum() / spacing ** 2))
        if n == 0:
            continue
        k = rng.choice(len(area), n, p=area / area.sum())
        uv = rng.random((n, 2))
        flip = uv.sum(1) > 1
        uv[flip] = 1 - uv[flip]
        c = corners[k]
        pts.append(c[:, 0] + uv[:, :1] * (c[:, 1] - c[:, 0]) + uv[:, 1:] * (c[:, 2] - c[:, 0]))
        objs.append(np.full(n, o))
    return np.vstack(pts), np.concatenate(objs)


def test_scan_is_occluded_and_labels_come_from_the_hit_surface(noise_free_scene):
    seed, params, scene = noise_free_scene
    geo = furnish_room(seed, params)
    samples, sample_obj = _sample_surfaces(geo.surfaces(), params.voxel_size / 3,
                                           np.random.default_rng(0))
    vs_diag = params.voxel_size * math.sqrt(3)
    # Occlusion: a full-coverage sampling of every surface has many places the robot never saw
    # (under beds, behind cabinets, backs against walls), but the scan still sees most of it.
    covered = cKDTree(scene.xyz).query(samples, distance_upper_bound=vs_diag)[0] < np.inf
    assert 0.3 < covered.mean() < 0.9
    assert scene.num_points < len(np.unique(np.floor(samples / params.voxel_size), axis=0))
    # Every noise-free point lies on a surface of its own class.
    dist, idx = cKDTree(samples).query(scene.xyz)
    assert dist.max() < vs_diag
    sem_of = geo.semantic_of
    sample_sem = np.where(sem_of[sample_obj] >= 0, sem_of[sample_obj], IGNORE_LABEL)[idx]
    labelled = scene.semantic != IGNORE_LABEL
    agree = (sample_sem == scene.semantic)[labelled]
    assert agree.mean() > 0.95


# ---------------------------------------------------------------------------------------------
# Sequence output


def _check_sequence(scene):
    q = scene.sequence
    assert q.scan_offsets[0] == 0 and q.scan_offsets[-1] == len(q.xyz_sensor)
    assert np.all(np.diff(q.scan_offsets) >= 0)
    assert np.all(np.diff(q.stamps_ns) > 0)
    assert q.poses.shape == (q.num_scans, 4, 4)
    rot = q.poses[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape),
                               atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-9)
    # Each scan moved by its pose lands on the accumulated scene (within one voxel).
    room_points = []
    for s in range(q.num_scans):
        xyz, rgb, stamp, pose = q.scan(s)
        assert stamp == q.stamps_ns[s] and len(rgb) == len(xyz)
        room_points.append(xyz.astype(np.float64) @ pose[:3, :3].T + pose[:3, 3])
    room_points = np.vstack(room_points)
    dist, idx = cKDTree(scene.xyz).query(room_points)
    vs = scene.meta["voxel_size"]
    assert dist.max() <= vs * math.sqrt(3) + 1e-4
    # Raw labels are the scene's labels, up to the majority vote in mixed voxels.
    assert np.mean(q.instance == scene.instance[idx]) > 0.95
    assert np.mean(q.semantic == scene.semantic[idx]) > 0.95
    return room_points


def test_rgbd_sequence_is_consistent_with_the_scene(noise_free_scene):
    _, _, scene = noise_free_scene
    _check_sequence(scene)
    q = scene.sequence
    assert q.frame_id == "camera_optical"
    assert np.all(q.xyz_sensor[:, 2] > 0)  # optical frame: z forward, every point in front
    noisy = generate_scene(6, SMALL, keep_sequence=True)
    _check_sequence(noisy)


def test_lidar_sequence_is_consistent_with_the_scene():
    scene = generate_scene(2, SceneParams.small(sensor="lidar", lidar_beams=16,
                                                lidar_azimuth_steps=512), keep_sequence=True)
    room_points = _check_sequence(scene)
    q = scene.sequence
    assert q.frame_id == "lidar" and scene.meta["sensor"]["kind"] == "lidar"
    # A spinning LiDAR sees all around: every scan has points in all four quadrants.
    for s in range(q.num_scans):
        xyz = q.scan(s)[0]
        quadrant = (xyz[:, 0] > 0).astype(int) * 2 + (xyz[:, 1] > 0)
        assert len(np.unique(quadrant)) == 4
    assert len(room_points) == len(q.xyz_sensor)


# ---------------------------------------------------------------------------------------------
# Files and the command


def test_npz_schema_and_readers(tmp_path):
    from ros2_inst3d.data.datasets import read_scene
    from ros2_inst3d.io import read_cloud

    paths = generate_dataset(tmp_path, 2, seed=11, split="test", sequence=True, preview=True,
                             progress=False, params=SMALL)
    assert [p.name for p in paths] == ["test_00011.npz", "test_00012.npz"]
    with np.load(paths[0], allow_pickle=False) as npz:
        assert set(npz.files) == {"xyz", "rgb", "semantic", "instance", "meta"}
        assert npz["xyz"].dtype == np.float32 and npz["rgb"].dtype == np.uint8
        assert npz["semantic"].dtype == np.int16 and npz["instance"].dtype == np.int32
        meta = json.loads(str(npz["meta"]))
        assert meta["class_names"] == list(SCANNET20_CLASSES) and meta["seed"] == 200_011
        xyz = npz["xyz"]
    expected = generate_scene(200_011, SMALL)
    np.testing.assert_array_equal(xyz, expected.xyz)
    scene = read_scene(paths[0])
    np.testing.assert_array_equal(scene.instance, expected.instance)
    assert read_cloud(paths[0]).num_points == expected.num_points
    with np.load(tmp_path / "test_00011.sequence.npz", allow_pickle=False) as npz:
        assert {"xyz_sensor", "rgb", "semantic", "instance", "scan_offsets", "stamps_ns",
                "poses", "meta"} == set(npz.files)
        assert npz["poses"].shape[1:] == (4, 4) and npz["stamps_ns"].dtype == np.int64
        assert json.loads(str(npz["meta"]))["frame_id"] == "camera_optical"
    png = (tmp_path / "test_00011.preview.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_gen_data_command(tmp_path, capsys):
    assert main(["gen-data", str(tmp_path / "out"), "--scenes", "2", "--seed", "3", "--small",
                 "--lidar", "--quiet"]) == 0
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["scene_000003.npz", "scene_000004.npz"]
    with np.load(tmp_path / "out" / files[0], allow_pickle=False) as npz:
        assert json.loads(str(npz["meta"]))["sensor"]["kind"] == "lidar"
    assert "wrote 2 scenes" in capsys.readouterr().out


def test_gen_data_room_kind_makes_the_rooms_that_hold_the_rare_classes(tmp_path, capsys):
    assert main(["gen-data", str(tmp_path / "bath"), "--scenes", "2", "--small", "--quiet",
                 "--room-kind", "bathroom", "--room-size", "2.5", "4"]) == 0
    for path in sorted((tmp_path / "bath").glob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
        assert meta["room"]["kind"] == "bathroom"
        assert meta["params"]["room_size"] == [2.5, 4.0]
        assert "toilet" in {o["class_name"] for o in meta["instances"]}
    capsys.readouterr()
    assert main(["gen-data", str(tmp_path / "bad"), "--room-size", "1", "2"]) != 0
    assert "room_size" in capsys.readouterr().err


def test_parallel_generation_writes_the_same_files(tmp_path):
    serial = generate_dataset(tmp_path / "a", 2, seed=20, progress=False, params=SMALL)
    parallel = generate_dataset(tmp_path / "b", 2, seed=20, progress=False, params=SMALL,
                                workers=2)
    for a, b in zip(serial, parallel, strict=True):
        with np.load(a) as x, np.load(b) as y:
            for k in x.files:
                np.testing.assert_array_equal(x[k], y[k])


@pytest.mark.parametrize("change, message", [
    ({"sensor": "sonar"}, "sensor"), ({"voxel_size": 0.0}, "voxel_size"),
    ({"room_size": (5.0, 3.0)}, "room_size"), ({"room_kind": "garage"}, "room_kind"),
    ({"l_shape_prob": 1.5}, "l_shape_prob"),
])
def test_bad_params_are_rejected_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        SceneParams(**change)


# ---------------------------------------------------------------------------------------------
# Sensor model


def _facing_wall(distance: float, cam: scanner.CameraModel, seed: int = 0):
    """Scan a wall at x = distance from a camera at the origin looking along +x."""
    v = np.array([[distance, -50, -50], [distance, 50, -50], [distance, 50, 50],
                  [distance, -50, 50]], dtype=np.float32)
    world = scanner.build_world([(v, np.array([[0, 1, 2], [0, 2, 3]], np.int32),
                                  np.full((2, 3), 0.5, np.float32), np.zeros(2, np.uint8))],
                                np.random.default_rng(seed))
    pose = np.eye(4)
    pose[:3, :3] = np.column_stack([[0, -1, 0], [0, 0, -1], [1, 0, 0]])  # optical: z -> +x
    traj = scanner.Trajectory(pose[None], np.array([0], dtype=np.int64), 0.0)
    return scanner.scan(world, traj, cam, np.random.default_rng(seed))


def test_depth_noise_grows_with_distance_like_the_model():
    cam = scanner.CameraModel(width=128, height=96, max_range=8.0, dropout=0.0,
                              grazing_dropout=0.0, edge_drop=0.0, edge_flying=0.0)
    measured = []
    for d in (1.0, 3.0, 5.0):
        raw = _facing_wall(d, cam)
        residual = raw.xyz_room[:, 0].astype(np.float64) - d
        assert len(residual) == 128 * 96  # no dropout asked for
        assert abs(residual.mean()) < 4 * cam.sigma(d) / math.sqrt(len(residual))
        assert residual.std() == pytest.approx(float(cam.sigma(d)), rel=0.05)
        measured.append(residual.std())
        np.testing.assert_allclose(raw.xyz_sensor[:, 2], raw.xyz_room[:, 0], atol=1e-5)
    assert measured[0] < measured[1] < measured[2]


def test_range_limits_and_dropout():
    cam = scanner.CameraModel(width=64, height=48, max_range=4.0, dropout=0.2,
                              grazing_dropout=0.0, edge_drop=0.0, edge_flying=0.0,
                              noise_base=0.0, noise_quadratic=0.0)
    assert len(_facing_wall(5.0, cam).obj) == 0  # beyond max_range
    n = len(_facing_wall(2.0, cam).obj)
    assert n / (64 * 48) == pytest.approx(0.8, abs=0.03)


def test_edge_artefacts_touch_only_depth_discontinuities():
    cam = scanner.CameraModel(edge_drop=0.5, edge_flying=0.3)
    depth = np.full((1, 30, 30), 1.0, dtype=np.float32)
    depth[:, :, 15:] = 3.0
    depth[:, 0, 0] = np.nan  # a pixel with no return
    out, flying_mask = scanner._edge_artefacts(depth, cam, np.random.default_rng(1))
    edge_cols = np.zeros((30, 30), dtype=bool)
    edge_cols[:, 14:16] = True
    near_hole = np.zeros((30, 30), dtype=bool)
    near_hole[:2, :2] = True
    untouched = ~edge_cols & ~near_hole
    np.testing.assert_array_equal(out[0][untouched], depth[0][untouched])
    e = out[0][edge_cols]
    dropped = np.isnan(e)
    flying = ~dropped & (e > 1.0) & (e < 3.0)
    kept = ~dropped & ((e == 1.0) | (e == 3.0))
    assert dropped.any() and flying.any() and kept.any()
    assert np.all(dropped | flying | kept)
    np.testing.assert_array_equal(flying_mask[0][edge_cols], flying)
    assert not flying_mask[0][~edge_cols].any()


# ---------------------------------------------------------------------------------------------
# Fast paths against slow references


def _majority_reference(p2v, labels, m):
    return np.array([np.bincount(labels[p2v == v]).argmax() for v in range(m)])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_majority_matches_a_slow_reference(m, n_labels, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(m, 5 * m + 1))
    p2v = np.concatenate([np.arange(m), rng.integers(0, m, n - m)])
    labels = rng.integers(0, n_labels, n)
    np.testing.assert_array_equal(synthetic._majority(p2v, labels, m),
                                  _majority_reference(p2v, labels, m))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 5), st.floats(0.05, 0.5), st.integers(0, 2**31 - 1))
def test_downsample_matches_a_slow_reference(n, n_labels, voxel, seed):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    rgb = rng.random((n, 3)).astype(np.float32)
    obj = rng.integers(0, n_labels, n)
    out_xyz, out_rgb, out_obj, keep = downsample(xyz, rgb, obj, voxel)
    origin = xyz.min(axis=0).astype(np.float64)
    keys = [tuple(k) for k in np.floor((xyz - origin) / voxel).astype(np.int64)]
    expected = {}
    for key in dict.fromkeys(keys):  # first-occurrence order
        members = [i for i, k in enumerate(keys) if k == key]
        counts = np.bincount(obj[members])
        winner = int(counts.argmax())
        sel = [i for i in members if obj[i] == winner]
        expected[key] = (xyz[sel].mean(0), rgb[sel].mean(0), winner)
    assert len(out_xyz) == len(expected)
    for row, (p, c, w) in enumerate(expected.values()):
        np.testing.assert_allclose(out_xyz[row], p, atol=1e-5)
        np.testing.assert_allclose(out_rgb[row], c, atol=1e-5)
        assert out_obj[row] == w
    assert keep.sum() == sum(1 for i in range(n) if obj[i] == out_obj[list(expected).index(keys[i])])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=8, max_size=8), st.floats(-math.pi, math.pi))
def test_polygon_overlap_matches_interval_logic(v, angle):
    """Two axis-aligned rectangles turned by the same angle overlap iff their intervals do."""
    ax0, ax1 = sorted(v[0:2])
    ay0, ay1 = sorted(v[2:4])
    bx0, bx1 = sorted(v[4:6])
    by0, by1 = sorted(v[6:8])
    tol = layout.CONTACT_TOLERANCE
    assume(min(ax1 - ax0, ay1 - ay0, bx1 - bx0, by1 - by0) >= 0.01)
    ox = min(ax1, bx1) - max(ax0, bx0)
    oy = min(ay1, by1) - max(ay0, by0)
    assume(abs(ox - tol) > 1e-6 and abs(oy - tol) > 1e-6)  # off the decision boundary
    expected = ox > tol and oy > tol
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    a = layout._rect(ax0, ay0, ax1, ay1) @ rot.T
    b = layout._rect(bx0, by0, bx1, by1) @ rot.T
    assert layout.polygons_overlap(a, b) == expected


# ---------------------------------------------------------------------------------------------
# Furniture and layouts

FACTORIES = [fm.chair, fm.office_chair, fm.armchair, fm.stool, fm.table, fm.coffee_table, fm.desk,
             fm.corner_desk, fm.cabinet, fm.bookshelf, fm.refrigerator, fm.sofa, fm.corner_sofa,
             fm.bed, fm.toilet, fm.sink, fm.vessel_sink, fm.bathtub, fm.ottoman, fm.trash_bin,
             fm.coat_rack, fm.bench, fm.piano, fm.washing_machine, fm.clutter, fm.floor_clutter]
# (class, height range, longest side range) in metres: real furniture sizes.
SIZES = {fm.CHAIR: ((0.6, 1.3), (0.35, 1.0)), fm.TABLE: ((0.3, 0.8), (0.4, 2.3)),
         fm.DESK: ((0.68, 1.3), (0.9, 1.9)), fm.CABINET: ((0.4, 2.2), (0.35, 1.3)),
         fm.BOOKSHELF: ((0.75, 2.2), (0.55, 1.25)), fm.SOFA: ((0.6, 1.05), (1.3, 3.0)),
         fm.BED: ((0.75, 1.4), (1.9, 2.3)), fm.REFRIGERATOR: ((0.45, 2.0), (0.45, 1.0)),
         fm.TOILET: ((0.65, 0.95), (0.5, 0.85)), fm.SINK: ((0.1, 1.1), (0.3, 0.7)),
         fm.BATHTUB: ((0.45, 0.9), (1.45, 1.85))}


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_parametric_models_are_valid_and_vary(factory):
    sizes = []
    for seed in range(8):
        m = factory(np.random.default_rng(seed))
        assert np.isfinite(m.vertices).all()
        assert m.triangles.min() >= 0 and m.triangles.max() < len(m.vertices)
        assert len(m.tri_color) == len(m.tri_texture) == m.num_triangles
        assert m.tri_color.min() >= 0 and m.tri_color.max() <= 1
        lo, hi = m.vertices.min(0), m.vertices.max(0)
        np.testing.assert_allclose([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]], 0, atol=1e-5)
        if m.class_id in SIZES:
            (h0, h1), (l0, l1) = SIZES[m.class_id]
            assert h0 <= m.size[2] <= h1, (m.kind, m.size)
            assert l0 <= m.size[:2].max() <= l1, (m.kind, m.size)
        sizes.append(tuple(np.round(m.size, 3)))
    assert len(set(sizes)) >= 6  # real shape variation per class


def test_mit0_meshes_ship_with_their_licence():
    assert (fm.MESH_DIR / "UPSTREAM_LICENSE_MIT-0.txt").read_text().startswith("Copyright")
    assert len(fm.MESHES) == 13
    for spec in fm.MESHES:
        m = fm.mesh_model(np.random.default_rng(0), spec)
        assert m.class_id == spec.class_id and m.num_triangles > 50
        lo, hi = m.vertices.min(0), m.vertices.max(0)
        np.testing.assert_allclose([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]], 0, atol=1e-5)


@pytest.mark.parametrize("make", [
    fm.chair, fm.office_chair, fm.armchair, fm.sofa, fm.bed,
    *[(lambda rng, s=s: fm.mesh_model(rng, s)) for s in fm.MESHES
      if s.class_id in (fm.CHAIR, fm.BED) or s.file == "sofab_01.ply"]])
def test_backs_face_minus_y(make):
    """The frame convention the layout relies on: the tall part (chair back, headboard, sofa
    back) is towards -y, so "back against the wall" puts it at the wall."""
    for seed in range(4):
        m = make(np.random.default_rng(seed))
        v = m.vertices
        top = v[v[:, 2] > 0.8 * v[:, 2].max()]
        assert top[:, 1].mean() < -0.1 * m.size[1], m.kind


@pytest.mark.parametrize("kind", layout.ROOM_KINDS)
def test_layouts_keep_furniture_inside_the_room(kind):
    for seed in range(3):
        params = dataclasses.replace(SMALL, room_kind=kind, room_size=(3.0, 7.0))
        geo = furnish_room(seed, params)
        polygon = geo.room.polygon
        placed = [o for o in geo.objects if o.role not in ("door", "window")]
        assert placed, kind
        corners = np.vstack([o.footprint for o in placed])
        assert _distance_outside_polygon(corners, polygon).max() <= 2 * layout.CONTACT_TOLERANCE
        for o in placed:
            assert o.z[1] <= geo.room.height
        # Only wall-hung things and things standing on other things leave the floor.
        off_floor = {"picture", "curtain", "clutter", "kitchen", "bathroom"}
        for o in placed:
            assert o.z[0] <= 0.01 or o.role in off_floor, (o.role, o.model.kind, o.z)
