"""Writers of test inputs: rosbag2 files of a moving sensor with TF, for the tests, the fuzzing
campaign and ``gen-data --bag`` (as ``torch_cluster/testing.py`` holds its test helpers beside the
package rather than inside the ops).

:func:`write_bag` writes any messages; :func:`write_scan_bag` a bag of clouds with ``/tf`` and
``/tf_static``; :func:`tf_message` builds a ``tf2_msgs/msg/TFMessage``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .bag import (BAG_VERSION, POINTCLOUD2, TF_STATIC_TOPIC, TF_TOPIC, TFMESSAGE, qos_profile,
                  storage_plugin)
from .cloud import encode_xyz, ns_to_stamp
from .msgs import MessageFactory, make_typestore
from .transforms import matrix_to_transform

if TYPE_CHECKING:
    from rosbags.interfaces import Qos


@dataclass
class BagMessage:
    """One message for :func:`write_bag`.

    msg: a message object of the typestore, or ``bytes`` written unchanged (e.g. corrupt data).
    time_ns: bag (receive) time, integer nanoseconds.
    """

    topic: str
    msgtype: str
    time_ns: int
    msg: Any


def write_bag(path: str | Path, messages: Iterable[BagMessage], *, storage: str = "mcap",
              distro: str = "humble", qos: dict[str, Sequence[Qos]] | None = None) -> Path:
    """Write ``messages`` to a new rosbag2 (metadata v8) with the ``distro`` typestore (ours added).

    One connection per (topic, type), added on first use; ``/tf_static`` is offered
    transient-local unless ``qos`` says otherwise (``qos``: topic -> offered QoS profiles).
    """
    from rosbags.rosbag2 import Writer

    path = Path(path)
    store = make_typestore(distro)
    qos = dict(qos or {})
    qos.setdefault(TF_STATIC_TOPIC, [qos_profile("TRANSIENT_LOCAL", 1)])
    connections: dict[tuple[str, str], Any] = {}
    with Writer(path, version=BAG_VERSION, storage_plugin=storage_plugin(storage)) as writer:
        for item in messages:
            key = (item.topic, item.msgtype)
            conn = connections.get(key)
            if conn is None:
                conn = connections[key] = writer.add_connection(
                    item.topic, item.msgtype, typestore=store,
                    offered_qos_profiles=list(qos.get(item.topic, ())))
            data = item.msg if isinstance(item.msg, (bytes, bytearray, memoryview)) else \
                store.serialize_cdr(item.msg, item.msgtype)
            writer.write(conn, int(item.time_ns), data)
    return path


def tf_message(factory: MessageFactory,
               transforms: Iterable[tuple[str, str, int, np.ndarray]]) -> Any:
    """``tf2_msgs/msg/TFMessage`` of ``(parent, child, stamp_ns, matrix (4, 4))`` tuples.

    ``matrix`` is the pose of ``child`` in ``parent`` (``p_parent = matrix @ p_child``).
    """
    items = []
    for parent, child, stamp_ns, matrix in transforms:
        t, q = matrix_to_transform(matrix)
        header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, stamp_ns),
                         frame_id=parent)
        transform = factory(
            "geometry_msgs/msg/Transform",
            translation=factory("geometry_msgs/msg/Vector3", x=float(t[0]), y=float(t[1]),
                                z=float(t[2])),
            rotation=factory("geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]),
                             z=float(q[2]), w=float(q[3])))
        items.append(factory("geometry_msgs/msg/TransformStamped", header=header,
                             child_frame_id=child, transform=transform))
    return factory(TFMESSAGE, transforms=items)


def write_scan_bag(
    path: str | Path,
    scans: Sequence[np.ndarray],
    stamps_ns: Sequence[int],
    sensor_pose: Callable[[int], np.ndarray],
    tf_stamps_ns: Sequence[int],
    *,
    map_to_odom: np.ndarray | None = None,
    frame: str = "sensor",
    odom_frame: str = "odom",
    fixed_frame: str = "map",
    topic: str = "/points",
    rgbs: Sequence[np.ndarray | None] | None = None,
    cloud_latency_ns: int = 30_000_000,
    tf_latency_ns: int = 2_000_000,
    extra: Iterable[BagMessage] = (),
    storage: str = "mcap",
    distro: str = "humble",
) -> Path:
    """A bag of a moving sensor: clouds, ``/tf`` odom→sensor and ``/tf_static`` map→odom.

    scans: (N_i, 3) float32 points in the sensor frame, metres; ``rgbs``: matching (N_i, 3)
        uint8 colours or None.
    stamps_ns: header stamp of each scan; it is received ``cloud_latency_ns`` later (bag time).
    sensor_pose: ``stamp_ns -> (4, 4)`` pose of the sensor in ``odom_frame`` (T_odom_sensor),
        sampled at ``tf_stamps_ns`` (received ``tf_latency_ns`` later). A lookup interpolates
        between these samples, so the rate and phase of ``tf_stamps_ns`` against the scan stamps
        decide how much interpolation matters.
    map_to_odom: static (4, 4) pose of odom in ``fixed_frame`` (identity when None), written once
        at the start.
    extra: further messages (e.g. malformed clouds), merged by time.
    """
    if len(scans) != len(stamps_ns):
        raise ValueError(f"{len(scans)} scans but {len(stamps_ns)} stamps")
    factory = MessageFactory.for_rosbags(make_typestore(distro))
    rgbs = list(rgbs) if rgbs is not None else [None] * len(scans)
    first_ns = min([*stamps_ns, *tf_stamps_ns])
    items = [BagMessage(TF_STATIC_TOPIC, TFMESSAGE, first_ns, tf_message(
        factory, [(fixed_frame, odom_frame, first_ns,
                   np.identity(4) if map_to_odom is None else map_to_odom)]))]
    for stamp in tf_stamps_ns:
        items.append(BagMessage(TF_TOPIC, TFMESSAGE, int(stamp) + tf_latency_ns, tf_message(
            factory, [(odom_frame, frame, int(stamp), sensor_pose(int(stamp)))])))
    for xyz, rgb, stamp in zip(scans, rgbs, stamps_ns):
        header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, int(stamp)),
                         frame_id=frame)
        items.append(BagMessage(topic, POINTCLOUD2, int(stamp) + cloud_latency_ns,
                                encode_xyz(factory, header, xyz, rgb)))
    items.extend(extra)
    items.sort(key=lambda m: m.time_ns)
    return write_bag(path, items, storage=storage, distro=distro)


__all__ = ["BagMessage", "tf_message", "write_bag", "write_scan_bag"]
