"""Node health and responsiveness: /diagnostics levels, the worker thread's ownership and
failure streaks, model-running services off the executor.

Pure parts with a fake clock and hand-computed rates; then over DDS, the encoder and memory
nodes in one process (as ``imagebind-ros run`` and the container run them): a slow memory
query does not delay the camera's embeddings, and ``/diagnostics`` goes WARN within a few
seconds of the camera stopping and OK again when it resumes.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from node_process import ENV, wait_for
from ros_required import require_ros

require_ros()
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from imagebind_ros.msg import Embedding  # noqa: E402
from imagebind_ros.ros import conversions as cv  # noqa: E402
from imagebind_ros.ros.diagnostics import InputCounts, InputHealth, InputSpec  # noqa: E402
from imagebind_ros.ros.node_utils import RELIABLE_QOS, sensor_qos  # noqa: E402
from imagebind_ros.ros.worker import Worker  # noqa: E402
from imagebind_ros.srv import QueryMemory  # noqa: E402

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def _domain() -> int:
    """A ROS domain of this module's own."""
    return int(ENV.get("ROS_DOMAIN_ID", "0")) % 100 + 140


class Log:
    """A logger that keeps what it was given."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, text: str) -> None:
        self.errors.append(text)

    def warning(self, text: str) -> None:
        self.warnings.append(text)


# --------------------------------------------------------------------------- pure


def values(kv: list[Any]) -> dict[str, str]:
    return {k.key: k.value for k in kv}


def test_input_health_rates_staleness_and_recovery() -> None:
    h = InputHealth("vision", InputSpec("camera/image_raw"), stale_s=2.0, start=0.0)
    assert h.update(InputCounts(0), 1.0)[:2] == (OK, "no input yet")
    assert h.update(InputCounts(0), 2.5)[:2] == (ERROR, "never arrived (2 s)")
    h.update(InputCounts(5), 3.0)
    level, message, kv = h.update(InputCounts(25, 3, 7, 12, [10.0, 20.0, 30.0]), 5.0)
    v = values(kv)
    # window: the newest sample at least 5 s old, else the first (t=1, nothing received)
    assert (level, message) == (OK, "6.2 Hz, processed 3.0 Hz")  # 25 / 4 s, 12 / 4 s
    assert (v["received rate_hz"], v["processed rate_hz"]) == ("6.25", "3.00")
    assert (v["bad inputs"], v["dropped (newer input first)"]) == ("3", "7")
    assert (v["latency p50_ms"], v["latency p99_ms"]) == ("20.0", "29.8")
    assert v["since last input_s"] == "0.00"
    # the camera stops: WARN once it is silent longer than stale_s, OK when it resumes
    assert h.update(InputCounts(25), 6.5)[0] == OK
    assert h.update(InputCounts(25), 7.5)[:2] == (WARN, "stale: no input for 2.5 s")
    level, message, kv = h.update(InputCounts(45), 9.0)
    # window now starts at t=3 (t=5 is less than 5 s old): (45 - 5) / 6 s
    assert (level, message) == (OK, "6.7 Hz") and values(kv)["since last input_s"] == "0.00"


def test_input_health_slow_processing_and_low_input_rate() -> None:
    h = InputHealth("vision", InputSpec("cam", expected_hz=30.0, max_rate_hz=10.0), 5.0, 0.0)
    h.update(InputCounts(0, processed=0), 0.0)
    level, message, _ = h.update(InputCounts(40, processed=4), 2.0)  # 20 Hz in, 2 Hz out
    assert level == WARN and message == "slow: processed 2.0 Hz of an expected 10.0 Hz"
    h = InputHealth("vision", InputSpec("cam", expected_hz=30.0, max_rate_hz=10.0), 5.0, 0.0)
    h.update(InputCounts(0, processed=0), 0.0)
    level, message, _ = h.update(InputCounts(20, processed=20), 2.0)  # 10 Hz of 30 expected
    assert level == WARN and message == "received 10.0 Hz, expected 30 Hz"
    level, _, _ = h.update(InputCounts(80, processed=40), 4.0)  # 20 Hz in, 10 Hz out: fine
    assert level == OK


def test_optional_input_that_never_arrived_is_not_an_error() -> None:
    h = InputHealth("audio", InputSpec("audio", required=False), 1.0, 0.0)
    assert h.update(InputCounts(0), 50.0)[:2] == (OK, "no input yet")


def test_worker_join_that_times_out_is_reported() -> None:
    log = Log()
    release = threading.Event()
    w = Worker("stuck-worker", lambda: release.wait(10), log, join_timeout_s=0.2)
    w.start()
    assert w.health()[0] == OK
    assert w.stop() is False
    assert log.errors == ["stuck-worker did not stop within 0.2 s (stuck in an inference?); "
                          "it is abandoned as a daemon thread"]
    release.set()
    log2 = Log()
    w2 = Worker("good-worker", lambda: None, log2, join_timeout_s=5)
    w2.start()
    assert w2.stop() is True and log2.errors == []
    assert w2.health() == (ERROR, "good-worker is not running")


def test_persistent_failures_give_one_error_with_the_traceback() -> None:
    log = Log()
    w = Worker("w", lambda: time.sleep(5), log, max_failures=3)
    w.start()

    def fail(i: int) -> bool:
        try:
            raise RuntimeError(f"boom {i}")
        except RuntimeError as e:
            return w.failed("vision", e)

    assert [fail(i) for i in range(2)] == [False, False] and not log.errors
    assert w.health() == (WARN, "w: 2 failure(s) in a row (vision: RuntimeError: boom 1)")
    assert fail(2) is True
    assert [fail(i) for i in range(3, 8)] == [False] * 5  # said once, not per input
    assert len(log.errors) == 1
    assert "3 consecutive failures" in log.errors[0] and "Traceback" in log.errors[0]
    assert "RuntimeError: boom 2" in log.errors[0]
    assert w.health()[0] == ERROR
    w.succeeded()
    assert w.health()[0] == OK
    assert [fail(i) for i in range(3)][-1] is True and len(log.errors) == 2  # re-armed


# --------------------------------------------------------------------------- over DDS


class Graph:
    """Encoder + memory nodes (tiny random model) and a peer, in one private context."""

    def __init__(self, domain: int) -> None:
        from imagebind_ros.ros.encoder_node import EncoderNode
        from imagebind_ros.ros.memory_node import MemoryNode

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        common = [Parameter("preset", value="tiny"), Parameter("threads", value=1)]
        self.encoder = EncoderNode(context=self.ctx, parameter_overrides=common + [
            Parameter("modalities", Parameter.Type.STRING_ARRAY, ["vision"]),
            Parameter("vision.max_rate_hz", value=0.0),
            Parameter("diagnostics.stale_s", value=1.5)])
        self.memory = MemoryNode(context=self.ctx, parameter_overrides=common + [
            Parameter("services.timeout_s", value=10.0)])
        self.peer = rclpy.create_node("graph_health_peer", context=self.ctx)
        self.pub = self.peer.create_publisher(Image, "camera/image_raw", sensor_qos(5))
        self.arrivals: list[float] = []
        self.peer.create_subscription(Embedding, "embeddings/vision",
                                      lambda _: self.arrivals.append(time.monotonic()),
                                      RELIABLE_QOS)
        self.diagnostics: list[tuple[float, DiagnosticArray]] = []
        self.peer.create_subscription(
            DiagnosticArray, "/diagnostics",
            lambda m: self.diagnostics.append((time.monotonic(), m)), RELIABLE_QOS)
        self.query = self.peer.create_client(QueryMemory, "memory_node/query")
        self.executor = SingleThreadedExecutor(context=self.ctx)
        for n in (self.encoder, self.memory, self.peer):
            self.executor.add_node(n)
        self._stop = threading.Event()
        threading.Thread(target=self._spin, daemon=True).start()
        self.camera_on = threading.Event()
        self.camera_on.set()
        threading.Thread(target=self._camera, daemon=True).start()
        wait_for(lambda: self.pub.get_subscription_count() > 0, 30, "camera subscription")

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _camera(self) -> None:
        """A 10-Hz camera while ``camera_on`` is set."""
        frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
        while not self._stop.is_set():
            if self.camera_on.is_set():
                self.pub.publish(cv.numpy_to_image(frame, "rgb8", cv.make_header(
                    time.time_ns(), "camera")))
            time.sleep(0.1)

    def status(self, name: str, since: float) -> list[DiagnosticStatus]:
        return [s for t, a in list(self.diagnostics) if t >= since for s in a.status
                if s.name == name]

    def close(self) -> None:
        self._stop.set()
        time.sleep(0.2)
        self.executor.shutdown(timeout_sec=2)
        for n in (self.encoder, self.memory, self.peer):
            n.destroy_node()
        rclpy.shutdown(context=self.ctx)


@pytest.fixture(scope="module")
def graph() -> Any:
    g = Graph(_domain())
    yield g
    g.close()


def test_slow_query_does_not_delay_other_embeddings(graph: Graph) -> None:
    wait_for(lambda: len(graph.arrivals) > 10, 60, "camera embeddings")
    slow_s = 3.0
    real = graph.memory.query_vector

    def slow(req: Any) -> Any:
        time.sleep(slow_s)  # a query that takes seconds (many files, a big model)
        return real(req)

    graph.memory.query_vector = slow  # type: ignore[method-assign]
    try:
        assert graph.query.wait_for_service(timeout_sec=10)
        req = QueryMemory.Request(texts=["a dog"], top_k=3)
        t0 = time.monotonic()
        future = graph.query.call_async(req)
        wait_for(future.done, 30, "the slow query's answer")
        t1 = time.monotonic()
    finally:
        del graph.memory.query_vector
    resp = future.result()
    assert resp.success, resp.message
    assert t1 - t0 >= slow_s
    during = [t for t in graph.arrivals if t0 <= t <= t1]
    gaps = np.diff([t0] + during + [t1])
    # 10-Hz camera: on the executor thread the query would leave one ~3-s gap
    assert len(during) >= 10 and gaps.max() < 1.0, (len(during), gaps.max())


def test_slow_query_times_out_with_a_clear_answer(graph: Graph) -> None:
    services = graph.memory.slow_services
    services.timeout_s = 0.5
    release = threading.Event()

    def stuck(req: Any) -> Any:
        release.wait(10)
        raise ValueError("never mind")

    graph.memory.query_vector = stuck  # type: ignore[method-assign]
    try:
        assert graph.query.wait_for_service(timeout_sec=10)
        answers = []
        for _ in range(3):  # max_pending 2: the third is refused at once
            future = graph.query.call_async(QueryMemory.Request(texts=["x"]))
            answers.append(wait_for(lambda f=future: f.done() and f.result(), 20, "answer"))
    finally:
        release.set()
        services.timeout_s = 10.0
        del graph.memory.query_vector
    assert [a.success for a in answers] == [False] * 3
    assert answers[0].message.startswith("timed out after 0.5 s")
    assert answers[2].message.startswith("busy: 2 requests still running")


def test_diagnostics_warn_when_the_camera_stops_and_ok_when_it_resumes(graph: Graph) -> None:
    name = "encoder_node: vision input"
    wait_for(lambda: any(s.level == OK for s in graph.status(name, time.monotonic() - 1.5)),
             30, "an OK camera status")
    graph.camera_on.clear()
    stopped = time.monotonic()
    warn = wait_for(lambda: next((s for s in graph.status(name, stopped)
                                  if s.level == WARN), None), 10, "WARN after the camera stops")
    assert warn.message.startswith("stale: no input for")
    assert warn.hardware_id == graph.encoder.model_id
    graph.camera_on.set()
    resumed = time.monotonic()
    wait_for(lambda: any(s.level == OK for s in graph.status(name, resumed)), 10,
             "OK after the camera resumes")
    worker = graph.status("encoder_node: worker", stopped)[-1]
    assert worker.level == OK
    assert {k.key: k.value for k in worker.values}["model"] == graph.encoder.model_id


def test_bad_inputs_on_diagnostics_are_the_fault_limiters_counts(graph: Graph) -> None:
    """One counting path: the inputs a node drops as bad (through its FaultLimiter) are the
    "bad inputs" of its /diagnostics status, per topic."""
    def bad(name: str, since: float) -> int | None:
        sts = graph.status(name, since)
        return int(values(sts[-1].values)["bad inputs"]) if sts else None

    cam, mem = "encoder_node: vision input", "memory_node: vision input"
    start = time.monotonic()
    before = wait_for(lambda: (bad(cam, start), bad(mem, start))
                      if None not in (bad(cam, start), bad(mem, start)) else None, 10,
                      "both statuses")
    garbage = cv.numpy_to_image(np.zeros((4, 4, 3), np.uint8), "rgb8", cv.make_header(
        time.time_ns(), "camera"))
    garbage.encoding = "no_such_encoding"
    emb = graph.peer.create_publisher(Embedding, "embeddings/vision", RELIABLE_QOS)
    for _ in range(3):
        graph.pub.publish(garbage)
    for _ in range(2):  # a wrong-sized vector from a foreign model
        emb.publish(Embedding(vector=[1.0, 0.0], modality="vision", model_id="foreign"))
    sent = time.monotonic()
    wait_for(lambda: (bad(cam, sent), bad(mem, sent)) == (before[0] + 3, before[1] + 2),
             10, f"3 bad camera frames and 2 bad embeddings on /diagnostics (had {before})")
    counts = graph.encoder._warn.counts()["camera/image_raw"]
    assert sum(counts.values()) == before[0] + 3
    graph.peer.destroy_publisher(emb)


def test_persistent_worker_failure_turns_diagnostics_error(graph: Graph) -> None:
    name = "encoder_node: worker"

    def broken(modality: str, item: Any) -> None:
        raise RuntimeError("a bug in the encoder")

    graph.encoder._process = broken  # type: ignore[method-assign]
    try:
        start = time.monotonic()
        error = wait_for(lambda: next((s for s in graph.status(name, start)
                                       if s.level == ERROR), None), 30, "worker ERROR")
        assert error.message.startswith("encoder-worker failing: ")
        assert "RuntimeError: a bug in the encoder" in error.message
    finally:
        del graph.encoder._process
    fixed = time.monotonic()
    wait_for(lambda: any(s.level == OK for s in graph.status(name, fixed)), 30, "worker OK")


def test_sensor_nodes_report_their_outputs() -> None:
    """The simulated sensors and a microphone without a sound card on /diagnostics."""
    from imagebind_ros.ros.microphone_node import MicrophoneNode
    from imagebind_ros.ros.sim_sensors_node import SimSensorsNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=_domain() + 1)
    nodes: list[Any] = []
    try:
        nodes = [SimSensorsNode(context=ctx, parameter_overrides=[
                     Parameter("camera_rate_hz", value=5.0),
                     Parameter("publish", Parameter.Type.STRING_ARRAY, ["vision", "imu"])]),
                 MicrophoneNode(context=ctx, parameter_overrides=[
                     Parameter("wait_for_device", value=True), Parameter("device", value="no "
                                                                          "such card")])]
        peer = rclpy.create_node("sensor_diag_peer", context=ctx)
        nodes.append(peer)
        got: dict[str, Any] = {}
        peer.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda a: got.update({s.name: s for s in a.status}), 10)
        executor = SingleThreadedExecutor(context=ctx)
        for n in nodes:
            executor.add_node(n)
        end = time.monotonic() + 30
        while time.monotonic() < end and not (
                "microphone_node: device" in got and "sim_sensors_node: vision output" in got
                and got["sim_sensors_node: vision output"].values[1].value != "0"):
            executor.spin_once(timeout_sec=0.1)
        executor.shutdown()
        assert got["sim_sensors_node: vision output"].level == OK
        assert got["sim_sensors_node: imu output"].level == OK
        assert got["sim_sensors_node: source"].message == "source: synthetic"
        assert "sim_sensors_node: depth output" not in got  # not published
        assert got["microphone_node: device"].level == ERROR
    finally:
        for n in nodes:
            n.destroy_node()
        rclpy.shutdown(context=ctx)


def test_first_status_does_not_judge_a_rate_it_cannot_measure() -> None:
    h = InputHealth("vision", InputSpec("cam", expected_hz=30.0, max_rate_hz=10.0), 5.0, 0.0)
    assert h.update(InputCounts(3, processed=0), 0.5)[:2] == (OK, "0.0 Hz, processed 0.0 Hz")
    assert h.update(InputCounts(6, processed=0), 1.5)[0] == WARN  # 3 Hz of 30 over 1 s
