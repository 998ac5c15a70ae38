"""One way to build ROS messages for two back ends: rclpy (live node) and rosbags (offline bags).

Both back ends expose messages with the same field names, so the builders in ``outputs`` and
``cloud`` are written once against a :class:`MessageFactory` and never import either library.
The back ends differ in three ways the factory hides:

- rosbags message classes are dataclasses without defaults: every field must be passed, including
  ``Quaternion.w``. rclpy classes default everything.
- Primitive arrays: rosbags wants numpy arrays; rclpy wants ``array.array`` for unbounded
  sequences (its setters reject numpy there) and accepts numpy for fixed-size arrays.
- ``uint8[]`` payloads: assigning ``bytes`` to an rclpy message is pathologically slow
  (ros2/common_interfaces#177, rosidl_python#156); ``array.array('B')`` takes the fast path.

rclpy scalars must be Python ``int``/``float`` (its setters reject numpy scalars), so builders
convert with ``int()``/``float()``.
"""

from __future__ import annotations

import array
import dataclasses
import importlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ros2_inst3d.resources import data_dir

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

# Our interface package, and the vendored vision_msgs 4.1.1 layouts (rosbags' stores lack them).
PACKAGE_NAME = "ros2_inst3d"
VISION_MSGS_DIR = Path(__file__).resolve().parent / "interfaces" / "vision_msgs"

_TYPESTORES = {"humble": "ROS2_HUMBLE", "jazzy": "ROS2_JAZZY"}

# array.array type codes of the numpy dtypes rclpy sequences use.
_TYPECODES = {
    np.dtype(np.int8): "b", np.dtype(np.uint8): "B", np.dtype(np.int16): "h",
    np.dtype(np.uint16): "H", np.dtype(np.int32): "i", np.dtype(np.uint32): "I",
    np.dtype(np.int64): "q", np.dtype(np.uint64): "Q", np.dtype(np.float32): "f",
    np.dtype(np.float64): "d",
}

# numpy dtypes of the ROS primitive types (rosbags' representation of primitive arrays).
_PRIMITIVE_DTYPES = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "octet": np.uint8,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
    "float32": np.float32, "float64": np.float64,
}


class MessageFactory:
    """Builds message objects of either back end from ``pkg/msg/Name`` type names.

    ``factory('std_msgs/msg/Header', stamp=stamp, frame_id='map')`` returns an rclpy or a rosbags
    ``Header``. Builders pass every field (rosbags has no defaults); :meth:`fill` zero-fills the
    fields a builder has no value for, for message types whose field set differs between distros.
    """

    def __init__(self, get_class: Callable[[str], type], backend: str,
                 zero: Callable[[str], Any]) -> None:
        self._get_class = get_class
        self._zero = zero
        self.backend = backend  # "rclpy" or "rosbags"
        self._classes: dict[str, type] = {}

    @classmethod
    def for_rosbags(cls, typestore: "Typestore") -> "MessageFactory":
        """Factory over a rosbags typestore (e.g. :func:`make_typestore`)."""

        def get_class(type_name: str) -> type:
            try:
                return typestore.types[type_name]
            except KeyError:
                raise KeyError(
                    f"message type '{type_name}' is not in this rosbags typestore; register "
                    "its .msg definition first (make_typestore() adds ros2_inst3d and "
                    "vision_msgs)") from None

        return cls(get_class, "rosbags", lambda name: _rosbags_zero(typestore, name))

    @classmethod
    def for_rclpy(cls) -> "MessageFactory":
        """Factory over the installed ROS 2 Python message packages (needs a sourced ROS)."""
        return cls(rclpy_message_class, "rclpy", lambda name: rclpy_message_class(name)())

    def cls(self, type_name: str) -> type:
        """The message class of ``type_name`` (``pkg/msg/Name``), cached."""
        found = self._classes.get(type_name)
        if found is None:
            found = self._classes[type_name] = self._get_class(type_name)
        return found

    def __call__(self, type_name: str, **fields: Any) -> Any:
        """A ``type_name`` message with ``fields``; with rosbags every field must be given."""
        return self.cls(type_name)(**fields)

    def field_names(self, type_name: str) -> tuple[str, ...]:
        """The field names of ``type_name``, in definition order."""
        msg_cls = self.cls(type_name)
        if self.backend == "rosbags":
            return tuple(f.name for f in dataclasses.fields(msg_cls))
        return tuple(msg_cls.get_fields_and_field_types())

    def fill(self, type_name: str, **fields: Any) -> Any:
        """A ``type_name`` message with ``fields``, every other field at its zero value.

        Zero values: 0, False, '', empty sequences, zero-filled fixed arrays and nested messages.
        For fields a builder does not use and that not every distro defines (e.g. Marker's
        texture fields); a zero ``Quaternion`` is not a valid rotation, so builders set poses.
        """
        unknown = set(fields) - set(self.field_names(type_name))
        if unknown:
            raise TypeError(f"{type_name} has no field(s) {sorted(unknown)}")
        msg = self._zero(type_name)
        for name, value in fields.items():
            setattr(msg, name, value)
        return msg

    def sequence(self, values: Any, dtype: Any) -> Any:
        """An unbounded primitive sequence (``float32[]``, ``uint32[]``...) for this back end.

        rosbags: a numpy array of ``dtype``; rclpy: an ``array.array`` of the matching type code.
        """
        arr = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
        if self.backend == "rosbags":
            return arr
        out = array.array(_TYPECODES[arr.dtype])
        out.frombytes(arr.tobytes())
        return out

    def fixed_array(self, values: Any, dtype: Any) -> np.ndarray:
        """A fixed-size primitive array (``float64[36]``...): a numpy array for both back ends."""
        return np.ascontiguousarray(values, dtype=dtype).reshape(-1)

    def byte_data(self, buffer: Any) -> Any:
        """A ``uint8[]`` field from any buffer (bytes, memoryview, C-contiguous numpy array).

        rosbags: a uint8 numpy view (no copy); rclpy: ``array.array('B')``.
        """
        view = memoryview(buffer).cast("B")
        if self.backend == "rosbags":
            return np.frombuffer(view, dtype=np.uint8)
        out = array.array("B")
        out.frombytes(view)
        return out


def rclpy_message_class(type_name: str) -> type:
    """The generated Python class of ``pkg/msg/Name`` (what ``rosidl_runtime_py``'s
    ``get_message`` does, without depending on that package, which is not on PyPI)."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def _rosbags_zero(typestore: "Typestore", type_name: str) -> Any:
    """A rosbags ``type_name`` message with every field at its zero value (recursively)."""
    _, fields = typestore.fielddefs[type_name]
    return typestore.types[type_name](
        **{name: _rosbags_zero_field(typestore, desc) for name, desc in fields})


def _rosbags_zero_field(typestore: "Typestore", desc: tuple) -> Any:
    kind, detail = desc
    kind = int(kind)  # rosbags.typesys.base.Nodetype: BASE=1, NAME=2, ARRAY=3, SEQUENCE=4
    if kind == 1:
        base = detail[0]
        if base in ("string", "wstring"):
            return ""
        if base == "bool":
            return False
        return 0.0 if base.startswith("float") else 0
    if kind == 2:
        return _rosbags_zero(typestore, detail)
    (sub_kind, sub_detail), length = detail
    if kind == 4:
        length = 0
    if int(sub_kind) == 1 and sub_detail[0] in _PRIMITIVE_DTYPES:
        return np.zeros(length, dtype=_PRIMITIVE_DTYPES[sub_detail[0]])
    return [_rosbags_zero_field(typestore, (sub_kind, sub_detail)) for _ in range(length)]


def interface_files() -> dict[str, Path]:
    """``{'pkg/msg/Name': path}`` of our messages and the vendored vision_msgs definitions."""
    found = {f"{PACKAGE_NAME}/msg/{p.stem}": p for p in sorted(data_dir("msg").glob("*.msg"))}
    found.update({f"vision_msgs/msg/{p.stem}": p
                  for p in sorted(VISION_MSGS_DIR.glob("*.msg"))})
    return found


@lru_cache(maxsize=None)
def make_typestore(distro: str = "humble") -> "Typestore":
    """A rosbags typestore of ``distro`` ('humble' or 'jazzy') with our interfaces registered.

    Adds ``ros2_inst3d/msg/*`` (from the package's ``msg/`` folder) and vision_msgs 4.1.1 (from
    ``ros2_inst3d/interfaces/vision_msgs``) to rosbags' built-in store. Cached per distro: the
    returned store is shared, so register further types on a store of your own.
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    if distro not in _TYPESTORES:
        raise ValueError(f"unknown ROS distro '{distro}'; choose one of {sorted(_TYPESTORES)}")
    typestore = get_typestore(getattr(Stores, _TYPESTORES[distro]))
    types: dict[str, Any] = {}
    for type_name, path in interface_files().items():
        types.update(get_types_from_msg(path.read_text(encoding="utf-8"), type_name))
    # One call for all of them, so definitions may refer to each other in any order.
    typestore.register(types)
    return typestore
