"""The configuration machinery every settings tree shares: the pipeline config (``config.py``),
the training YAML (``train.py``) and the training augmentation (``data/augment.py``).

A setting is a dataclass field made with :func:`param`: its default plus the metadata that
documents and validates it (``doc``, ``low``/``high``, ``choices``, ``unit``, ``runtime``).
:func:`build_section` turns a YAML mapping into such a dataclass, checking every key and value
with :func:`check_value` (one set of rules and messages for every tree), and
:func:`load_yaml_mapping` reads a config file with one-line errors. Everything raises
:class:`~ros2_inst3d.errors.ConfigError` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from .errors import ConfigError

REQUIRED: Any = dataclasses.MISSING
"""``param(REQUIRED, ...)``: a key the YAML must give."""


def param(default: Any, doc: str, *, low: float | None = None, high: float | None = None,
          choices: Iterable[Any] | None = None, runtime: bool = False, unit: str = "",
          nonempty: bool = False, factory: Callable[[], Any] | None = None,
          parse: Callable[[str, Any], Any] | None = None) -> Any:
    """A schema leaf: its default plus the metadata that documents and validates it.

    runtime: the node may change it while running (a parameter callback applies it); others
    need a restart. nonempty: strings must not be empty. factory: builds the default instead of
    ``default`` (mutable or lazily imported values). parse: ``(dotted key, value) -> value``
    for values the generic rules do not cover (the augmentation's tuples).
    """
    meta = {"doc": doc, "low": low, "high": high, "runtime": runtime, "unit": unit,
            "choices": tuple(choices) if choices is not None else None, "nonempty": nonempty,
            "parse": parse}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    if default is REQUIRED:
        return field(metadata=meta)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def check_value(where: str, tp: Any, value: Any, meta: Mapping[str, Any] | None = None) -> Any:
    """``value`` converted to the field type ``tp`` (a resolved annotation: bool, int, float,
    str, ``list[str]``, ``list[float]`` (an [x, y, z] vector) or ``X | None``), checked against
    ``meta`` (``param``'s metadata); ConfigError naming ``where`` otherwise."""
    meta = meta or {}
    if meta.get("parse") is not None:
        return meta["parse"](where, value)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return check_value(where, inner[0], value, meta)
    where = f"'{where}'"
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str) or (meta.get("nonempty") and not value):
            kind = "a non-empty string" if meta.get("nonempty") else "a string"
            raise ConfigError(f"{where} must be {kind}, got {value!r}")
    elif origin is list and args == (str,):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
        value = list(value) or [""]
    elif origin is list and args == (float,):
        if (not isinstance(value, (list, tuple)) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise ConfigError(f"{where} must be a list of 3 numbers [x, y, z], got {value!r}")
        value = [float(v) for v in value]
        if not all(math.isfinite(v) for v in value):
            raise ConfigError(f"{where} must hold finite numbers, got {value!r}")
    else:  # a schema bug, not a user error
        raise TypeError(f"{where}: no rule for values of type {tp!r}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}; got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.get("low") is not None and value < meta["low"]:
            raise ConfigError(f"{where} must be >= {meta['low']}, got {value!r}")
        if meta.get("high") is not None and value > meta["high"]:
            raise ConfigError(f"{where} must be <= {meta['high']}, got {value!r}")
    return value


def check_keys(where: str, values: Any, known: Iterable[str], noun: str = "key"
               ) -> dict[str, Any]:
    """``values`` as a dict after checking it is a mapping of only ``known`` keys."""
    known = list(known)
    if not isinstance(values, Mapping):
        raise ConfigError(f"'{where}' must be a mapping of {', '.join(known)}; got {values!r}")
    unknown = [k for k in values if not isinstance(k, str) or k not in known]
    if unknown:
        raise ConfigError(f"unknown {noun}(s) {', '.join(f'{where}.{k!s}' for k in unknown)}; "
                          f"'{where}' has: {', '.join(known)}")
    return dict(values)


def build_section(cls: type, where: str, values: Any, *, noun: str = "key",
                  localns: Mapping[str, Any] | None = None) -> Any:
    """Instantiate the schema dataclass ``cls`` from a YAML mapping (None: all defaults),
    checking every key and value; missing keys keep their defaults, missing REQUIRED keys are
    an error. localns: names the annotations of ``cls`` need that its module lacks."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = check_keys(where, values if values is not None else {}, fields, noun)
    hints = typing.get_type_hints(cls, localns=dict(localns or {}))
    kwargs = {key: check_value(f"{where}.{key}", hints[key], value, fields[key].metadata)
              for key, value in values.items()}
    missing = [name for name, f in fields.items() if name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"'{where}' needs {', '.join(f'{where}.{k}' for k in missing)} "
                          f"({fields[missing[0]].metadata['doc']})")
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------------
# The one YAML loader
# ----------------------------------------------------------------------------------------------

# A config is a few levels deep; YAML nested deeper is refused before PyYAML recurses into it.
MAX_YAML_DEPTH = 32
MAX_YAML_BYTES = 1 << 20


def read_yaml_file(path: Path, what: str) -> Any:
    """``yaml.safe_load`` of a small config file, every failure a one-line ConfigError.

    what: how messages name the file ("config file", "model config"). Refuses files over 1 MiB,
    nesting deeper than MAX_YAML_DEPTH, non-UTF-8 text, directories and unreadable files.
    """
    import yaml

    try:
        if path.is_dir():
            raise ConfigError(f"{what} {path} is a directory; give a YAML file")
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{what} {path} is {path.stat().st_size} bytes; a config is under "
                              f"{MAX_YAML_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text: {exc.reason} at byte {exc.start}"
                          ) from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    depth = _flow_depth(text)
    if depth > MAX_YAML_DEPTH:
        raise ConfigError(f"{what} {path} nests {depth} levels deep; at most {MAX_YAML_DEPTH}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}"
                          ) from None
    except RecursionError:
        raise ConfigError(f"{what} {path} nests too deep for a config") from None
    depth = _data_depth(data)
    if depth > MAX_YAML_DEPTH:
        raise ConfigError(f"{what} {path} nests {depth} levels deep; at most {MAX_YAML_DEPTH}")
    return data


def load_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """:func:`read_yaml_file` of a file that must hold a mapping (an empty file is ``{}``)."""
    data = read_yaml_file(path, what) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping, got {type(data).__name__}")
    return data


def named_errors(path: Path | None, build: Callable[[], Any]) -> Any:
    """``build()``, with the ConfigErrors it raises prefixed by the file they come from."""
    try:
        return build()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None


def _flow_depth(text: str) -> int:
    """Deepest bracket nesting of YAML flow collections (``[[[...`` / ``{{...``), a cheap bound
    checked before parsing; block nesting by indentation is bounded by the line length."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def _data_depth(data: Any) -> int:
    """Nesting depth of parsed YAML (iterative: a deep document must not exhaust the stack)."""
    deepest = 0
    stack = [(data, 1)]
    seen: set[int] = set()
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if id(item) in seen:   # YAML anchors may share (or cycle through) one object
                continue
            seen.add(id(item))
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


__all__ = ["MAX_YAML_BYTES", "MAX_YAML_DEPTH", "REQUIRED", "build_section", "check_keys",
           "check_value", "load_yaml_mapping", "named_errors", "param", "read_yaml_file"]
