"""Child process of test_sensor_formats_dds: two encoder nodes sharing one model, plus a
stand-in for mgonzs13/audio_common's capturer, in one process and one executor.

- ``/raw/encoder_node``: raw ``Image`` topics; audio as ``audio_common_msgs/AudioStamped``;
  IMU from RealSense-style separate ``gyro`` and ``accel`` topics.
- ``/comp/encoder_node``: the image_transport topics ``camera/image_raw/compressed``,
  ``depth/image_raw/compressedDepth`` and ``thermal/image_raw/compressed``.
- the capturer: each ``imagebind_ros/AudioChunk`` (S16LE mono) the test publishes on
  ``/raw/mic_in`` is republished on ``/raw/audio`` as audio_capturer_node fills an
  AudioStamped (paInt16 samples in ``int16_data``, format, channels, rate, chunk), with the
  same header. audio_common_msgs comes from the test fixture (``interface_fixture``).

argv: checkpoint path. Runs until SIGTERM/SIGINT (rclpy's handlers end the spin).
"""

from __future__ import annotations

import sys

import numpy as np
import rclpy
from audio_common_msgs.msg import AudioStamped
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.parameter import Parameter

from imagebind_ros.msg import AudioChunk
from imagebind_ros.ros.encoder_node import EncoderNode
from imagebind_ros.ros.node_utils import sensor_qos, use_large_data_profile


def params(values: dict) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in values.items()]


def main() -> None:
    use_large_data_profile()
    rclpy.init()
    common = {"checkpoint": sys.argv[1], "stats_period_s": 0.0, "vision.max_rate_hz": 0.0,
              "depth.max_rate_hz": 0.0, "thermal.max_rate_hz": 0.0}
    raw = EncoderNode(namespace="raw", parameter_overrides=params({
        **common, "audio.msg_type": "audio_common_msgs/msg/AudioStamped",
        "imu.gyro_topic": "gyro", "imu.accel_topic": "accel"}))
    comp = EncoderNode(namespace="comp", parameter_overrides=params({
        **common, "vision.transport": "compressed", "depth.transport": "compressedDepth",
        "thermal.transport": "compressed"}) + [
        Parameter("modalities", Parameter.Type.STRING_ARRAY, ["vision", "depth", "thermal"])])
    capturer = rclpy.create_node("audio_capturer_node", namespace="raw")
    pub = capturer.create_publisher(AudioStamped, "audio", sensor_qos(50))

    def relay(chunk: AudioChunk) -> None:
        msg = AudioStamped(header=chunk.header)
        pcm = np.frombuffer(bytes(chunk.data), "<i2")
        msg.audio.audio_data.int16_data = pcm.tolist()
        msg.audio.info.format, msg.audio.info.channels = 8, 1  # paInt16
        msg.audio.info.rate, msg.audio.info.chunk = chunk.sample_rate, pcm.size
        pub.publish(msg)

    capturer.create_subscription(AudioChunk, "mic_in", relay, sensor_qos(50))
    executor = SingleThreadedExecutor()
    for node in (raw, comp, capturer):
        executor.add_node(node)
    print("sensor graph ready", flush=True)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in (raw, comp, capturer):
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
