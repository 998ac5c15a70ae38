"""Method name → model class: ``build_model(cfg_model)`` and the model YAML files.

A model YAML (``config/models/<method>_<dataset>.yaml``) holds one top-level ``model:`` mapping:
``name`` picks the entry of :data:`MODEL_REGISTRY`, every other key is a constructor argument
of that class (official key names, see research/official-models.md). Entries are import paths
(``"package.module:Class"``) resolved on first use, so importing this module stays light (no
torch, no spconv) and a method's heavy dependencies load only when it is built; callables work
too. Other modules add their methods with :func:`register_model`.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ModelBuilder = Callable[..., Any]

MODEL_REGISTRY: dict[str, str | ModelBuilder] = {
    "softgroup": "ros2_inst3d.model.softgroup:SoftGroup",
    "hais": "ros2_inst3d.model.softgroup:HAIS",
    "isbnet": "ros2_inst3d.model.isbnet:ISBNet",
    "pointgroup": "ros2_inst3d.model.pointgroup:PointGroup",
    "mtml": "ros2_inst3d.model.mtml:MTML",
}
"""Method name → class (or factory) taking the model config's keys as keyword arguments."""

SEGMENTATION_METHODS = ("pointgroup", "softgroup", "isbnet", "mtml")
"""The registered methods that segment clouds (``forward_train`` and ``predict``), in the order
the config's ``model.name`` choices, the CLI and the learned-model front end list them. ``hais``
is registered only so its checkpoints load (it has no instance stage)."""


def _config_error(message: str) -> Exception:
    # Imported here: config.py lists SEGMENTATION_METHODS, so this module must not import it
    # at load time.
    from ..config import ConfigError

    return ConfigError(message)


def register_model(name: str, builder: str | ModelBuilder) -> None:
    """Add (or replace) a method: ``builder`` is a callable or a ``"module:attr"`` path."""
    MODEL_REGISTRY[name] = builder


def resolve_model(name: str) -> ModelBuilder:
    """The class / factory registered under ``name`` (imports it on first use)."""
    try:
        entry = MODEL_REGISTRY[name]
    except KeyError:
        raise _config_error(f"unknown model.name {name!r}; registered methods: "
                          f"{', '.join(sorted(MODEL_REGISTRY))}") from None
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
        return target
    return entry


def _check_arguments(name: str, builder: ModelBuilder, kwargs: Mapping[str, Any]) -> None:
    """Reject keys the builder does not take, naming the ones it does."""
    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p, v in params.items()
                if v.kind in (inspect.Parameter.KEYWORD_ONLY,
                              inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise _config_error(f"model {name!r} has no option(s) {', '.join(unknown)}; its options "
                          f"are: {', '.join(accepted)}")


def build_model(cfg_model: Mapping[str, Any], device: Any = None) -> Any:
    """Build the model a ``model:`` mapping describes (``name`` + constructor arguments).

    device: where parameters are created; ``"meta"`` builds the module tree without allocating
    weights (enough for state-dict keys and shapes, e.g. checkpoint checks).
    """
    if not isinstance(cfg_model, Mapping):
        raise _config_error(f"a model config is a mapping with a 'name' key, got {type(cfg_model)}")
    kwargs = copy.deepcopy(dict(cfg_model))
    name = kwargs.pop("name", None)
    if not name:
        raise _config_error("the model config needs 'name' (one of "
                          f"{', '.join(sorted(MODEL_REGISTRY))})")
    builder = resolve_model(str(name))
    _check_arguments(str(name), builder, kwargs)
    if device is None:
        return builder(**kwargs)
    import torch

    with torch.device(device):
        return builder(**kwargs)


def load_model_config(path: str | Path) -> dict[str, Any]:
    """The ``model:`` mapping of a model YAML file (``config/models/*.yaml``)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _config_error(f"model config {path} does not exist") from None
    except yaml.YAMLError as err:
        raise _config_error(f"model config {path} is not valid YAML: {err}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("model"), Mapping):
        raise _config_error(f"model config {path} must hold a top-level 'model:' mapping "
                          "(name, in_channels, channels, ...)")
    return dict(data["model"])
