"""The class table shared by synthetic data, ScanNet data, the official checkpoints and every output.

Contiguous ScanNet-20 indices 0-19 (the SoftGroup/ISBNet convention). Wall and floor are
"stuff": they get semantic labels but never instances. ``IGNORE_LABEL`` marks points without a label.
"""

from __future__ import annotations

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
