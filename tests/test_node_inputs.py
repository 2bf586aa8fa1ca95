"""How nodes choose their input topics and types (``node_utils``): image_transport's
transports and topic names, the audio message type, separate IMU topics, and the refusals
at start. In-process nodes in a private context; what they subscribe is read back from the
ROS graph (``get_subscriber_names_and_types_by_node``), not from the code's own variables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from ros_required import require_ros

require_ros()
import rclpy  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from imagebind_ros.ros.node_utils import StartupError, image_transport  # noqa: E402


@pytest.mark.parametrize("topic,transport,want", [
    ("camera/image_raw", "auto", ("camera/image_raw", "raw")),
    ("camera/image_raw/compressed", "auto", ("camera/image_raw/compressed", "compressed")),
    ("depth/image_raw/compressedDepth", "auto",
     ("depth/image_raw/compressedDepth", "compressedDepth")),
    ("camera/image_raw", "compressed", ("camera/image_raw/compressed", "compressed")),
    ("/depth/image_rect_raw", "compressedDepth",
     ("/depth/image_rect_raw/compressedDepth", "compressedDepth")),
    ("camera/image_raw/compressed", "compressed", ("camera/image_raw/compressed", "compressed")),
    ("camera/image_raw", "raw", ("camera/image_raw", "raw")),
    ("camera/compressed_thing", "auto", ("camera/compressed_thing", "raw")),
])
def test_image_transport_names_topics_as_image_transport(topic: str, transport: str,
                                                         want: tuple[str, str]) -> None:
    assert image_transport(topic, transport) == want


@pytest.mark.parametrize("topic,transport,match", [
    ("camera/image_raw/compressed", "raw", "compressed transport topic"),
    ("depth/image_raw/compressedDepth", "compressed", "compressedDepth transport topic"),
    ("camera/image_raw", "theora", "transport 'theora' unknown"),
])
def test_image_transport_refusals(topic: str, transport: str, match: str) -> None:
    with pytest.raises(StartupError, match=match):
        image_transport(topic, transport)


@pytest.fixture()
def ctx() -> Iterator[Any]:
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=(os.getpid() + 31) % 100 + 101)
    yield context
    rclpy.shutdown(context=context)


def params(values: dict[str, Any]) -> list[Parameter]:
    return [Parameter(k, Parameter.Type.STRING_ARRAY, v) if isinstance(v, list)
            else Parameter(k, value=v) for k, v in values.items()]


def subscribed(node: Any) -> dict[str, list[str]]:
    return dict(node.get_subscriber_names_and_types_by_node(node.get_name(),
                                                             node.get_namespace()))


def test_encoder_subscribes_each_transport_and_the_imu_topics(ctx: Any) -> None:
    from imagebind_ros.ros.encoder_node import EncoderNode

    node = EncoderNode(context=ctx, parameter_overrides=params({
        "preset": "tiny", "modalities": ["vision", "depth", "thermal", "imu"],
        "vision.transport": "compressed", "depth.topic": "/cam/depth/compressedDepth",
        "thermal.topic": "ir/image", "imu.gyro_topic": "cam/gyro/sample",
        "imu.accel_topic": "cam/accel/sample"}))
    try:
        subs = subscribed(node)
    finally:
        node.destroy_node()
    assert subs["/camera/image_raw/compressed"] == ["sensor_msgs/msg/CompressedImage"]
    assert subs["/cam/depth/compressedDepth"] == ["sensor_msgs/msg/CompressedImage"]
    assert subs["/ir/image"] == ["sensor_msgs/msg/Image"]
    assert subs["/cam/gyro/sample"] == subs["/cam/accel/sample"] == ["sensor_msgs/msg/Imu"]
    assert "/imu/data" not in subs


def test_detector_camera_transport_and_audio_type(ctx: Any) -> None:
    from imagebind_ros.ros.detector_node import DetectorNode

    node = DetectorNode(context=ctx, parameter_overrides=params({
        "preset": "tiny", "camera.topic": "front/image_raw/compressed"}))
    try:
        subs = subscribed(node)
    finally:
        node.destroy_node()
    assert subs["/front/image_raw/compressed"] == ["sensor_msgs/msg/CompressedImage"]
    assert subs["/audio"] == ["imagebind_ros/msg/AudioChunk"]


@pytest.mark.parametrize("which", ["encoder", "detector"])
@pytest.mark.parametrize("overrides,match", [
    ({"audio.msg_type": "audio_common_msgs/msg/AudioFrame"}, "audio.msg_type .* unknown"),
    # this venv has no audio_common_msgs (test_sensor_formats_dds builds one for a child)
    ({"audio.msg_type": "audio_common_msgs/msg/AudioStamped"},
     "cannot be loaded.*audio_common_msgs installed"),
])
def test_audio_type_refusals(ctx: Any, which: str, overrides: dict[str, Any],
                             match: str) -> None:
    from imagebind_ros.ros.detector_node import DetectorNode
    from imagebind_ros.ros.encoder_node import EncoderNode

    try:
        import audio_common_msgs  # noqa: F401
        if "loaded" in match:
            pytest.skip("audio_common_msgs is installed here")
    except ImportError:
        pass
    cls = EncoderNode if which == "encoder" else DetectorNode
    extra = {"modalities": ["audio"]} if which == "encoder" else {}
    with pytest.raises(StartupError, match=match):
        cls(context=ctx, parameter_overrides=params({"preset": "tiny", **extra,
                                                     **overrides}))


def test_one_imu_topic_of_two_is_refused(ctx: Any) -> None:
    from imagebind_ros.ros.encoder_node import EncoderNode

    with pytest.raises(StartupError, match="both imu.gyro_topic and imu.accel_topic"):
        EncoderNode(context=ctx, parameter_overrides=params({
            "preset": "tiny", "modalities": ["imu"], "imu.gyro_topic": "gyro/sample"}))
