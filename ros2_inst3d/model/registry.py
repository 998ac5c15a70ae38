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
    _check_argument_types(str(name), builder, kwargs)
    import torch

    try:
        if device is None:
            return builder(**kwargs)
        with torch.device(device):
            return builder(**kwargs)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
            ZeroDivisionError, RuntimeError) as err:
        # Values of the right type can still be unusable together (a channel count of 0, a
        # class list of the wrong length): the constructor says so, in one line.
        message = " ".join(str(err).split()) or type(err).__name__
        raise _config_error(f"model {name!r} cannot be built from its config: {message}") from None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def value_fits_default(value: Any, default: Any) -> bool:
    """Whether a config value has the type of an option's default (an int may stand for a
    float, a list for a tuple); a None default or value, or another default type, takes anything."""
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(default, Mapping):
        return isinstance(value, Mapping)
    return True


def type_error(where: str, value: Any, default: Any) -> Exception:
    """The one-line error for a value that does not fit ``value_fits_default``."""
    kind = type(default).__name__
    return _config_error(f"{where} must be {'an' if kind[0] in 'aeiou' else 'a'} {kind} like its "
                         f"default {default!r}, got {_type_name(value)} {value!r}"[:300])


def _check_argument_types(name: str, builder: ModelBuilder, kwargs: Mapping[str, Any]) -> None:
    """Each value must fit the builder's default for that option (``value_fits_default``)."""
    params = inspect.signature(builder).parameters
    for key, value in kwargs.items():
        default = params[key].default if key in params else None
        if default is not inspect.Parameter.empty and not value_fits_default(value, default):
            raise type_error(f"model {name!r} option {key!r}", value, default)


def load_model_config(path: str | Path) -> dict[str, Any]:
    """The ``model:`` mapping of a model YAML file (``config/models/*.yaml``)."""
    from ..config import read_yaml_file

    path = Path(path)
    data = read_yaml_file(path, "model config")
    if not isinstance(data, Mapping) or not isinstance(data.get("model"), Mapping):
        raise _config_error(f"model config {path} must hold a top-level 'model:' mapping "
                          "(name, in_channels, channels, ...)")
    return dict(data["model"])
