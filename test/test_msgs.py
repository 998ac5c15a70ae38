"""The message factory and the rosbags typestores with our interfaces and vision_msgs 4.1.1."""

from __future__ import annotations

import array
import dataclasses
import re

import numpy as np
import pytest

from ros2_inst3d.msgs import MessageFactory, interface_files, make_typestore

DISTROS = ("humble", "jazzy")

# vision_msgs 4.1.1 as published on docs.ros.org (Humble and Jazzy): field name -> type.
VISION_MSGS_4_1_1 = {
    "Detection3DArray": [("header", "std_msgs/msg/Header"),
                         ("detections", "vision_msgs/msg/Detection3D[]")],
    "Detection3D": [("header", "std_msgs/msg/Header"),
                    ("results", "vision_msgs/msg/ObjectHypothesisWithPose[]"),
                    ("bbox", "vision_msgs/msg/BoundingBox3D"), ("id", "string")],
    "ObjectHypothesisWithPose": [("hypothesis", "vision_msgs/msg/ObjectHypothesis"),
                                 ("pose", "geometry_msgs/msg/PoseWithCovariance")],
    "ObjectHypothesis": [("class_id", "string"), ("score", "float64")],
    "BoundingBox3D": [("center", "geometry_msgs/msg/Pose"), ("size", "geometry_msgs/msg/Vector3")],
    "LabelInfo": [("header", "std_msgs/msg/Header"),
                  ("class_map", "vision_msgs/msg/VisionClass[]"), ("threshold", "float32")],
    "VisionClass": [("class_id", "uint16"), ("class_name", "string")],
}


def field_types(typestore, type_name):
    """[(name, 'type' or 'type[]' or 'type[N]')] from a rosbags field definition table."""
    out = []
    for name, (kind, detail) in typestore.fielddefs[type_name][1]:
        suffix = ""
        if int(kind) in (3, 4):  # ARRAY, SEQUENCE
            (kind, detail), length = detail
            suffix = f"[{length}]" if length else "[]"
        out.append((name, (detail[0] if int(kind) == 1 else detail) + suffix))
    return out


@pytest.mark.parametrize("distro", DISTROS)
def test_vendored_vision_msgs_match_4_1_1(distro):
    typestore = make_typestore(distro)
    for name, fields in VISION_MSGS_4_1_1.items():
        assert field_types(typestore, f"vision_msgs/msg/{name}") == fields


@pytest.mark.parametrize("distro", DISTROS)
def test_our_messages_are_registered_with_their_constants(distro):
    typestore = make_typestore(distro)
    instance = typestore.types["ros2_inst3d/msg/Instance"]
    assert (instance.BOX_AXIS_ALIGNED, instance.BOX_ORIENTED_Z) == (0, 1)
    assert field_types(typestore, "ros2_inst3d/msg/InstanceArray") == [
        ("header", "std_msgs/msg/Header"), ("oldest_stamp", "builtin_interfaces/msg/Time"),
        ("model_name", "string"), ("instances", "ros2_inst3d/msg/Instance[]")]
    assert dict(field_types(typestore, "ros2_inst3d/msg/Instance")) == {
        "id": "uint32", "class_id": "uint16", "class_name": "string", "score": "float32",
        "bbox": "vision_msgs/msg/BoundingBox3D", "box_type": "uint8",
        "centroid": "geometry_msgs/msg/Point", "footprint": "geometry_msgs/msg/Point32[]",
        "min_z": "float32", "max_z": "float32", "num_points": "uint32",
        "point_indices": "uint32[]", "observed": "bool",
        "first_seen": "builtin_interfaces/msg/Time", "last_seen": "builtin_interfaces/msg/Time",
        "hits": "uint32"}


def test_typestores_are_cached_per_distro_and_distros_are_checked():
    assert make_typestore("humble") is make_typestore("humble")
    assert make_typestore("humble") is not make_typestore("jazzy")
    with pytest.raises(ValueError, match="humble"):
        make_typestore("foxy")


def test_every_field_of_our_messages_is_documented():
    # A field or constant line must follow a comment line (units, frames, meaning).
    ours = {name: path for name, path in interface_files().items()
            if name.startswith("ros2_inst3d/")}
    assert set(ours) == {"ros2_inst3d/msg/Instance", "ros2_inst3d/msg/InstanceArray"}
    for path in ours.values():
        previous = ""
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert re.match(r"^[\w/]+(\[\])? \w+", line), line
                assert previous.startswith("#") or re.match(r"^[\w/]+(\[\])? \w+", previous), (
                    f"{path.name}: '{line}' has no comment")
            previous = line


@pytest.mark.parametrize("distro", DISTROS)
def test_rosbags_messages_need_every_field(distro):
    factory = MessageFactory.for_rosbags(make_typestore(distro))
    with pytest.raises(TypeError):
        factory("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0)
    q = factory("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0)
    assert q.w == 1.0
    with pytest.raises(KeyError, match="register"):
        factory.cls("nonexistent_msgs/msg/Thing")


@pytest.mark.parametrize("distro", DISTROS)
def test_fill_zero_fills_every_other_field_and_serialises(distro):
    typestore = make_typestore(distro)
    factory = MessageFactory.for_rosbags(typestore)
    marker_type = "visualization_msgs/msg/Marker"
    names = factory.field_names(marker_type)
    assert names == tuple(f.name for f in dataclasses.fields(typestore.types[marker_type]))
    marker = factory.fill(marker_type, ns="boxes", id=7)
    assert (marker.ns, marker.id, marker.text, marker.frame_locked) == ("boxes", 7, "", False)
    assert marker.pose.orientation.w == 0.0 and len(marker.points) == 0
    raw = typestore.serialize_cdr(marker, marker_type)
    back = typestore.deserialize_cdr(raw, marker_type)
    assert back.ns == "boxes" and back.id == 7
    pwc = factory.fill("geometry_msgs/msg/PoseWithCovariance")
    assert pwc.covariance.dtype == np.float64 and pwc.covariance.shape == (36,)
    with pytest.raises(TypeError, match="no field"):
        factory.fill(marker_type, colour=None)


@pytest.mark.parametrize("distro", DISTROS)
def test_rosbags_arrays_are_numpy(distro):
    typestore = make_typestore(distro)
    factory = MessageFactory.for_rosbags(typestore)
    seq = factory.sequence([1, 2, 3], np.uint32)
    assert isinstance(seq, np.ndarray) and seq.dtype == np.uint32
    payload = np.arange(12, dtype=np.float32).reshape(4, 3)
    data = factory.byte_data(payload)
    assert data.dtype == np.uint8 and len(data) == payload.nbytes
    assert np.shares_memory(data, payload)  # no copy of a large cloud
    np.testing.assert_array_equal(data.view(np.float32), payload.ravel())
    np.testing.assert_array_equal(factory.byte_data(b"\x01\x02"), [1, 2])


def test_rclpy_back_end_conversions():
    # rclpy's sequence setters reject numpy arrays and want array.array with the right type
    # code; uint8[] wants array.array('B') (assigning bytes is pathologically slow).
    factory = MessageFactory(lambda name: dict, "rclpy", lambda name: {})
    for dtype, code in [(np.uint32, "I"), (np.float32, "f"), (np.float64, "d"), (np.int8, "b")]:
        seq = factory.sequence(np.arange(5), dtype)
        assert isinstance(seq, array.array) and seq.typecode == code
        assert list(seq) == [0, 1, 2, 3, 4]
    data = factory.byte_data(np.array([1.5], np.float32))
    assert isinstance(data, array.array) and data.typecode == "B"
    assert data.tobytes() == np.array([1.5], np.float32).tobytes()
    fixed = factory.fixed_array(np.zeros((6, 6)), np.float64)
    assert isinstance(fixed, np.ndarray) and fixed.shape == (36,)
