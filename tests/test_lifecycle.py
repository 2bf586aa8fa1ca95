"""Managed nodes over DDS: a lifecycle manager's ``~/change_state`` calls drive the encoder
(``autostart:=false``) through configure / activate / deactivate / cleanup; activate before
configure is refused; only an active node embeds; cleanup frees the model."""

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
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from imagebind_ros import model_cache  # noqa: E402
from imagebind_ros.msg import Embedding  # noqa: E402
from imagebind_ros.ros import conversions as cv  # noqa: E402
from imagebind_ros.ros.node_utils import RELIABLE_QOS, StartupError, sensor_qos  # noqa: E402


SUCCESS = TransitionCallbackReturn.SUCCESS


def _domain() -> int:
    return int(ENV.get("ROS_DOMAIN_ID", "0")) % 100 + 160


class Manager:
    """A peer that plays the lifecycle manager and the camera."""

    def __init__(self, ctx: Any, node: Any) -> None:
        self.peer = rclpy.create_node("lifecycle_manager_test", context=ctx)
        self.change = self.peer.create_client(ChangeState, "encoder_node/change_state")
        self.get = self.peer.create_client(GetState, "encoder_node/get_state")
        self.pub = self.peer.create_publisher(Image, "camera/image_raw", sensor_qos(5))
        self.got: list[Embedding] = []
        self.peer.create_subscription(Embedding, "embeddings/vision", self.got.append,
                                      RELIABLE_QOS)
        self.executor = SingleThreadedExecutor(context=ctx)
        for n in (node, self.peer):
            self.executor.add_node(n)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, client: Any, request: Any) -> Any:
        assert client.wait_for_service(timeout_sec=20)
        future = client.call_async(request)
        wait_for(future.done, 60, f"{client.srv_name}")
        return future.result()

    def transition(self, tid: int) -> bool:
        return self.call(self.change, ChangeState.Request(
            transition=Transition(id=tid))).success

    def state(self) -> str:
        return self.call(self.get, GetState.Request()).current_state.label

    def embeddings_within(self, seconds: float) -> int:
        """Camera frames for ``seconds``; how many embeddings came back."""
        self.got.clear()
        frame = np.random.default_rng(2).integers(0, 255, (48, 64, 3), np.uint8)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pub.publish(cv.numpy_to_image(frame, "rgb8", cv.make_header(
                time.time_ns(), "cam")))
            time.sleep(0.1)
        time.sleep(0.5)
        return len(self.got)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown(timeout_sec=2)
        self.peer.destroy_node()


@pytest.fixture
def ctx() -> Any:
    model_cache.clear()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=_domain())
    yield context
    rclpy.shutdown(context=context)
    model_cache.clear()


def _encoder(ctx: Any, autostart: bool, **extra: Any) -> Any:
    from imagebind_ros.ros.encoder_node import EncoderNode

    return EncoderNode(context=ctx, parameter_overrides=[
        Parameter("preset", value="tiny"), Parameter("threads", value=1),
        Parameter("autostart", value=autostart),
        Parameter("modalities", Parameter.Type.STRING_ARRAY, ["vision"]),
        *[Parameter(k, value=v) for k, v in extra.items()]])


def test_transitions_in_order_and_activate_before_configure_refused(ctx: Any) -> None:
    node = _encoder(ctx, autostart=False)
    m = Manager(ctx, node)
    try:
        assert m.state() == "unconfigured" and model_cache.cached_models() == []
        assert not m.transition(Transition.TRANSITION_ACTIVATE)  # before configure: refused
        assert m.state() == "unconfigured"
        assert m.transition(Transition.TRANSITION_CONFIGURE)
        assert m.state() == "inactive" and len(model_cache.cached_models()) == 1
        assert m.pub.get_subscription_count() == 0  # inactive: not subscribed
        assert m.embeddings_within(1.0) == 0
        assert m.transition(Transition.TRANSITION_ACTIVATE) and m.state() == "active"
        wait_for(lambda: m.pub.get_subscription_count() > 0, 20, "the camera subscription")
        assert m.embeddings_within(2.0) > 0
        assert m.transition(Transition.TRANSITION_DEACTIVATE) and m.state() == "inactive"
        assert not node._worker.alive
        wait_for(lambda: m.pub.get_subscription_count() == 0, 20, "unsubscribed")
        assert m.embeddings_within(1.0) == 0
        assert m.transition(Transition.TRANSITION_CLEANUP) and m.state() == "unconfigured"
        assert model_cache.cached_models() == []  # no node holds it: freed
        assert m.transition(Transition.TRANSITION_CONFIGURE)  # and again
        assert m.transition(Transition.TRANSITION_ACTIVATE)
        wait_for(lambda: m.pub.get_subscription_count() > 0, 20, "subscribed again")
        assert m.embeddings_within(2.0) > 0
    finally:
        m.close()
        node.destroy_node()


def test_cleanup_keeps_a_model_another_node_holds(ctx: Any) -> None:
    a, b = _encoder(ctx, autostart=True), None
    try:
        b = _encoder(ctx, autostart=True, **{"diagnostics.period_s": 0.0})
        assert len(model_cache.cached_models()) == 1
        assert [a.trigger_deactivate(), a.trigger_cleanup()] == [SUCCESS, SUCCESS]
        assert len(model_cache.cached_models()) == 1  # b still uses it
        assert [b.trigger_deactivate(), b.trigger_cleanup()] == [SUCCESS, SUCCESS]
        assert model_cache.cached_models() == []
    finally:
        for n in (a, b):
            if n is not None:
                n.destroy_node()


def test_autostart_failure_is_one_startup_error(ctx: Any) -> None:
    from imagebind_ros.ros.encoder_node import EncoderNode

    with pytest.raises(StartupError, match="no model"):
        EncoderNode(context=ctx)


@pytest.mark.parametrize("name,overrides", [
    ("encoder_node", {"vision.topic": "cam/image_raw/compressed",
                      "vision.transport": "compressedDepth"}),
    ("detector_node", {"camera.topic": "cam/image_raw/compressedDepth",
                       "camera.transport": "compressed"}),
])
def test_a_transport_contradicting_its_topic_fails_configure(ctx: Any, name: str,
                                                             overrides: dict[str, str]) -> None:
    """Found by configure (a lifecycle manager sees it before activating), not activate."""
    from imagebind_ros.ros.runner import NODES

    module, cls = NODES[name]
    node = getattr(__import__(module, fromlist=[cls]), cls)(context=ctx, parameter_overrides=[
        Parameter("preset", value="tiny"), Parameter("autostart", value=False),
        *[Parameter(k, value=v) for k, v in overrides.items()]])
    try:
        assert node.trigger_configure() != SUCCESS
        assert "transport topic" in node._failure and node.unconfigured
    finally:
        node.destroy_node()


@pytest.mark.parametrize("name", ["encoder_node", "detector_node", "memory_node",
                                  "fusion_node"])
def test_model_nodes_follow_the_same_lifecycle(ctx: Any, name: str) -> None:
    """Inputs (and the other-type check of ``InputTopics``) only while active."""
    from imagebind_ros.ros.runner import NODES

    module, cls = NODES[name]
    node_type = getattr(__import__(module, fromlist=[cls]), cls)
    node = node_type(context=ctx, parameter_overrides=[
        Parameter("preset", value="tiny"), Parameter("autostart", value=False)])
    try:
        subscribed = set(node.subscriptions)  # the lifecycle services' only
        assert node.trigger_activate() != SUCCESS  # not configured yet
        assert node.trigger_configure() == SUCCESS
        assert len(model_cache.cached_models()) == 1 and set(node.subscriptions) == subscribed
        timers = set(node.timers)
        assert node.trigger_activate() == SUCCESS
        assert len(set(node.subscriptions) - subscribed) >= 2  # its inputs
        assert len(set(node.timers) - timers) == 1  # InputTopics' graph check
        assert node.trigger_deactivate() == SUCCESS and set(node.subscriptions) == subscribed
        assert set(node.timers) == timers  # the graph check stops with the inputs
        assert node.trigger_cleanup() == SUCCESS and model_cache.cached_models() == []
    finally:
        node.destroy_node()


def test_label_parameters_set_while_unconfigured_apply_at_configure(ctx: Any) -> None:
    from imagebind_ros.ros.fusion_node import FusionNode

    node = FusionNode(context=ctx, parameter_overrides=[
        Parameter("preset", value="tiny"), Parameter("autostart", value=False)])
    try:
        result = node.set_parameters([Parameter("labels", Parameter.Type.STRING_ARRAY,
                                                ["dog", "car"])])
        assert result[0].successful
        assert node.trigger_configure() == SUCCESS
        assert list(node.classifier.labels) == ["dog", "car"] and node.fuser is not None
    finally:
        node.destroy_node()
