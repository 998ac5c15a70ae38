"""Learned methods (``registry.LEARNED_METHODS``) behind the :class:`~ros2_inst3d.segmenter.PointModel`
interface: config → weights → network on a device → ``predict_points(xyz, rgb) -> Proposals``.

What is loaded, in order of precedence:

* the model YAML: ``model.config`` if set, else the ``config`` mapping stored in the checkpoint
  (our training checkpoints carry it), else ``config/models/<name>_synthetic.yaml``;
* the weights: ``model.checkpoint`` if set, else the shipped demo weights
  ``models/<name>_synthetic.pth`` (``resources.data_dir("models")``); for clouds without colour,
  when neither ``model.checkpoint`` nor ``model.config`` is set, the shipped xyz-only weights
  ``models/<name>_lidar_synthetic.pth`` where they exist (:func:`colorless_default`; the
  ``Segmenter`` picks per cloud);
* the class table: the checkpoint's ``class_names``, else the ScanNet-20 table.

Weights always load through :func:`~ros2_inst3d.model.checkpoint.load_checkpoint` with
``strict=True``, so a checkpoint that does not fit its config is refused with the list of missing,
unexpected and size-mismatched tensors instead of running with random heads.

A cloud reaches the network exactly as in training (``data.batching.collate`` over one
:class:`~ros2_inst3d.data.batching.Sample`): xyz centred on their mean (the official
preprocessing), features ``[rgb / 127.5 - 1, xyz]`` (``[1, xyz]`` for the xyz-only models),
voxels of the model's ``voxel_size``. Our synthetic models are trained without the official
fixed test yaw, so none is applied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import SCANNET20_CLASSES
from ..config import Config, ModelConfig
from ..errors import ConfigError, SegmentationError
from .proposals import Proposals
from .registry import LEARNED_METHODS

log = logging.getLogger(__name__)

SHIPPED_SUFFIX = "_synthetic"
"""Shipped demo files: ``config/models/<name>_synthetic.yaml``, ``models/<name>_synthetic.pth``."""
COLORLESS_SUFFIX = "_lidar_synthetic"
"""Shipped demo weights for clouds without colour: ``models/<name>_lidar_synthetic.pth``."""


def train_hint(name: str) -> str:
    """How to get weights for ``name``, for error messages."""
    return (f"train them with `ros2-inst3d train config/train/{name}{SHIPPED_SUFFIX}.yaml` and set "
            "model.checkpoint to the resulting .pth (or pass --checkpoint PATH)")


def shipped_weights(name: str, models_dir: str | Path | None = None,
                    suffix: str = SHIPPED_SUFFIX) -> Path | None:
    """The demo weights shipped for ``name`` (``models/<name><suffix>.pth``), or None.

    models_dir: where to look instead of this installation's ``models/`` folder. suffix:
    ``SHIPPED_SUFFIX`` (the rgb models) or ``COLORLESS_SUFFIX`` (xyz only).
    """
    from ..resources import data_dir

    if models_dir is None:
        try:
            models_dir = data_dir("models")
        except FileNotFoundError:  # no models/ folder in this installation
            return None
    path = Path(models_dir) / f"{name}{suffix}.pth"
    return path if path.is_file() else None


def colorless_default(model_cfg: ModelConfig, models_dir: str | Path | None = None
                      ) -> ModelConfig | None:
    """``model_cfg`` pointed at the shipped xyz-only weights, for clouds without colour; None
    when the user chose the weights or their config (``model.checkpoint`` / ``model.config``:
    an explicit choice wins) or none are shipped for the method."""
    import dataclasses

    if model_cfg.checkpoint or model_cfg.config or model_cfg.name not in LEARNED_METHODS:
        return None
    path = shipped_weights(model_cfg.name, models_dir, COLORLESS_SUFFIX)
    if path is None:
        return None
    return dataclasses.replace(model_cfg, checkpoint=str(path))


def shipped_model_config(name: str) -> Path:
    """``config/models/<name>_synthetic.yaml`` of this installation (it may not exist)."""
    from ..resources import data_dir

    return data_dir("config") / "models" / f"{name}{SHIPPED_SUFFIX}.yaml"


def resolve_checkpoint(model_cfg: ModelConfig, models_dir: str | Path | None = None) -> Path:
    """The weights file ``model_cfg`` asks for (see the module docstring); ConfigError if none.

    models_dir: folder of the shipped weights (default: this installation's ``models/``).
    """
    if model_cfg.checkpoint:
        path = Path(model_cfg.checkpoint).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.checkpoint {path} does not exist or is not a file")
        return path
    path = shipped_weights(model_cfg.name, models_dir)
    if path is None:
        raise ConfigError(
            f"model.name '{model_cfg.name}' needs weights, and none are shipped with this "
            f"installation (models/{model_cfg.name}{SHIPPED_SUFFIX}.pth): {train_hint(model_cfg.name)}")
    return path


def network_config_for_checkpoint(model_cfg: ModelConfig, meta: Mapping[str, Any]
                                  ) -> tuple[dict[str, Any], str]:
    """The ``model:`` mapping of the network to build for a checkpoint, and where it came from
    (for messages): ``model.config``, else the checkpoint's embedded one, else the shipped YAML.

    meta: the checkpoint's non-weight entries (``checkpoint.read_checkpoint_meta``).
    """
    from .registry import load_model_config

    if model_cfg.config:
        from ..resources import config_path

        path = config_path(model_cfg.config, "models")
        return load_model_config(path), f"model.config {path}"
    embedded = meta.get("config")
    if isinstance(embedded, Mapping) and embedded.get("name"):
        return dict(embedded), "the config embedded in the checkpoint"
    path = shipped_model_config(model_cfg.name)
    if not path.is_file():
        raise ConfigError(
            f"the checkpoint holds no model config and {path} does not exist: set model.config "
            f"to the model YAML the checkpoint was trained with (config/models/*.yaml)")
    return load_model_config(path), str(path)


def apply_cpu_threads(count: int) -> None:
    """Set torch's CPU threads to ``model.cpu_threads`` (0 keeps torch's default). Process-wide:
    every learned model built afterwards in this process shares it."""
    import torch

    if count > 0:
        torch.set_num_threads(count)


def _is_cuda_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


class LearnedModel:
    """A trained network of a learned method ready for inference (``eval()`` mode).

    network: the model (``registry.build_network``), weights loaded. class_names: its semantic
    class table (``network.semantic_classes`` entries). device: where it runs. source: a short
    description of the weights, for logs. augmented_views: ``model.augmented_views``, the
    test-time views (``data.inputs.view_matrices``) whose point-wise outputs the network
    averages; ConfigError for a network that does not (``averages_views`` false).

    Build one from the node's configuration with :meth:`from_config`; the constructor takes an
    already built network (benchmarks use it with freshly initialised weights).
    """

    def __init__(self, network: Any, class_names: Sequence[str] = SCANNET20_CLASSES,
                 device: Any = "cpu", source: str = "", augmented_views: int = 1) -> None:
        import torch

        from ..data.inputs import view_matrices

        if not hasattr(network, "predict"):
            raise ConfigError(f"model '{getattr(network, 'name', type(network).__name__)}' has no "
                              "inference path (predict) in this version")
        if augmented_views > 1 and not getattr(network, "averages_views", False):
            raise ConfigError(
                f"model.augmented_views {augmented_views}: test-time views are averaged by "
                f"softgroup and pointgroup only, not by '{network.name}'; set it to 1")
        class_names = tuple(str(c) for c in class_names)
        if len(class_names) != network.semantic_classes:
            raise ConfigError(
                f"the class table has {len(class_names)} names but the model predicts "
                f"{network.semantic_classes} semantic classes (model config semantic_classes)")
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.name: str = str(network.name)
        self.class_names: tuple[str, ...] = class_names
        # The model config's split (semantic_classes - instance_classes leading classes never
        # form instances): ScanNet's wall and floor, STPLS3D's ground, SemanticKITTI's 11
        # background classes, none of S3DIS's 13.
        self.stuff_classes: frozenset[int] = frozenset(range(network.num_stuff_classes))
        self.voxel_size = float(network.voxel_size)
        self.with_coords = bool(network.with_coords)
        self.in_channels = int(network.raw_in_channels)
        # Whether rgb is an input; the xyz-only models (in_channels 1) ignore it.
        self.needs_color: bool = bool(network.needs_color)
        self.source = source
        # Back-rotations (xyz @ M, then offsets @ M.T) of the extra test-time views.
        self.views = [(m, torch.as_tensor(m.T, dtype=torch.float32, device=self.device))
                      for m in view_matrices(augmented_views)[1:]]

    @classmethod
    def from_config(cls, model_cfg: ModelConfig, *, models_dir: str | Path | None = None
                    ) -> LearnedModel:
        """Resolve config, weights and device of ``model_cfg`` (module docstring) and load.

        models_dir: folder of the shipped weights (default: this installation's ``models/``).

        Raises ConfigError when no weights are found, the model config is missing or names
        another method, the checkpoint does not fit the config (with the full key report), or the
        device cannot be used.
        """
        name = model_cfg.name
        if name not in LEARNED_METHODS:
            raise ConfigError(f"model.name '{name}' is not a learned model this version runs "
                              f"(learned: {', '.join(LEARNED_METHODS)})")
        return cls.from_checkpoint(resolve_checkpoint(model_cfg, models_dir), model_cfg)

    @classmethod
    def from_checkpoint(cls, path: Path, model_cfg: ModelConfig, *,
                        embedded_method: bool = False) -> LearnedModel:
        """Load the weights file ``path`` with ``model_cfg``'s model YAML, device, CPU threads
        and views. embedded_method: the network is whichever learned method the checkpoint's
        embedded config names (``model_cfg.name`` is not consulted; the lidar method's street
        network); else it must be ``model_cfg.name``. Errors as :meth:`from_config`."""
        from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta
        from .registry import build_network

        try:
            meta = read_checkpoint_meta(path)
        except CheckpointError as err:
            raise ConfigError(str(err)) from None
        embedded = meta.get("config") if isinstance(meta.get("config"), Mapping) else {}
        if embedded_method:
            if embedded.get("name") not in LEARNED_METHODS:
                raise ConfigError(f"{path} embeds no config of a learned model (export it with "
                                  "`ros2-inst3d export-weights`)")
            model_cfg = replace(model_cfg, name=embedded["name"], config="")
        name = model_cfg.name
        net_cfg, cfg_source = network_config_for_checkpoint(model_cfg, meta)
        if net_cfg.get("name") != name:
            raise ConfigError(f"model.name is '{name}' but {cfg_source} describes a "
                              f"'{net_cfg.get('name')}' model; make them agree")
        from .backbone import resolve_device

        device = resolve_device(model_cfg.device)
        apply_cpu_threads(model_cfg.cpu_threads)
        network = build_network(net_cfg)
        try:
            load_checkpoint(network, path, strict=True)
        except CheckpointError as err:
            raise ConfigError(f"{path} does not fit the model built from {cfg_source}:\n{err}"
                              ) from None
        class_names = meta.get("class_names") or SCANNET20_CLASSES
        if not (isinstance(class_names, (list, tuple))
                and all(isinstance(c, str) for c in class_names)):
            raise ConfigError(f"{path}: the class table embedded in the checkpoint must be a list "
                              f"of names, got {str(class_names)[:100]!r}")
        model = cls(network, class_names, device, source=str(path),
                    augmented_views=model_cfg.augmented_views)
        log.info("%s: weights %s, config from %s, %d classes, on %s%s", name, path, cfg_source,
                 len(model.class_names), device,
                 f", {model_cfg.augmented_views} views" if model.views else "")
        return model

    def network_batch(self, xyz: np.ndarray, rgb: np.ndarray | None) -> dict[str, Any]:
        """The collated one-cloud batch (on the model's device) the network sees for ``xyz``
        (N, 3) float, metres, and ``rgb`` (N, 3) in 0..255 units (None or ignored for the
        xyz-only models); xyz centred on their mean. With ``model.augmented_views`` > 1 it
        carries ``views``: the batches of the cloud turned by each view, with their
        back-rotations (``InstanceNetwork.forward_batch``)."""
        from ..data.batching import batch_to_device, centred_sample, collate

        colors = rgb if self.needs_color else None

        def one(points: np.ndarray) -> dict[str, Any]:
            batch = collate([centred_sample("cloud", points, colors)], self.voxel_size,
                            with_coords=self.with_coords, in_channels=self.in_channels)
            return batch_to_device(batch, self.device)

        batch = one(xyz)
        if self.views:
            points = np.asarray(xyz, np.float64)
            batch["views"] = [(one(points @ m), back) for m, back in self.views]
        return batch

    def predict_points(self, xyz: np.ndarray, rgb: np.ndarray | None) -> Proposals:
        """Instance proposals of one cloud: ``xyz`` (N, 3) float32, metres, z up; ``rgb`` (N, 3)
        uint8 (ignored by the xyz-only models). Proposal indices refer to the N input points;
        class ids are semantic class ids.

        timing_ms: ``input`` (centring, features, voxels, copy to the device) plus the network's
        ``backbone``, ``grouping`` and ``refinement``. Raises SegmentationError 'no_color'
        without rgb and 'gpu_oom' when CUDA runs out of memory (the cache is freed first, so the
        next, smaller cloud can still run).
        """
        import torch

        if rgb is None and self.needs_color:
            raise SegmentationError(
                "no_color", f"the learned model '{self.name}' ({self.source}) needs colour (rgb "
                "is half of its input features) but the cloud has no rgb field; use a coloured "
                "cloud, weights trained without colour (models/*_lidar_synthetic.pth), or "
                "model.name 'geometric' / 'lidar' (need xyz only)")
        t0 = time.perf_counter()
        batch = self.network_batch(xyz, rgb)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        input_ms = (time.perf_counter() - t0) * 1e3
        oom_message = None
        try:
            proposals = self.network.predict(batch)[0]
        except RuntimeError as err:  # torch.cuda.OutOfMemoryError is one; spconv raises plain ones
            if self.device.type != "cuda" or not _is_cuda_oom(err):
                raise
            oom_message = str(err).strip().splitlines()[0]
        if oom_message is not None:
            # Outside the except block: the exception's traceback (which keeps the forward's
            # intermediate tensors alive) is gone, so the cache can really be released.
            del batch
            torch.cuda.empty_cache()
            raise SegmentationError(
                "gpu_oom", f"{self.name}: CUDA out of memory on {len(xyz)} points "
                f"({oom_message}); lower segment.max_points or accumulate.max_points, or shrink "
                "the ROI")
        # Named as the benchmark names the stage (README: Performance), in every output.
        proposals.timing_ms = {"voxelize": input_ms, **proposals.timing_ms}
        return proposals


def learned_point_model(cfg: Config) -> LearnedModel:
    """The learned methods' factory (``registry.METHODS``): :meth:`LearnedModel.from_config` of
    the pipeline config's ``model`` section."""
    return LearnedModel.from_config(cfg.model)


__all__ = ["COLORLESS_SUFFIX", "LearnedModel", "colorless_default", "learned_point_model",
           "network_config_for_checkpoint", "resolve_checkpoint", "shipped_model_config",
           "shipped_weights", "train_hint"]
