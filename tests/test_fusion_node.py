"""The fusion node: over real DDS in the full graph, and its message -> library glue.

DDS: ``imagebind-ros run`` (simulated depth, thermal, microphone and IMU, the encoder and
the fusion node, committed demo model) in one child process and the camera (a second
simulated-sensor node of the same world that publishes only the camera) in another. The
fused label must be the scene's class, computed here from the world's seed independently of
the nodes; once the camera process stops, fused outputs must go on without ``vision`` and
its contributors must list it as ``timeout`` within its ``timeout_s``, with /diagnostics
at WARN. In-process: what the node publishes for given Embedding messages equals the
library's fusion of the same vectors, bad inputs are dropped with one warning, and the
diagnostics levels follow their definition.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from node_process import ENV, NodeProcess, wait_for
from ros_required import require_ros

require_ros()
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.time import Time  # noqa: E402

from imagebind_ros import fusion  # noqa: E402
from imagebind_ros import preprocess as pp  # noqa: E402
from imagebind_ros.decode import stamp_to_ns  # noqa: E402
from imagebind_ros.msg import Embedding, FusionContributors, ZeroShot  # noqa: E402
from imagebind_ros.ros import conversions as cv  # noqa: E402
from imagebind_ros.ros.fusion_node import (STATUS_NAME, FusionNode, input_states,  # noqa
                                           status_level)
from imagebind_ros.ros.node_utils import RELIABLE_QOS, StartupError  # noqa: E402
from imagebind_ros.synthetic import SyntheticWorld, thermal_to_mono16  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo" / "demo.pt"
CALIBRATION = ROOT / "checkpoints" / "demo" / "fusion_calibration.json"
LABELS = ["dog", "car", "bird", "fire", "rain", "engine", "kettle", "drill"]
TEMPLATES = ["a photo of a {}", "a {}", "there is a {}", "a picture of the {}"]
NS = 1_000_000_000
SIM_MAIN = "import sys; from imagebind_ros.ros.sim_sensors_node import main; sys.exit(main())"
SEED = 5  # the simulated world and stream of both sensor processes
TIMEOUT_S = 2.0  # vision.timeout_s of the DDS test (generous: 2 loaded cores)
SIM_NOW_NS = 1_000 * NS  # the in-process node's simulated clock, which stands still


def _domain() -> int:
    """A ROS domain of this module's own (other modules' graphs must not answer here)."""
    return int(ENV["ROS_DOMAIN_ID"]) % 100 + 120


class Listener:
    """This process's side of the DDS test: the fused outputs and the camera's embeddings,
    each with its arrival time."""

    def __init__(self, ctx: Any) -> None:
        self.node = rclpy.create_node("fusion_test_listener", context=ctx)
        self.got: dict[str, list[tuple[float, Any]]] = {
            "zero_shot": [], "contributors": [], "vision": [], "diagnostics": []}
        for key, typ, topic in (("zero_shot", ZeroShot, "zero_shot/fused"),
                                ("contributors", FusionContributors, "fusion/contributors"),
                                ("vision", Embedding, "embeddings/vision"),
                                ("diagnostics", DiagnosticArray, "/diagnostics")):
            self.node.create_subscription(typ, topic, self._keep(key), RELIABLE_QOS)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _keep(self, key: str) -> Any:
        return lambda msg: self.got[key].append((time.monotonic(), msg))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def fusion_status(array: DiagnosticArray) -> DiagnosticStatus | None:
    return next((s for s in array.status if s.name == STATUS_NAME), None)


def test_fused_label_and_camera_loss_over_dds() -> None:
    """The full graph on simulated sensors: the fused label is the scene's class; stopping
    the camera drops `vision` (reason timeout) within its timeout and the output goes on."""
    assert DEMO.is_file(), f"{DEMO} is committed; restore it (git checkout -- {DEMO})"
    truth = LABELS[SyntheticWorld(seed=SEED).stream(SEED, 1000.0, (480, 640), 2).class_at(0)]
    sets = {"sim_sensors_node.seed": SEED,
            "sim_sensors_node.switch_seconds": 1000.0,  # one scene for the whole test
            "sim_sensors_node.publish": "[depth, thermal, audio, imu]",
            "sim_sensors_node.camera_rate_hz": 10.0,
            **{f"fusion_node.{m}.timeout_s": TIMEOUT_S for m in fusion.SENSORS}}
    env = {**ENV, "ROS_DOMAIN_ID": str(_domain())}
    camera = NodeProcess([sys.executable, "-c", SIM_MAIN, "--ros-args", "-p",
                          "publish:=[vision]", "-p", f"seed:={SEED}", "-p",
                          "switch_seconds:=1000.0", "-p", "camera_mode:=object", "-p",
                          "camera_rate_hz:=10.0"], env=env)
    graph = NodeProcess([sys.executable, "-m", "imagebind_ros.cli", "run", "--params",
                         "config/fusion.yaml", "--params", "config/demo.yaml",
                         *[a for k, v in sets.items() for a in ("--set", f"{k}:={v}")],
                         "--duration", "150", "--executor", "events"],
                        cwd=ROOT, env=env)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=_domain())
    listen = Listener(ctx)
    got = listen.got
    try:
        def with_vision() -> list[Any]:  # and every other sensor (IMU: after its 5-s window)
            return [m for _, m in list(got["contributors"]) if len(m.modalities) == 5]

        try:
            wait_for(lambda: len(with_vision()) >= 6 or graph.proc.poll() is not None, 120,
                     "6 fused sets of all five sensors")
            assert graph.proc.poll() is None
        except AssertionError:
            raise AssertionError("\n".join(graph.lines[-40:] + camera.lines[-10:])) from None
        first = with_vision()[0]
        assert sorted(first.modalities) == sorted(fusion.SENSORS), first
        assert abs(sum(first.weights) - 1) < 1e-5 and first.method == "robust", first
        before = [m.results[0].class_id for _, m in list(got["zero_shot"])]
        assert sum(lab == truth for lab in before) >= 0.8 * len(before), (truth, before)
        ok = [fusion_status(m) for _, m in list(got["diagnostics"])]
        assert any(s is not None and s.level == DiagnosticStatus.OK for s in ok), ok

        camera.stop(signal.SIGINT)
        stopped = time.monotonic()
        last_vision_at, last_vision = got["vision"][-1]
        last_ns = stamp_to_ns(last_vision.header.stamp)

        def dropped() -> Any:
            return next(((t, m) for t, m in list(got["contributors"])
                         if "vision" in m.excluded
                         and m.reasons[list(m.excluded).index("vision")] == "timeout"), None)

        t_drop, drop = wait_for(dropped, TIMEOUT_S + 20, "vision excluded for timeout")
        # the sync lets vision go once its newest stamp is timeout_s old; allow 2 s for
        # the poll period, executors and two loaded cores
        assert t_drop - last_vision_at <= TIMEOUT_S + 2.0, (t_drop - last_vision_at)
        assert t_drop - stopped <= TIMEOUT_S + 2.0, (t_drop - stopped)
        n = len(got["zero_shot"])
        wait_for(lambda: len(got["zero_shot"]) >= n + 4, 30, "4 fused results without camera")
        after = [m for _, m in list(got["contributors"])
                 if stamp_to_ns(m.header.stamp) >= stamp_to_ns(drop.header.stamp)]
        assert len(after) >= 4
        for m in after:  # no later set can hold the camera: nothing newer than last_ns came
            assert "vision" not in m.modalities, m
            assert sorted(m.modalities) == ["audio", "depth", "imu", "thermal"], m
        late = [m for _, m in list(got["zero_shot"])[n:]]
        assert sum(m.results[0].class_id == truth for m in late) >= 0.75 * len(late), (
            truth, [m.results[0].class_id for m in late])
        assert all(stamp_to_ns(m.header.stamp) > last_ns for m in late)

        def warned() -> Any:
            for _, arr in list(got["diagnostics"]):
                s = fusion_status(arr)
                values = {kv.key: kv.value for kv in s.values} if s else {}
                if s is not None and values.get("vision") == "excluded: timeout":
                    return s
            return None

        status = wait_for(warned, 10, "diagnostics saying the camera timed out")
        assert status.level == DiagnosticStatus.WARN and "vision" in status.message, status
    finally:
        listen.close()
        rclpy.shutdown(context=ctx)
        camera.stop()
        graph.stop(signal.SIGINT)


# --------------------------------------------------------------------------- in-process


class Recorder:
    """Stands in for a publisher: keeps what the node publishes."""

    def __init__(self) -> None:
        self.msgs: list[Any] = []

    def publish(self, msg: Any) -> None:
        self.msgs.append(msg)


@pytest.fixture
def node() -> Any:
    """A fresh node per test on a simulated clock (use_sim_time) that stands still: its
    synchroniser keeps the last set's stamp and every sensor's newest, so a shared node let
    one test's stamps (60 ms ahead) make the next test's late on a fast machine, or time
    its sensors out on a loaded one."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=_domain() + 1)
    n = FusionNode(context=ctx, parameter_overrides=[
        Parameter("checkpoint", value=str(DEMO)),
        Parameter("calibration_file", value=str(CALIBRATION)),
        Parameter("labels", Parameter.Type.STRING_ARRAY, LABELS),
        Parameter("templates", Parameter.Type.STRING_ARRAY, TEMPLATES),
        Parameter("thermal.enabled", value=False), Parameter("diagnostics.period_s", value=0.0),
        Parameter("slop_s", value=0.1), Parameter("threads", value=1),
        Parameter("use_sim_time", value=True)])
    n.get_clock().set_ros_time_override(Time(nanoseconds=SIM_NOW_NS))
    n._pubs = {k: Recorder() for k in n._pubs}
    try:
        yield n
    finally:
        n.destroy_node()
        rclpy.shutdown(context=ctx)


def sensor_embeddings(node: Any, class_id: int) -> dict[str, np.ndarray]:
    """The demo model's embeddings of one synthetic sample of every sensor (as bench/fusion.py
    preprocesses them)."""
    world = SyntheticWorld(image_size=64)
    s = world.sample(class_id, np.random.default_rng(class_id))
    node.shared.add(None)  # the fusion node loads only text; here every sensor is embedded
    cfg = node.shared.config
    x = {"vision": pp.image_to_tensor(s.image, cfg.modality("vision")),
         "audio": pp.audio_to_tensor(s.audio, world.sample_rate, cfg.modality("audio")),
         "depth": pp.depth_to_tensor(s.depth_m, cfg.modality("depth"), units="m"),
         "thermal": pp.thermal_to_tensor(thermal_to_mono16(s.thermal), cfg.modality("thermal")),
         "imu": pp.imu_to_tensor(s.imu, s.imu_t, cfg.modality("imu"))}
    with torch.inference_mode():
        return {m: node.shared.encode(m, t[None].numpy())[0] for m, t in x.items()}


def embedding_msg(node: Any, modality: str, vector: Any, stamp_ns: int,
                  model_id: str | None = None) -> Embedding:
    return Embedding(header=cv.make_header(stamp_ns, f"{modality}_frame"), modality=modality,
                     model_id=node.model_id if model_id is None else model_id,
                     vector=np.asarray(vector, np.float32).tolist())


def test_node_publishes_the_library_fusion_of_its_inputs(node: Any) -> None:
    """vision + audio + depth + imu of one sample within the slop (thermal disabled): the
    node's three outputs carry exactly what `Fuser.fuse` gives for the same vectors."""
    emb = sensor_embeddings(node, class_id=3)  # fire
    base = node.get_clock().now().nanoseconds  # live: the sync judges stamps against now
    stamps = {"vision": base, "audio": base + 30_000_000, "depth": base + 10_000_000,
              "imu": base + 60_000_000}
    pubs = node._pubs
    for m, t in stamps.items():
        node.on_embedding(m, embedding_msg(node, m, emb[m], t))
    # the set is complete once every enabled sensor has a message: no waiting for timeouts
    assert len(pubs["contributors"].msgs) == 1, pubs["contributors"].msgs
    contrib = pubs["contributors"].msgs[0]
    (fused,), (zs,) = pubs["embedding"].msgs, pubs["zero_shot"].msgs
    cal = fusion.Calibration.load(CALIBRATION)
    names, text = node.classifier.label_embeddings
    ref = fusion.Fuser(node.config, names, text, cal).fuse(
        {m: fusion.Observation(emb[m], t / NS) for m, t in stamps.items()})
    newest = max(stamps.values())
    for msg in (contrib, fused, zs):
        assert stamp_to_ns(msg.header.stamp) == newest and msg.header.frame_id == "base_link"
    assert fused.modality == zs.modality == "fused" and fused.model_id == node.model_id
    np.testing.assert_allclose(fused.vector, ref.embedding, atol=1e-6)
    assert [(h.class_id, pytest.approx(h.score)) for h in zs.results] == ref.top_k(5)
    assert zs.results[0].class_id == "fire"
    assert list(contrib.modalities) == [c.modality for c in ref.contributions]
    np.testing.assert_allclose(contrib.weights, [c.weight for c in ref.contributions],
                               atol=1e-6)
    np.testing.assert_allclose(contrib.reliabilities,
                               [c.reliability for c in ref.contributions], atol=1e-6)
    # ages against the newest stamp, computed here from the stamps
    np.testing.assert_allclose(contrib.ages_s, [(newest - stamps[c.modality]) / NS
                                                for c in ref.contributions], atol=1e-6)
    assert list(zip(contrib.excluded, contrib.reasons)) == [("thermal", "disabled")]
    assert contrib.method == "robust"


def test_bad_embeddings_are_dropped_with_one_warning(node: Any) -> None:
    emb = sensor_embeddings(node, class_id=0)
    pubs = node._pubs
    before = {m: node.stats[m].invalid for m in ("vision", "audio")}
    warnings = node._warn.counts()
    t = node.get_clock().now().nanoseconds
    bad = [embedding_msg(node, "vision", emb["vision"], t, model_id="other.pt:x"),
           embedding_msg(node, "vision", emb["vision"][:-1], t + 1),
           embedding_msg(node, "audio", np.full_like(emb["audio"], np.nan), t + 2),
           embedding_msg(node, "audio", np.zeros_like(emb["audio"]), t + 3)]
    for msg in bad:
        node.on_embedding(msg.modality, msg)
    assert node.stats["vision"].invalid - before["vision"] == 2
    assert node.stats["audio"].invalid - before["audio"] == 2
    counts = node._warn.counts()  # each problem counted by topic (the log is rate-limited)
    for m in ("vision", "audio"):
        topic = f"embeddings/{m}"
        assert (counts[topic]["malformed"]
                - warnings.get(topic, {}).get("malformed", 0)) == 2, counts
    assert not pubs["contributors"].msgs  # nothing fused from them
    assert node.stats["vision"].newest_ns is None and node.stats["audio"].newest_ns is None


def test_set_labels_changes_what_is_fused(node: Any) -> None:
    """~/set_labels (and the labels parameter it updates): the next fused result scores the
    new label set only, and an unusable set is refused with the old one kept."""
    from imagebind_ros.srv import SetLabels

    resp = node._on_set_labels(SetLabels.Request(labels=["kettle", "dog"]), SetLabels.Response())
    assert resp.success, resp.message
    assert list(node.get_parameter("labels").value) == ["kettle", "dog"]
    bad = node._on_set_labels(SetLabels.Request(labels=["dog", "dog"]), SetLabels.Response())
    assert not bad.success and "duplicate" in bad.message
    emb = sensor_embeddings(node, class_id=0)  # dog
    base = node.get_clock().now().nanoseconds
    pubs = node._pubs
    for i, m in enumerate(("vision", "audio", "depth", "imu")):
        node.on_embedding(m, embedding_msg(node, m, emb[m], base + i * 1_000_000))
    (zs,), (contrib,) = pubs["zero_shot"].msgs, pubs["contributors"].msgs
    assert sorted(contrib.modalities) == ["audio", "depth", "imu", "vision"], contrib
    assert [h.class_id for h in zs.results] == ["dog", "kettle"]
    assert abs(sum(h.score for h in zs.results) - 1) < 1e-6


def test_calibration_of_another_model_is_refused() -> None:
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=_domain() + 2)
    try:
        with pytest.raises(StartupError, match="fitted for model demo.pt"):
            FusionNode(context=ctx, parameter_overrides=[
                Parameter("preset", value="tiny"),
                Parameter("calibration_file", value=str(CALIBRATION))])
    finally:
        rclpy.shutdown(context=ctx)


def test_diagnostic_levels() -> None:
    cfg = fusion.FusionConfig(modalities=fusion.modality_configs(
        ["vision", "audio", "imu"], disabled=["imu"]))
    res = fusion.FusionResult(np.ones(2), np.ones(2) / 2, ("a", "b"), 1.0, "robust",
                              (fusion.Contribution("audio", 1.0, 0.9, 0.9, 0.0),),
                              (("vision", "out of slop"), ("imu", "disabled")))
    live = ["vision", "audio"]
    states = input_states(cfg, live, {"vision": 3, "audio": 4}, res)
    assert states == {"vision": "out of slop", "audio": "used", "imu": "disabled"}
    assert status_level(states, True)[0] == DiagnosticStatus.OK
    states = input_states(cfg, ["audio"], {"vision": 3, "audio": 4}, res)
    assert states["vision"] == "timeout"
    level, text = status_level(states, True)
    assert level == DiagnosticStatus.WARN and "vision: timeout" in text
    states = input_states(cfg, [], {"audio": 4}, res)
    assert states == {"vision": "never received", "audio": "timeout", "imu": "disabled"}
    assert status_level(states, True)[0] == DiagnosticStatus.ERROR
    assert status_level({"imu": "disabled"}, True)[0] == DiagnosticStatus.ERROR
    assert status_level({"audio": "used"}, False)[0] == DiagnosticStatus.ERROR
