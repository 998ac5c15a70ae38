"""The ``lidar`` method's learned junk test: object or junk, from a cluster's shape.

Size and shape rules (``lidar.min_height``, ``max_length``, ``max_surface_variation``, ...) each
cut one kind of junk with one threshold. What they leave on a street is the junk that no single
feature separates: pieces of façades and low walls, corners, fence and hedge pieces, far foliage.
A small classifier over all the features at once (``lidar.CLUSTER_FEATURES``: size, range and
density, the oriented box, height above the ground, covariance shape, surface variation) does
what hand-written rules cannot, the way classic LiDAR pipelines classify segments (Teichman et
al., ICRA 2011; Himmelsbach et al., 2010).

It is an ensemble of multilayer perceptrons on standardized features, trained with torch
(``train_cluster_classifier``) on the clusters that pass the filters in labelled
SemanticKITTI-format scans (``cluster_samples.street_cluster_samples``; the generated streets of
``gen-data --street``). The target is "mostly not junk": a cluster whose majority label is ground,
building, fence or vegetation (``evaluation.KITTI_JUNK``) is junk; cars, people, bicycles,
poles, trunks and signs are objects. Inference is plain numpy, so the node needs no torch for
it. A classifier file is JSON: the feature names, the standardization, the layers and what it
was trained on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import ConfigError

FORMAT = "ros2_inst3d.cluster_classifier/1"


Layers = list[tuple[np.ndarray, np.ndarray]]  # [(W (in, out), b (out,)), ...]


@dataclass
class ClusterClassifier:
    """An ensemble of MLPs over ``feature_names``; each member is a list of layers with ReLU
    between them and a sigmoid on its single output; the probability is the members' mean.
    ``mean``/``std`` standardize the features."""

    feature_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    members: list[Layers]
    meta: dict = field(default_factory=dict)

    def object_probability(self, features: np.ndarray) -> np.ndarray:
        """(k,) probability that each cluster is an object; features: (k, F) in
        ``feature_names`` order. A missing feature (NaN) counts as its training mean."""
        z = (np.asarray(features, dtype=np.float64)[:, :len(self.mean)] - self.mean) / self.std
        z = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
        prob = np.zeros(len(z))
        for layers in self.members:
            x = z
            for i, (w, b) in enumerate(layers):
                x = x @ w + b
                if i < len(layers) - 1:
                    x = np.maximum(x, 0.0)
            prob += 1.0 / (1.0 + np.exp(-np.clip(x[:, 0], -60.0, 60.0)))
        return prob / len(self.members)

    def save(self, path: str | Path) -> Path:
        """Write the classifier as JSON (some kB); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "features": list(self.feature_names),
               "mean": self.mean.tolist(), "std": self.std.tolist(),
               "members": [[{"weight": w.tolist(), "bias": b.tolist()} for w, b in layers]
                           for layers in self.members],
               "meta": self.meta}
        path.write_text(json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
        return path


def load_cluster_classifier(value: str | Path, feature_names: Sequence[str]) -> ClusterClassifier:
    """Read a classifier file whose features must be (a prefix of) ``feature_names``, the ones
    the caller computes; a missing, malformed or mismatched file is a ConfigError that says
    which and why."""
    from ..resources import installed_path

    path = installed_path(value, "models")
    if not path.is_file():
        raise ConfigError(f"lidar.classifier: {value} does not exist (a path, or a file name in "
                          "the installed models/ folder)")
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
        names = tuple(doc["features"])
        mean = np.asarray(doc["mean"], dtype=np.float64)
        std = np.asarray(doc["std"], dtype=np.float64)
        members = [[(np.asarray(layer["weight"], dtype=np.float64),
                     np.asarray(layer["bias"], dtype=np.float64)) for layer in layers]
                   for layers in doc["members"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"lidar.classifier: {path} is not a cluster classifier ({exc})") from exc
    if not names or names != tuple(feature_names)[:len(names)]:
        raise ConfigError(f"lidar.classifier: {path} was trained on features {list(names)}; this "
                          f"version computes {list(feature_names)} (retrain it: "
                          "ros2-inst3d train-clusters)")
    ok = bool(members) and mean.shape == std.shape == (len(names),) \
        and bool(np.all(np.isfinite(std))) and bool(np.all(std > 0))
    for layers in members:
        width = len(names)
        for w, b in layers:
            if not (w.ndim == 2 and w.shape[0] == width and b.shape == (w.shape[1],)
                    and np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
                ok = False
                break
            width = w.shape[1]
        ok &= bool(layers) and width == 1
    if not ok:
        raise ConfigError(f"lidar.classifier: {path} has inconsistent layer shapes or values")
    return ClusterClassifier(names, mean, std, members, doc.get("meta", {}))


def train_cluster_classifier(features: np.ndarray, is_object: np.ndarray,
                             feature_names: Sequence[str],
                             hidden: Sequence[int] = (32, 32), epochs: int = 300,
                             lr: float = 3e-3, weight_decay: float = 1e-4,
                             feature_noise: float = 0.8, members: int = 5, seed: int = 0,
                             sample_weight: np.ndarray | None = None,
                             meta: dict | None = None) -> ClusterClassifier:
    """Fit ``members`` MLPs (seeds ``seed``, ``seed + 1``, ...) with Adam on the binary
    cross-entropy, full batch (some ten thousand clusters train in seconds). features: (S, F)
    in ``feature_names`` order; is_object: (S,) bool. The two classes are weighted to count
    equally, then each cluster's loss is multiplied by ``sample_weight`` (S,) when given.
    feature_noise: standard deviation of Gaussian noise added to the standardized
    features at every step, so that no decision hangs on a small difference in one feature: a
    classifier trained on generated scans must hold up on a different sensor and on the real
    world (README: the learned junk test)."""
    import torch

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(is_object, dtype=bool)
    if x.ndim != 2 or x.shape[1] != len(feature_names) or len(x) != len(y):
        raise ValueError(f"features must be (S, {len(feature_names)}) with one label each, "
                         f"got {x.shape} and {y.shape}")
    if y.all() or not y.any():
        raise ValueError("training clusters must include both objects and junk")
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    mean = np.nanmean(x, axis=0)
    std = np.nanstd(x, axis=0)
    std = np.where(std > 1e-9, std, 1.0)
    xt = torch.from_numpy(np.nan_to_num((x - mean) / std, nan=0.0))
    yt = torch.from_numpy(y.astype(np.float64))
    pos = float(y.mean())
    weight = torch.where(yt > 0, 0.5 / pos, 0.5 / (1 - pos))
    if sample_weight is not None:
        weight = weight * torch.from_numpy(np.asarray(sample_weight, dtype=np.float64))
    sizes = [x.shape[1], *hidden, 1]
    fitted, losses = [], []
    for member_seed in range(seed, seed + members):
        gen = torch.Generator().manual_seed(member_seed)
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            for shape in ((fan_in, fan_out), (fan_out,)):
                params.append(((torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1)
                               * bound).requires_grad_())
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        for _ in range(epochs):
            h = xt
            if feature_noise > 0:
                h = h + feature_noise * torch.randn(h.shape, generator=gen, dtype=torch.float64)
            for i in range(0, len(params), 2):
                h = h @ params[i] + params[i + 1]
                if i < len(params) - 2:
                    h = torch.relu(h)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(h[:, 0], yt,
                                                                        weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        fitted.append([(params[i].detach().numpy().copy(), params[i + 1].detach().numpy().copy())
                       for i in range(0, len(params), 2)])
        losses.append(round(float(loss.detach()), 5))
    info = {"samples": int(len(y)), "objects": int(y.sum()), "hidden": list(hidden),
            "epochs": epochs, "lr": lr, "weight_decay": weight_decay,
            "feature_noise": feature_noise, "members": members, "seed": seed,
            "final_loss": losses, **(meta or {})}
    return ClusterClassifier(tuple(feature_names), mean, std, fitted, info)
