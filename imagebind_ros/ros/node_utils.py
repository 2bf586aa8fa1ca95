"""Small pieces every imagebind_ros node shares: parameters, QoS, rate-limited warnings,
startup errors, and a ``main`` that turns a failed start into one clear log line and exit
status 1. (The model parameters of model-holding nodes are in ``model_params``.)
"""

from __future__ import annotations

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
