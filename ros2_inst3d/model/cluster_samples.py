"""Training data and threshold of the ``lidar`` method's learned junk test.

``street_cluster_samples`` runs the method's clustering and filters on labelled
SemanticKITTI-format scans and labels each surviving cluster the way the SemanticKITTI score
does (``evaluation.kitti_object_scores``); ``choose_threshold`` picks ``segment.score_threshold``
for a trained ``cluster_classifier.ClusterClassifier`` by the README's rule. ``ros2-inst3d
train-clusters`` uses both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


def labelled_scans(folders: Sequence[str | Path]) -> list[Path]:
    """The ``.bin`` scans (each beside its ``.label``) in ``folders``, sorted per folder; raises
    FileNotFoundError naming the folders when there are none."""
    scans = [scan for folder in folders for scan in sorted(Path(folder).glob("*.bin"))]
    if not scans:
        raise FileNotFoundError(f"no .bin scans in {', '.join(str(f) for f in folders)}")
    return scans


@dataclass
class ClusterSamples:
    """The clusters that pass the ``lidar`` method's filters in a set of labelled scans.

    features: (S, F); is_object: (S,) bool, the majority label is not junk; matches_object: (S,)
    bool, the cluster matches a labelled thing at IoU >= 0.5 (``kitti_object_scores``); scan:
    (S,) the scan each came from; objects: labelled things of >= 50 points in all the scans.
    """

    features: np.ndarray
    is_object: np.ndarray
    matches_object: np.ndarray
    scan: np.ndarray
    objects: int


def street_cluster_samples(scans: Sequence[Path], cfg, progress: bool = True) -> ClusterSamples:
    """The ``ClusterSamples`` of labelled SemanticKITTI-format scans (``<stem>.bin`` beside
    ``<stem>.label``: ``gen-data --street``). cfg: a LidarConfig (its ``classifier`` is not
    used)."""
    from dataclasses import replace

    from tqdm import tqdm

    from ..evaluation import KITTI_JUNK, kitti_object_scores
    from ..io import read_cloud
    from .lidar import LidarClusteringModel

    model = LidarClusteringModel(replace(cfg, classifier=""))
    feats, is_object, matches, origin = [], [], [], []
    objects = 0
    for i, scan in enumerate(tqdm(scans, disable=not progress, unit="scan")):
        scan = Path(scan)
        label_path = scan.with_suffix(".label")
        if not label_path.is_file():
            raise FileNotFoundError(f"{label_path} not found (each .bin needs its .label)")
        xyz = read_cloud(scan).xyz
        label = np.fromfile(label_path, dtype="<u4")
        if len(label) != len(xyz):
            raise ValueError(f"{label_path}: {len(label)} labels for {len(xyz)} points")
        cand = model.candidate_clusters(xyz, features=True)
        rows = np.flatnonzero(cand.plausible)
        objects += kitti_object_scores([], label)["objects"]
        for ix in cand.point_indices(rows):
            row = kitti_object_scores([ix], label)
            is_object.append(int(next(iter(row["majority_semantic"]))) not in KITTI_JUNK)
            matches.append(row["matched"] > 0)
        feats.append(cand.features[rows])
        origin.append(np.full(len(rows), i))
    if not is_object:
        raise ValueError("no clusters passed the filters in these scans")
    return ClusterSamples(np.concatenate(feats), np.array(is_object), np.array(matches),
                          np.concatenate(origin), objects)


def choose_threshold(probability: Sequence[np.ndarray], samples: Sequence[ClusterSamples],
                     max_matched_loss: float = 0.02,
                     grid: Sequence[float] = tuple(np.round(np.arange(0.01, 0.96, 0.01), 2))):
    """The largest ``segment.score_threshold`` on ``grid`` that keeps at least
    1 - ``max_matched_loss`` of the matched objects of every sample set (a set's objects that
    its clusters match without the test); 0 when none does. probability: each set's
    ``object_probability``. Returns (threshold, rows): a row per grid value with, per set,
    matched objects kept, clusters kept and the junk among them."""
    rows = []
    chosen = 0.0
    for t in grid:
        row = {"threshold": float(t), "sets": []}
        ok = True
        for prob, smp in zip(probability, samples):
            keep = prob >= t
            matched = int(smp.matches_object[keep].sum())
            row["sets"].append({"matched": matched, "clusters": int(keep.sum()),
                                "junk": int((~smp.is_object[keep]).sum())})
            ok &= matched >= (1.0 - max_matched_loss) * smp.matches_object.sum()
        rows.append(row)
        if ok:
            chosen = float(t)
    return chosen, rows
