"""Small pieces every imagebind_ros node shares: parameters, QoS, rate-limited warnings,
startup errors, and a ``main`` that turns a failed start into one clear log line and exit
status 1. (The model parameters of model-holding nodes are in ``model_params``.)
"""

from __future__ import annotations

import collections
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from imagebind_ros import decode as dec
from imagebind_ros.decode import ERROR_KINDS, OTHER
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


def package_file(relative: str) -> Path | None:
    """A file the package ships (``config/...``, ``checkpoints/demo/...``): installed share
    dir, else the source tree; None if neither has it."""
    candidates = [Path(__file__).resolve().parents[2] / relative]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.insert(0, Path(get_package_share_directory("imagebind_ros")) / relative)
    except (ImportError, LookupError, OSError, ValueError):
        pass
    return next((p for p in candidates if p.is_file()), None)


def large_data_profile() -> Path | None:
    """Our Fast DDS profile (config/fastdds_large_data.xml), or None."""
    return package_file(f"config/{PROFILE_NAME}")


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


OTHER_TOPICS = "(other topics)"


@dataclass
class _TopicFaults:
    since: float  # start of the current period
    pending: collections.Counter = field(default_factory=collections.Counter)
    last_text: str = ""


class FaultLimiter:
    """Warnings about dropped inputs, limited per (topic, kind of fault) whatever their text.

    The first fault of a topic quiet for ``period_s`` is logged with its text; later ones
    are counted and, once ``period_s`` has passed (on the next fault or ``flush``, which a
    node timer calls), summed up in ONE line per topic: "dropped 312 bad inputs on
    camera/image_raw in the last 10 s: unsupported encoding x300, malformed x12 (last: ...)".
    Kinds outside ``decode.ERROR_KINDS`` count as ``other`` and topics beyond ``max_topics``
    share one entry, so neither the table nor the log grows with what the input says.
    ``counts()`` is the running total per topic and kind (for ``/diagnostics``).
    """

    def __init__(self, logger: Any, period_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, max_topics: int = 64) -> None:
        self._logger, self.period_s, self._clock = logger, period_s, clock
        self.max_topics = max_topics
        self._topics: dict[str, _TopicFaults] = {}
        self._totals: dict[str, collections.Counter] = {}
        self._lock = threading.Lock()

    def fault(self, topic: str, kind: str, text: str) -> bool:
        """Count one dropped input of ``topic``; log ``text`` or a summary, or nothing (False)."""
        now = self._clock()
        kind = kind if kind in ERROR_KINDS else OTHER
        with self._lock:
            if topic not in self._topics and len(self._topics) >= self.max_topics:
                topic = OTHER_TOPICS
            self._totals.setdefault(topic, collections.Counter())[kind] += 1
            st = self._topics.get(topic)
            if st is None or (now - st.since >= self.period_s and not st.pending):
                self._topics[topic] = _TopicFaults(now)
                line = f"{topic}: {text[:300]}"
            else:
                st.pending[kind] += 1
                st.last_text = text
                line = self._summary(topic, st, now) if now - st.since >= self.period_s else ""
        if line:
            self._logger.warning(line)
        return bool(line)

    def warn(self, key: str, text: str) -> bool:
        """A warning that is not about one input (a refused label set, a device status):
        limited like a fault of topic ``key``; ``key`` must be a fixed string."""
        return self.fault(key, OTHER, text)

    def flush(self) -> int:
        """Log the summary of every topic whose period is over; the number of lines."""
        now = self._clock()
        with self._lock:
            lines = [self._summary(t, st, now) for t, st in self._topics.items()
                     if st.pending and now - st.since >= self.period_s]
        for line in lines:
            self._logger.warning(line)
        return len(lines)

    def _summary(self, topic: str, st: _TopicFaults, now: float) -> str:
        """The summary line of ``topic``; starts its next period (lock held)."""
        kinds = ", ".join(f"{k} x{n}" for k, n in st.pending.most_common())
        line = (f"dropped {sum(st.pending.values())} bad inputs on {topic} in the last "
                f"{now - st.since:.0f} s: {kinds} (last: {st.last_text[:200]})")
        st.since, st.pending = now, collections.Counter()
        return line

    def counts(self) -> dict[str, dict[str, int]]:
        """Dropped inputs since start: {topic: {kind: count}} (a copy)."""
        with self._lock:
            return {t: dict(c) for t, c in self._totals.items()}


def fault_limiter(node: Node) -> FaultLimiter:
    """The node's ``FaultLimiter`` (parameter ``warn_period_s``), with a timer that logs the
    summaries when bad input stops."""
    period = declare(node, "warn_period_s", 10.0, "at most one warning line per input topic "
                     "per this many seconds: the first fault, then a summary by kind",
                     read_only=True)
    if not period > 0:
        raise StartupError(f"warn_period_s must be > 0, got {period}")
    limiter = FaultLimiter(node.get_logger(), period)
    node.create_timer(period, limiter.flush)
    return limiter


def fault_kind(err: BaseException) -> str:
    """The kind of fault of a dropped input's error (``decode.OTHER`` when it has none)."""
    return getattr(err, "kind", OTHER)


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


def spin(executor: Any, stop: threading.Event | None = None) -> None:
    """Spin until Ctrl-C / SIGTERM shuts ROS down (or ``stop`` is set). A callback (a
    timer's publish) that ran as the shutdown invalidated the context ends the spin quietly:
    that is the shutdown, not a failure."""
    try:
        while (stop is None or not stop.is_set()) and executor.context.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if executor.context.ok():
            raise


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
        spin(executor)
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
