"""``ros2-inst3d train``: train SoftGroup / PointGroup on labelled scenes; checkpoints for shipping.

A training YAML (``config/train/*.yaml``) has four top-level keys, each documented in the
dataclasses below (and in the shipped YAMLs' comments):

* ``model``: a model YAML path (``config/models/*.yaml``; relative paths are looked up beside
  the training YAML first, then in the package's ``config/`` folder) or an inline mapping with
  ``name`` and the constructor arguments;
* ``data`` (:class:`DataConfig`): train / val scene folders, voxel size, augmentation, batch;
* ``train`` (:class:`OptimConfig`): optimizer, learning-rate schedule, length, validation and
  checkpoint cadence, seed, threads;
* ``work_dir``: where ``log.jsonl`` and the checkpoints go.

The loop is the official one (SoftGroup ``tools/train.py``): ``collate`` batches of augmented
scans, ``loss, parts = model.forward_train(batch, epoch)``, backward, optional gradient clipping,
an optimizer step and a per-iteration learning-rate step. Validation runs the model's
``predict`` on every (or the first ``val_limit``) validation scene and scores it with the ScanNet
AP protocol of :mod:`ros2_inst3d.evaluation` (class-aware, the thing classes).

Checkpoints (``latest.pth``, ``best.pth`` by validation AP, ``epoch_XXX.pth`` when asked) are
``{'net', 'config', 'class_names', 'epoch', 'iteration', 'optimizer', 'scheduler',
'train_config', 'metrics'}`` holding only tensors and plain Python values, so
``torch.load(weights_only=True)`` reads them. ``epoch`` is the number of finished epochs (the
epoch a ``--resume`` continues with), ``iteration`` the number of finished optimizer steps; a
checkpoint written inside an epoch (``save_every_iters``) also holds ``rng``, the global random
states, and its ``iteration`` is past the start of epoch ``epoch``.
:func:`export_weights` (``ros2-inst3d export-weights``) writes the slim shipping copy.
``metrics`` holds ``train`` (the last epoch's mean losses), ``val`` (the last validation: AP,
AP50, AP25, RC50, mCov, mPrec50, mRec50, num_scenes, per-class AP/AP50/num_gt/num_pred) and
``best`` (AP, AP50, AP25, epoch, iteration of the best validation so far).

``log.jsonl`` has one JSON object per line, by ``type``: ``start`` (sizes and the whole config)
or ``resume``; ``iter`` per optimizer step (``epoch`` 1-based, ``iteration`` = steps done, the
``lr`` of that step, ``loss`` and the model's parts, ``grad_norm`` before clipping, ``data_s``,
``time_s`` wall and ``cpu_s`` process CPU seconds of the step including data loading,
``num_points``, ``num_voxels``); ``epoch`` (mean parts); ``val`` (the metrics above); ``end``.

Determinism: every random draw derives from ``train.seed`` and the epoch (augmentation per scene
and epoch, the shuffle order, torch's global generator), so a resumed run repeats the iterations
an uninterrupted run would have done (on CPU, where spconv runs single-threaded, bit for bit).
A resume from inside an epoch takes that epoch's shuffle order from the step after the
checkpoint (the batches before it are not loaded again) and the global random states the
checkpoint saved.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data.inputs import DEFAULT_VOXEL_SIZE
from .errors import ConfigError
from .schema import REQUIRED, build_section, check_keys, check_value, param

if TYPE_CHECKING:  # torch and scipy (augment) load lazily: `ros2-inst3d --help` stays instant
    import torch

    from .data.augment import Augmentation

log = logging.getLogger(__name__)

LOG_NAME = "log.jsonl"
LATEST = "latest.pth"
BEST = "best.pth"
CHECKPOINT_KEYS = ("net", "config", "class_names", "epoch", "iteration", "optimizer", "scheduler",
                   "train_config", "metrics")
EXPORT_KEYS = ("net", "config", "class_names", "epoch", "iteration", "metrics")


def _default_augmentation() -> Augmentation:
    from .data.augment import Augmentation

    return Augmentation()


def _augmentation(values: Any, where: str) -> Augmentation | None:
    from .data.augment import augmentation_from_dict

    return augmentation_from_dict(values, where)


def _annotation_names() -> dict[str, Any]:
    """Names the schema's annotations use that load lazily (``Augmentation``: scipy)."""
    from .data.augment import Augmentation

    return {"Augmentation": Augmentation}


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataConfig:
    """The ``data:`` section."""

    train: tuple[str, ...] = param(REQUIRED,
        "Folder of labelled training scenes (.npz / preprocessed .pth / SemanticKITTI .bin with "
        ".label), or a list of folders whose scenes are pooled (generated and real scans, two "
        "sensors); relative to the current directory. Make the synthetic set with `ros2-inst3d "
        "gen-data data/synthetic/train --split train --scenes 240`.",
        parse=lambda where, value: _path_list(value, where, "a folder of training scenes",
                                              optional=False))
    val: tuple[str, ...] | None = param(None,
        "Folder of labelled validation scenes, a list of folders (pooled in order, as data.train), "
        "or null for no validation (then best.pth is not written). Synthetic: `ros2-inst3d "
        "gen-data data/synthetic/val --split val --scenes 50`.",
        parse=lambda where, value: _path_list(value, where, "a folder of validation scenes"))
    voxel_size: float | None = param(None,
        "Voxel side in metres; must equal the model's voxel_size (null: take the model's).",
        low=1e-4, high=1.0)
    scenes_per_batch: int = param(4,
        "Scenes per optimizer step (the official batch_size per GPU).", low=1)
    val_limit: int | None = param(None,
        "Validate on the first N validation scenes only (null: all); with several data.val "
        "folders, the first N of the pooled list.", low=1)
    augment: Augmentation | None = param(None,
        "Training augmentation, the fields of ros2_inst3d.data.augment.Augmentation (missing "
        "fields keep SoftGroup's ScanNet values at 2 cm voxels; scale elastic, crop_extent and "
        "crop_step with the voxel size); null: none (centred scenes, no crop).",
        factory=_default_augmentation, parse=lambda where, value: _augmentation(value, where))


@dataclass(frozen=True)
class OptimConfig:
    """The ``train:`` section."""

    optimizer: str = param("adam",
        "adam or adamw (torch.optim).", choices=("adam", "adamw"), nonempty=True)
    lr: float = param(0.004,
        "Peak learning rate (official SoftGroup/PointGroup-style runs: Adam 0.004).", low=0.0)
    weight_decay: float = param(0.0,
        "Weight decay (Adam: L2 added to the gradient; AdamW: decoupled).", low=0.0)
    epochs: int | None = param(None,
        "Passes over the training scenes. Give exactly one of epochs and max_iters.", low=1)
    max_iters: int | None = param(None,
        "Optimizer steps in total (the last epoch may be partial). Exactly one of epochs and "
        "max_iters.", low=1)
    schedule: str = param("cosine",
        "Learning-rate schedule per iteration: cosine (constant until cosine_start, then half a "
        "cosine down to min_lr) or constant.", choices=("cosine", "constant"), nonempty=True)
    cosine_start: float = param(0.0,
        "Fraction of the iterations run at the peak lr before the cosine decay starts (official "
        "SoftGroup ScanNet: step_epoch 50 of 128 epochs = 0.39).", low=0.0, high=1.0)
    warmup_iters: int = param(0,
        "Iterations of linear warm-up from lr/warmup_iters to lr (0: none).", low=0)
    min_lr: float = param(1e-6,
        "Learning rate at the end of the cosine (the official cosine_lr clip).", low=0.0)
    grad_clip_norm: float | None = param(None,
        "Clip the gradients' global L2 norm to this (null: no clipping).", low=0.0)
    amp: bool = param(False,
        "Mixed precision (float16 autocast + GradScaler) on CUDA; ignored on CPU. The loss "
        "scale restarts from its default after --resume.")
    seed: int = param(0,
        "Seed of every random draw (augmentation, shuffling, weights, torch).", low=0)
    val_every: int = param(1,
        "Validate every N epochs (and always after the last one); 0: only after the last.",
        low=0)
    save_every: int = param(1,
        "Write latest.pth every N epochs (and always after the last one).", low=1)
    val_every_iters: int = param(0,
        "Also validate after every N optimizer steps, inside an epoch as at its end (0: as "
        "val_every says only). For long epochs: 4287 rooms at 2 per step are 2143 steps (~45 min "
        "on one core) between two epoch-end validations.", low=0)
    save_every_iters: int = param(0,
        "Also write latest.pth after every N optimizer steps, inside an epoch as at its end (0: "
        "as save_every says only); --resume from one inside an epoch continues with the next "
        "step, as the uninterrupted run would.", low=0)
    keep_epoch_checkpoints: bool = param(False,
        "Also keep epoch_XXX.pth (XXX = finished epochs) at every save.")
    num_workers: int = param(0,
        "DataLoader worker processes (0: load in the training process).", low=0)
    cpu_threads: int | None = param(1,
        "torch threads when training on CPU (null: torch's default). spconv always runs "
        "single-threaded on CPU; 1 lets several trainings share a machine core by core.", low=1)
    device: str = param("auto",
        "auto (CUDA when available), cpu, cuda or cuda:N; the --device flag overrides it.",
        nonempty=True)
    pretrain: tuple[str, ...] | None = param(None,
        "Weights loaded before a fresh run (ignored by --resume): a checkpoint of this project "
        "or an official one, or a list of them loaded in order (a later one overwrites the "
        "tensors it shares with an earlier one: e.g. the previous stage 2, then a new stage 1 "
        "over it). Tensors whose key and shape fit are loaded, the rest keep their "
        "initialisation (the official `pretrain`: the instance stage starts from the backbone "
        "run). Relative to the current directory.",
        parse=lambda where, value: _path_list(value, where, "a checkpoint path"))


@dataclass(frozen=True)
class TrainConfig:
    """A whole training YAML, validated; ``model`` is the resolved model mapping."""

    model: dict[str, Any] = param(REQUIRED,
        "Model YAML path (config/models/*.yaml; looked up beside this file, then in the "
        "package's config/ folder) or an inline mapping with name and constructor arguments.")
    data: DataConfig = param(REQUIRED, "Training and validation data (see DataConfig).")
    train: OptimConfig = param(None,
        "Optimization, schedule, validation and checkpoint cadence (see OptimConfig).",
        factory=OptimConfig)
    work_dir: str = param("work_dirs/train",
        "Output folder (log.jsonl, latest.pth, best.pth, epoch_XXX.pth); relative to the "
        "current directory; --work-dir overrides it.", nonempty=True)
    model_source: str = param("<inline>",
        "Where the model mapping came from (filled in by load_train_config, not a YAML key).")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (what checkpoints store as ``train_config``)."""
        return to_plain(dataclasses.asdict(self))


YAML_KEYS = ("model", "data", "train", "work_dir")


def resolve_model_config(value: Any, base_dir: Path | None = None) -> tuple[dict[str, Any], str]:
    """(model mapping, where it came from) for the ``model:`` key of a training YAML."""
    from .model.registry import NETWORKS, build_network, load_model_config

    if isinstance(value, Mapping):
        cfg, source = dict(value), "<inline>"
    elif isinstance(value, str) and value:
        candidates = [Path(value)] if Path(value).is_absolute() else []
        if not candidates:
            if base_dir is not None:
                candidates.append(base_dir / value)
            try:
                from .resources import data_dir

                candidates.append(data_dir("config") / value)
            except FileNotFoundError:
                pass
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise ConfigError(f"model config {value!r} not found (looked in: "
                              f"{', '.join(str(c) for c in candidates)})")
        cfg, source = load_model_config(path), str(path)
    else:
        raise ConfigError("'model' must be a model YAML path (e.g. models/softgroup_synthetic"
                          f".yaml) or a mapping with name and arguments, got {value!r}")
    name = cfg.get("name")
    if name not in NETWORKS:
        raise ConfigError(f"model {source}: name must be one of {', '.join(sorted(NETWORKS))}"
                          f", got {name!r}")
    try:  # the module tree without weights: checks every argument now, not after data loading
        build_network(cfg, device="meta")
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"model {source}: {exc}") from None
    return to_plain(cfg), source


def train_config_from_dict(data: Mapping[str, Any], base_dir: Path | None = None
                           ) -> TrainConfig:
    """Validate a training YAML's mapping (see the module docstring) into a :class:`TrainConfig`."""
    data = check_keys("<training config>", data, YAML_KEYS)
    if "model" not in data:
        raise ConfigError("the training config needs 'model' (a model YAML path or mapping)")
    if "data" not in data:
        raise ConfigError("the training config needs 'data' (with at least data.train)")
    model, source = resolve_model_config(data["model"], base_dir)
    section = build_section(DataConfig, "data", data["data"], localns=_annotation_names())
    model_voxel = float(model.get("voxel_size", DEFAULT_VOXEL_SIZE))
    if section.voxel_size is None:
        section = dataclasses.replace(section, voxel_size=model_voxel)
    elif not math.isclose(section.voxel_size, model_voxel, rel_tol=1e-6):
        raise ConfigError(f"data.voxel_size {section.voxel_size} differs from the model's "
                          f"voxel_size {model_voxel} ({source}); the network is trained and run "
                          "at one voxel size, so make them equal")
    optim = build_section(OptimConfig, "train", data.get("train"))
    if (optim.epochs is None) == (optim.max_iters is None):
        raise ConfigError("give exactly one of train.epochs and train.max_iters (got "
                          f"epochs={optim.epochs}, max_iters={optim.max_iters})")
    if optim.schedule == "cosine" and optim.min_lr > optim.lr:
        raise ConfigError(f"train.min_lr {optim.min_lr} is above train.lr {optim.lr}: the cosine "
                          "would raise the learning rate")
    work_dir = check_value("work_dir", str, data.get("work_dir", "work_dirs/train"),
                           {"nonempty": True})
    return TrainConfig(model=model, data=section, train=optim, work_dir=work_dir,
                       model_source=source)


def load_train_config(path: str | Path, overrides: Mapping[str, Any] | None = None
                      ) -> TrainConfig:
    """Read and validate a training YAML; ``overrides`` are dotted keys (``train.epochs``,
    ``data.train``, ``work_dir``...) applied before validation. Errors name the file."""
    from .resources import config_path
    from .schema import load_yaml_mapping, named_errors

    path = config_path(path, "train")
    data = load_yaml_mapping(path, "training config")
    for key, value in (overrides or {}).items():
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{path}: cannot override {key}: '{p}' is not a mapping")
        node[leaf] = value
    return named_errors(path, lambda: train_config_from_dict(data, path.parent))


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def to_plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples and Paths turned into plain Python (tensors
    are kept), so ``torch.load(weights_only=True)`` and JSON accept it."""
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        return {(k if isinstance(k, (str, int)) else str(k)): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(dataclasses.asdict(value))
    return value


def lr_factor(iteration: int, *, total_iters: int, schedule: str, warmup_iters: int = 0,
              cosine_start: float = 0.0, min_factor: float = 0.0) -> float:
    """Learning rate of step ``iteration`` (0-based) as a fraction of the peak.

    Linear warm-up over ``warmup_iters``; with ``schedule='cosine'`` the factor stays 1 until
    ``cosine_start * total_iters`` and then follows half a cosine down to ``min_factor`` at the
    last step (the official ``cosine_lr`` per iteration instead of per epoch).
    """
    warm = (iteration + 1) / warmup_iters if iteration < warmup_iters else 1.0
    if schedule == "constant":
        return warm
    start = int(cosine_start * total_iters)
    if iteration < start:
        return warm
    progress = (iteration - start) / max(total_iters - start, 1)
    cosine = min_factor + 0.5 * (1.0 - min_factor) * (1.0 + math.cos(math.pi * progress))
    return warm * cosine


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's legacy global generator and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive numpy / random seeds from the worker's torch seed
    (which the loader's generator sets), so workers differ but repeat across runs."""
    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def random_states() -> dict[str, Any]:
    """The global random states (torch CPU, numpy's legacy generator, python's ``random``) as
    values ``torch.load(weights_only=True)`` reads back: what a step draws from besides the
    seeded data pipeline (e.g. proposal sampling)."""
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                      float(cached)],
            "python": random.getstate()}


def set_random_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`random_states` returned."""
    import torch

    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def freeze_modules(model: Any) -> list[Any]:
    """Freeze ``model.fixed_modules`` (top-level module names): ``requires_grad`` off. Returns the
    modules, which the trainer also keeps in eval mode (BatchNorm statistics frozen too)."""
    modules = []
    for name in getattr(model, "fixed_modules", None) or []:
        module = getattr(model, name, None)
        if module is None:
            raise ConfigError(f"fixed_modules names {name!r}, but the model has no such module")
        module.requires_grad_(False)
        modules.append(module)
    return modules


def _path_list(value: Any, where: str, what: str,
               optional: bool = True) -> tuple[str, ...] | None:
    """One path or a non-empty list of paths (``what``: what each names), as a tuple; null
    when ``optional``."""
    if value is None and optional:
        return None
    paths = [value] if isinstance(value, str) else value
    if (not isinstance(paths, (list, tuple)) or not paths
            or not all(isinstance(p, str) and p.strip() for p in paths)):
        raise ConfigError(f"{where} must be {what} or a non-empty list of them, got {value!r}")
    return tuple(paths)


def _scene_set(key: str, folders: tuple[str, ...], **options: Any) -> Any:
    """The SceneDataset of config key ``key``'s folders; a missing or empty one is a
    ConfigError naming the key."""
    from .data.datasets import SceneDataset

    try:
        return SceneDataset(folders, **options)
    except FileNotFoundError as err:
        raise ConfigError(f"{key}: {err}") from None


def load_pretrained(model: Any, path: str | Path) -> None:
    """Load the tensors of ``path`` that fit ``model`` (key and shape); log what did not."""
    from .model.checkpoint import CheckpointError, load_checkpoint

    try:
        report = load_checkpoint(model, path, strict=False)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"train.pretrain {path}: {exc}") from None
    loaded = report.num_expected - len(report.missing) - len(report.mismatched)
    if loaded == 0:
        raise ConfigError(f"train.pretrain {path}: no tensor fits this model "
                          f"({report.format()})")
    log.info("pretrain %s: loaded %d of the model's %d tensors; %d missing (kept initialised), "
             "%d of other shapes, %d unused", path, loaded, report.num_expected,
             len(report.missing), len(report.mismatched), len(report.unexpected))


class JsonLog:
    """``work_dir/log.jsonl``: one JSON object per line (``type``: iter, epoch, val, ...);
    ``path`` None writes nothing (data-parallel ranks other than 0)."""

    def __init__(self, path: Path | None, append: bool) -> None:
        self.path = path
        self._file = (open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115
                      if path is not None else None)

    def write(self, record: Mapping[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(to_plain(record)) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()]


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by :func:`train` (``weights_only`` load onto CPU), checked for the
    keys a resume needs."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        raise ValueError(f"{path}: not a readable training checkpoint: "
                         f"{str(exc).splitlines()[0]}") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a training checkpoint of `ros2-inst3d train` (missing "
                         f"{', '.join(missing)}); to fine-tune other weights, load them into the "
                         "model first")
    return ckpt


def save_checkpoint(path: Path, model: Any, cfg: TrainConfig, class_names: list[str],
                    epoch: int, iteration: int, optimizer: Any, scheduler: Any,
                    metrics: Mapping[str, Any], rng: Mapping[str, Any] | None = None) -> Path:
    """Write a training checkpoint atomically (a crash never leaves half a ``latest.pth``);
    ``rng`` (:func:`random_states`) for one written inside an epoch."""
    import torch

    ckpt = {
        "net": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": to_plain(cfg.model),
        "class_names": [str(c) for c in class_names],
        "epoch": int(epoch),
        "iteration": int(iteration),
        "optimizer": to_plain(optimizer.state_dict()),
        "scheduler": to_plain(scheduler.state_dict()),
        "train_config": cfg.to_dict(),
        "metrics": to_plain(dict(metrics)),
    }
    if rng is not None:
        ckpt["rng"] = dict(rng)
    from .atomic import atomic_file

    with atomic_file(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def export_weights(ckpt: str | Path, out: str | Path, half: bool = False,
                   model_config: str | Path | None = None) -> Path:
    """Write the shipping copy of a training checkpoint: ``net`` (floating tensors as float32,
    or float16 with ``half``, except tensors beyond float16's range), ``config``,
    ``class_names``, ``epoch``, ``iteration``, ``metrics``; no optimizer or scheduler state. Loadable with ``torch.load(weights_only=True)`` and by
    ``model/checkpoint.py`` (the ``net`` container).

    model_config: a model YAML whose ``model:`` mapping replaces the trained one, for
    post-processing settings calibrated after training (bandwidths, thresholds); the network it
    builds must hold exactly the trained tensors, with their shapes, or nothing is written."""
    import torch

    source = read_training_checkpoint(ckpt)
    if model_config is not None:
        source["config"] = _replacement_config(source, model_config, ckpt)
    dtype = torch.float16 if half else torch.float32
    half_max = torch.finfo(torch.float16).max
    net = {}
    for k, v in source["net"].items():
        fits = not (half and v.is_floating_point() and bool((v.abs() > half_max).any()))
        if not fits:  # e.g. a BatchNorm running_var past 65504 would load as inf
            log.warning("export-weights: %s exceeds the float16 range; kept as float32", k)
        net[k] = (v.to(dtype if fits else torch.float32) if v.is_floating_point()
                  else v).contiguous()
    slim = {k: source[k] for k in EXPORT_KEYS if k != "net"}
    slim = {"net": net, **to_plain(slim)}
    return _save_weights(slim, out)


def _replacement_config(source: Mapping[str, Any], model_config: str | Path,
                        ckpt: str | Path) -> dict[str, Any]:
    """``model_config``'s ``model:`` mapping, checked to build a network of the same method whose
    tensors are exactly ``source["net"]``'s (names and shapes)."""
    from .model.registry import build_network, load_model_config

    config = load_model_config(model_config)
    trained = source.get("config") or {}
    if config.get("name") != trained.get("name"):
        raise ConfigError(f"{model_config} is a {config.get('name')!r} model, {ckpt} holds "
                          f"{trained.get('name')!r}")
    expected = {k: tuple(v.shape) for k, v in build_network(config, device="meta")
                .state_dict().items()}
    held = {k: tuple(v.shape) for k, v in source["net"].items()}
    if expected != held:
        differ = sorted(set(expected.items()) ^ set(held.items()))
        raise ConfigError(f"{model_config} builds another network than {ckpt} holds "
                          f"({len(differ)} tensors differ, e.g. {differ[0][0]}); only settings "
                          "that leave the tensors alone can replace the trained config")
    return config


def _save_weights(weights: dict[str, Any], out: str | Path) -> Path:
    """Write a shipping weights dict to ``out`` atomically (folders created)."""
    import torch

    from .atomic import atomic_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        torch.save(weights, tmp)
    return out


def widen_weights(ckpt: str | Path, out: str | Path, channels: int, seed: int = 0) -> Path:
    """Write ``ckpt``'s network widened to ``model.channels: channels`` (every U-Net level and
    head scales with it), computing the same function
    (:func:`~ros2_inst3d.model.checkpoint.widen_state_dict`), in the :func:`export_weights` format, for ``train.pretrain`` of a wider run: the wide network starts
    where the narrow one stopped instead of from scratch."""
    import torch

    from .model.checkpoint import read_checkpoint_with_meta, widen_state_dict
    from .model.registry import build_network

    state, meta = read_checkpoint_with_meta(ckpt)
    config = meta.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("channels"), int):
        raise ConfigError(f"{ckpt}: no model config with an integer 'channels' (only checkpoints "
                          "written by `ros2-inst3d train` / `export-weights` can be widened)")
    if channels < config["channels"]:
        raise ConfigError(f"{ckpt} has {config['channels']} channels; widening needs at least "
                          f"that many, got {channels}")
    wide_config = {**config, "channels": channels}
    target = {k: tuple(v.shape) for k, v in build_network(wide_config, device="meta")
              .state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    net = {k: v.float() if v.is_floating_point() else v
           for k, v in widen_state_dict(state, target, generator).items()}
    slim = {"net": net, **to_plain({k: meta.get(k) for k in EXPORT_KEYS if k != "net"}),
            "config": to_plain(wide_config), "metrics": {}, "widened_from": str(ckpt)}
    return _save_weights(slim, out)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

@dataclass
class Validation:
    """What :func:`validate` measures: instance AP (class-aware and class-agnostic; None for a
    ``semantic_only`` model) and the point-wise heads' quality on the same scenes."""

    instance: Any | None
    agnostic: Any | None
    pointwise: dict[str, float]

    @property
    def score(self) -> float:
        """The number ``best.pth`` is chosen by: class-aware AP, or semantic mIoU for a
        ``semantic_only`` (backbone) run."""
        if self.instance is not None:
            return float(self.instance.AP)
        return float(self.pointwise["mIoU"])


class PointwiseMeter:
    """Semantic confusion and offset errors accumulated over scenes (labelled points only).

    ``mIoU`` averages the classes present in the ground truth; ``offset_mae`` is the mean
    Euclidean error of the offset vectors on instance points, metres; ``offset_within`` the
    fraction of those within ``radius`` of their target (the points that grouping can join)."""

    def __init__(self, num_classes: int, radius: float = 0.06) -> None:
        self.confusion = np.zeros((num_classes, num_classes), np.int64)
        self.radius = float(radius)
        self.offset_error_sum = 0.0
        self.offset_within = 0
        self.offset_count = 0

    def add(self, semantic_pred: np.ndarray, semantic_gt: np.ndarray,
            offsets: np.ndarray | None = None, offset_target: np.ndarray | None = None,
            instance_gt: np.ndarray | None = None) -> None:
        k = self.confusion.shape[0]
        valid = (semantic_gt >= 0) & (semantic_gt < k)
        np.add.at(self.confusion, (semantic_gt[valid], semantic_pred[valid]), 1)
        if offsets is None:  # no offset head: the offset metrics stay at 0 points
            return
        on_instance = instance_gt >= 0
        error = np.linalg.norm(offsets[on_instance] - offset_target[on_instance], axis=1)
        self.offset_error_sum += float(error.sum())
        self.offset_within += int((error < self.radius).sum())
        self.offset_count += int(error.size)

    def class_iou(self) -> np.ndarray:
        """(num_classes,) IoU of each class; NaN for a class absent from the ground truth."""
        tp = np.diag(self.confusion).astype(np.float64)
        gt = self.confusion.sum(1).astype(np.float64)
        union = gt + self.confusion.sum(0) - tp
        return np.where(gt > 0, tp / np.maximum(union, 1), np.nan)

    def summary(self) -> dict[str, float]:
        tp = np.diag(self.confusion)
        iou = self.class_iou()
        n = max(self.offset_count, 1)
        return {"semantic_accuracy": float(tp.sum() / max(self.confusion.sum(), 1)),
                "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
                "offset_mae": self.offset_error_sum / n,
                "offset_within": self.offset_within / n}


def validate(model: Any, dataset: Any, device: Any, class_names: list[str],
             limit: int | None = None, progress: bool = False) -> Validation:
    """Instance AP and point-wise quality of ``model`` on the labelled scenes of ``dataset``.

    Each scene runs alone (no augmentation) through ``collate``, the point-wise forward and,
    unless the model is ``semantic_only``, ``model.predict``; proposals (indices into the batch
    rows) are mapped through ``batch['point_index']`` to the scene's points and scored with the
    ScanNet AP protocol of :mod:`ros2_inst3d.evaluation` on the default (thing) classes, both
    class-aware and class-agnostic.
    """
    import torch
    from tqdm import tqdm

    from .data.batching import batch_to_device, collate
    from .evaluation import Prediction, evaluate

    count = len(dataset) if limit is None else min(limit, len(dataset))
    pairs, names = [], []
    meter = PointwiseMeter(len(class_names))
    with_instances = not getattr(model, "semantic_only", False)
    was_training = model.training
    model.eval()
    try:
        for i in tqdm(range(count), desc="validate", unit="scene", disable=not progress,
                      leave=False):
            sample = dataset[i]
            batch = collate([sample], dataset.voxel_size, with_coords=model.with_coords,
                            in_channels=model.raw_in_channels)
            point_index = batch["point_index"].numpy()
            on_device = batch_to_device(batch, device)
            with torch.no_grad():
                out = model.forward_batch(on_device)
                offsets = out.get("offsets")  # None: the method has no offset head (MTML)
                meter.add(out["semantic_logits"].argmax(1).cpu().numpy(),
                          batch["semantic"].numpy(),
                          None if offsets is None else offsets.float().cpu().numpy(),
                          batch["offset_target"].numpy(), batch["instance"].numpy())
                if not with_instances:
                    continue
                proposals = model.predict(on_device)[0]
            num_points = int(point_index.max()) + 1 if point_index.size else 0
            gt_semantic = np.full(num_points, -100, np.int64)
            gt_instance = np.full(num_points, -100, np.int64)
            gt_semantic[point_index] = sample.semantic
            gt_instance[point_index] = sample.instance
            pred = Prediction.from_indices([point_index[ix] for ix in proposals.indices],
                                           proposals.class_ids, proposals.scores, num_points)
            pairs.append((gt_semantic, gt_instance, pred))
            names.append(sample.name)
    finally:
        model.train(was_training)
    if not with_instances:
        return Validation(None, None, meter.summary())
    return Validation(evaluate(pairs, class_names=class_names, scene_names=names),
                      evaluate(pairs, class_names=class_names, scene_names=names,
                               class_agnostic=True),
                      meter.summary())


def _val_summary(result: Validation) -> dict[str, Any]:
    """The metrics kept in the log and checkpoints: point-wise quality, instance means (plus
    ``agnostic_AP50``) and per-class AP / AP50."""
    out: dict[str, Any] = dict(result.pointwise)
    if result.instance is None:
        return out
    full = result.instance.to_dict()
    keys = ("AP", "AP50", "AP25", "RC50", "mCov", "mPrec50", "mRec50", "num_scenes")
    out.update({k: full[k] for k in keys})
    out["agnostic_AP"] = float(result.agnostic.AP)
    out["agnostic_AP50"] = float(result.agnostic.AP50)
    out["per_class"] = {name: {"AP": v["AP"], "AP50": v["AP50"], "num_gt": v["num_gt"],
                               "num_pred": v["num_pred"]}
                        for name, v in full["per_class"].items()}
    return out


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model (eval mode), its checkpoints and metrics."""

    model: Any
    work_dir: Path
    epoch: int
    iteration: int
    latest: Path | None
    best: Path | None
    metrics: dict[str, Any]


class _SkipFirst:
    """A sampler's order without its first ``count`` indices (iterating skips them, it does not
    load them)."""

    def __init__(self, sampler: Any, count: int):
        self.sampler, self.count = sampler, count

    def __iter__(self) -> Any:
        return itertools.islice(iter(self.sampler), self.count, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.count, 0)


def _check_batch_size(dataset_len: int, batch: int) -> tuple[int, bool]:
    """(iterations per epoch, drop_last): the official loader drops the last partial batch."""
    if dataset_len >= batch:
        return dataset_len // batch, True
    return 1, False


def _running_postfix(sums: Mapping[str, float], count: int, lr: float) -> dict[str, str]:
    """Epoch means of the losses for the progress bar (``semantic_loss`` shown as ``semantic``)."""
    shown = {("loss" if k == "loss" else k.removesuffix("_loss")): f"{v / max(count, 1):.3f}"
             for k, v in sums.items() if k.endswith("loss")}
    shown["lr"] = f"{lr:.2e}"
    return shown


def train(cfg: TrainConfig, *, resume: str | Path | None = None, device: str | None = None,
          quiet: bool = False) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` and write ``cfg.work_dir`` (see the module docstring).

    resume: a ``latest.pth`` / ``epoch_XXX.pth`` of this config: restores the weights, optimizer,
    scheduler, epoch and iteration and continues with the same schedule and random draws.
    device: overrides ``train.device``. quiet: no progress bars (epoch lines are still logged).
    """
    import torch

    from .model.backbone import resolve_device

    dev = resolve_device(device or cfg.train.device, "train.device")
    previous_threads = torch.get_num_threads()
    if dev.type == "cpu" and cfg.train.cpu_threads:
        torch.set_num_threads(cfg.train.cpu_threads)
    try:
        return Trainer(cfg, dev, resume=resume, quiet=quiet).run()
    finally:  # the thread count is process-wide: give the caller its own back
        torch.set_num_threads(previous_threads)


class Trainer:
    """One training run of :func:`train`: the model, data, optimiser and schedule are built in
    the constructor (in this order: the random draws of a run depend on it), ``run`` then loops
    ``run_epoch`` / ``validate_epoch`` / ``save`` and returns the :class:`TrainResult`.

    State a resume restores: the weights, optimiser and scheduler, ``start_epoch`` (finished
    epochs), ``iteration`` (finished optimizer steps), ``metrics`` and the best score so far.
    """

    def __init__(self, cfg: TrainConfig, dev: torch.device, *, resume: str | Path | None = None,
                 quiet: bool = False) -> None:
        from .parallel import init_process_group

        self.cfg, self.opt, self.dev, self.quiet = cfg, cfg.train, dev, quiet
        self.resume = resume
        self.group = init_process_group(dev)
        self.amp = bool(self.opt.amp and dev.type == "cuda")
        if self.opt.amp and not self.amp:
            log.info("train.amp is on but the device is %s: training in float32 (AMP is "
                     "CUDA-only)", dev)
        self.work_dir = Path(cfg.work_dir)
        if self.work_dir.exists() and not self.work_dir.is_dir():
            raise ConfigError(f"work_dir {self.work_dir} is an existing file; give a directory")
        if resume is None and self.group.is_main and (self.work_dir / LATEST).is_file():
            log.warning("%s already holds a training run: its log.jsonl and checkpoints will be "
                        "overwritten (--resume %s continues it instead)", self.work_dir,
                        self.work_dir / LATEST)
        seed_everything(self.opt.seed)
        self._build_model()
        self._build_data()
        self._build_optimiser()
        self.start_epoch, self.iteration = 0, 0
        self.resume_rng: dict[str, Any] | None = None  # a mid-epoch checkpoint's random states
        self.best_score, self.best_epoch = -math.inf, None
        self.metrics: dict[str, Any] = {}
        if resume is not None:
            self._restore(resume)

    # ---- construction -------------------------------------------------------------------------

    def _build_model(self) -> None:
        """The network (``pretrain`` loaded on a fresh run), on the device, ``fixed_modules``
        frozen; ``params`` are the ones the optimiser trains."""
        from .model.registry import build_network

        model = build_network(self.cfg.model)
        if not hasattr(model, "forward_train") or not hasattr(model, "predict"):
            raise ConfigError(f"model {self.cfg.model['name']!r} cannot be trained here: it has "
                              "no forward_train/predict (train one of the segmentation methods: "
                              "pointgroup, softgroup, isbnet, mtml)")
        if self.opt.pretrain is not None and self.resume is None:
            for path in self.opt.pretrain:
                load_pretrained(model, path)
        model.to(self.dev)
        self.model = model
        self.frozen = freeze_modules(model)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError("every parameter is frozen (fixed_modules); nothing to train")

    def _build_data(self) -> None:
        """Training and validation sets, the class table, and the run's length in iterations."""
        data = self.cfg.data
        self.train_set = _scene_set("data.train", data.train, voxel_size=data.voxel_size,
                                    augmentation=data.augment, require_labels=True,
                                    seed=self.opt.seed)
        self.class_names = list(self.train_set.scene(0).class_names)
        semantic_classes = self.model.semantic_classes
        if len(self.class_names) != semantic_classes:
            raise ConfigError(f"the training scenes use a {len(self.class_names)}-class table "
                              f"({self.class_names[0]}..{self.class_names[-1]}) but the model "
                              f"has semantic_classes {semantic_classes}")
        self.val_set = None
        if data.val is not None:
            self.val_set = _scene_set("data.val", data.val, voxel_size=data.voxel_size,
                                      augmentation=None, class_names=self.class_names,
                                      require_labels=True)
        # Each rank trains on its own 1/world_size of the scenes (DistributedSampler, drop_last).
        self.iters_per_epoch, self.drop_last = _check_batch_size(
            len(self.train_set) // self.group.world_size, data.scenes_per_batch)
        self.total_iters = (self.opt.max_iters if self.opt.max_iters is not None
                            else self.opt.epochs * self.iters_per_epoch)
        self.num_epochs = math.ceil(self.total_iters / self.iters_per_epoch)

    def _build_optimiser(self) -> None:
        """Adam/AdamW over ``params``, the per-iteration ``lr_factor`` schedule, the AMP scaler."""
        import torch

        opt = self.opt
        if opt.optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.params, lr=opt.lr,
                                              weight_decay=opt.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(self.params, lr=opt.lr,
                                               weight_decay=opt.weight_decay)
        factor = functools.partial(lr_factor, total_iters=self.total_iters, schedule=opt.schedule,
                                   warmup_iters=opt.warmup_iters, cosine_start=opt.cosine_start,
                                   min_factor=opt.min_lr / opt.lr if opt.lr > 0 else 0.0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def _restore(self, resume: str | Path) -> None:
        """Weights, optimiser, scheduler, position and metrics of a checkpoint of this config."""
        ckpt = read_training_checkpoint(resume)
        if ckpt["config"] != self.cfg.model:
            raise ConfigError(f"{resume} was trained with another model config than "
                              f"{self.cfg.model_source}; resume with the config it was trained "
                              "with")
        if ckpt["train_config"].get("train") != self.cfg.to_dict()["train"]:
            log.warning("%s: the train: section differs from the checkpoint's; the schedule "
                        "continues from the new one", resume)
        self.model.load_state_dict(ckpt["net"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.start_epoch, self.iteration = int(ckpt["epoch"]), int(ckpt["iteration"])
        if "rng" in ckpt:  # written inside an epoch (save_every_iters)
            into_epoch = self.iteration - self.start_epoch * self.iters_per_epoch
            if not 0 < into_epoch < self.iters_per_epoch:
                raise ConfigError(
                    f"{resume} was written {into_epoch} iterations into epoch "
                    f"{self.start_epoch + 1}, which does not fit this run's "
                    f"{self.iters_per_epoch} iterations per epoch: resume with the training "
                    "scenes and data.scenes_per_batch it was trained with")
            self.resume_rng = ckpt["rng"]
        self.metrics = dict(ckpt["metrics"] or {})
        best = self.metrics.get("best") or {}
        best_score = best.get("score", best.get("AP"))
        if best_score is not None:
            self.best_score, self.best_epoch = float(best_score), best.get("epoch")
        log.info("resumed %s at epoch %d, iteration %d", resume, self.start_epoch,
                 self.iteration)

    # ---- the run ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Every remaining epoch: train, validate when due, checkpoint when due; then ``end``."""
        # Created only now, after the model, data and resume checks: a run refused for its input
        # leaves no half-made work dir behind (checkpoints are written atomically too).
        if self.group.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        self.jlog = JsonLog(self.work_dir / LOG_NAME if self.group.is_main else None,
                            append=self.resume is not None)
        self._log_start()
        self.latest = self.best_path = None
        done = self.start_epoch  # finished epochs
        try:
            for epoch in range(self.start_epoch, self.num_epochs):
                if self.iteration >= self.total_iters:
                    break
                self.run_epoch(epoch)
                done = epoch + 1
                last = done >= self.num_epochs or self.iteration >= self.total_iters
                opt = self.opt
                improved = self.validate_epoch(done, due=(
                    last or (opt.val_every > 0 and done % opt.val_every == 0)
                    or self.at_multiple_of(opt.val_every_iters)))
                self.save(done, improved=improved, latest=(
                    last or done % opt.save_every == 0
                    or self.at_multiple_of(opt.save_every_iters)))
            self.jlog.write({"type": "end", "epoch": done, "iteration": self.iteration,
                             "best": self.metrics.get("best")})
        finally:
            self.jlog.close()
        best_path, latest = self.best_path, self.latest
        if best_path is None and (self.work_dir / BEST).is_file() and self.best_epoch is not None:
            best_path = self.work_dir / BEST
        if latest is None and (self.work_dir / LATEST).is_file():
            latest = self.work_dir / LATEST
        self.model.eval()
        return TrainResult(model=self.model, work_dir=self.work_dir, epoch=done,
                           iteration=self.iteration, latest=latest, best=best_path,
                           metrics=self.metrics)

    def _log_start(self) -> None:
        cfg, dev = self.cfg, self.dev
        if self.resume is None:
            self.jlog.write({"type": "start", "model": cfg.model["name"], "device": str(dev),
                             "world_size": self.group.world_size,
                             "train_scenes": len(self.train_set),
                             "val_scenes": len(self.val_set or []),
                             "iters_per_epoch": self.iters_per_epoch,
                             "total_iters": self.total_iters, "epochs": self.num_epochs,
                             "config": cfg.to_dict()})
        else:
            self.jlog.write({"type": "resume", "checkpoint": str(self.resume),
                             "epoch": self.start_epoch, "iteration": self.iteration,
                             "device": str(dev)})
        log.info("training %s on %s: %d scenes, %d iterations/epoch, %d epochs (%d iterations); "
                 "writing %s", cfg.model["name"], dev, len(self.train_set),
                 self.iters_per_epoch, self.num_epochs, self.total_iters, self.work_dir)

    def _loader(self, epoch: int, skip_batches: int = 0) -> Any:
        """The epoch's DataLoader: every draw seeded from ``train.seed`` and the epoch; the
        epoch's first ``skip_batches`` batches are left out (a resume from inside the epoch)."""
        import torch

        epoch_seed = _epoch_seed(self.opt.seed, epoch)
        torch.manual_seed(epoch_seed)
        random.seed(epoch_seed)
        np.random.seed(epoch_seed % 2**32)
        self.train_set.set_epoch(epoch)
        if self.group.parallel:  # same permutation on every rank, a disjoint share each
            sampler = torch.utils.data.DistributedSampler(
                self.train_set, self.group.world_size, self.group.rank, shuffle=True,
                seed=epoch_seed, drop_last=True)
        else:  # its own generator: the order does not depend on what the loader draws
            sampler = torch.utils.data.RandomSampler(
                self.train_set, generator=torch.Generator().manual_seed(epoch_seed))
        if skip_batches:
            sampler = _SkipFirst(sampler, skip_batches * self.cfg.data.scenes_per_batch)
        from .data.batching import collate

        collate_fn = functools.partial(collate, voxel_size=self.cfg.data.voxel_size,
                                       with_coords=self.model.with_coords,
                                       in_channels=self.model.raw_in_channels)
        return torch.utils.data.DataLoader(
            self.train_set, batch_size=self.cfg.data.scenes_per_batch, sampler=sampler,
            drop_last=self.drop_last, collate_fn=collate_fn,
            num_workers=self.opt.num_workers,
            generator=torch.Generator().manual_seed(epoch_seed), worker_init_fn=_seed_worker,
            pin_memory=self.dev.type == "cuda")

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """One pass (0-based ``epoch``; may stop early at ``total_iters``): an ``iter`` record per
        step, then the ``epoch`` record; returns the epoch's mean losses."""
        from tqdm import tqdm

        epoch_end = min((epoch + 1) * self.iters_per_epoch, self.total_iters)
        skip = self.iteration - epoch * self.iters_per_epoch if self.resume_rng else 0
        loader = self._loader(epoch, skip)
        if self.resume_rng:  # after _loader, which reseeds them for the epoch's start
            set_random_states(self.resume_rng)
            self.resume_rng = None
        self.train_mode()
        sums: dict[str, float] = {}
        steps = 0
        epoch_start = time.perf_counter()
        steps_left = epoch_end - self.iteration
        bar = tqdm(total=steps_left, desc=f"epoch {epoch + 1}/{self.num_epochs}", unit="it",
                   disable=self.quiet or not self.group.is_main, leave=False,
                   dynamic_ncols=True)
        tick, cpu_tick = time.perf_counter(), time.process_time()
        for batch in loader:
            if self.iteration >= self.total_iters:
                break
            data_s = time.perf_counter() - tick
            values, grad_norm, lr, batch = self.step(batch, epoch)
            steps += 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            step_s = time.perf_counter() - tick
            cpu_s = time.process_time() - cpu_tick  # = step_s on an idle core, 1 thread
            self.jlog.write({"type": "iter", "epoch": epoch + 1, "iteration": self.iteration,
                             "lr": lr, **values, "grad_norm": grad_norm,
                             "data_s": round(data_s, 4), "time_s": round(step_s, 4),
                             "cpu_s": round(cpu_s, 4), "num_points": int(batch["xyz"].shape[0]),
                             "num_voxels": int(batch["coords"].shape[0])})
            bar.update(1)
            bar.set_postfix(_running_postfix(sums, steps, lr), refresh=False)
            if self.iteration < epoch_end:  # the epoch's end is run()'s
                self.within_epoch(epoch)
            tick, cpu_tick = time.perf_counter(), time.process_time()
        bar.close()
        done = epoch + 1
        means = {k: v / max(steps, 1) for k, v in sums.items()}
        elapsed = time.perf_counter() - epoch_start
        self.jlog.write({"type": "epoch", "epoch": done, "iteration": self.iteration,
                         "steps": steps, "time_s": round(elapsed, 2), **means})
        log.info("epoch %d/%d  iter %d  %s  (%.1f s, %.2f s/it)", done, self.num_epochs,
                 self.iteration, "  ".join(f"{k} {v:.4f}" for k, v in means.items()), elapsed,
                 elapsed / max(steps, 1))
        self.metrics["train"] = {"epoch": done, **means}
        return means

    def train_mode(self) -> None:
        """Training mode, but the frozen modules keep their BatchNorm statistics."""
        self.model.train()
        for module in self.frozen:
            module.eval()

    def at_multiple_of(self, every_iters: int) -> bool:
        """The steps done are a multiple of ``every_iters`` (0: never): the ``*_every_iters``
        cadence, inside an epoch and at its end alike."""
        return every_iters > 0 and self.iteration % every_iters == 0

    def within_epoch(self, epoch: int) -> None:
        """After a step inside 0-based ``epoch``: validate (``val_every_iters``) and write
        ``latest.pth`` with the random states (``save_every_iters``) when due."""
        val_due = self.at_multiple_of(self.opt.val_every_iters)
        save_due = self.at_multiple_of(self.opt.save_every_iters)
        if not (val_due or save_due):
            return
        improved = self.validate_epoch(epoch, due=val_due)
        self.save(epoch, latest=save_due, improved=improved, rng=random_states())
        self.train_mode()

    def step(self, batch: dict[str, Any], epoch: int
             ) -> tuple[dict[str, float], float | None, float, dict[str, Any]]:
        """One optimizer step on a collated batch: forward, backward, gradient averaging over
        the ranks, optional clipping, step, schedule. Returns (loss and its parts, gradient norm
        before clipping or None, the step's lr, the batch on the device)."""
        import torch

        from .data.batching import batch_to_device
        from .model.backbone import single_threaded_spconv
        from .parallel import average_gradients

        batch = batch_to_device(batch, self.dev)
        with torch.autocast(self.dev.type, dtype=torch.float16, enabled=self.amp):
            loss, parts = self.model.forward_train(batch, epoch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {float(loss)} at epoch {epoch}, iteration {self.iteration} "
                f"(scenes {', '.join(batch['scene_names'])}; parts {parts}); lower "
                "train.lr or set train.grad_clip_norm")
        self.optimizer.zero_grad(set_to_none=True)
        # No graph: every trained module sat out this batch (a frozen backbone and no
        # proposals); the step then only applies the other ranks' gradients.
        if loss.requires_grad:
            # spconv's CPU backward races with several torch threads, as its forward.
            with single_threaded_spconv(self.dev):
                self.scaler.scale(loss).backward()
        average_gradients(self.params, self.group)
        grad_norm = None
        if self.opt.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params,
                                                             self.opt.grad_clip_norm))
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.iteration += 1
        values = {"loss": float(loss.detach()), **{k: float(v) for k, v in parts.items()}}
        return values, grad_norm, lr, batch

    def validate_epoch(self, done: int, due: bool) -> bool:
        """Validate when ``due`` (on rank 0, with a validation set) after ``done`` finished
        epochs; writes the ``val`` record; True when the score beat the best so far."""
        if not (due and self.group.is_main and self.val_set is not None):
            return False
        t0 = time.perf_counter()
        result = validate(self.model, self.val_set, self.dev, self.class_names,
                          self.cfg.data.val_limit, progress=not self.quiet)
        summary = _val_summary(result)
        self.jlog.write({"type": "val", "epoch": done, "iteration": self.iteration,
                         "time_s": round(time.perf_counter() - t0, 2), **summary})
        log.info("validation at iteration %d (%d epochs done): %s", self.iteration, done,
                 "  ".join(f"{k} {v:.4f}" for k, v in summary.items() if isinstance(v, float)))
        self.metrics["val"] = {"epoch": done, "iteration": self.iteration, **summary}
        score = result.score
        if not (math.isfinite(score) and score > self.best_score):
            return False
        self.best_score, self.best_epoch = score, done
        self.metrics["best"] = {"score": score, "epoch": done, "iteration": self.iteration,
                                **{k: summary[k] for k in ("AP", "AP50", "AP25",
                                                           "agnostic_AP50", "mIoU")
                                   if k in summary}}
        return True

    def save(self, done: int, latest: bool, improved: bool,
             rng: Mapping[str, Any] | None = None) -> None:
        """After ``done`` finished epochs: ``latest.pth`` when ``latest`` (``epoch_XXX.pth`` too
        at an epoch's end, when kept), ``best.pth`` when ``improved``; ``rng`` marks a
        checkpoint inside an epoch. The other ranks wait meanwhile."""
        from .parallel import barrier

        args = (self.model, self.cfg, self.class_names, done, self.iteration, self.optimizer,
                self.scheduler, self.metrics, rng)
        if self.group.is_main and latest:
            self.latest = save_checkpoint(self.work_dir / LATEST, *args)
            if self.opt.keep_epoch_checkpoints and rng is None:
                save_checkpoint(self.work_dir / f"epoch_{done:03d}.pth", *args)
        if improved:
            self.best_path = save_checkpoint(self.work_dir / BEST, *args)
            log.info("new best validation score %.4f: wrote %s", self.best_score, self.best_path)
        barrier(self.group)  # the other ranks wait while rank 0 validates and saves


__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "TrainResult", "Trainer",
           "export_weights", "load_train_config", "lr_factor", "read_log",
           "read_training_checkpoint", "train", "train_config_from_dict", "validate"]
