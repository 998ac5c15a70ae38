"""model/losses.py against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from ros2_inst3d.model.losses import (
    aabb_giou,
    aabb_iou,
    dice_cost,
    dice_loss,
    direction_loss,
    discriminative_loss,
    one_to_many_match,
)


def test_dice_of_half_probabilities():
    # p = 0.5 everywhere, target [1, 0]: 1 - (2 * 0.5 + 1) / (1 + 1 + 1) = 1/3.
    logits = torch.zeros(1, 2)
    target = torch.tensor([[1.0, 0.0]])
    assert dice_loss(logits, target).item() == pytest.approx(1 / 3)
    # A confident perfect mask: close to 0.
    sure = torch.tensor([[20.0, -20.0]])
    assert dice_loss(sure, target).item() == pytest.approx(0.0, abs=1e-6)
    # p = [0, 1] against [1, 0]: 1 - (0 + 1) / (1 + 1 + 1) = 2/3.
    assert dice_loss(-sure, target).item() == pytest.approx(2 / 3, abs=1e-6)
    cost = dice_cost(torch.cat([sure, -sure]), torch.cat([target, 1 - target]))
    assert cost.shape == (2, 2)
    assert cost[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert cost[1, 1].item() == pytest.approx(0.0, abs=1e-6)


def test_box_iou_and_giou():
    unit = torch.tensor([[0.0, 0, 0, 1, 1, 1]])
    half = torch.tensor([[0.5, 0, 0, 1.5, 1, 1]])
    far = torch.tensor([[2.0, 0, 0, 3, 1, 1]])
    assert aabb_iou(unit, half).item() == pytest.approx(0.5 / 1.5)
    assert aabb_giou(unit, half).item() == pytest.approx(1 / 3)  # hull = union
    assert aabb_iou(unit, far).item() == 0.0
    assert aabb_giou(unit, far).item() == pytest.approx(-1 / 3)  # -(3 - 2) / 3
    assert aabb_giou(unit, unit).item() == pytest.approx(1.0)


def test_one_to_many_match_duplicates_each_target():
    # Queries 0 and 2 are the cheapest for target 0, query 1 for target 1.
    cost = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.95], [0.5, 0.6]])
    query, target = one_to_many_match(cost, dup=2)
    assert dict(zip(query.tolist(), target.tolist())) == {0: 0, 1: 1, 2: 0, 3: 1}
    query, target = one_to_many_match(cost, dup=1)
    assert dict(zip(query.tolist(), target.tolist())) == {0: 0, 1: 1}
    empty_q, _ = one_to_many_match(torch.zeros(3, 0), dup=2)
    assert empty_q.numel() == 0


def test_discriminative_loss_terms():
    # 1-D embedding; instance 0 at {0, 2} (mean 1), instance 1 at {10}, one ignored row.
    emb = torch.tensor([[0.0], [2.0], [10.0], [50.0]])
    inst = torch.tensor([0, 0, 1, -100])
    var, dist, reg = discriminative_loss(emb, inst, delta_v=0.5, delta_d=1.5, gamma=0.001)
    assert var.item() == pytest.approx((0.25 + 0.0) / 2)   # ((1 - 0.5)^2 per row of inst 0)
    assert dist.item() == pytest.approx(0.0)                # |1 - 10| = 9 > 2 * 1.5
    assert reg.item() == pytest.approx(0.001 * (1 + 10) / 2)
    # Means 1.5 apart: (2 * 1.5 - 1.5)^2 = 2.25 for both ordered pairs.
    emb = torch.tensor([[0.0], [2.0], [2.5]])
    _, dist, _ = discriminative_loss(emb, torch.tensor([0, 0, 1]), 0.5, 1.5)
    assert dist.item() == pytest.approx(2.25)
    emb.requires_grad_(True)
    var, dist, reg = discriminative_loss(emb, torch.tensor([-1, -1, -1]), 0.5, 1.5)
    (var + dist + reg).backward()  # no instances: zeros that keep the graph
    assert emb.grad is not None and float(emb.grad.abs().sum()) == 0.0


def test_direction_loss_averages_per_instance():
    # Instance 0: one row pointing right (cos 1); instance 1: three rows pointing away (cos -1).
    direction = torch.tensor([[1.0, 0, 0], [-2.0, 0, 0], [-1.0, 0, 0], [0, -3.0, 0], [5, 5, 5]])
    target = torch.tensor([[3.0, 0, 0], [1.0, 0, 0], [4.0, 0, 0], [0, 1.0, 0], [1, 0, 0]])
    instance = torch.tensor([0, 1, 1, 1, -100])
    # Paper eq. 5: -(1/C) sum_c mean_c cos = -(1 + -1) / 2 = 0 (a row mean would give 0.5).
    assert direction_loss(direction, target, instance).item() == pytest.approx(0.0, abs=1e-6)
    assert direction_loss(direction[:1], target[:1], instance[:1]).item() == pytest.approx(-1.0)
    cos45 = direction_loss(torch.tensor([[1.0, 1.0, 0]]), torch.tensor([[1.0, 0, 0]]),
                           torch.tensor([0]))
    assert cos45.item() == pytest.approx(-math.sqrt(0.5))
