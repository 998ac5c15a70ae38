"""Scene readers (internal npz, SoftGroup ScanNet/S3DIS .pth, plain clouds), the network input
contract, augmentation and collation. Fixture files are written by the tests in each format."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy import ndimage

from ros2_inst3d.classes import SCANNET20_CLASSES
from ros2_inst3d.data.augment import (
    Augmentation, augment, crop_to_budget, elastic_distortion, scene_transform, smoothed_noise,
)
from ros2_inst3d.classes import S3DIS_CLASSES
from ros2_inst3d.data.batching import collate
from ros2_inst3d.data.datasets import (
    SceneDataset,
    find_scene_files,
    read_scene,
    scene_files,
    scene_stem,
)
from ros2_inst3d.data.inputs import OFFICIAL_TEST_YAW, network_input, yaw_matrix

NO_AUG = Augmentation(jitter_std=0.0, flip_x=False, rotate_z=False, scale_range=None, elastic=(),
                      color_noise_std=0.0, max_points=None, min_points=0)


def scene_arrays(n=300, seed=0):
    rng = np.random.default_rng(seed)
    xyz = (rng.random((n, 3)) * [3.0, 2.0, 1.5] + [10.0, -4.0, 0.0]).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    semantic = rng.choice([0, 1, 4, 6, -100], size=n)
    instance = np.where(np.isin(semantic, [4, 6]), rng.integers(0, 4, size=n), -100)
    return xyz, rgb, semantic, instance


def write_npz(path, n=300, seed=0, labels=True, class_names=None):
    xyz, rgb, semantic, instance = scene_arrays(n, seed)
    arrays = dict(xyz=xyz, rgb=rgb)
    if labels:
        arrays.update(semantic=semantic.astype(np.int16), instance=instance.astype(np.int32))
    meta = {"seed": seed}
    if class_names is not None:
        meta["class_names"] = list(class_names)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return xyz, rgb, semantic, instance


def write_scannet_pth(path, n=300, seed=0, labels=True):
    xyz, rgb, semantic, instance = scene_arrays(n, seed)
    centred = xyz.astype(np.float64) - xyz.astype(np.float64).mean(0)
    colors = rgb / 127.5 - 1  # float64 in [-1, 1], as prepare_data_inst.py writes
    data = (centred, colors, semantic.astype(np.float64), instance.astype(np.float64)) if labels \
        else (centred, colors)
    torch.save(data, path)
    return centred, rgb, semantic, instance


# --------------------------------------------------------------------------------------------
# readers


def test_scene_files_pools_folders_and_files_in_order(tmp_path):
    for folder, seeds in (("a", (1, 0)), ("b", (2,))):
        (tmp_path / folder).mkdir()
        for seed in seeds:
            write_npz(tmp_path / folder / f"s{seed}.npz", seed=seed)
    single = tmp_path / "b" / "s2.npz"
    assert scene_files([tmp_path / "b", tmp_path / "a", single]) == [
        single, tmp_path / "a" / "s0.npz", tmp_path / "a" / "s1.npz", single]
    assert len(SceneDataset([str(tmp_path / "a"), str(single)])) == 3
    (tmp_path / "empty").mkdir()
    for source, message in (([tmp_path / "a", tmp_path / "empty"], "no scene files in"),
                            ([tmp_path / "a", tmp_path / "gone"], "gone does not exist"),
                            ([], "no scene folders or files given")):
        with pytest.raises(FileNotFoundError, match=message):
            scene_files(source)


def test_internal_npz(tmp_path):
    xyz, rgb, semantic, instance = write_npz(tmp_path / "room.npz")
    scene = read_scene(tmp_path / "room.npz")
    assert scene.name == "room" and scene.has_labels
    assert scene.class_names == SCANNET20_CLASSES
    assert np.array_equal(scene.xyz, xyz) and np.array_equal(scene.rgb, rgb)
    assert scene.semantic.dtype == np.int32 and np.array_equal(scene.semantic, semantic)
    assert np.array_equal(scene.instance, instance)


def test_internal_npz_class_names_from_meta(tmp_path):
    write_npz(tmp_path / "s.npz", class_names=S3DIS_CLASSES)
    assert read_scene(tmp_path / "s.npz").class_names == S3DIS_CLASSES


def test_scannet_pth_round_trips_colours_and_labels(tmp_path):
    xyz, rgb, semantic, instance = write_scannet_pth(tmp_path / "scene0000_00_inst_nostuff.pth")
    scene = read_scene(tmp_path / "scene0000_00_inst_nostuff.pth")
    assert scene.name == "scene0000_00_inst_nostuff"
    assert scene.class_names == SCANNET20_CLASSES
    assert np.allclose(scene.xyz, xyz, atol=1e-6) and scene.xyz.dtype == np.float32
    assert np.array_equal(scene.rgb, rgb)  # (c/127.5 - 1 + 1) * 127.5 rounds back exactly
    assert np.array_equal(scene.semantic, semantic) and np.array_equal(scene.instance, instance)


def test_scannet_test_split_pth_has_no_labels(tmp_path):
    write_scannet_pth(tmp_path / "t.pth", labels=False)
    scene = read_scene(tmp_path / "t.pth")
    assert not scene.has_labels and scene.semantic is None and scene.rgb.shape == (300, 3)


def test_s3dis_pth(tmp_path):
    rng = np.random.default_rng(3)
    n = 200
    xyz = (rng.random((n, 3)) * 5 + 20).astype(np.float32)  # room frame, not centred
    rgb = rng.integers(0, 256, (n, 3))
    semantic = rng.integers(0, 13, n).astype(np.int64)
    instance = np.where(rng.random(n) < 0.9, rng.integers(1, 9, n), -100).astype(np.int64)
    torch.save((xyz, rgb / 127.5 - 1, semantic, instance, np.array([3]), "Area_5_office_1"),
               tmp_path / "Area_5_office_1_inst_nostuff.pth")
    scene = read_scene(tmp_path / "Area_5_office_1_inst_nostuff.pth")
    assert scene.class_names == S3DIS_CLASSES and len(S3DIS_CLASSES) == 13
    assert np.array_equal(scene.xyz, xyz) and np.array_equal(scene.rgb, rgb)
    assert np.array_equal(scene.semantic, semantic) and np.array_equal(scene.instance, instance)


def test_pth_holding_tensors(tmp_path):
    xyz, rgb, semantic, instance = scene_arrays(50)
    torch.save((torch.from_numpy(xyz), torch.from_numpy(rgb / 127.5 - 1),
                torch.from_numpy(semantic), torch.from_numpy(instance)), tmp_path / "x.pth")
    scene = read_scene(tmp_path / "x.pth")
    assert np.array_equal(scene.rgb, rgb) and np.array_equal(scene.instance, instance)


def test_plain_ply_for_inference(tmp_path):
    xyz, rgb, _, _ = scene_arrays(20)
    lines = ["ply", "format ascii 1.0", "element vertex 20", "property float x",
             "property float y", "property float z", "property uchar red", "property uchar green",
             "property uchar blue", "end_header"]
    lines += [f"{x} {y} {z} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(xyz.tolist(), rgb.tolist())]
    (tmp_path / "cloud.ply").write_text("\n".join(lines) + "\n")
    scene = read_scene(tmp_path / "cloud.ply")
    assert not scene.has_labels
    assert np.allclose(scene.xyz, xyz) and np.array_equal(scene.rgb, rgb)


@pytest.mark.parametrize("content, message", [
    ({"not": "a tuple"}, "expected a tuple"),
    ((np.zeros((4, 3)), np.full((4, 3), 200.0)), "stores rgb/127.5-1"),
    ((np.zeros((4, 3)), np.zeros((4, 3)), np.array([0, 1, 25, 2]), np.zeros(4)), "outside the 20"),
    ((np.zeros((4, 3)), np.zeros((4, 3)), np.zeros(3), np.zeros(4)), "expected \\(4,\\)"),
    ((np.zeros((4, 3)), np.zeros((4, 3)), np.zeros(4), np.array([0, -3, 0, 0])), "negative"),
])
def test_bad_pth_files_say_why(tmp_path, content, message):
    torch.save(content, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=message):
        read_scene(tmp_path / "bad.pth")


def test_pth_with_arbitrary_objects_is_refused(tmp_path):
    torch.save((np.zeros((2, 3)), np.zeros((2, 3)), functools.partial(print)), tmp_path / "p.pth")
    with pytest.raises(ValueError, match="cannot read"):
        read_scene(tmp_path / "p.pth")


def test_find_scene_files_and_stems(tmp_path):
    write_npz(tmp_path / "b.npz")
    write_scannet_pth(tmp_path / "a_inst_nostuff.pth")
    np.savez(tmp_path / "b.labels.npz", instance=np.zeros(3, np.int32))
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in find_scene_files(tmp_path)] == ["a_inst_nostuff.pth", "b.npz"]
    assert scene_stem("x/b.labels.npz") == "b" and scene_stem("a_inst_nostuff.pth") == "a_inst_nostuff"


# --------------------------------------------------------------------------------------------
# the network input contract


def test_network_input_matches_the_official_recipe():
    xyz, rgb, _, _ = scene_arrays(400, seed=5)
    net = network_input(xyz, rgb, 0.1)
    centred = xyz.astype(np.float64) - xyz.astype(np.float64).mean(0)
    assert np.allclose(net.xyz, centred, atol=1e-6)
    assert np.allclose(net.point_feats[:, :3], rgb / 127.5 - 1, atol=1e-6)
    assert np.allclose(net.point_feats[:, 3:], centred, atol=1e-6)
    # slow reference: voxel of each point, first-occurrence numbering, mean features
    cell = np.floor((net.xyz.astype(np.float64) - net.xyz.min(0)) / 0.1).astype(int)
    order: dict[tuple, int] = {}
    for c in map(tuple, cell):
        order.setdefault(c, len(order))
    assert net.voxel_coords.tolist() == [list(c) for c in order]
    assert [order[tuple(c)] for c in cell] == net.point_to_voxel.tolist()
    for v in range(0, net.num_voxels, 7):
        members = net.point_to_voxel == v
        assert np.allclose(net.voxel_feats[v], net.point_feats[members].mean(0), atol=1e-5)
    assert net.voxel_coords.dtype == np.int32 and net.point_to_voxel.dtype == np.int64
    # 3 m / 0.1 m -> 30 voxels < 128: the official clip
    assert net.spatial_shape.tolist() == [128, 128, 128]
    # at 1 cm the cloud spans 300 x 200 x 150 voxels: spatial_shape = max coord + 1
    fine = network_input(xyz, rgb, 0.01)
    cells = np.floor((fine.xyz.astype(np.float64) - fine.xyz.min(0)) / 0.01).astype(int)
    assert fine.spatial_shape.tolist() == (cells.max(0) + 1).tolist()
    assert min(fine.spatial_shape) > 128


def reference_fixture(name):
    """An official-code fixture, shipped in test/data/reference/ (test/data/README.md)."""
    from pathlib import Path

    return np.load(Path(__file__).resolve().parent / "data" / "reference" / name)


@pytest.mark.parametrize("fixture", ["softgroup_small_pointwise.npz", "isbnet_small_pointwise.npz"])
def test_network_input_reproduces_the_official_voxelization(fixture):
    # Produced by SoftGroup's / ISBNet's own transform_test + voxelization_idx + voxelization:
    # 0.35 pi test turn, first-occurrence voxel order, spatial shape [128, 135, 128] (odd on y).
    d = reference_fixture(fixture)
    net = network_input(d["in/xyz_centered"], d["in/rgb_uint8"], 0.02, yaw=OFFICIAL_TEST_YAW,
                        center=False)  # the fixture's xyz are already centred
    assert np.allclose(net.xyz, d["in/coords_float"], atol=1e-6)
    assert np.array_equal(net.voxel_coords, d["in/voxel_coords"][:, 1:])
    assert np.array_equal(net.point_to_voxel, d["in/point_to_voxel"])
    assert net.spatial_shape.tolist() == d["in/spatial_shape"].tolist() == [128, 135, 128]
    assert np.allclose(net.voxel_feats, d["out/voxel_feats_in"], atol=1e-6)
    assert np.allclose(net.point_feats[:, :3], d["in/feats_rgb"], atol=1e-6)


def test_network_input_yaw_and_frames():
    xyz, rgb, _, _ = scene_arrays(100)
    net = network_input(xyz, rgb, 0.05, yaw=OFFICIAL_TEST_YAW)
    assert np.allclose(net.to_caller_frame(net.xyz), xyz, atol=1e-5)
    assert np.allclose(net.to_input_frame(xyz), net.xyz, atol=1e-5)
    # a point on +x turns towards +y by the yaw: xyz @ R, R = [[c, s, 0], [-s, c, 0], [0, 0, 1]]
    turned = np.array([[1.0, 0.0, 0.0]]) @ yaw_matrix(0.5)
    assert np.allclose(turned, [[math.cos(0.5), math.sin(0.5), 0.0]])
    assert network_input(xyz, rgb, 0.05, with_coords=False).point_feats.shape == (100, 3)


def test_network_input_rejects_missing_colour_and_empty_clouds():
    xyz, _, _, _ = scene_arrays(10)
    with pytest.raises(ValueError, match="need colour"):
        network_input(xyz, None, 0.02)
    with pytest.raises(ValueError, match="empty"):
        network_input(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), 0.02)


def test_xyz_only_input_is_a_constant_channel_and_needs_no_colour():
    xyz, rgb, _, _ = scene_arrays(100)
    net = network_input(xyz, None, 0.05, in_channels=1)
    assert net.point_feats.shape == (100, 4) and np.all(net.point_feats[:, 0] == 1.0)
    assert np.allclose(net.point_feats[:, 1:], net.xyz)
    # Colour given to an xyz-only model changes nothing.
    assert np.array_equal(network_input(xyz, rgb, 0.05, in_channels=1).voxel_feats, net.voxel_feats)
    with pytest.raises(ValueError, match="in_channels"):
        network_input(xyz, rgb, 0.05, in_channels=2)


# --------------------------------------------------------------------------------------------
# augmentation


def test_smoothed_noise_equals_the_official_six_box_blurs():
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    ours = smoothed_noise((7, 5, 6), rng_a)
    noise = rng_b.standard_normal((7, 5, 6)).astype(np.float32)
    kernels = [np.ones(shape, np.float32) / 3 for shape in ((3, 1, 1), (1, 3, 1), (1, 1, 3))]
    for k in kernels + kernels:  # blur0, blur1, blur2, blur0, blur1, blur2
        noise = ndimage.convolve(noise, k, mode="constant", cval=0.0)
    assert np.allclose(ours, noise, atol=1e-6)


def test_elastic_displacement_at_lattice_nodes():
    # Lattice nodes sit at -(b-1)g + 2 g i; a point on a node moves by magnitude * noise there.
    g, mag = 4.0, 10.0
    x = np.array([[0.0, 0.0, 0.0], [8.0, -8.0, 0.0], [-16.0, 8.0, 8.0], [17.0, 0.0, 0.0]])
    out = elastic_distortion(x, g, mag, np.random.default_rng(5))
    nodes = np.abs(x).max(0).astype(int) // int(g) + 3  # [7, 5, 5]
    rng = np.random.default_rng(5)
    lattices = [smoothed_noise(tuple(nodes), rng) for _ in range(3)]
    for p in range(3):
        idx = tuple(((x[p] + (nodes - 1) * g) / (2 * g)).astype(int))
        expected = x[p] + mag * np.array([lat[idx] for lat in lattices])
        assert np.allclose(out[p], expected, atol=1e-5)
    assert not np.allclose(out, x)


def test_scene_transform_keeps_shape_up_to_scale_without_jitter():
    aug = Augmentation(jitter_std=0.0)
    xyz, _, _, _ = scene_arrays(50)
    for seed in range(5):
        m, scale = scene_transform(np.random.default_rng(seed), aug)
        moved = (xyz * scale) @ m
        assert 0.95 <= scale <= 1.05
        d0 = np.linalg.norm(xyz[1:] - xyz[:-1], axis=1)
        d1 = np.linalg.norm(moved[1:] - moved[:-1], axis=1)
        assert np.allclose(d1, d0 * scale, rtol=1e-5)
        assert np.allclose(moved[:, 2], xyz[:, 2] * scale, atol=1e-5)  # turns about z only


def test_augment_is_reproducible_and_colour_noise_is_per_scan():
    xyz, rgb, _, _ = scene_arrays(500)
    xyz = xyz - xyz.mean(0)
    aug = Augmentation(min_points=0, elastic=((6.0, 40.0),))
    a = augment(xyz, rgb, 0.02, aug, np.random.default_rng(1))
    b = augment(xyz, rgb, 0.02, aug, np.random.default_rng(1))
    c = augment(xyz, rgb, 0.02, aug, np.random.default_rng(2))
    assert np.array_equal(a.xyz, b.xyz) and np.array_equal(a.grid_xyz, b.grid_xyz)
    assert not np.allclose(a.xyz, c.xyz)
    shift = a.rgb - rgb[a.keep].astype(np.float32)
    assert np.allclose(shift, shift[0], atol=1e-3) and np.abs(shift[0]).max() > 0
    # the grid is distorted, the xyz features are not (distances between grid points change)
    assert a.grid_xyz.min() >= 0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), budget=st.integers(50, 400))
def test_crop_respects_the_point_budget(seed, budget):
    rng = np.random.default_rng(seed)
    grid = rng.random((600, 3)) * [300, 200, 40]
    aug = Augmentation(max_points=budget, crop_extent=256, crop_step=16)
    shifted, keep = crop_to_budget(grid, aug, rng)
    assert keep.sum() <= budget
    inside = shifted[keep]
    assert inside.min() >= 0 and np.all(inside[:, 2] < 256)


def test_augment_drops_scans_below_min_points():
    xyz, rgb, _, _ = scene_arrays(100)
    assert augment(xyz - xyz.mean(0), rgb, 0.02, Augmentation(min_points=101),
                   np.random.default_rng(0)) is None


# --------------------------------------------------------------------------------------------
# dataset and collate


def test_dataset_over_mixed_formats_and_collate(tmp_path):
    _, rgb0, sem0, inst0 = write_npz(tmp_path / "a.npz", n=300, seed=1)
    _, rgb1, sem1, inst1 = write_scannet_pth(tmp_path / "b_inst_nostuff.pth", n=200, seed=2)
    ds = SceneDataset(tmp_path, voxel_size=0.1, require_labels=True)
    assert len(ds) == 2
    s0, s1 = ds[0], ds[1]
    assert np.allclose(s0.xyz.mean(0), 0, atol=1e-5)  # centred like the official preprocessing
    batch = collate([s0, None, s1], voxel_size=0.1)
    n = 500
    assert batch["batch_size"] == 2 and batch["scene_names"] == ["a", "b_inst_nostuff"]
    assert batch["coords"].dtype == torch.int32 and batch["coords"].shape[1] == 4
    assert batch["feats"].dtype == torch.float32 and batch["feats"].shape[1] == 6
    assert batch["point_to_voxel"].dtype == torch.int64 and batch["point_to_voxel"].shape == (n,)
    assert batch["batch_offsets"].tolist() == [0, 300, 500]
    coords = batch["coords"].numpy()
    p2v = batch["point_to_voxel"].numpy()
    # every point lands in a voxel of its own scan, and the batch column is contiguous
    assert np.array_equal(coords[p2v, 0], batch["point_batch"].numpy())
    assert np.all(np.diff(coords[:, 0]) >= 0)
    # per scan, voxel coords are floor((xyz - min) / voxel_size) of its points
    xyz = batch["xyz"].numpy()
    for b, (lo, hi) in enumerate([(0, 300), (300, 500)]):
        cell = np.floor((xyz[lo:hi] - xyz[lo:hi].min(0)) / 0.1).astype(int)
        assert np.array_equal(coords[p2v[lo:hi], 1:], cell)
    # voxel features are the means of the point features
    feats = batch["feats"].numpy()
    pf = batch["point_feats"].numpy()
    sums = np.zeros_like(feats, dtype=np.float64)
    np.add.at(sums, p2v, pf)
    assert np.allclose(feats, sums / np.bincount(p2v)[:, None], atol=1e-5)
    assert np.allclose(pf[:300, :3], rgb0 / 127.5 - 1, atol=1e-6)
    # labels: semantic kept, instances renumbered 0..I-1 over the batch
    assert np.array_equal(batch["semantic"].numpy(), np.concatenate([sem0, sem1]))
    inst = batch["instance"].numpy()
    n0 = np.unique(inst0[inst0 >= 0]).size
    n1 = np.unique(inst1[inst1 >= 0]).size
    assert sorted(np.unique(inst[inst >= 0])) == list(range(n0 + n1))
    assert np.all(inst[:300][inst0 < 0] == -100) and np.all(inst[300:][inst1 < 0] == -100)
    assert set(np.unique(inst[:300][inst0 >= 0])) == set(range(n0))
    # instance tables against a direct per-instance computation
    for i in range(n0 + n1):
        members = inst == i
        assert batch["instance_num_points"][i] == members.sum()
        assert np.allclose(batch["instance_center"][i].numpy(), xyz[members].mean(0), atol=1e-5)
        assert batch["instance_class"][i] == batch["semantic"].numpy()[np.flatnonzero(members)[0]]
        assert np.allclose(batch["offset_target"].numpy()[members],
                           xyz[members].mean(0) - xyz[members], atol=1e-5)
    assert np.all(batch["offset_target"].numpy()[inst < 0] == 0)
    assert batch["spatial_shape"].tolist() == [128, 128, 128]


def test_dataset_augmentation_seeding(tmp_path):
    write_npz(tmp_path / "a.npz", n=400)
    aug = Augmentation(min_points=0)
    ds = SceneDataset(tmp_path / "a.npz", augmentation=aug, seed=7)
    first = ds[0]
    assert np.array_equal(first.xyz, ds[0].xyz)  # same epoch, same item: same draw
    ds.set_epoch(1)
    assert not np.allclose(first.xyz, ds[0].xyz)
    assert first.grid_xyz is not None
    batch = collate([first], voxel_size=0.02)
    # voxels come from the distorted grid, features from the undistorted xyz
    grid = first.grid_xyz
    cell = np.floor((grid - grid.min(0)) / 0.02).astype(int)
    assert np.array_equal(batch["coords"].numpy()[batch["point_to_voxel"].numpy(), 1:], cell)
    assert np.allclose(batch["xyz"].numpy(), first.xyz)


def test_dataset_eval_yaw_and_missing_labels(tmp_path):
    xyz, _, _, _ = write_npz(tmp_path / "u.npz", labels=False)
    plain = SceneDataset(tmp_path, yaw=OFFICIAL_TEST_YAW)
    s = plain[0]
    centred = xyz.astype(np.float64) - xyz.astype(np.float64).mean(0)
    assert np.allclose(s.xyz, centred @ yaw_matrix(OFFICIAL_TEST_YAW), atol=1e-5)
    assert not s.has_labels and np.all(s.semantic == -100)
    with pytest.raises(ValueError, match="no semantic/instance labels"):
        SceneDataset(tmp_path, require_labels=True)[0]


def test_torch_dataloader_uses_collate(tmp_path):
    for i in range(3):
        write_npz(tmp_path / f"s{i}.npz", n=150, seed=i)
    ds = SceneDataset(tmp_path, voxel_size=0.05)
    loader = torch.utils.data.DataLoader(ds, batch_size=2,
                                         collate_fn=functools.partial(collate, voxel_size=0.05))
    sizes = [b["batch_size"] for b in loader]
    assert sizes == [2, 1]


def test_dataset_skips_empty_and_truncated_archives_with_a_warning(tmp_path, caplog):
    write_npz(tmp_path / "good.npz", n=120)
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:200])
    with caplog.at_level("WARNING", logger="ros2_inst3d.data.datasets"):
        ds = SceneDataset(tmp_path, require_labels=True)
    assert [f.name for f in ds.files] == ["good.npz"] and len(ds) == 1
    assert {f.name for f in ds.skipped_files} == {"empty.npz", "truncated.npz"}
    assert "skipping 2 unreadable scene file(s) of 3" in caplog.text
    assert ds[0].semantic.shape == (120,)
    (tmp_path / "good.npz").unlink()
    with pytest.raises(ValueError, match="no readable scene file"):
        SceneDataset(tmp_path)
