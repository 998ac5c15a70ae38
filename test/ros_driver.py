"""Drives a running ``segment_node`` over real DDS and reports what came back (JSON).

Run by test/test_node_ros.py in the ROS venv's Python (the pytest process has no rclpy):

    python test/ros_driver.py SCENARIO.json REPORT.json

It publishes ``/tf_static`` (base_link -> sensor), ``/tf`` (map -> base_link, a sensor driving
along x and turning) and PointCloud2 scans of a fixed scene seen from the moving sensor, subscribes
to every output and ``/diagnostics``, subscribes to ``instances/labels`` late (latched), and
optionally exercises the parameter service. The report holds raw observations; the test asserts.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TransformStamped
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from ros2_inst3d.cloud import encode_xyz, ns_to_stamp, stamp_to_ns
from ros2_inst3d.msgs import MessageFactory
from ros2_inst3d.msg import InstanceArray
from ros2_inst3d.transforms import (inverse_matrix, matrix_to_transform,
                                    quaternion_from_euler, transform_to_matrix)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import room_scene  # noqa: E402  (the geometric tests' scene)

SENSOR_IN_BASE = transform_to_matrix([0.2, 0.0, 1.0], quaternion_from_euler(0.0, 0.0, 0.1))
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


def base_pose(t_s: float) -> np.ndarray:
    """map -> base_link at ``t_s`` seconds after the start: 0.3 m/s along x, turning 0.1 rad/s."""
    return transform_to_matrix([0.3 * t_s, 0.1 * t_s, 0.0],
                               quaternion_from_euler(0.0, 0.0, 0.1 * t_s))


def transform_msg(parent: str, child: str, matrix: np.ndarray, stamp_ns: int, factory):
    translation, rotation = matrix_to_transform(matrix)
    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    msg.header.stamp = ns_to_stamp(factory, stamp_ns)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
        float(v) for v in translation)
    (msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z,
     msg.transform.rotation.w) = (float(v) for v in rotation)
    return msg


def cloud_fields(msg: PointCloud2) -> dict[str, np.ndarray]:
    """Every single-valued field of a little-endian, height-1 cloud as a numpy column."""
    dtype = np.dtype({"names": [f.name for f in msg.fields],
                      "formats": ["<" + _POINTFIELD_DTYPES[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    records = np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)
    return {name: np.array(records[name]) for name in dtype.names}


def scene(kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(xyz in map, rgb or None): the geometric tests' room, or the bundled coloured demo room."""
    if kind == "coloured":
        data = np.load(Path(__file__).resolve().parent.parent / "samples" / "demo_room.npz")
        return data["xyz"].astype(np.float32), data["rgb"]
    xyz, _ = room_scene(0)
    return xyz, None


class Driver:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.node = rclpy.create_node("inst3d_test_driver")
        self.factory = MessageFactory.for_rclpy()
        ns = spec["namespace"].rstrip("/")
        self.ns = ns
        self.tf_pub = self.node.create_publisher(TFMessage, "/tf", RELIABLE)
        self.tf_static_pub = self.node.create_publisher(TFMessage, "/tf_static", LATCHED)
        self.cloud_pubs = {topic: self.node.create_publisher(PointCloud2, topic, RELIABLE)
                           for topic in spec["cloud_topics"]}
        self.received: dict[str, list] = {}
        for topic, msg_type in (("instances", InstanceArray), ("instances/cloud", PointCloud2),
                                ("instances/detections", Detection3DArray),
                                ("instances/markers", MarkerArray)):
            self._subscribe(f"{ns}/{topic}", msg_type, RELIABLE)
        self._subscribe("/diagnostics", DiagnosticArray, RELIABLE)
        self.node_name = f"{ns}/ros2_inst3d"
        self.set_client = self.node.create_client(SetParameters, f"{self.node_name}/set_parameters")
        self.get_client = self.node.create_client(GetParameters, f"{self.node_name}/get_parameters")
        self.sent_stamps: list[int] = []
        self.start_ns = self.node.get_clock().now().nanoseconds
        # Stamps on another time line than the node's clock (a bag replayed without sim time).
        self.offset_ns = int(spec.get("stamp_offset_s", 0) * 1e9)

    def _subscribe(self, topic: str, msg_type, qos) -> None:
        self.received[topic] = []
        # Keep the arrival time too: the parameter test compares results before/after a change.
        self.node.create_subscription(
            msg_type, topic, lambda msg: self.received[topic].append((time.monotonic(), msg)), qos)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=min(0.02, max(0.0, end - time.monotonic())))

    def spin_until(self, done, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if done():
                return True
            self.spin_for(0.1)
        return done()

    def idle_skip_reported(self) -> bool:
        return any(kv.key == "segmentations_skipped.no_new_scans"
                   for _, msg in self.received["/diagnostics"][-1:]
                   for status in msg.status for kv in status.values)

    def wait_for_node(self, timeout_s: float) -> bool:
        """Until the node subscribes to every cloud topic (model loaded, node up)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if all(pub.get_subscription_count() > 0 for pub in self.cloud_pubs.values()) \
                    and self.set_client.service_is_ready():
                return True
            self.spin_for(0.1)
        return False

    # ---- input ---------------------------------------------------------------------------
    def stream(self, xyz: np.ndarray, rgb: np.ndarray | None, min_s: float, done,
               max_s: float) -> None:
        """/tf at 20 Hz, one cloud per topic at ``cloud_hz``: for at least ``min_s`` seconds,
        then until ``done()`` (results counted, not seconds waited: CI machines are slow when
        loaded), at most ``max_s``."""
        rng = np.random.default_rng(len(self.sent_stamps))
        period = 1.0 / self.spec["cloud_hz"]
        next_cloud = time.monotonic()
        start = time.monotonic()
        while time.monotonic() - start < min_s or (
                not done() and time.monotonic() - start < max_s):
            now_ns = self.node.get_clock().now().nanoseconds
            t_s = (now_ns - self.start_ns) / 1e9
            now_ns += self.offset_ns
            base = base_pose(t_s)
            self.tf_pub.publish(TFMessage(transforms=[
                transform_msg("map", "base_link", base, now_ns, self.factory)]))
            if time.monotonic() >= next_cloud:
                next_cloud += period
                sensor_from_map = inverse_matrix(base @ SENSOR_IN_BASE)
                for topic, pub in self.cloud_pubs.items():
                    keep = rng.random(len(xyz)) < self.spec["keep_fraction"]
                    points = xyz[keep] @ sensor_from_map[:3, :3].T + sensor_from_map[:3, 3]
                    header = self.factory("std_msgs/msg/Header", stamp=ns_to_stamp(self.factory, now_ns),
                                          frame_id="lidar")
                    pub.publish(encode_xyz(self.factory, header, points,
                                           None if rgb is None else rgb[keep]))
                self.sent_stamps.append(now_ns)
            self.spin_for(0.05)

    # ---- parameters ----------------------------------------------------------------------
    def set_parameter(self, name: str, value) -> dict:
        if isinstance(value, bool):
            pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
        elif isinstance(value, int):
            pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
        elif isinstance(value, float):
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(value))
        request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=pv)])
        result = self._call(self.set_client, request).results[0]
        return {"successful": bool(result.successful), "reason": result.reason}

    def get_parameter(self, name: str):
        value = self._call(self.get_client, GetParameters.Request(names=[name])).values[0]
        return {ParameterType.PARAMETER_DOUBLE: value.double_value,
                ParameterType.PARAMETER_INTEGER: value.integer_value,
                ParameterType.PARAMETER_STRING: value.string_value,
                ParameterType.PARAMETER_BOOL: value.bool_value}.get(value.type)

    def _call(self, client, request):
        future = client.call_async(request)
        end = time.monotonic() + 10.0
        while not future.done() and time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)
        if not future.done():
            raise TimeoutError(f"no answer from {client.srv_name}")
        return future.result()

    # ---- report --------------------------------------------------------------------------
    def results(self, after_ns: int = 0) -> int:
        """InstanceArrays received whose newest scan is stamped after ``after_ns``."""
        return sum(stamp_to_ns(m.header.stamp) > after_ns
                   for _, m in self.received[f"{self.ns}/instances"])

    def report(self, labels: list, param_results: dict, change_ns: int | None) -> dict:
        sent = set(self.sent_stamps)
        topics = {}
        for topic, items in self.received.items():
            if topic == "/diagnostics":
                continue
            headers = []
            for _, msg in items:
                if isinstance(msg, MarkerArray):
                    headers += [m.header for m in msg.markers]
                else:
                    headers.append(msg.header)
            topics[topic] = {
                "count": len(items),
                "frames": sorted({h.frame_id for h in headers}),
                "stamps_not_sent": sum(stamp_to_ns(h.stamp) not in sent for h in headers
                                       if stamp_to_ns(h.stamp) != 0),
                "zero_stamps": sum(stamp_to_ns(h.stamp) == 0 for h in headers),
            }
        arrays = [m for _, m in self.received[f"{self.ns}/instances"]]
        clouds = {stamp_to_ns(m.header.stamp): m for _, m in self.received[f"{self.ns}/instances/cloud"]}
        index_checks = []
        for array in arrays:
            cloud = clouds.get(stamp_to_ns(array.header.stamp))
            if cloud is None:
                continue
            ids = cloud_fields(cloud)["instance_id"]
            index_checks.append({
                "instances": len(array.instances),
                "cloud_points": int(ids.size),
                "oldest_stamp_sent": stamp_to_ns(array.oldest_stamp) in sent,
                "indices_agree": all(
                    len(inst.point_indices) == inst.num_points
                    and bool(np.all(ids[np.asarray(inst.point_indices, dtype=np.int64)] == inst.id))
                    and int(np.count_nonzero(ids == inst.id)) == inst.num_points
                    for inst in array.instances),
            })
        diag = [m for _, m in self.received["/diagnostics"]
                if any(s.name.startswith("ros2_inst3d:") for s in m.status)]
        last_values = ({kv.key: kv.value for kv in diag[-1].status[0].values} if diag else {})
        # Results with a scan sent after the change were segmented after it.
        after = [(t, m) for t, m in self.received[f"{self.ns}/instances"]
                 if change_ns is not None and stamp_to_ns(m.header.stamp) > change_ns]
        return {
            "sent_scans": len(self.sent_stamps),
            "topics": topics,
            "index_checks": index_checks,
            "instance_counts": [len(m.instances) for m in arrays],
            # Objects seen in that result; remembered ones (tracking memory) have observed false.
            "instance_counts_after_change": [sum(1 for i in m.instances if i.observed)
                                             for _, m in after],
            "labels": [{"count": len(lbl.class_map), "frame": lbl.header.frame_id}
                       for lbl in labels],
            "diagnostics_count": len(diag),
            "diagnostics": last_values,
            "parameters": param_results,
        }


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    rclpy.init()
    driver = Driver(spec)
    try:
        if not driver.wait_for_node(spec["startup_timeout_s"]):
            Path(sys.argv[2]).write_text(json.dumps({"error": "the node never subscribed"}))
            return 1
        static = transform_msg("base_link", "lidar", SENSOR_IN_BASE,
                               driver.start_ns + driver.offset_ns, driver.factory)
        driver.tf_static_pub.publish(TFMessage(transforms=[static]))
        xyz, rgb = scene(spec["scene"])
        max_s = spec.get("max_stream_s", 90.0)
        driver.stream(xyz, rgb, spec["stream_s"], lambda: driver.results() >= 3, max_s)
        # A late subscriber still gets the class table: instances/labels is transient-local.
        labels: list = []
        driver.node.create_subscription(LabelInfo, f"{driver.ns}/instances/labels",
                                        labels.append, LATCHED)
        param_results: dict = {}
        change_ns = None
        if spec.get("parameters"):
            param_results = {
                "int_for_float": driver.set_parameter("accumulate.window_s", 3),
                "int_for_float_value": driver.get_parameter("accumulate.window_s"),
                "out_of_range": driver.set_parameter("segment.score_threshold", 1.5),
                "read_only": driver.set_parameter("model.name", "pointgroup"),
                "unknown_choice": driver.set_parameter("output.box_type", "sphere"),
                "min_points": driver.set_parameter("segment.min_points", 10_000_000),
            }
            change_ns = driver.node.get_clock().now().nanoseconds + driver.offset_ns
            driver.stream(xyz, rgb, spec["after_change_s"],
                          lambda: driver.results(after_ns=change_ns) >= 2, max_s)
        # Idle: the last results and the latched labels arrive, and the node, seeing no new scan,
        # skips its next segmentation (the diagnostics counter the test checks).
        driver.spin_until(lambda: bool(labels) and driver.idle_skip_reported(),
                          spec.get("idle_timeout_s", 10.0))
        report = driver.report(labels, param_results, change_ns)
    finally:
        driver.node.destroy_node()
        rclpy.try_shutdown()
    Path(sys.argv[2]).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
