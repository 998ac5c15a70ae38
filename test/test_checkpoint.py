"""Checkpoint loading: containers, spconv 1 layout, HAIS renames, and a loud report of misfits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ros2_inst3d.model.checkpoint import (
    CheckpointError,
    check_checkpoint,
    load_checkpoint,
    match_state_dict,
    read_checkpoint,
)
from ros2_inst3d.cli import main
from ros2_inst3d.model.registry import build_network, load_model_config

MODEL_CONFIGS = Path(__file__).resolve().parents[1] / "config" / "models"
SMALL = {"channels": 4, "num_blocks": 2, "semantic_classes": 5, "instance_classes": 3}


def small(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network({"name": name, **SMALL, **overrides})


def randomised(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict of ``model``'s layout with every float tensor random (so loads are visible)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone())
            for k, v in model.state_dict().items()}


def to_spconv1(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights as spconv 1 stored them: 5-D ``[out, k, k, k, in]`` → ``[k, k, k, in, out]``."""
    return {k: (v.permute(1, 2, 3, 4, 0).contiguous() if v.ndim == 5 else v)
            for k, v in state.items()}


def assert_loaded(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_softgroup_style_container_round_trips(tmp_path):
    model = small("softgroup")
    state = randomised(model, 1)
    path = tmp_path / "softgroup.pth"
    torch.save({"net": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 12}, path)
    report = load_checkpoint(model, path)
    assert report.ok and not report.conversions and not report.spconv1_layout
    assert "'net'" in report.container and "optimizer" in report.container
    assert_loaded(model, state)
    assert "OK" in report.format()


def test_pointgroup_bare_spconv1_dataparallel_checkpoint_loads(tmp_path):
    # The released PointGroup file: a bare state dict, spconv 1 weights, maybe 'module.' prefixes.
    model = small("pointgroup")
    state = randomised(model, 2)
    path = tmp_path / "pointgroup.pth"
    torch.save({f"module.{k}": v for k, v in to_spconv1(state).items()}, path)
    report = load_checkpoint(model, path)
    assert report.ok and report.spconv1_layout and report.container == "bare state dict"
    assert any("module." in note for note in report.conversions)
    num_5d = sum(v.ndim == 5 for v in state.values())
    assert any(f"permuted {num_5d} sparse-conv weights" in note for note in report.conversions)
    assert_loaded(model, state)


def test_spconv1_weights_whose_layouts_coincide_follow_the_file():
    # channels=3: a [3,3,3,3,3] SubM weight reads the same in both layouts; the input conv
    # ([3,3,3,3,6] vs [3,3,3,6,3]) tells the file is spconv 1, so every weight is permuted.
    model = build_network({"name": "softgroup", "channels": 3, "num_blocks": 1,
                         "semantic_only": True})
    state = randomised(model, 3)
    ambiguous = [k for k, v in state.items() if v.ndim == 5 and len(set(v.shape)) == 1]
    assert ambiguous
    fitting, report = match_state_dict(to_spconv1(state), model.state_dict())
    assert report.ok and report.spconv1_layout
    for key in state:
        assert torch.equal(fitting[key], state[key]), key


def test_hais_checkpoint_into_softgroup_is_renamed_and_the_head_misfit_is_reported(tmp_path):
    hais_state = to_spconv1(randomised(small("hais"), 4))  # original HAIS: spconv 1, {'net', ...}
    path = tmp_path / "hais.pth"
    torch.save({"net": hais_state, "optimizer": {}}, path)
    model = small("softgroup", seed=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, path)
    message = str(err.value)
    for key in ("iou_score_linear.weight", "iou_score_linear.bias", "mask_linear.2.weight",
                "mask_linear.2.bias", "cls_linear.weight", "cls_linear.bias"):
        assert key in message
    assert "[1, 4] vs [4, 4]" in message  # score_linear (1 output) vs iou_score_linear (K+1)
    assert_loaded(model, before)  # strict: nothing was loaded

    report = load_checkpoint(model, path, strict=False)
    assert sorted(report.missing) == ["cls_linear.bias", "cls_linear.weight"]
    assert sorted(k for k, _, _ in report.mismatched) == [
        "iou_score_linear.bias", "iou_score_linear.weight", "mask_linear.2.bias",
        "mask_linear.2.weight"]
    assert report.unexpected == []
    assert sum("renamed HAIS" in note for note in report.conversions) == 3
    loaded = model.state_dict()
    hais_v2 = randomised(small("hais"), 4)
    for key, value in hais_v2.items():
        renamed = (key.replace("intra_ins_unet.", "tiny_unet.")
                   .replace("intra_ins_outputlayer.", "tiny_unet_outputlayer."))
        if renamed in report.missing or key.startswith(("score_linear", "mask_linear.2")):
            continue
        assert torch.equal(loaded[renamed], value), key
    for key in ("cls_linear.weight", "iou_score_linear.weight", "mask_linear.2.weight"):
        assert torch.equal(loaded[key], before[key])  # left as they were


def test_pointgroup_score_linear_is_not_renamed():
    model = small("pointgroup")
    _, report = match_state_dict(model.state_dict(), model.state_dict())
    assert report.ok and not report.conversions


def test_isbnet_training_checkpoint_ignores_criterion(tmp_path):
    model = small("isbnet")
    state = randomised(model, 6)
    path = tmp_path / "isbnet.pth"
    torch.save({"net": {"criterion.empty_weight": torch.ones(4), **state}, "epoch": 3}, path)
    report = load_checkpoint(model, path)
    assert report.ok and report.ignored == ["criterion.empty_weight"]
    assert "criterion.empty_weight" in report.format()
    assert_loaded(model, state)


def test_half_precision_weights_load_into_a_float_model(tmp_path):
    model = small("softgroup", semantic_only=True)
    state = randomised(model, 7)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    path = tmp_path / "half.pth"
    torch.save({"net": half}, path)
    assert load_checkpoint(model, path).ok
    for key, value in model.state_dict().items():
        assert value.dtype == state[key].dtype
        assert torch.equal(value, half[key].to(value.dtype)), key


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_report_lists_exactly_the_misfits(data):
    model = small("softgroup", semantic_only=True)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    keys = sorted(expected)
    dropped = set(data.draw(st.lists(st.sampled_from(keys), max_size=5, unique=True)))
    reshaped = set(data.draw(st.lists(st.sampled_from(sorted(set(keys) - dropped)),
                                      max_size=5, unique=True)))
    extra = set(data.draw(st.lists(st.from_regex(r"extra_[a-z]{1,6}\.weight", fullmatch=True),
                                   max_size=4, unique=True)))
    state = {}
    for key in keys:
        if key in dropped:
            continue
        shape = expected[key]
        state[key] = torch.zeros((shape[0] + 1, *shape[1:]) if key in reshaped and shape
                                 else (2,) if key in reshaped else shape)
    state.update({key: torch.zeros(2) for key in extra})

    fitting, report = match_state_dict(state, expected)
    assert set(report.missing) == dropped
    assert {k for k, _, _ in report.mismatched} == reshaped
    assert set(report.unexpected) == extra
    assert set(fitting) == set(keys) - dropped - reshaped
    assert report.ok == (not dropped and not reshaped and not extra)
    text = report.format()
    for key in dropped | reshaped | extra:
        assert key in text


class NotATensor:
    """A pickled object the safe loader must refuse."""


def test_unsafe_pickles_need_explicit_trust(tmp_path):
    model = small("softgroup", semantic_only=True)
    path = tmp_path / "pickled.pth"
    torch.save({"net": model.state_dict(), "args": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="trust_pickle"):
        check_checkpoint(path, model)
    assert check_checkpoint(path, model, trust_pickle=True).ok


def test_unreadable_files_are_refused_with_reasons(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="could not be read"):
        read_checkpoint(garbage)
    no_weights = tmp_path / "no_weights.pth"
    torch.save({"epoch": 3, "optimizer": {}}, no_weights)
    with pytest.raises(CheckpointError, match=r"'epoch', 'optimizer'"):
        read_checkpoint(no_weights)


@pytest.mark.slow
def test_check_checkpoint_command_on_a_released_layout(tmp_path, capsys):
    # The official PointGroup ScanNet layout (7.7 M parameters), saved as the released file is.
    cfg = load_model_config(MODEL_CONFIGS / "pointgroup_scannet.yaml")
    state = build_network(cfg).state_dict()
    path = tmp_path / "pointgroup_released.pth"
    torch.save({f"module.{k}": v for k, v in to_spconv1(state).items()}, path)

    def check(ckpt, model_yaml):
        return main(["check-checkpoint", str(ckpt), "-c", str(model_yaml)])

    assert check(path, MODEL_CONFIGS / "pointgroup_scannet.yaml") == 0
    out = capsys.readouterr().out
    assert "OK: all 499 model tensors" in out and "spconv 1" in out

    assert check(path, MODEL_CONFIGS / "softgroup_scannet.yaml") == 1
    out = capsys.readouterr().out
    assert "PROBLEMS" in out and "input_conv.0.weight: [16, 3, 3, 3, 6] vs [32, 3, 3, 3, 6]" in out
    assert "score_unet.blocks.block0.conv_branch.2.weight" in out  # unexpected keys are listed

    assert check(tmp_path / "nope.pth", MODEL_CONFIGS / "pointgroup_scannet.yaml") == 1
    assert "does not exist" in capsys.readouterr().err
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"model": {"name": "pointgroup", "chanels": 16}}))
    assert check(path, typo) == 1
    assert "chanels" in capsys.readouterr().err
