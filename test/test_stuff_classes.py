"""Which proposals the segmenter drops as stuff comes from the model's configuration.

The shipped non-ScanNet model YAMLs split their class tables differently: SoftGroup's S3DIS (13
semantic, 13 instance classes) has no stuff, STPLS3D (15 / 14) has ground, SemanticKITTI (19 / 8) has 11
background classes. A LearnedModel built from each (random weights: the split is in the config)
must make the Segmenter drop exactly those classes, where a global ScanNet constant dropped
classes 0 and 1 for every model.
"""

from __future__ import annotations

import numpy as np
import pytest

from ros2_inst3d.config import Config
from ros2_inst3d.model.inference import LearnedModel
from ros2_inst3d.model.proposals import Proposals
from ros2_inst3d.model.registry import build_network, load_model_config
from ros2_inst3d.resources import config_path
from ros2_inst3d.segmenter import Segmenter

# config/models/<name>.yaml -> the class ids that never form instances.
EXPECTED_STUFF = {
    "softgroup_s3dis": set(),
    "isbnet_s3dis": {0, 1},   # 13 semantic, 11 instance classes (its sem2ins adds wall, beam)
    "softgroup_stpls3d": {0},
    "softgroup_kitti": set(range(11)),
    "softgroup_scannet": {0, 1},
}


class ReplayModel:
    """A PointModel that returns fixed proposals, carrying a learned model's class table and
    stuff classes (the network's own output on random weights would not cover every class)."""

    def __init__(self, learned: LearnedModel, proposals: Proposals) -> None:
        self.name = learned.name
        self.class_names = learned.class_names
        self.stuff_classes = learned.stuff_classes
        self.proposals = proposals

    def predict_points(self, xyz, rgb):
        return self.proposals


@pytest.mark.parametrize("config_name", sorted(EXPECTED_STUFF))
def test_segmenter_drops_the_stuff_of_the_model_config(config_name):
    net_cfg = load_model_config(config_path(f"{config_name}.yaml", "models"))
    network = build_network(net_cfg)
    k = network.semantic_classes
    learned = LearnedModel(network, [f"class{i}" for i in range(k)], "cpu")
    assert learned.stuff_classes == EXPECTED_STUFF[config_name]

    # One 60-point proposal of every semantic class, on disjoint points.
    xyz = np.random.default_rng(0).uniform(-1, 1, (60 * k, 3)).astype(np.float32)
    proposals = Proposals([np.arange(60 * c, 60 * (c + 1)) for c in range(k)],
                          np.arange(k, dtype=np.int32), np.full(k, 0.9, np.float32))
    cfg = Config().replace(**{"segment.min_points": 10, "segment.score_threshold": 0.1})
    segmenter = Segmenter(cfg, ReplayModel(learned, proposals))
    inst = segmenter.segment(xyz)
    assert set(inst.class_ids.tolist()) == set(range(k)) - EXPECTED_STUFF[config_name]
