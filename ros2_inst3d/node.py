"""The rclpy node ``ros2_inst3d``: a thin adapter over :mod:`ros2_inst3d.pipeline`.

It owns only what needs ROS: parameters (declared from :mod:`ros2_inst3d.config`'s schema), QoS,
subscriptions (clouds, ``/tf``, ``/tf_static``), publishers, the diagnostics timer and shutdown.
Every decision (what to do with a scan, when to segment, what to publish) is made in the ROS-free
pipeline, where it is tested. Transforms go into the project's own :class:`TfBuffer` (the one the
bag tool uses), so the node needs no tf2_ros.

Threads: subscription callbacks only drop the newest message per topic into a
mailbox (and ``/tf`` messages into the buffer); an ingest thread does decode → TF → accumulate and
polls the trigger; a segmentation thread runs the model and publishes. Waiting for a transform
happens on the ingest thread, so the executor thread always serves ``/tf`` (ros2/geometry2#327).

Tested under the PyPI Jazzy wheels (test/test_node_ros.py, scripts/ros_env.sh); the APIs used are
the ones common to Humble and Jazzy (docs/ros_api_check.md).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, NoReturn

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from tf2_msgs.msg import TFMessage

from .config import Config, ConfigError, Leaf, schema
from .msgs import MessageFactory
from .errors import TransformUnavailable
from .pipeline import OUTPUT_TYPES, TOPIC_INSTANCES, TOPIC_LABELS, StreamPipeline
from .segmenter import Segmenter
from .tf_buffer import TfBuffer

NODE_NAME = "ros2_inst3d"
_THROTTLE_S = 5.0
# Shutdown waits this long for a running segmentation before leaving it to die with the process.
_JOIN_TIMEOUT_S = 0.5
# tf2_ros's listener QoS: /tf reliable volatile, /tf_static reliable transient-local, depth 100.
TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                           reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def parameter_descriptor(leaf: Leaf) -> ParameterDescriptor:
    """The ROS descriptor of one schema leaf: description, constraints, read-only.

    Choices and ranges go into ``additional_constraints`` rather than ``integer_range`` /
    ``floating_point_range``: rclpy would refuse an out-of-range value itself, before the node's
    callback, with its own wording; the schema's check gives the reason ``ros2-inst3d`` gives.
    No ``type``/``name``: rclpy ignores both and infers the type from the declared value.
    """
    constraints = []
    if leaf.choices:
        constraints.append(f"one of: {', '.join(map(str, leaf.choices))}")
    if leaf.low is not None:
        constraints.append(f">= {leaf.low}")
    if leaf.high is not None:
        constraints.append(f"<= {leaf.high}")
    return ParameterDescriptor(
        description=leaf.doc + (f" [{leaf.unit}]" if leaf.unit else ""),
        additional_constraints="; ".join(constraints),
        read_only=not leaf.runtime)


def _plain_value(value: Any) -> Any:
    """A parameter value as the config schema takes it: arrays (rclpy hands out ``array.array``
    for DOUBLE_ARRAY set through the parameter service, lists or tuples elsewhere) -> list."""
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return list(value)
    return value


def as_declared_type(param: Parameter, leaf: Leaf | None) -> Parameter:
    """An integer (array) given for a float (array) parameter, as the double (array) it means.

    The schema takes ``window_s: 3`` at start; rclpy would refuse it at runtime as the wrong type
    (``ros2 param set ... accumulate.window_s 3`` sends an INTEGER).
    """
    if leaf is None:
        return param
    if param.type_ == Parameter.Type.INTEGER and leaf.type is float:
        return Parameter(param.name, Parameter.Type.DOUBLE, float(param.value))
    if param.type_ == Parameter.Type.INTEGER_ARRAY and leaf.type is list \
            and isinstance(leaf.default[0] if leaf.default else None, float):
        return Parameter(param.name, Parameter.Type.DOUBLE_ARRAY, [float(v) for v in param.value])
    return param


class _NodeLogHandler(logging.Handler):
    """Sends the core's Python ``logging`` records to the node's logger (so ``/rosout``),
    throttled per message template: a pipeline warning repeated every second shows once per
    ``_THROTTLE_S`` (rclpy's own throttle is per call site, which is this one line for all)."""

    def __init__(self, node_logger: Any) -> None:
        super().__init__(logging.INFO)
        self._ros = node_logger
        self._last: dict[tuple[str, Any], float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        key = (record.name, record.msg)
        if now - self._last.get(key, -math.inf) < _THROTTLE_S:
            return
        self._last[key] = now
        try:
            text = record.getMessage()
            if record.exc_info and record.levelno >= logging.ERROR:
                text += f" ({record.exc_info[1]!r})"
            if record.levelno >= logging.ERROR:
                self._ros.error(text)
            elif record.levelno >= logging.WARNING:
                self._ros.warning(text)
            else:
                self._ros.info(text)
        except Exception:  # noqa: BLE001 - logging must never take the node down
            self.handleError(record)


class SegmentNode(Node):
    """Subscribes to PointCloud2 topics, publishes instances (see README: ROS interface)."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self._leaves = {leaf.name: leaf for leaf in schema()}
        self.cfg = self._declare_parameters()
        self.factory = MessageFactory.for_rclpy()
        self._log_handler = _NodeLogHandler(self.get_logger())
        self._core_logger = logging.getLogger(__package__)
        self._core_logger.addHandler(self._log_handler)
        self._core_logger.setLevel(logging.INFO)
        self._core_logger.propagate = False
        self.segmenter = Segmenter(self.cfg)
        self.pipeline = StreamPipeline(self.cfg, self.segmenter)
        if hasattr(self, "add_pre_set_parameters_callback"):  # Iron and later
            self.add_pre_set_parameters_callback(self._pre_set_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._stop = threading.Event()
        cache_s = max(10.0, 2.0 * self.cfg.accumulate.window_s)
        self.tf_buffer = TfBuffer(cache_s)
        # Absolute names: TF is global, a namespace or remap of the node does not move it.
        self._tf_subs = [
            self.create_subscription(TFMessage, "/tf", self._tf_callback(static=False), TF_QOS),
            self.create_subscription(TFMessage, "/tf_static", self._tf_callback(static=True),
                                     TF_STATIC_QOS)]

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
            f"with model '{self.segmenter.model_name}'")

    # ---- parameters ----------------------------------------------------------------------
    def _declare_parameters(self) -> Config:
        """Declare one read-only or runtime parameter per schema leaf; returns the config.

        The values given with ``--params-file`` / ``-p`` are validated by the config schema
        *before* they are declared, so the node accepts exactly what ``ros2-inst3d`` accepts
        (``window_s: 2`` is a valid double there, while rclpy alone would reject the integer with
        InvalidParameterTypeException) and a bad value fails with the schema's message.
        """
        leaves = list(self._leaves.values())
        # Without a pre-set callback (Humble), rclpy's type check would refuse an integer for a
        # double before the node sees it: let float leaves take any type, the schema checks it.
        untyped_floats = not hasattr(self, "add_pre_set_parameters_callback")

        def descriptor(leaf: Leaf) -> ParameterDescriptor:
            desc = parameter_descriptor(leaf)
            desc.dynamic_typing = untyped_floats and leaf.type is float
            return desc

        # rclpy's overrides for this node (name -> rclpy Parameter), the same attribute from
        # Dashing to Jazzy; rclpy itself silently ignores overrides of undeclared names.
        overrides = getattr(self, "_parameter_overrides", None)
        if overrides is None:
            for leaf in leaves:
                self.declare_parameter(leaf.name, leaf.default, descriptor(leaf))
            return Config.from_flat(
                {leaf.name: _plain_value(self.get_parameter(leaf.name).value) for leaf in leaves})
        unknown = sorted(name for name in overrides if name not in self._leaves
                         and not self.has_parameter(name)  # use_sim_time and rclpy's own
                         and not name.startswith("qos_overrides."))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}; "
                              "see `ros2-inst3d params`")
        cfg = Config.from_flat({name: _plain_value(overrides[name].value)
                                for name in self._leaves if name in overrides})
        values = cfg.to_flat()
        for leaf in leaves:
            # The override is already in `values`, with the schema's type.
            self.declare_parameter(leaf.name, values[leaf.name], descriptor(leaf),
                                   ignore_override=True)
        return cfg

    def _pre_set_parameters(self, params: list[Parameter]) -> list[Parameter]:
        """Runs before rclpy's type check: integers for float parameters become doubles."""
        return [as_declared_type(p, self._leaves.get(p.name)) for p in params]

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
    def _tf_callback(self, static: bool):
        def store(msg: TFMessage) -> None:
            self.tf_buffer.add_message(msg, static)
        return store

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
            return self.tf_buffer.wait_lookup(target, source, stamp_ns,
                                              self.cfg.input.tf_timeout_s)
        except TransformUnavailable as exc:
            if not self._stop.is_set():
                self.get_logger().warning(f"no transform at {stamp_ns / 1e9:.3f}: {exc}; "
                                          "scan skipped", throttle_duration_sec=_THROTTLE_S)
            raise

    def _ingest_loop(self) -> None:
        while not self._stop.is_set():
            with self._mailbox_cv:
                if not self._mailbox:
                    self._mailbox_cv.wait(timeout=0.05)
                batch, self._mailbox = self._mailbox, {}
            if self._stop.is_set():
                return
            self._check_clock()
            for topic, msg in batch.items():
                if self._stop.is_set():
                    return
                # ingest never raises: a scan that fails inside is skipped as ingest_error (the
                # pipeline logs it through the core logger, which this node forwards).
                rec = self.pipeline.ingest(topic, msg, self._lookup)
                if rec.fate == "skipped" and rec.reason != "no_transform":
                    self.get_logger().warning(
                        f"scan on {topic} skipped ({rec.reason}) {rec.detail}".rstrip(),
                        throttle_duration_sec=_THROTTLE_S)
            if self.pipeline.poll(time.monotonic()):
                self._segment_request.set()

    def _check_clock(self) -> None:
        """A backwards jump of the ROS clock (bag loop with use_sim_time) resets TF and the window."""
        now = self.get_clock().now().nanoseconds
        if self._last_clock_ns is not None and now < self._last_clock_ns - 1_000_000_000:
            self.get_logger().warning("ROS time jumped backwards: clearing TF buffer and scans")
            self.tf_buffer.clear()
            self.pipeline.note_clock_jump()
        self._last_clock_ns = now

    # ---- segmentation --------------------------------------------------------------------
    def _segment_loop(self) -> None:
        while not self._stop.is_set():
            if not self._segment_request.wait(timeout=0.1):
                continue
            self._segment_request.clear()
            if self._stop.is_set():
                return
            try:
                result = self.pipeline.segment()
                # A shutdown during the segmentation: the context may be gone, publish nothing.
                if result is None or self._stop.is_set():
                    continue
                wanted = {t for t, pub in self._output_pubs.items()
                          if t == TOPIC_INSTANCES or pub.get_subscription_count() > 0}
                msgs = self.pipeline.output_messages(self.factory, result, wanted=wanted)
                for topic, msg in msgs.items():
                    self._output_pubs[topic].publish(msg)
                self._record_latency(result.newest_stamp_ns)
            except Exception as exc:  # noqa: BLE001 - e.g. CUDA OOM twice: count, log, keep running
                if self._stop.is_set():
                    return  # the context went away under us: not an error of the node
                self.pipeline.count_error("segmentation_error")
                self.get_logger().error(f"segmentation failed: {exc!r}",
                                        throttle_duration_sec=_THROTTLE_S)

    def _record_latency(self, newest_stamp_ns: int) -> None:
        """End-to-end latency of a result, unless the input stamps are on another clock."""
        latency_s = self.pipeline.record_end_to_end(self.get_clock().now().nanoseconds,
                                                    newest_stamp_ns)
        if latency_s is not None:
            self.get_logger().warning(
                f"input stamps are {abs(latency_s):.0f} s {'behind' if latency_s > 0 else 'ahead of'}"
                f" this node's {'simulated' if self._use_sim_time() else 'system'} clock (a bag "
                "replayed without use_sim_time:=true and `--clock`?); end_to_end_latency_ms is "
                "not reported until they agree")

    def _use_sim_time(self) -> bool:
        return bool(self.get_parameter("use_sim_time").value)

    # ---- diagnostics ---------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self._stop.is_set():
            return
        now = time.monotonic()
        with self._mailbox_cv:
            self._input_times = [t for t in self._input_times if now - t <= 5.0]
            rate = len(self._input_times) / 5.0
        report = self.pipeline.diagnostic_values()
        values = {"input_rate_hz": f"{rate:.2f}", **report.values,
                  "tf_rejected": sum(self.tf_buffer.rejected.values())}
        level, message = ((DiagnosticStatus.OK, "ok") if report.warning is None
                          else (DiagnosticStatus.WARN, report.warning))
        status = DiagnosticStatus(
            level=level, name=f"{self.get_name()}: instance segmentation", message=message,
            hardware_id=str(values["device"]),
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)

    # ---- shutdown ------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop both loops first, so nothing is published or logged once the context goes.

        A segmentation already running is given ``_JOIN_TIMEOUT_S``; after that the daemon thread
        is left to end with the process (it publishes nothing once ``_stop`` is set).
        """
        self._stop.set()
        self._segment_request.set()
        with self._mailbox_cv:
            self._mailbox_cv.notify_all()
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if not any(thread.is_alive() for thread in self._threads):
            self.segmenter.close()
        self._core_logger.removeHandler(self._log_handler)
        self._core_logger.propagate = True


def _ignore_further_signals() -> None:
    """``ros2 launch`` forwards Ctrl-C to a node the terminal already sent it to: the second
    SIGINT must not interrupt the shutdown with a KeyboardInterrupt (exit code -2)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def main(args: list[str] | None = None) -> NoReturn:
    """Entry point of ``segment_node``: exits 0 on Ctrl-C/SIGTERM without a traceback.

    Does not return: once the node is shut down, the process ends with ``os._exit``. The
    interpreter's own finalization took 1.2-1.7 s after the node was gone (module teardown of
    torch and friends), and aborted the process (SIGABRT) when a segmentation was still running
    in the abandoned daemon thread; nothing is left to clean up by then.
    """
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
    except Exception:  # noqa: BLE001 - os._exit below would otherwise swallow it
        traceback.print_exc()
        code = 1
    finally:
        _ignore_further_signals()
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
