"""The ops of ISBNet and MTML (``instance_aware_fps``, ``mean_shift``, ``matrix_nms``) against
slow, obvious references written here; each op test runs on every available device ([cpu] +
[cuda if available]), so on a CUDA host it also compares the kernels with the references."""

from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pytest
import torch

from ros2_inst3d import ops

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def dist2_f32(a: np.ndarray, b: np.ndarray) -> np.float32:
    d = [np.float32(a[k]) - np.float32(b[k]) for k in range(3)]
    return np.float32(np.float32(d[0] * d[0]) + np.float32(d[1] * d[1])) + np.float32(d[2] * d[2])


def ref_ia_fps(points, num, candidate, offsets, seeds):
    """Point by point: running min distance to the samples so far (seeds first), pick the
    eligible maximum, ties to the lower index."""
    points = np.asarray(points, np.float32)
    seeds = set(int(s) for s in seeds)
    out, sample_offsets = [], [0]
    for b in range(len(offsets) - 1):
        rows = range(offsets[b], offsets[b + 1])
        eligible = [r for r in rows if candidate[r] and r not in seeds]
        dist = {r: np.float32(np.inf) for r in rows}
        for s in seeds:
            if offsets[b] <= s < offsets[b + 1]:
                for r in rows:
                    dist[r] = min(dist[r], dist2_f32(points[r], points[s]))
        picked = []
        for _ in range(min(num, len(eligible))):
            best = None
            for r in eligible:
                if r in picked:
                    continue
                if best is None or dist[r] > dist[best]:
                    best = r
            picked.append(best)
            for r in rows:
                dist[r] = min(dist[r], dist2_f32(points[r], points[best]))
        out += picked
        sample_offsets.append(sample_offsets[-1] + len(picked))
    return out, sample_offsets


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(6))
def test_instance_aware_fps_matches_reference(device, seed):
    rng = np.random.default_rng(seed)
    n0, n1 = int(rng.integers(1, 60)), int(rng.integers(0, 60))
    # Coarse grid coordinates: many equal distances, so the tie rule is exercised.
    points = rng.integers(0, 4, (n0 + n1, 3)).astype(np.float32) * 0.5
    candidate = rng.random(n0 + n1) < 0.7
    seeds = rng.choice(n0 + n1, size=int(rng.integers(0, 5)), replace=False)
    num = int(rng.integers(0, 40))
    offsets = [0, n0, n0 + n1]
    index, sample_offsets = ops.instance_aware_fps(
        torch.from_numpy(points).to(device), num, torch.from_numpy(candidate).to(device),
        batch_offsets=offsets, seeds=torch.from_numpy(seeds).to(device))
    expected, expected_offsets = ref_ia_fps(points, num, candidate, offsets, seeds)
    assert index.device.type == device
    assert index.cpu().tolist() == expected
    assert sample_offsets.cpu().tolist() == expected_offsets


def test_instance_aware_fps_spreads_over_instances_not_points():
    # Two instances of 200 and 10 points whose predicted centroids collapse onto one spot each:
    # plain FPS on the points would put most samples into the big one; IA-FPS on the centroids
    # takes one sample per instance before any second one.
    rng = np.random.default_rng(0)
    big = rng.normal(0, 0.3, (200, 3)).astype(np.float32)
    small = (rng.normal(0, 0.05, (10, 3)) + [3, 0, 0]).astype(np.float32)
    centroids = np.concatenate([np.zeros((200, 3)), np.tile([[3.0, 0, 0]], (10, 1))])
    centroids += rng.normal(0, 1e-3, centroids.shape)
    index, _ = ops.instance_aware_fps(torch.from_numpy(centroids.astype(np.float32)), 2,
                                      torch.ones(210, dtype=torch.bool))
    assert sorted(int(i) >= 200 for i in index) == [False, True]
    plain = ops.farthest_point_sample(torch.from_numpy(np.concatenate([big, small])), 2)
    assert plain.numel() == 2  # sanity: plain FPS runs on the same cloud


def test_instance_aware_fps_rejects_bad_input():
    xyz = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="candidate"):
        ops.instance_aware_fps(xyz, 2, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="seeds"):
        ops.instance_aware_fps(xyz, 2, torch.ones(4, dtype=torch.bool), seeds=torch.tensor([7]))
    with pytest.raises(ValueError, match="num_samples"):
        ops.instance_aware_fps(xyz, -1, torch.ones(4, dtype=torch.bool))


def ref_mean_shift(embedding, bandwidth, offsets, max_iters=30, tol=1e-3):
    """Loop version of ops.mean_shift's documented rule (bin seeds, shift, greedy merge,
    nearest-mode assignment); returns ids numbered by smallest point index."""
    e = np.asarray(embedding, np.float64)
    labels = np.full(len(e), -1)
    next_id = 0
    for b in range(len(offsets) - 1):
        rows = list(range(offsets[b], offsets[b + 1]))
        if not rows:
            continue
        cells: dict = {}
        for r in rows:
            cells.setdefault(tuple(np.floor(e[r] / bandwidth).astype(int)), []).append(r)
        keys = sorted(cells)
        modes = [e[cells[k]].mean(0) for k in keys]
        counts = [0] * len(modes)
        for i, m in enumerate(modes):
            for _ in range(max_iters):
                inside = [r for r in rows if ((e[r] - m) ** 2).sum() < bandwidth ** 2]
                new = e[inside].mean(0) if inside else m
                moved = np.linalg.norm(new - m)
                m = new
                counts[i] = len(inside)
                if moved <= tol * bandwidth:
                    break
            modes[i] = m
        order = sorted(range(len(modes)), key=lambda i: (-counts[i], i))
        kept = []
        for i in order:
            if all(((modes[i] - modes[j]) ** 2).sum() >= bandwidth ** 2 for j in kept):
                kept.append(i)
        for r in rows:
            d = [((e[r] - modes[j]) ** 2).sum() for j in kept]
            j = int(np.argmin(d))
            if d[j] < bandwidth ** 2:
                labels[r] = next_id + j
        next_id += len(kept)
    # Canonical numbering by smallest point index.
    remap, out = {}, np.full(len(e), -1)
    for r, lab in enumerate(labels):
        if lab >= 0:
            out[r] = remap.setdefault(lab, len(remap))
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(4))
def test_mean_shift_matches_reference_on_separated_blobs(device, seed):
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(1, 5))
    blobs = []
    for _ in range(2):  # two batch items
        centres = rng.normal(0, 4, (int(rng.integers(1, 5)), dim))
        sizes = rng.integers(3, 30, len(centres))
        blobs.append(np.concatenate([c + rng.normal(0, 0.08, (s, dim))
                                     for c, s in zip(centres, sizes)]))
    emb = np.concatenate(blobs).astype(np.float32)
    offsets = [0, len(blobs[0]), len(emb)]
    got = ops.mean_shift(torch.from_numpy(emb).to(device), 1.0, batch_offsets=offsets)
    assert got.device.type == device
    expected = ref_mean_shift(emb, 1.0, offsets)
    assert got.cpu().tolist() == expected.tolist()
    # Clusters never span two items.
    for c in set(expected.tolist()) - {-1}:
        members = np.flatnonzero(expected == c)
        assert (members < offsets[1]).all() or (members >= offsets[1]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_mean_shift_modes_skips_only_modes_that_stopped(device):
    """Modes that no longer move are not stepped again: the result equals stepping every mode
    every time, on an embedding where modes converge at different steps."""
    rng = np.random.default_rng(3)
    emb = torch.from_numpy(np.concatenate([rng.normal(0, 1.0, (300, 3)),
                                           rng.normal(4, 0.3, (100, 3))]).astype(np.float32))
    seeds = emb[::7].clone()
    bandwidth, iters = 0.8, 40
    modes, count = ops.mean_shift_modes(emb.to(device), seeds.to(device), bandwidth,
                                        max_iters=iters)
    every = seeds.clone()
    for _ in range(iters):  # the documented rule, every mode each step
        inside = ((every[:, None, :] - emb[None]) ** 2).sum(-1) < bandwidth ** 2
        every_count = inside.sum(1)
        moved = torch.where(every_count[:, None] > 0,
                            (inside.float() @ emb) / every_count.clamp_min(1)[:, None], every)
        shift = float((moved - every).norm(dim=1).max())
        every = moved
        if shift <= 1e-3 * bandwidth:
            break
    torch.testing.assert_close(modes.cpu(), every, atol=1e-5, rtol=0)
    assert count.cpu().tolist() == every_count.tolist()


def test_mean_shift_min_size_and_seed_cap():
    emb = torch.tensor([[0.0], [0.1], [0.05], [5.0]])
    assert ops.mean_shift(emb, 1.0).tolist() == [0, 0, 0, 1]
    assert ops.mean_shift(emb, 1.0, min_size=2).tolist() == [0, 0, 0, -1]
    # One seed (the most populated cell): the far point joins no mode.
    assert ops.mean_shift(emb, 1.0, max_seeds=1).tolist() == [0, 0, 0, -1]
    with pytest.raises(ValueError, match="bandwidth"):
        ops.mean_shift(emb, 0.0)
    with pytest.raises(TypeError, match="float32"):
        ops.mean_shift(emb.double(), 1.0)


def ref_matrix_nms(masks, scores, labels, sigma):
    """SOLOv2's formula written as loops over sorted masks."""
    k = len(scores)
    order = sorted(range(k), key=lambda i: (-scores[i], i))
    def iou(a, b):
        inter = np.logical_and(masks[a], masks[b]).sum()
        union = np.logical_or(masks[a], masks[b]).sum()
        return inter / union if union else 0.0
    def same(a, b):
        return labels is None or labels[a] == labels[b]
    out = list(scores)
    for pos_j, j in enumerate(order):
        coef = 1.0
        for pos_i in range(pos_j):
            i = order[pos_i]
            iou_ij = iou(i, j) if same(i, j) else 0.0
            comp = max([iou(h, i) if same(h, i) else 0.0 for h in order[:pos_i]], default=0.0)
            coef = min(coef, math.exp(-sigma * iou_ij ** 2) / math.exp(-sigma * comp ** 2))
        out[j] = scores[j] * coef
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(5))
def test_matrix_nms_matches_reference(device, seed):
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(1, 12)), 40
    masks = rng.random((k, n)) < rng.uniform(0.1, 0.6, (k, 1))
    scores = rng.random(k).astype(np.float32)
    labels = rng.integers(0, 3, k) if seed % 2 else None
    got = ops.matrix_nms(torch.from_numpy(masks).to(device), torch.from_numpy(scores).to(device),
                         None if labels is None else torch.from_numpy(labels).to(device))
    np.testing.assert_allclose(got.cpu().numpy(), ref_matrix_nms(masks, scores, labels, 2.0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("module", ["sampling", "mean_shift", "masks"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(f"ros2_inst3d.ops.{module}"))
    assert result.attempted > 0 and result.failed == 0
