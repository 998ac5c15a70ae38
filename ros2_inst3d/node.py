"""The rclpy node ``ros2_inst3d``: a thin adapter over :mod:`ros2_inst3d.pipeline`.

It owns only what needs ROS: parameters (declared from :mod:`ros2_inst3d.config`'s schema), QoS,
subscriptions, the tf2 buffer, publishers, the diagnostics timer and shutdown. Every decision
(what to do with a scan, when to segment, what to publish) is made in the ROS-free pipeline,
where it is tested.

Threads (DESIGN §6): subscription callbacks only drop the newest message per topic into a
mailbox; an ingest thread does decode → TF → accumulate and polls the trigger; a segmentation
thread runs the model and publishes. The executor thread therefore always serves ``/tf``: a
blocking ``lookup_transform`` on the executor thread would starve it (ros2/geometry2#327).

Written against the rclpy / tf2_ros / launch_ros APIs common to Humble and Jazzy; each call is
checked against both distros in docs/ros_api_check.md.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.duration import Duration
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import PointCloud2
from tf2_ros import Buffer, TransformException, TransformListener

from .config import Config, ConfigError, Leaf, schema
from .msgs import MessageFactory
from .pipeline import (OUTPUT_TYPES, TOPIC_INSTANCES, TOPIC_LABELS, StreamPipeline,
                       TransformUnavailable)
from .segmenter import Segmenter
from .transforms import transform_msg_to_matrix

NODE_NAME = "ros2_inst3d"
_THROTTLE_S = 5.0
# IntegerRange / FloatingPointRange need both ends; a schema leaf with one bound gets the type's
# limit as the other (int64 and float64 are the rcl_interfaces field types).
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT_MAX = sys.float_info.max


def parameter_descriptor(leaf: Leaf) -> ParameterDescriptor:
    """The ROS descriptor of one schema leaf: description, constraints, range, read-only.

    No ``type``/``name``: rclpy ignores both and infers the type from the declared value.
    """
    constraints = f"one of: {', '.join(map(str, leaf.choices))}" if leaf.choices else ""
    desc = ParameterDescriptor(
        description=leaf.doc + (f" [{leaf.unit}]" if leaf.unit else ""),
        additional_constraints=constraints,
        read_only=not leaf.runtime)
    if leaf.low is not None or leaf.high is not None:
        if leaf.type is int:
            desc.integer_range = [IntegerRange(
                from_value=int(leaf.low) if leaf.low is not None else _INT64_MIN,
                to_value=int(leaf.high) if leaf.high is not None else _INT64_MAX, step=0)]
        elif leaf.type is float:
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(leaf.low) if leaf.low is not None else -_FLOAT_MAX,
                to_value=float(leaf.high) if leaf.high is not None else _FLOAT_MAX, step=0.0)]
    return desc


def _plain_value(value: Any) -> Any:
    """A parameter value as the config schema takes it: arrays (rclpy hands out ``array.array``
    for DOUBLE_ARRAY set through the parameter service, lists or tuples elsewhere) -> list."""
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return list(value)
    return value


class SegmentNode(Node):
    """Subscribes to PointCloud2 topics, publishes instances (see README: ROS interface)."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.cfg = self._declare_parameters()
        self.factory = MessageFactory.for_rclpy()
        self.pipeline = StreamPipeline(self.cfg, Segmenter(self.cfg))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # tf2: the listener's /tf subscriptions ride on this node's executor (spin_thread=False),
        # which no blocking call ever occupies: lookups wait on the ingest thread, where
        # Buffer.can_transform sleeps in 20 ms steps while rclpy.spin() keeps filling the buffer.
        # No node= for the Buffer: it would add a tf2_frames service and, on Jazzy, a clock-jump
        # callback; the node handles jumps itself (_check_clock).
        cache_s = max(10.0, 2.0 * self.cfg.accumulate.window_s)
        self.tf_buffer = Buffer(cache_time=Duration(seconds=cache_s))
        self.tf_listener = TransformListener(self.tf_buffer, self)

        reliability = (ReliabilityPolicy.RELIABLE if self.cfg.input.reliability == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        input_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.cfg.input.queue_depth,
                               reliability=reliability, durability=DurabilityPolicy.VOLATILE)
        self._mailbox: dict[str, PointCloud2] = {}
        self._mailbox_cv = threading.Condition()
        # Not self._subscriptions / self._publishers: rclpy's Node keeps its own entity lists
        # under those names (Jazzy), and the executor waits only on what they hold.
        self._cloud_subs = [
            self.create_subscription(PointCloud2, topic, self._mailbox_callback(topic), input_qos)
            for topic in self.cfg.input.topics if topic]

        output_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2,
                                reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.VOLATILE)
        latched_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                 reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._output_pubs = {
            topic: self.create_publisher(self.factory.cls(type_name), topic,
                                         latched_qos if topic == TOPIC_LABELS else output_qos)
            for topic, type_name in OUTPUT_TYPES.items()}
        self._output_pubs[TOPIC_LABELS].publish(
            self.pipeline.label_message(self.factory, self.get_clock().now().nanoseconds))
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)

        self._stop = threading.Event()
        self._segment_request = threading.Event()
        self._last_clock_ns: int | None = None
        self._input_times: list[float] = []
        self._threads = [threading.Thread(target=self._ingest_loop, name="inst3d-ingest", daemon=True),
                         threading.Thread(target=self._segment_loop, name="inst3d-segment",
                                          daemon=True)]
        for thread in self._threads:
            thread.start()
        self.get_logger().info(
            f"segmenting {', '.join(self.cfg.input.topics)} into '{self.cfg.input.fixed_frame}' "
            f"with model '{self.pipeline.segmenter.model_name}'")

    # ---- parameters ----------------------------------------------------------------------
    def _declare_parameters(self) -> Config:
        """Declare one read-only or runtime parameter per schema leaf; returns the config.

        The values given with ``--params-file`` / ``-p`` are validated by the config schema
        *before* they are declared, so the node accepts exactly what ``ros2-inst3d`` accepts
        (``window_s: 2`` is a valid double there, while rclpy alone would reject the integer with
        InvalidParameterTypeException) and a bad value fails with the schema's message.
        """
        leaves = schema()
        # rclpy's overrides for this node (name -> rclpy Parameter), the same attribute from
        # Dashing to Jazzy; rclpy itself silently ignores overrides of undeclared names.
        overrides = getattr(self, "_parameter_overrides", None)
        if overrides is None:
            for leaf in leaves:
                self.declare_parameter(leaf.name, leaf.default, parameter_descriptor(leaf))
            return Config.from_flat(
                {leaf.name: _plain_value(self.get_parameter(leaf.name).value) for leaf in leaves})
        names = {leaf.name for leaf in leaves}
        unknown = sorted(name for name in overrides if name not in names
                         and not self.has_parameter(name)  # use_sim_time and rclpy's own
                         and not name.startswith("qos_overrides."))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}; "
                              "see `ros2-inst3d params`")
        cfg = Config.from_flat({name: _plain_value(overrides[name].value)
                                for name in names if name in overrides})
        values = cfg.to_flat()
        for leaf in leaves:
            # The override is already in `values`, with the schema's type.
            self.declare_parameter(leaf.name, values[leaf.name], parameter_descriptor(leaf),
                                   ignore_override=True)
        return cfg

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """Runtime changes (rclpy has already rejected read-only names and wrong types)."""
        flat = self.cfg.to_flat()
        ours = [p for p in params if p.name in flat]  # use_sim_time etc. are rclpy's business
        if not ours:
            return SetParametersResult(successful=True, reason="")
        for p in ours:
            flat[p.name] = _plain_value(p.value)
        try:
            cfg = Config.from_flat(flat)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.cfg = cfg
        self.pipeline.apply_runtime_config(cfg)
        return SetParametersResult(successful=True, reason="")

    # ---- input ---------------------------------------------------------------------------
    def _mailbox_callback(self, topic: str):
        def store(msg: PointCloud2) -> None:
            with self._mailbox_cv:
                if topic in self._mailbox:
                    # The worker was busy: the older scan of this topic is replaced, and counted.
                    self.pipeline.count_superseded(topic)
                self._mailbox[topic] = msg
                self._input_times.append(time.monotonic())
                self._mailbox_cv.notify()
        return store

    def _lookup(self, target: str, source: str, stamp_ns: int):
        try:
            tf = self.tf_buffer.lookup_transform(
                target, source, Time(nanoseconds=stamp_ns),
                timeout=Duration(seconds=self.cfg.input.tf_timeout_s))
        except TransformException as exc:  # Lookup/Connectivity/Extrapolation/InvalidArgument
            self.get_logger().warning(
                f"no transform {source} -> {target} at {stamp_ns / 1e9:.3f}: {exc}; scan skipped",
                throttle_duration_sec=_THROTTLE_S)
            raise TransformUnavailable(str(exc)) from exc
        return transform_msg_to_matrix(tf.transform)

    def _ingest_loop(self) -> None:
        while not self._stop.is_set():
            with self._mailbox_cv:
                if not self._mailbox:
                    self._mailbox_cv.wait(timeout=0.05)
                batch, self._mailbox = self._mailbox, {}
            self._check_clock()
            for topic, msg in batch.items():
                try:
                    rec = self.pipeline.ingest(topic, msg, self._lookup)
                except Exception as exc:  # noqa: BLE001 - the node must outlive any bad scan
                    self.pipeline.count_error("ingest_error")
                    self.get_logger().error(f"scan on {topic} failed: {exc!r}",
                                            throttle_duration_sec=_THROTTLE_S)
                    continue
                if rec.fate == "skipped" and rec.reason != "no_transform":
                    self.get_logger().warning(
                        f"scan on {topic} skipped ({rec.reason}) {rec.detail}".rstrip(),
                        throttle_duration_sec=_THROTTLE_S)
            if self.pipeline.trigger.poll(time.monotonic()):
                self._segment_request.set()

    def _check_clock(self) -> None:
        """A backwards jump of the ROS clock (bag loop with use_sim_time) resets TF and the window.

        Our Buffer has no node, so no distro clears it on such jumps: the node does, on both.
        """
        now = self.get_clock().now().nanoseconds
        if self._last_clock_ns is not None and now < self._last_clock_ns - 1_000_000_000:
            self.get_logger().warning("ROS time jumped backwards: clearing TF buffer and scans")
            self.tf_buffer.clear()
            self.pipeline.reset("time_jump")
            self.pipeline.stats.time_jumps += 1
        self._last_clock_ns = now

    # ---- segmentation --------------------------------------------------------------------
    def _segment_loop(self) -> None:
        while not self._stop.is_set():
            if not self._segment_request.wait(timeout=0.1):
                continue
            self._segment_request.clear()
            try:
                result = self.pipeline.segment()
                if result is None:
                    continue
                wanted = {t for t, pub in self._output_pubs.items()
                          if t == TOPIC_INSTANCES or pub.get_subscription_count() > 0}
                msgs = self.pipeline.output_messages(self.factory, result, wanted=wanted)
                for topic, msg in msgs.items():
                    self._output_pubs[topic].publish(msg)
                self.pipeline.stats.last_end_to_end_ms = (
                    self.get_clock().now().nanoseconds - result.newest_stamp_ns) / 1e6
            except Exception as exc:  # noqa: BLE001 - e.g. CUDA OOM twice: count, log, keep running
                self.pipeline.count_error("segmentation_error")
                self.get_logger().error(f"segmentation failed: {exc!r}",
                                        throttle_duration_sec=_THROTTLE_S)

    # ---- diagnostics ---------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        stats = self.pipeline.stats
        now = time.monotonic()
        with self._mailbox_cv:
            self._input_times = [t for t in self._input_times if now - t <= 5.0]
            rate = len(self._input_times) / 5.0
        values = {
            "input_rate_hz": f"{rate:.2f}",
            "scans_received": stats.scans_received,
            "scans_accumulated": stats.scans_accumulated,
            "segmentations": stats.segmentations,
            "triggers_skipped_busy": self.pipeline.trigger.skipped,
            "time_jumps": stats.time_jumps,
            "points_dropped_non_finite": stats.points_dropped_non_finite,
            "accumulated_points": self.pipeline.accumulator.num_points,
            "end_to_end_latency_ms": f"{stats.last_end_to_end_ms:.1f}",
            "model": self.pipeline.segmenter.model_name,
            "device": getattr(self.pipeline.segmenter, "device", "cpu"),
        }
        values.update({f"scans_skipped.{k}": v for k, v in stats.scans_skipped.items()})
        values.update({f"segmentations_skipped.{k}": v
                       for k, v in stats.segmentations_skipped.items()})
        values.update({f"latency_ms.{k}": f"{v:.1f}" for k, v in stats.last_latency_ms.items()})
        skipped = sum(stats.scans_skipped.values())
        level = DiagnosticStatus.OK
        message = "ok"
        if stats.scans_received == 0:
            level, message = DiagnosticStatus.WARN, "no input clouds yet"
        elif skipped > stats.scans_accumulated:
            level, message = DiagnosticStatus.WARN, "most scans are skipped (see scans_skipped.*)"
        status = DiagnosticStatus(
            level=level, name=f"{self.get_name()}: instance segmentation", message=message,
            hardware_id=str(values["device"]),
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)

    # ---- shutdown ------------------------------------------------------------------------
    def shutdown(self) -> None:
        self._stop.set()
        self._segment_request.set()
        with self._mailbox_cv:
            self._mailbox_cv.notify_all()
        for thread in self._threads:
            thread.join(timeout=5.0)
        self.pipeline.segmenter.close()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``segment_node``: exits 0 on Ctrl-C without a traceback."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = SegmentNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # spin() raises ExternalShutdownException once SIGINT/SIGTERM shut the context
    except (ConfigError, ParameterException) as exc:
        print(f"[{NODE_NAME}] invalid configuration: {exc}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
