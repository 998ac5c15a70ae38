"""The CUDA paths against the CPU path: spconv's GPU U-Net against the official code's outputs, and
every shipped model on the demo room on CUDA against the same model on CPU.

These need a CUDA device and spconv's CUDA build (scripts/gpu_check.sh runs them on a GPU host);
on a CPU-only machine they are reported as skipped, never as passed. The grouping ops' own CUDA
kernels are compared with their CPU paths in test_ops.py and test_instance_ops.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import REPO
from ros2_inst3d.model.backbone import cuda_usable

pytestmark = pytest.mark.skipif(not cuda_usable(),
                                reason="needs a CUDA device and spconv's CUDA build")

DEMO_ROOM = REPO / "samples" / "demo_room.npz"
SHIPPED = ["pointgroup", "softgroup", "isbnet", "mtml"]
# Summation order differs between spconv's CPU and GPU kernels; float32 through a few dozen
# layers drifts by ~1e-5 relative, so logits are compared with a looser bound than on CPU.
CUDA_TOLERANCE = {"atol": 1e-3, "rtol": 1e-3}


@pytest.mark.parametrize("name", ["softgroup_small", "isbnet_small"])
def test_cuda_backbone_matches_the_official_outputs(name, record_property):
    from test_backbone import load_fixture, run_fixture

    arrays, model, _ = load_fixture(name)
    out = run_fixture(arrays, model.cuda(), device="cuda")
    worst = 0.0
    for key, value in out.items():
        reference = torch.from_numpy(arrays[f"out/{key}"])
        torch.testing.assert_close(value, reference, **CUDA_TOLERANCE, msg=key)
        worst = max(worst, float((value - reference).abs().max()))
    record_property("max_abs_diff", worst)


def _matched_fraction(found, wanted, min_iou: float = 0.9) -> float:
    """Share of ``wanted`` proposals (indices, class) with a same-class proposal in ``found`` that
    overlaps it at IoU >= min_iou."""
    from test_ops import sparse_masks

    from ros2_inst3d import ops

    if not wanted:
        return 1.0
    if not found:
        return 0.0
    iou = ops.mask_iou(sparse_masks([set(ix.tolist()) for ix, _ in wanted], "cpu"),
                       sparse_masks([set(ix.tolist()) for ix, _ in found], "cpu"))
    same_class = torch.tensor([[c == fc for _, fc in found] for _, c in wanted])
    return float(((iou >= min_iou) & same_class).any(dim=1).float().mean())


@pytest.mark.parametrize("method", SHIPPED)
def test_shipped_model_on_cuda_finds_what_it_finds_on_cpu(method, record_property):
    from ros2_inst3d.config import Config
    from ros2_inst3d.data.datasets import read_scene
    from ros2_inst3d.segmenter import build_point_model

    room = read_scene(DEMO_ROOM)
    results = {}
    for device in ("cpu", "cuda"):
        model = build_point_model(Config().replace(**{"model.name": method,
                                                      "model.device": device}))
        results[device] = model.predict_points(room.xyz, room.rgb)
    cpu, cuda = results["cpu"], results["cuda"]
    if cpu.point_class is not None:
        agreement = float(np.mean(cpu.point_class == cuda.point_class))
        record_property("semantic_agreement", agreement)
        assert agreement >= 0.995
    # Confident proposals only: near-tied low scores may fall either side of a threshold.
    confident = {d: [(ix, c) for ix, c, s in zip(p.indices, p.class_ids, p.scores) if s >= 0.2]
                 for d, p in results.items()}
    assert confident["cpu"], f"{method} finds nothing in the demo room on CPU"
    record_property("proposals", f"cpu {len(confident['cpu'])} cuda {len(confident['cuda'])}")
    assert _matched_fraction(confident["cuda"], confident["cpu"]) >= 0.9
    assert _matched_fraction(confident["cpu"], confident["cuda"]) >= 0.9


@pytest.mark.parametrize("name", ["softgroup", "pointgroup"])
def test_amp_training_on_cuda(name, tmp_path, record_property):
    """``train.amp`` on CUDA (float16 autocast + GradScaler through spconv's GPU kernels): the
    tiny run of test_train.py trains, its losses stay finite and fall, and the trained network
    predicts on CUDA."""
    from test_train import EPOCHS, iter_records, tiny_config

    from ros2_inst3d.data.batching import batch_to_device, collate
    from ros2_inst3d.data.datasets import SceneDataset
    from ros2_inst3d.synthetic.scene import SceneParams, generate_scene
    from ros2_inst3d.train import train, train_config_from_dict

    dirs = tmp_path / "train", tmp_path / "val"
    for folder in dirs:
        folder.mkdir()
    for seed in (0, 1):
        scene = generate_scene(seed, SceneParams.small(), threads=1)
        scene.save(dirs[0] / f"scene_{seed}.npz")
        if seed == 0:
            scene.save(dirs[1] / "scene_0.npz")
    data = tiny_config(name, dirs, tmp_path / "work", device="cuda", amp=True, cpu_threads=None)
    result = train(train_config_from_dict(data), quiet=True)
    records = iter_records(result.work_dir)
    assert len(records) == 2 * EPOCHS
    assert all(np.isfinite(r["loss"]) for r in records)
    semantic = np.array([r["semantic_loss"] for r in records])
    record_property("semantic_loss", f"{semantic[:6].mean():.3f} -> {semantic[-6:].mean():.3f}")
    assert semantic[-6:].mean() < 0.8 * semantic[:6].mean()
    batch = collate([SceneDataset(dirs[1], voxel_size=0.05, require_labels=True)[0]], 0.05,
                    with_coords=True)
    result.model.eval()
    (proposals,) = result.model.predict(batch_to_device(batch, "cuda"))
    assert proposals.point_class is not None
    assert len(proposals.point_class) == batch["xyz"].shape[0]
