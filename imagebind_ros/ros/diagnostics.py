"""``/diagnostics`` of every imagebind_ros node, the way robot monitoring expects it.

Conventions of ``diagnostic_updater`` (robot_localization, camera drivers): a
``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` about once a second, one
``DiagnosticStatus`` per task named ``"<node name>: <task>"``, ``hardware_id`` = the model
id (what a monitor groups by), numbers as key/value strings. Each node reports one status
per input topic (``"encoder_node: vision input"``: received rate against the expected one,
drops, bad inputs, latency p50/p99, seconds since the last input: WARN when stale or slow,
ERROR when a required input never arrived) and one ``"<node>: worker"`` status (model,
backend, precision, the worker thread's health). Nodes keep their own cumulative counters;
``InputCounts`` is the one place they are handed over (the hook for a fault counter keyed by
topic and kind).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from imagebind_ros.model_cache import SharedModel
from imagebind_ros.ros.node_utils import RELIABLE_QOS, declare

TOPIC = "/diagnostics"
RATE_WINDOW_S = 5.0  # rates are measured over the last few seconds, not one noisy tick
SLOW_FRACTION = 0.5  # below this fraction of the expected rate is WARN
MIN_WINDOW_S = 0.9  # rates over a shorter span (the first status) are not judged


@dataclass
class InputSpec:
    """What one input topic should do."""

    topic: str
    expected_hz: float = 0.0  # expected received rate; 0 = unknown (not checked)
    max_rate_hz: float = 0.0  # the node's processing cap; 0 = no processed-rate check
    required: bool = True  # never arriving is an ERROR (else just reported)


@dataclass
class InputCounts:
    """Cumulative counters of one input, as the node keeps them."""

    received: int
    bad: int = 0
    dropped: int = 0  # replaced by a newer input before being processed
    processed: int | None = None  # outputs made from it; None = not counted
    latency_ms: Sequence[float] = ()  # recent source-stamp -> output latencies


class InputHealth:
    """Turns successive cumulative counts of one input into rates, age and a level."""

    def __init__(self, name: str, spec: InputSpec, stale_s: float, start: float) -> None:
        self.name, self.spec, self.stale_s, self.start = name, spec, stale_s, start
        self._history: collections.deque[tuple[float, InputCounts]] = collections.deque()
        self.last_input: float | None = None

    def _rate(self, now: float, counts: InputCounts, field: str) -> float:
        t0, old = self._history[0]
        return ((getattr(counts, field) or 0) - (getattr(old, field) or 0)) / max(now - t0, 1e-6)

    def update(self, counts: InputCounts, now: float) -> tuple[int, str, list[KeyValue]]:
        """(level, message, values) after the counters moved to ``counts`` at ``now``."""
        if self._history and counts.received > self._history[-1][1].received:
            self.last_input = now
        elif not self._history and counts.received:
            self.last_input = now
        self._history.append((now, counts))
        while len(self._history) > 2 and now - self._history[1][0] >= RATE_WINDOW_S:
            self._history.popleft()
        rx = self._rate(now, counts, "received")
        age = None if self.last_input is None else now - self.last_input
        spec = self.spec
        judged = now - self._history[0][0] >= MIN_WINDOW_S
        level, message = DiagnosticStatus.OK, f"{rx:.1f} Hz"
        out_hz = None
        if counts.processed is not None:
            out_hz = self._rate(now, counts, "processed")
            expected_out = min(spec.max_rate_hz, rx)
            message += f", processed {out_hz:.1f} Hz"
            if judged and spec.max_rate_hz > 0 and expected_out >= 1.0 \
                    and out_hz < SLOW_FRACTION * expected_out:
                level, message = DiagnosticStatus.WARN, (
                    f"slow: processed {out_hz:.1f} Hz of an expected {expected_out:.1f} Hz")
        if judged and spec.expected_hz > 0 and rx < SLOW_FRACTION * spec.expected_hz \
                and age is not None:
            level, message = DiagnosticStatus.WARN, (
                f"received {rx:.1f} Hz, expected {spec.expected_hz:g} Hz")
        if age is None:
            waited = now - self.start
            if spec.required and waited > self.stale_s:
                level, message = DiagnosticStatus.ERROR, f"never arrived ({waited:.0f} s)"
            else:
                message = "no input yet"
        elif age > self.stale_s:
            level, message = DiagnosticStatus.WARN, f"stale: no input for {age:.1f} s"
        lat = np.asarray(counts.latency_ms, float)
        values = [("topic", spec.topic), ("received", counts.received),
                  ("received rate_hz", f"{rx:.2f}"),
                  ("expected rate_hz", f"{spec.expected_hz:g}" if spec.expected_hz else
                   "unknown"),
                  ("dropped (newer input first)", counts.dropped), ("bad inputs", counts.bad),
                  ("since last input_s", "never" if age is None else f"{age:.2f}")]
        if out_hz is not None:
            values += [("processed", counts.processed), ("processed rate_hz", f"{out_hz:.2f}")]
        if lat.size:
            values += [("latency p50_ms", f"{np.percentile(lat, 50):.1f}"),
                       ("latency p99_ms", f"{np.percentile(lat, 99):.1f}")]
        return level, message, key_values(values)


def key_values(pairs: Sequence[tuple[str, Any]]) -> list[KeyValue]:
    return [KeyValue(key=k, value=str(v)) for k, v in pairs]


def model_values(shared: SharedModel | None) -> list[KeyValue]:
    """Model id, backend and precision of a node's shared model."""
    if shared is None:
        return key_values([("model", "none")])
    return key_values([("model", shared.model_id), ("backend", shared.backend.describe()),
                       ("precision", shared.key.precision or "backend default")])


def declare_diagnostics_parameters(node: Node, inputs: Sequence[str] | None
                                   ) -> dict[str, Any]:
    """The diagnostics parameters: the period and, for ``InputDiagnostics`` (``inputs``
    not None), the staleness and the expected rate of each input."""
    p = {"period_s": declare(node, "diagnostics.period_s", 1.0, "seconds between "
                             "/diagnostics messages (0 = none)", read_only=True)}
    if inputs is None:
        return p
    p["stale_s"] = declare(node, "diagnostics.stale_s", 3.0, "an input silent this long is "
                           "WARN (never arrived: ERROR)", read_only=True)
    for name in inputs:
        p[f"expected_hz.{name}"] = declare(
            node, f"diagnostics.expected_hz.{name}", 0.0, f"expected {name} input rate "
            "(Hz); received below half of it is WARN (0 = not checked)", read_only=True)
    return p


class NodeDiagnostics:
    """Publishes a node's statuses on ``/diagnostics`` every ``period_s`` (0 = never)."""

    def __init__(self, node: Node, period_s: float,
                 statuses: Callable[[], list[DiagnosticStatus]]) -> None:
        self._node, self._statuses = node, statuses
        self._pub = node.create_publisher(DiagnosticArray, TOPIC, RELIABLE_QOS)
        self._timer = node.create_timer(period_s, self.publish) if period_s > 0 else None

    def publish(self) -> None:
        array = DiagnosticArray(status=self._statuses())
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(array)

    def destroy(self) -> None:
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._pub)


class InputDiagnostics(NodeDiagnostics):
    """The input statuses plus a worker status, for nodes whose counters are
    ``InputCounts``; ``health`` gives the worker's (level, message). Sensor nodes report
    their outputs the same way (``kind="output"``, ``task`` = what produces them)."""

    def __init__(self, node: Node, p: Mapping[str, Any], inputs: Mapping[str, InputSpec],
                 counts: Callable[[], Mapping[str, InputCounts]],
                 health: Callable[[], tuple[int, str]], shared: SharedModel | None,
                 clock: Callable[[], float] = time.monotonic, kind: str = "input",
                 task: str = "worker") -> None:
        self._name, self._counts, self._health = node.get_name(), counts, health
        self._clock, self._kind, self._task = clock, kind, task
        # strings, not the model: a lifecycle cleanup must be able to free it
        self._hw = shared.model_id if shared is not None else ""
        self._model = model_values(shared)
        start = clock()
        self.inputs = {n: InputHealth(n, s, p["stale_s"], start) for n, s in inputs.items()}
        super().__init__(node, p["period_s"], self.statuses)

    def statuses(self) -> list[DiagnosticStatus]:
        now, counts, hw = self._clock(), self._counts(), self._hw
        out = []
        for name, health in self.inputs.items():
            level, message, values = health.update(counts[name], now)
            out.append(DiagnosticStatus(level=level, name=f"{self._name}: {name} {self._kind}",
                                        message=message, hardware_id=hw, values=values))
        level, message = self._health()
        out.append(DiagnosticStatus(level=level, name=f"{self._name}: {self._task}",
                                    message=message, hardware_id=hw,
                                    values=self._model))
        return out
