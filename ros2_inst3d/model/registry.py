"""The one list of segmentation methods, and the networks the learned ones run.

:data:`METHODS` is the single home of every ``model.name`` choice: each :class:`Method` says how
to build a runnable point model (a factory taking the pipeline :class:`~ros2_inst3d.config.Config`)
and, for a learned method, which network it runs (so it needs weights) and whether this repository
ships weights for it. The config's choices, the CLI's ``--model``/``--models`` choices, the learned
front end, the benchmark defaults, the launch file's and the README's lists all derive from it.

:data:`NETWORKS` maps the ``name`` of a model YAML (``config/models/<method>_<dataset>.yaml``: one
top-level ``model:`` mapping, every other key a constructor argument with the official key names,
as in the official repositories) to the network class :func:`build_network` builds. It also holds
networks that are no method (``hais``: backbone and point-wise heads only, so its checkpoints and
the official configs load and can be checked). Entries are import paths (``"package.module:Class"``)
resolved on first use, so importing this module stays light (no torch, no spconv) and a method's
heavy dependencies load only when it is built; callables work too.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..schema import read_yaml_file

NetworkBuilder = Callable[..., Any]

NETWORKS: dict[str, str | NetworkBuilder] = {
    "softgroup": "ros2_inst3d.model.softgroup:SoftGroup",
    "hais": "ros2_inst3d.model.softgroup:HAIS",
    "isbnet": "ros2_inst3d.model.isbnet:ISBNet",
    "pointgroup": "ros2_inst3d.model.pointgroup:PointGroup",
    "mtml": "ros2_inst3d.model.mtml:MTML",
}
"""Model YAML ``name`` → network class (or factory) taking the YAML's other keys as keyword
arguments. Add one with :func:`register_network`."""

LEARNED_FACTORY = "ros2_inst3d.model.inference:learned_point_model"


@dataclass(frozen=True)
class Method:
    """One segmentation method ``model.name`` can pick.

    factory: ``"module:callable"`` taking the pipeline ``Config`` and returning a ready
    :class:`~ros2_inst3d.segmenter.PointModel`. network: the :data:`NETWORKS` entry a learned
    method runs (it needs weights: ``model.checkpoint`` or shipped ones); None for a model-free
    method. weights_shipped: ``models/<name>_synthetic.pth`` is in this repository (a test checks
    it). summary: what it is and needs, one clause, for the docs. benchmark: in the default
    method list of ``ros2-inst3d bench`` (its generated indoor room).
    """

    name: str
    summary: str
    factory: str = LEARNED_FACTORY
    network: str | None = None
    weights_shipped: bool = False
    benchmark: bool = False

    @property
    def needs_weights(self) -> bool:
        return self.network is not None

    def build(self, cfg: Any) -> Any:
        """The runnable point model, from the pipeline ``Config`` (learned: weights loaded)."""
        return _import_path(self.factory)(cfg)

    @property
    def runs_without_checkpoint(self) -> bool:
        """Whether it starts without a ``model.checkpoint`` (no weights needed, or shipped)."""
        return not self.needs_weights or self.weights_shipped


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("geometric", "RANSAC planes + voxel clusters: indoor, table tops; xyz only",
           factory="ros2_inst3d.model.geometric:GeometricModel.from_config", benchmark=True),
    Method("lidar", "ground segmentation + range-adaptive clusters: spinning LiDAR; xyz only",
           factory="ros2_inst3d.model.lidar:LidarClusteringModel.from_config"),
    Method("pointgroup", "learned; clouds without rgb run its shipped xyz-only LiDAR weights",
           network="pointgroup", weights_shipped=True, benchmark=True),
    Method("softgroup", "learned; clouds without rgb run its shipped xyz-only LiDAR weights",
           network="softgroup", weights_shipped=True,
           benchmark=True),
    Method("isbnet", "learned, needs rgb", network="isbnet", weights_shipped=True),
    Method("mtml", "learned, needs rgb", network="mtml", weights_shipped=True),
)}
"""Every method ``model.name`` can pick, in the order choices and docs list them."""

METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
LEARNED_METHODS: tuple[str, ...] = tuple(n for n, m in METHODS.items() if m.needs_weights)
"""The methods that run a network through :class:`~ros2_inst3d.model.inference.LearnedModel`."""
BENCHMARK_METHODS: tuple[str, ...] = tuple(n for n, m in METHODS.items() if m.benchmark)


def methods_doc() -> str:
    """The methods as one sentence for parameter docs: ``name (summary); ...``, then which
    learned ones have shipped weights and which need a ``model.checkpoint`` (if any)."""
    listed = "; ".join(f"{m.name} ({m.summary})" for m in METHODS.values())
    shipped = [m.name for m in METHODS.values() if m.needs_weights and m.weights_shipped]
    need = [m.name for m in METHODS.values() if not m.runs_without_checkpoint]
    needs = f"; {', '.join(need)} need a model.checkpoint" if need else ""
    return f"{listed}. Shipped weights in models/ for {', '.join(shipped)}{needs}."


def register_network(name: str, builder: str | NetworkBuilder) -> None:
    """Add (or replace) a network: ``builder`` is a callable or a ``"module:attr"`` path."""
    NETWORKS[name] = builder


def _import_path(path: str) -> Any:
    """The object a ``"package.module:attr.attr"`` path names (imports the module)."""
    module_name, _, attr = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def resolve_network(name: str) -> NetworkBuilder:
    """The class / factory registered under ``name`` (imports it on first use)."""
    try:
        entry = NETWORKS[name]
    except KeyError:
        raise ConfigError(f"unknown model.name {name!r}; registered networks: "
                          f"{', '.join(sorted(NETWORKS))}") from None
    return _import_path(entry) if isinstance(entry, str) else entry


def averages_views(name: str) -> bool:
    """Whether method ``name`` averages test-time views (``model.augmented_views``): its network
    class says so (``averages_views``); model-free methods do not."""
    network = method(name).network
    return network is not None and bool(getattr(resolve_network(network), "averages_views",
                                                False))


def method(name: str) -> Method:
    """The :class:`Method` registered as ``name``; ConfigError naming the choices otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"model.name '{name}' is not a segmentation method; use one of "
                            f"{', '.join(repr(m) for m in METHODS)}") from None




def _check_arguments(name: str, builder: NetworkBuilder, kwargs: Mapping[str, Any]) -> None:
    """Reject keys the builder does not take, naming the ones it does."""
    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p, v in params.items()
                if v.kind in (inspect.Parameter.KEYWORD_ONLY,
                              inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"model {name!r} has no option(s) {', '.join(unknown)}; its options "
                          f"are: {', '.join(accepted)}")


def build_network(cfg_model: Mapping[str, Any], device: Any = None) -> Any:
    """Build the network a ``model:`` mapping describes (``name`` + constructor arguments).

    device: where parameters are created; ``"meta"`` builds the module tree without allocating
    weights (enough for state-dict keys and shapes, e.g. checkpoint checks).
    """
    if not isinstance(cfg_model, Mapping):
        raise ConfigError(f"a model config is a mapping with a 'name' key, got {type(cfg_model)}")
    kwargs = copy.deepcopy(dict(cfg_model))
    name = kwargs.pop("name", None)
    # A training setting every method shares (the official configs keep it in `model:`), so it
    # is applied here rather than taken by each network's constructor.
    fixed_modules = kwargs.pop("fixed_modules", [])
    if (not isinstance(fixed_modules, (list, tuple))
            or not all(isinstance(m, str) for m in fixed_modules)):
        raise ConfigError(f"model.fixed_modules must be a list of top-level module names, got "
                          f"{fixed_modules!r}")
    if not name:
        raise ConfigError("the model config needs 'name' (one of "
                          f"{', '.join(sorted(NETWORKS))})")
    builder = resolve_network(str(name))
    _check_arguments(str(name), builder, kwargs)
    _check_argument_types(str(name), builder, kwargs)
    import torch

    try:
        if device is None:
            network = builder(**kwargs)
        else:
            with torch.device(device):
                network = builder(**kwargs)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
            ZeroDivisionError, RuntimeError) as err:
        # Values of the right type can still be unusable together (a channel count of 0, a
        # class list of the wrong length): the constructor says so, in one line.
        message = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(f"model {name!r} cannot be built from its config: {message}") from None
    network.fixed_modules = list(fixed_modules)
    return network



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
    return ConfigError(f"{where} must be {'an' if kind[0] in 'aeiou' else 'a'} {kind} like its "
                         f"default {default!r}, got {_type_name(value)} {value!r}"[:300])


def _check_argument_types(name: str, builder: NetworkBuilder, kwargs: Mapping[str, Any]) -> None:
    """Each value must fit the builder's default for that option (``value_fits_default``)."""
    params = inspect.signature(builder).parameters
    for key, value in kwargs.items():
        default = params[key].default if key in params else None
        if default is not inspect.Parameter.empty and not value_fits_default(value, default):
            raise type_error(f"model {name!r} option {key!r}", value, default)


def load_model_config(path: str | Path) -> dict[str, Any]:
    """The ``model:`` mapping of a model YAML file (``config/models/*.yaml``)."""
    path = Path(path)
    data = read_yaml_file(path, "model config")
    if not isinstance(data, Mapping) or not isinstance(data.get("model"), Mapping):
        raise ConfigError(f"model config {path} must hold a top-level 'model:' mapping "
                          "(name, in_channels, channels, ...)")
    return dict(data["model"])
