"""Child process of test_sensor_formats_dds: two encoder nodes sharing one model, plus a
stand-in for mgonzs13/audio_common's capturer, in one process and one executor.

- ``/raw/encoder_node``: raw ``Image`` topics; audio as ``audio_common_msgs/AudioStamped``;
  IMU from RealSense-style separate ``gyro`` and ``accel`` topics.
- ``/comp/encoder_node``: the image_transport topics ``camera/image_raw/compressed``,
  ``depth/image_raw/compressedDepth`` and ``thermal/image_raw/compressed``; IMU on one
  topic, ``imu/data``.
- ``/comp/detector_node``: the camera's compressed topic, audio from ``/raw/audio`` as the
  variant's type.
- the capturer: each ``imagebind_ros/AudioChunk`` (S16LE mono) the test publishes on
  ``/raw/mic_in`` is republished on ``/raw/audio`` with the same header, as the variant's
  capture node fills it: mgonzs13's audio_capturer_node an AudioStamped (paInt16 samples in
  ``int16_data``, format, channels, rate, chunk); ros-drivers' audio_capture (format:=wave)
  an AudioDataStamped of the raw bytes, its format on ``audio_info``. audio_common_msgs
  comes from the test fixture (``interface_fixture``).

argv: checkpoint path, variant (mgonzs13 | ros_drivers). Runs until SIGTERM/SIGINT
(rclpy's handlers end the spin).
"""

from __future__ import annotations

import sys

import numpy as np
import rclpy
import audio_common_msgs.msg as acm
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.parameter import Parameter

from imagebind_ros.msg import AudioChunk
from imagebind_ros.ros.detector_node import DetectorNode
from imagebind_ros.ros.encoder_node import EncoderNode
from imagebind_ros.ros.node_utils import sensor_qos, use_large_data_profile


def params(values: dict) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in values.items()]


def main() -> None:
    use_large_data_profile()
    rclpy.init()
    variant = sys.argv[2]
    msg_type = "AudioStamped" if variant == "mgonzs13" else "AudioDataStamped"
    common = {"checkpoint": sys.argv[1], "stats_period_s": 0.0, "warn_period_s": 1.0,
              "vision.max_rate_hz": 0.0,
              "depth.max_rate_hz": 0.0, "thermal.max_rate_hz": 0.0}
    raw = EncoderNode(namespace="raw", parameter_overrides=params({
        **common, "audio.msg_type": f"audio_common_msgs/msg/{msg_type}",
        "imu.gyro_topic": "gyro", "imu.accel_topic": "accel"}))
    comp = EncoderNode(namespace="comp", parameter_overrides=params({
        **common, "vision.transport": "compressed", "depth.transport": "compressedDepth",
        "thermal.transport": "compressed"}) + [
        Parameter("modalities", Parameter.Type.STRING_ARRAY,
                  ["vision", "depth", "thermal", "imu"])])
    detector = DetectorNode(namespace="comp", parameter_overrides=params({
        "checkpoint": sys.argv[1], "camera.transport": "compressed", "max_rate_hz": 0.0,
        "audio.msg_type": f"audio_common_msgs/msg/{msg_type}", "audio.topic": "/raw/audio",
        "audio.info_topic": "/raw/audio_info", "scales": [0.3], "stride": 0.5,
        "publish_image": False, "publish_heatmap": False}))
    capturer = rclpy.create_node("audio_capturer_node", namespace="raw")
    pub = capturer.create_publisher(getattr(acm, msg_type), "audio", sensor_qos(50))
    info_pub = capturer.create_publisher(acm.AudioInfo, "audio_info", 1)

    def relay(chunk: AudioChunk) -> None:
        if variant == "ros_drivers":
            info_pub.publish(acm.AudioInfo(channels=1, sample_rate=chunk.sample_rate,
                                           sample_format="S16LE", bitrate=0,
                                           coding_format="wave"))
            pub.publish(acm.AudioDataStamped(header=chunk.header,
                                             audio=acm.AudioData(data=bytes(chunk.data))))
            return
        msg = acm.AudioStamped(header=chunk.header)
        pcm = np.frombuffer(bytes(chunk.data), "<i2")
        msg.audio.audio_data.int16_data = pcm.tolist()
        msg.audio.info.format, msg.audio.info.channels = 8, 1  # paInt16
        msg.audio.info.rate, msg.audio.info.chunk = chunk.sample_rate, pcm.size
        pub.publish(msg)

    capturer.create_subscription(AudioChunk, "mic_in", relay, sensor_qos(50))
    executor = SingleThreadedExecutor()
    nodes = (raw, comp, detector, capturer)
    for node in nodes:
        executor.add_node(node)
    print("sensor graph ready", flush=True)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in nodes:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
