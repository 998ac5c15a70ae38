"""`Segmenter`: config → model on a device; ``segment(xyz, rgb) -> Instances``.

The one place where a cloud in the fixed frame becomes instances, shared by the node, the bag
tool, the CLI and the benchmarks: ROI crop, point cap, the model, score/size/class filters and the
score-ordered fusion of overlapping proposals into one instance id per point.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Mapping, Protocol

import numpy as np

from .classes import SCANNET20_CLASSES, STUFF_CLASSES, class_name
from .config import Config
from .errors import SegmentationError
from .instances import Instances
from .model.proposals import Proposals, partition_by_score
from .model.registry import method
from .voxelize import crop_roi

log = logging.getLogger(__name__)


class PointModel(Protocol):
    """What :class:`Segmenter` runs. Optional attributes it reads when present: ``class_names``
    (the class table of ``Proposals.class_ids``, default ScanNet-20), ``stuff_classes`` (class
    ids that never form instances, from the model's configuration; default: ScanNet-20's wall
    and floor) and ``device``."""

    name: str

    def predict_points(self, xyz: np.ndarray, rgb: np.ndarray | None) -> Proposals: ...


def build_point_model(cfg: Config) -> PointModel:
    """The model ``cfg.model.name`` picks, ready for inference, built by its method's factory
    (:data:`~ros2_inst3d.model.registry.METHODS`): a model-free one from its config section, a
    learned one as :class:`~ros2_inst3d.model.inference.LearnedModel` with weights from
    ``model.checkpoint`` or the shipped demo weights (ConfigError says how to get them).
    """
    return method(cfg.model.name).build(cfg)


def subsample_indices(n: int, max_points: int) -> np.ndarray:
    """Deterministic, evenly spread subset of ``range(n)`` with at most ``max_points`` entries."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).astype(np.int64))


class Segmenter:
    """Runs one configured method on clouds; keeps no state between calls but the model.

    The default learned model follows the cloud: when the configured model needs colour and the
    user chose no weights (``model.checkpoint`` and ``model.config`` empty), clouds without rgb
    go to the method's shipped xyz-only weights (``inference.colorless_default``), loaded on the
    first such cloud; coloured clouds keep the rgb model. A model passed in is used as it is.
    """

    def __init__(self, cfg: Config, model: PointModel | None = None) -> None:
        self.cfg = cfg
        self.model = model if model is not None else build_point_model(cfg)
        self._model_name: str = self.model.name
        self.class_names: tuple[str, ...] = tuple(getattr(self.model, "class_names",
                                                          SCANNET20_CLASSES))
        # Dropped before fusion: their proposals are regions (a floor, a road), not objects.
        self.stuff_classes: frozenset[int] = frozenset(
            int(c) for c in getattr(self.model, "stuff_classes", STUFF_CLASSES))
        self._colorless_cfg: Config | None = None
        if model is None and getattr(self.model, "needs_color", False):
            from .model.inference import colorless_default

            colorless = colorless_default(cfg.model)
            if colorless is not None:
                self._colorless_cfg = cfg.replace(**{"model.checkpoint": colorless.checkpoint})
        self._colorless_model: PointModel | None = None

    def model_for(self, has_color: bool) -> PointModel:
        """The model that segments a cloud with (``has_color``) or without rgb (see the class
        docstring); builds the xyz-only one on first use and logs the choice once."""
        if has_color or self._colorless_cfg is None:
            return self.model
        if self._colorless_model is None:
            colorless = build_point_model(self._colorless_cfg)
            if tuple(getattr(colorless, "class_names", SCANNET20_CLASSES)) != self.class_names:
                # One class table per Segmenter (labels, markers): the rgb model refuses instead.
                log.warning("%s predicts another class table than the configured model; clouds "
                            "without colour are not segmented (set model.checkpoint to choose)",
                            self._colorless_cfg.model.checkpoint)
                self._colorless_cfg = None
                return self.model
            self._colorless_model = colorless
            log.info("clouds without colour: %s with the xyz-only weights %s (coloured clouds: "
                     "%s)", colorless.name, getattr(colorless, "source", "?"),
                     getattr(self.model, "source", self.model.name))
        return self._colorless_model

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def device(self) -> str:
        return str(getattr(self.model, "device", "cpu"))

    def close(self) -> None:
        """Release the model (and its GPU memory) at shutdown."""
        self.model = None  # type: ignore[assignment]
        self._colorless_model = None
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def segment(self, xyz: np.ndarray, rgb: np.ndarray | None = None,
                fields: Mapping[str, np.ndarray] | None = None) -> Instances:
        """Instances of ``xyz`` (N, 3) float32, metres, fixed frame (z up); ``rgb`` (N, 3) uint8.

        fields: other per-point (N,) arrays by name (``intensity``, ``ring``); passed on to
        models that use them (``accepts_fields``), ignored by the others.

        The result refers to all N input points; points outside the ROI or removed by the point
        cap get instance -1. Raises :class:`SegmentationError` for input it cannot use.
        """
        xyz = np.asarray(xyz, dtype=np.float32)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise SegmentationError("malformed", f"xyz must be (N, 3), got shape {xyz.shape}")
        if rgb is not None:
            rgb = np.asarray(rgb, dtype=np.uint8)
            if rgb.shape != xyz.shape:
                raise SegmentationError("malformed",
                                        f"rgb shape {rgb.shape} does not match xyz {xyz.shape}")
        if not np.isfinite(xyz).all():
            raise SegmentationError("non_finite", "xyz holds NaN or inf; decode() drops those")
        seg = self.cfg.segment
        timing: dict[str, float] = {}
        t0 = time.perf_counter()
        keep = np.flatnonzero(crop_roi(xyz, seg.roi_min, seg.roi_max))
        keep = keep[subsample_indices(len(keep), seg.max_points)]
        timing["crop"] = (time.perf_counter() - t0) * 1e3
        if len(keep) == 0:
            inst = Instances.empty(xyz, rgb, class_names=self.class_names)
            inst.timing_ms.update(timing)
            return inst
        rgb_kept = None if rgb is None else rgb[keep]
        model = self.model_for(rgb is not None)
        if fields and getattr(model, "accepts_fields", False):
            kept = {name: np.asarray(v)[keep] for name, v in fields.items()
                    if np.asarray(v).shape[:1] == (len(xyz),)}
            proposals = model.predict_points(xyz[keep], rgb_kept, fields=kept)
        else:
            proposals = model.predict_points(xyz[keep], rgb_kept)
        timing.update(proposals.timing_ms)
        t1 = time.perf_counter()
        proposals = self._filter(proposals)
        owner, alive = partition_by_score(len(keep), proposals)
        point_instance = np.full(len(xyz), -1, dtype=np.int32)
        point_instance[keep] = owner
        # Each instance is the points it owns, so /instances, the labelled cloud, boxes and
        # evaluation all see one partition (SoftGroup's dual-set proposals overlap).
        order = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[order], np.arange(len(alive) + 1))
        indices = [keep[order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
        point_class = np.full(len(xyz), -100, dtype=np.int32)
        if proposals.point_class is not None:
            point_class[keep] = proposals.point_class
        timing["fusion"] = (time.perf_counter() - t1) * 1e3
        timing["total"] = (time.perf_counter() - t0) * 1e3
        return Instances(
            xyz=xyz, rgb=rgb, point_instance=point_instance, point_class=point_class,
            ids=np.arange(len(alive), dtype=np.int32), class_ids=proposals.class_ids[alive],
            scores=proposals.scores[alive], indices=indices,
            class_names=self.class_names, timing_ms=timing)

    def _filter(self, p: Proposals) -> Proposals:
        """Score, size, stuff and class-name filters; survivors keep their order, ids become 0..K-1."""
        seg = self.cfg.segment
        wanted = set(self.cfg.class_filter)
        keep = [
            k for k in range(len(p))
            if p.scores[k] >= seg.score_threshold
            and len(p.indices[k]) >= seg.min_points
            and int(p.class_ids[k]) not in self.stuff_classes
            and (not wanted or class_name(int(p.class_ids[k]), self.class_names) in wanted)
        ]
        return Proposals([p.indices[k] for k in keep], p.class_ids[keep], p.scores[keep],
                         p.point_class, p.timing_ms)
