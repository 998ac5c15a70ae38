"""The torch sparse-convolution backend (``ops/sparse_conv.py``, ``model.cpu_sparse_conv: torch``)
against spconv on one thread: each layer type, and the shipped trained SoftGroup U-Net on a
generated room, with 1 and 2 torch threads, to 1e-5; repeated runs are bit-identical."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import spconv.pytorch as spconv
import torch

from ros2_inst3d.config import Config, ModelConfig
from ros2_inst3d.data.inputs import network_input
from ros2_inst3d.model.backbone import PointwiseSparseConv, single_threaded_spconv, \
    sparse_cpu_context
from ros2_inst3d.model.checkpoint import load_checkpoint, read_checkpoint_meta
from ros2_inst3d.model.inference import LearnedModel, network_config_for_checkpoint, \
    shipped_weights
from ros2_inst3d.model.registry import build_network
from ros2_inst3d.ops import sparse_conv
from ros2_inst3d.synthetic.scene import SceneParams, generate_scene

TOL = {"atol": 1e-5, "rtol": 1e-5}


@contextlib.contextmanager
def torch_threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def random_voxels(seed: int, shape=(13, 11, 9), batch: int = 2, density: float = 0.3):
    """(M, 4) int32 distinct [batch, x, y, z] voxels of a random occupancy in random row order
    (the pipeline's are in first-occurrence order; spconv 2.3.8 on CPU returned wrong values
    for every voxel of a lexicographically sorted input in our checks); odd grid sizes so the
    k2/s2 convolution drops the last slice."""
    gen = torch.Generator().manual_seed(seed)
    occupied = (torch.rand((batch, *shape), generator=gen) < density).nonzero()
    order = torch.randperm(len(occupied), generator=gen)
    return occupied[order].to(torch.int32), list(shape), batch


def spconv_reference(module, x):
    with single_threaded_spconv("cpu"), torch.no_grad():
        return module(x)


def torch_backend(modules, x, threads, dense_grid_cells=sparse_conv.DENSE_GRID_CELLS):
    """Run ``modules`` in sequence on a copy of ``x`` with kernel maps attached."""
    y = spconv.SparseConvTensor(x.features, x.indices, x.spatial_shape, x.batch_size)
    sparse_conv.attach_kernel_maps(y, dense_grid_cells)
    with torch_threads(threads), torch.no_grad():
        for module in modules:
            y = module(y)
    return y


def sorted_rows(t: spconv.SparseConvTensor) -> torch.Tensor:
    idx = t.indices.long()
    key = ((idx[:, 0] * 4096 + idx[:, 1]) * 4096 + idx[:, 2]) * 4096 + idx[:, 3]
    order = torch.argsort(key)
    return torch.cat([t.indices[order].float(), t.features[order]], 1)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dense_grid_cells", [sparse_conv.DENSE_GRID_CELLS, 0])
def test_submanifold_3x3x3_matches_spconv(threads, dense_grid_cells):
    torch.manual_seed(0)
    coords, shape, batch = random_voxels(1)
    x = spconv.SparseConvTensor(torch.randn(len(coords), 5), coords, shape, batch)
    conv = sparse_conv.SubMConv3d(5, 7, kernel_size=3, padding=1, bias=False, indice_key="s")
    expected = spconv_reference(conv, x).features
    # two layers sharing the key: the second reuses the first's pairs
    conv2 = sparse_conv.SubMConv3d(7, 7, kernel_size=3, padding=1, bias=False, indice_key="s")
    got = torch_backend([conv], x, threads, dense_grid_cells)
    torch.testing.assert_close(got.features, expected, **TOL)
    assert torch.equal(got.indices, x.indices)
    both = torch_backend([conv, conv2], x, threads, dense_grid_cells)
    torch.testing.assert_close(both.features, spconv_reference(conv2, spconv_reference(
        conv, spconv.SparseConvTensor(x.features, coords, shape, batch))).features, **TOL)


def test_pointwise_1x1x1_is_the_same_matmul_in_both_backends():
    torch.manual_seed(1)
    coords, shape, batch = random_voxels(2)
    x = spconv.SparseConvTensor(torch.randn(len(coords), 6), coords, shape, batch)
    conv = PointwiseSparseConv(6, 4)
    expected = x.features @ conv.weight.detach().view(4, 6).T
    torch.testing.assert_close(spconv_reference(conv, x).features, expected, **TOL)
    torch.testing.assert_close(torch_backend([conv], x, 2).features, expected, **TOL)


@pytest.mark.parametrize("threads", [1, 2])
def test_down_k2s2_and_inverse_k2_match_spconv(threads):
    torch.manual_seed(2)
    coords, shape, batch = random_voxels(3)
    x = spconv.SparseConvTensor(torch.randn(len(coords), 4), coords, shape, batch)
    down = sparse_conv.SparseConv3d(4, 6, kernel_size=2, stride=2, bias=False, indice_key="d")
    up = sparse_conv.SparseInverseConv3d(6, 3, kernel_size=2, bias=False, indice_key="d")
    ref_down = spconv_reference(down, x)
    ref_up = spconv_reference(up, ref_down)
    got_down = torch_backend([down], x, threads)
    assert got_down.spatial_shape == ref_down.spatial_shape == [6, 5, 4]
    # the coarse voxel order is ours (sorted); compare as sets of rows
    torch.testing.assert_close(sorted_rows(got_down), sorted_rows(ref_down), **TOL)
    got_up = torch_backend([down, up], x, threads)
    assert torch.equal(got_up.indices, x.indices) and got_up.spatial_shape == shape
    torch.testing.assert_close(got_up.features, ref_up.features, **TOL)
    dropped = (coords[:, 1] == shape[0] - 1)      # odd size: the last x slice has no parent
    assert dropped.any() and not got_up.features[dropped].any()


def test_unsupported_kernels_say_so():
    coords, shape, batch = random_voxels(4)
    x = spconv.SparseConvTensor(torch.randn(len(coords), 2), coords, shape, batch)
    conv = sparse_conv.SubMConv3d(2, 2, kernel_size=5, padding=2, bias=False, indice_key="k5")
    with pytest.raises(NotImplementedError, match="cpu_sparse_conv: spconv"):
        torch_backend([conv], x, 1)
    up = sparse_conv.SparseInverseConv3d(2, 2, kernel_size=2, bias=False, indice_key="none")
    with pytest.raises(ValueError, match="no strided convolution"):
        torch_backend([up], x, 1)


@pytest.fixture(scope="module")
def trained_unet_and_room():
    path = shipped_weights("softgroup")
    assert path is not None, "models/softgroup_synthetic.pth is shipped with the repository"
    net_cfg, _ = network_config_for_checkpoint(ModelConfig(name="softgroup"),
                                               read_checkpoint_meta(path))
    network = build_network(net_cfg).eval()
    load_checkpoint(network, path, strict=True)
    scene = generate_scene(3, SceneParams.small())
    inputs = network_input(scene.xyz, scene.rgb, network.voxel_size)
    return network, inputs


def unet_output(network, inputs, backend: str, threads: int) -> torch.Tensor:
    network.cpu_sparse_conv = backend
    with torch_threads(threads), torch.no_grad():
        return network.backbone_stages(torch.from_numpy(inputs.voxel_feats),
                                       torch.from_numpy(inputs.voxel_coords),
                                       inputs.spatial_shape.tolist())["output_layer"]


def test_trained_unet_matches_spconv_with_one_and_two_threads(trained_unet_and_room):
    network, inputs = trained_unet_and_room
    assert inputs.num_voxels > 500
    expected = unet_output(network, inputs, "spconv", 1)
    for threads in (1, 2):
        first = unet_output(network, inputs, "torch", threads)
        second = unet_output(network, inputs, "torch", threads)
        assert torch.equal(first, second), f"{threads} threads: two runs differ"
        torch.testing.assert_close(first, expected, **TOL)
    assert network.cpu_sparse_conv == "torch"


def test_training_and_other_devices_keep_spconv():
    coords, shape, batch = random_voxels(5)
    x = spconv.SparseConvTensor(torch.randn(len(coords), 2), coords, shape, batch)
    with torch.enable_grad(), sparse_cpu_context(x, "torch"):
        assert not sparse_conv.has_kernel_maps(x)        # autograd on: spconv (has a backward)
    with torch.no_grad(), sparse_cpu_context(x, "spconv"):
        assert not sparse_conv.has_kernel_maps(x)
        assert torch.get_num_threads() == 1
    with torch.no_grad(), sparse_cpu_context(x, "torch"):
        assert sparse_conv.has_kernel_maps(x)
    with pytest.raises(ValueError, match="spconv, torch"):
        sparse_cpu_context(x, "cuda-magic")


def test_config_selects_the_backend():
    cfg = Config().replace(**{"model.cpu_sparse_conv": "torch", "model.device": "cpu"})
    model = LearnedModel.from_config(cfg.model)
    assert model.network.cpu_sparse_conv == "torch"
    assert LearnedModel.from_config(Config().model).network.cpu_sparse_conv == "spconv"
    assert np.isfinite(model.network.input_conv[0].weight.detach().numpy()).all()
