"""Small pieces every imagebind_ros node shares: parameters, QoS, rate-limited warnings,
startup errors, and a ``main`` that turns a failed start into one clear log line and exit
status 1. (The model parameters of model-holding nodes are in ``model_params``.)
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from imagebind_ros import decode as dec
from imagebind_ros.zeroshot import read_labels


def sensor_qos(depth: int = 5) -> QoSProfile:
    """REP 2003 sensor-data QoS (best effort, volatile); high-rate streams (IMU, audio) want a
    deeper queue so a busy executor loses fewer samples."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


# Inputs: best effort, keep the last few. Outputs: reliable.
SENSOR_QOS = sensor_qos()
RELIABLE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)

# Errors a model load or a bad setting raises at start; anything else is a bug and is shown
# with its traceback.
STARTUP_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError,
                                                  RuntimeError, ParameterException,
                                                  NameValidationException)


PROFILE_NAME = "fastdds_large_data.xml"


def large_data_profile() -> Path | None:
    """Our Fast DDS profile (config/fastdds_large_data.xml): installed share dir, else the
    source tree; None if neither has it."""
    candidates = [Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.insert(0, Path(get_package_share_directory("imagebind_ros")) / "config"
                          / PROFILE_NAME)
    except (ImportError, LookupError, OSError, ValueError):
        pass
    return next((p for p in candidates if p.is_file()), None)


def use_large_data_profile() -> None:
    """Point Fast DDS at our large-message profile unless the user chose a profile or
    another middleware. Must run before the process's first node exists."""
    rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if rmw.startswith("rmw_fastrtps") and "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ:
        profile = large_data_profile()
        if profile is not None:
            os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)


class StartupError(RuntimeError):
    """The node cannot start; the message is the one line the user sees."""


def declare(node: Node, name: str, default: Any, description: str,
            read_only: bool = False) -> Any:
    """Declare a parameter with a description and return its value.

    ``default`` may be a ``Parameter.Type`` for a typed parameter without a default (string
    arrays): its value is then None unless set, returned as [] for array types.
    """
    desc = ParameterDescriptor(description=description, read_only=read_only)
    value = node.declare_parameter(name, default, desc).value
    if value is None and isinstance(default, Parameter.Type):
        return []
    return value


def labels_from(labels: Sequence[str], labels_file: str) -> list[str]:
    """The zero-shot label set of the ``labels``/``labels_file`` parameters (``labels``
    wins); StartupError if the file cannot be read."""
    if labels:
        return list(labels)
    if labels_file:
        try:
            return read_labels(labels_file)
        except OSError as e:
            raise StartupError(f"cannot read labels_file {labels_file!r}: {e}") from None
    return []


class LabelParameters:
    """The ``labels``/``labels_file``/``templates`` parameters and ``~/set_labels`` of a node
    that scores with a ``ZeroShotClassifier`` (``self.classifier``); the node supplies
    ``_apply_labels(labels, templates) -> message`` (ValueError keeps the old set), ``self.p``
    and ``self._warn``."""

    def _label_parameters_refused(self, new: dict[str, Any]) -> SetParametersResult | None:
        """Apply a change of the label parameters; the refusal to return, or None."""
        if not {"labels", "labels_file", "templates"} & set(new):
            return None
        labels = new.get("labels", self.p["labels"]) or []
        labels_file = new.get("labels_file", self.p["labels_file"])
        templates = new.get("templates", self.p["templates"])
        try:
            self._apply_labels(labels_from(labels, labels_file), templates)
        except (ValueError, StartupError) as e:
            self._warn.warn("labels", f"label change refused: {e}")
            return SetParametersResult(successful=False, reason=str(e))
        return None

    def _on_set_labels(self, req: Any, resp: Any) -> Any:
        """``~/set_labels``: switch the label set and keep the parameters telling the truth
        (the parameter callback then sees no change to embed)."""
        try:
            resp.message = self._apply_labels(list(req.labels), list(req.templates) or None)
        except ValueError as e:
            self._warn.warn("labels", f"set_labels refused: {e}")
            resp.success, resp.message = False, str(e)
            return resp
        resp.success = True
        self.set_parameters([
            Parameter("labels", Parameter.Type.STRING_ARRAY, list(self.classifier.labels)),
            Parameter("templates", Parameter.Type.STRING_ARRAY,
                      list(self.classifier.templates))])
        return resp


def warn_key(text: str) -> str:
    """Same problem with other numbers -> same rate-limit key (for ``WarnLimiter``)."""
    return re.sub(r"[-\d.]+", "#", text)


class WarnLimiter:
    """One warning per key per ``period_s``; the next one says how many were suppressed."""

    def __init__(self, logger: Any, period_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger, self.period_s, self._clock = logger, period_s, clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()
        self.count = 0  # warnings requested (logged or suppressed)

    def warn(self, key: str, text: str) -> bool:
        """Log ``text`` unless ``key`` was logged within the period; True if logged."""
        now = self._clock()
        with self._lock:
            self.count += 1
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            more = self._suppressed.pop(key, 0)
            self._last[key] = now
        suffix = f" ({more} more like this in the last {self.period_s:g} s)" if more else ""
        self._logger.warning(text + suffix)
        return True


def type_name(msg_type: Any) -> str:
    """A generated message class -> its ROS type name ("sensor_msgs/msg/Image")."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


class InputTopics:
    """Subscribes a node's inputs and says when a topic carries another message type.

    DDS matches publishers and subscribers by type name, so a subscriber of the wrong type
    just receives nothing (audio_common's messages on our ``audio`` topic). Every
    ``period_s`` (publishers can appear at any time) the ROS graph is read and each input
    topic that also carries a type other than ours gets ONE warning per type naming both,
    with the parameter that fixes it.
    """

    def __init__(self, node: Node, period_s: float = 2.0) -> None:
        self._node = node
        self._want: dict[str, tuple[str, str]] = {}  # resolved topic -> (our type, hint)
        self._warned: set[tuple[str, str]] = set()
        node.create_timer(period_s, self.check)

    def subscribe(self, msg_type: Any, topic: str, callback: Callable[[Any], None],
                  qos: QoSProfile, hint: str = "") -> Any:
        """``create_subscription`` plus the type check; ``hint``: how to switch type."""
        sub = self._node.create_subscription(msg_type, topic, callback, qos)
        self._want[sub.topic_name] = (type_name(msg_type), hint)
        return sub

    def check(self) -> list[str]:
        """Warn about (and return) input topics newly found carrying another type."""
        found = []
        for topic, types in self._node.get_topic_names_and_types():
            want = self._want.get(topic)
            for other in types if want is not None else ():
                if other == want[0] or (topic, other) in self._warned:
                    continue
                self._warned.add((topic, other))
                text = (f"topic {topic} carries {other}, but this node subscribes to it as "
                        f"{want[0]}: those messages are not received")
                found.append(text + (f"; {want[1]}" if want[1] else ""))
                self._node.get_logger().warning(found[-1])
        return found


# image_transport's transports for an image input, and its topic-name convention: the
# "compressed" transport of base topic T is published on T/compressed.
TRANSPORTS = ("raw", "compressed", "compressedDepth")


def image_transport(topic: str, transport: str) -> tuple[str, str]:
    """A ``<m>.topic`` and ``<m>.transport`` -> (topic to subscribe, transport).

    "auto": the topic's suffix decides (``.../compressed``, ``.../compressedDepth``, else
    raw). "compressed"/"compressedDepth" on a base topic subscribe to base/<transport>, as
    image_transport subscribers do; a suffix contradicting the transport is a StartupError.
    """
    suffix = next((t for t in TRANSPORTS[1:] if topic.endswith("/" + t)), None)
    if transport == "auto":
        return topic, suffix or "raw"
    if transport not in TRANSPORTS:
        raise StartupError(f"transport {transport!r} unknown; choose auto, "
                           f"{', '.join(TRANSPORTS)}")
    if suffix is not None and suffix != transport:
        raise StartupError(f"topic {topic} is a {suffix} transport topic, but the transport "
                           f"parameter says {transport}; use the base topic or make them agree")
    if transport == "raw" or suffix == transport:
        return topic, transport
    return f"{topic.rstrip('/')}/{transport}", transport


def load_message_type(name: str, what: str) -> Any:
    """A message class by type name; StartupError naming the package when it is missing."""
    package, _, cls = name.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), cls)
    except (AttributeError, ImportError, ValueError) as e:
        raise StartupError(f"{what} {name} cannot be loaded ({type(e).__name__}: {e}); is "
                           f"{name.split('/')[0]} installed and sourced?") from None


class AudioInput:
    """A node's audio topic in any of ``decode.AUDIO_MSG_TYPES``: subscribes it (and, for
    ros-drivers' AudioData, its ``info_topic``, whose AudioInfo says the sample format)
    and decodes each message with ``decode.decode_audio``."""

    def __init__(self, inputs: InputTopics, node: Node, msg_type: str, topic: str,
                 info_topic: str, callback: Callable[[Any], None], qos: QoSProfile) -> None:
        if msg_type not in dec.AUDIO_MSG_TYPES:
            raise StartupError(f"audio.msg_type {msg_type!r} unknown; choose from "
                               f"{', '.join(dec.AUDIO_MSG_TYPES)}")
        self._node = node
        self.info: dec.AudioInfo | None = None
        hint = f"set audio.msg_type (one of {', '.join(dec.AUDIO_MSG_TYPES)})"
        inputs.subscribe(load_message_type(msg_type, "audio.msg_type"), topic, callback, qos,
                         hint)
        if msg_type in dec.NEEDS_AUDIO_INFO:
            info = load_message_type(dec.AUDIO_INFO, "audio info")
            # best effort and volatile match any publisher (BEST_AVAILABLE would pick
            # transient local when the publisher starts later, and then not match it)
            inputs.subscribe(info, info_topic, self._on_info, qos)

    def _on_info(self, msg: Any) -> None:
        self.info = dec.read_audio_info(msg)

    def decode(self, msg: Any, expect_rate: int | None, expect_channels: int | None
               ) -> tuple[dec.Sound, int]:
        """-> (sound, stamp ns): the header's, or the receive time for unstamped AudioData."""
        sound = dec.decode_audio(msg, self.info, expect_rate, expect_channels)
        stamp = dec.header_stamp_ns(msg)
        return sound, self._node.get_clock().now().nanoseconds if stamp is None else stamp


def run_node(factory: Callable[..., Node], name: str, argv: Sequence[str] | None = None
             ) -> int:
    """Entry point body for ``ros2 run`` / console scripts: start, spin, stop cleanly.

    A ``StartupError`` or a known load error becomes one error line and exit status 1.
    Single-threaded: our nodes run inference on their own worker threads, and rclpy's
    multi-threaded executor costs far more per message (docs/benchmarks.md, "ROS
    overhead": 200-Hz IMU waited ~0.6 s in its queue vs ~40 ms single-threaded).
    """
    args = list(sys.argv if argv is None else argv)
    use_large_data_profile()
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = factory()
        except STARTUP_ERRORS as e:
            rclpy.logging.get_logger(name).error(f"cannot start: {e}")
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
