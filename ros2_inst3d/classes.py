"""The class table shared by synthetic data, ScanNet data, the official checkpoints and every output.

Contiguous ScanNet-20 indices 0-19 (the SoftGroup/ISBNet convention). Wall and floor are
"stuff": they get semantic labels but never instances. ``IGNORE_LABEL`` marks points without a label.
"""

from __future__ import annotations

import numpy as np

SCANNET20_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "otherfurniture",
)
STUFF_CLASSES: frozenset[int] = frozenset({0, 1})
"""ScanNet-20's stuff (wall, floor): the synthetic generator's labels. A learned model's stuff
comes from its own config (``LearnedModel.stuff_classes``), not from this table."""
IGNORE_LABEL = -100
OTHERFURNITURE = 19

# SoftGroup/ISBNet S3DIS class order (S3DISDataset.CLASSES, INV_OBJECT_LABEL of prepare_data_inst.py).
S3DIS_CLASSES: tuple[str, ...] = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "chair", "table", "bookcase",
    "sofa", "board", "clutter",
)

# NYU40 ids of the ScanNet benchmark, only for exporting to the official benchmark format.
SCANNET20_TO_NYU40: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39,
)


def class_name(class_id: int, classes: tuple[str, ...] = SCANNET20_CLASSES) -> str:
    """Name of ``class_id`` in ``classes``; ``"unknown"`` outside the table."""
    return classes[class_id] if 0 <= class_id < len(classes) else "unknown"


def thing_classes(classes: tuple[str, ...] = SCANNET20_CLASSES) -> tuple[int, ...]:
    """Indices of the classes that have instances (everything but the stuff classes)."""
    return tuple(i for i in range(len(classes)) if i not in STUFF_CLASSES)


# Outdoor street table of the xyz street model (config/models/softgroup_street.yaml): SemanticKITTI's
# classes merged to what the street generator (synthetic/street.py) makes. Ground, building,
# fence and vegetation are what the KITTI benchmark counts as junk (evaluation.KITTI_JUNK).
STREET_CLASSES: tuple[str, ...] = (
    "ground", "building", "fence", "vegetation", "trunk", "pole", "traffic-sign", "other-object",
    "vehicle", "two-wheeler", "person", "rider",
)
STREET_JUNK_CLASSES: frozenset[int] = frozenset({0, 1, 2, 3})
STREET_THING_CLASSES: frozenset[int] = frozenset({8, 9, 10, 11})
"""The classes that SemanticKITTI labels with instance ids (its "things"); last in the table,
as SoftGroup's instance classes must be."""

# SemanticKITTI semantic id (semantic-kitti.yaml) -> STREET_CLASSES index; ids not listed
# (unlabeled 0, outlier 1) are ignored.
KITTI_TO_STREET: dict[int, int] = {
    40: 0, 44: 0, 48: 0, 49: 0, 60: 0, 72: 0,   # road, parking, sidewalk, other-ground, lane, terrain
    50: 1, 51: 2, 70: 3, 71: 4, 80: 5, 81: 6,
    52: 7, 99: 7,                                # other-structure, other-object
    10: 8, 13: 8, 16: 8, 18: 8, 20: 8, 252: 8, 256: 8, 257: 8, 258: 8, 259: 8,
    11: 9, 15: 9, 30: 10, 254: 10, 31: 11, 32: 11, 253: 11, 255: 11,
}


def street_labels(kitti_label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(semantic, instance) int32 in the STREET_CLASSES table from SemanticKITTI ``.label``
    values (semantic = low 16 bits, instance = high 16 bits). Semantic is -100 where the id is
    not in ``KITTI_TO_STREET``; instance numbers the labelled things 0..n-1 (one per (semantic
    id, instance id) pair with an instance id > 0), -100 for everything else."""
    label = np.asarray(kitti_label, dtype=np.uint32)
    lut = np.full(1 << 16, IGNORE_LABEL, np.int32)
    lut[list(KITTI_TO_STREET)] = list(KITTI_TO_STREET.values())
    semantic = lut[label & 0xFFFF]
    thing = np.isin(semantic, sorted(STREET_THING_CLASSES)) & ((label >> 16) > 0)
    instance = np.full(len(label), IGNORE_LABEL, np.int32)
    if thing.any():
        instance[thing] = np.unique(label[thing], return_inverse=True)[1].astype(np.int32)
    return semantic, instance
