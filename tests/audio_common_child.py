"""Child process of test_audio_common: builds audio_common_msgs messages with the REAL
generated classes of one variant (on PYTHONPATH from interface_fixture), as that variant's
capture node fills them, passes each through rclpy's serialisation (the type support a
subscriber uses), decodes it with imagebind_ros.decode and prints JSON results, plus the CDR
bytes for the parent's rosbags (bag path) check.

stdin: {"variant": "ros_drivers" | "mgonzs13", "cases": [{"name", ...}]}.
"""

from __future__ import annotations

import json
import struct
import sys
from typing import Any

from rclpy.serialization import deserialize_message, serialize_message

from imagebind_ros import decode as dec


def wire(msg: Any) -> tuple[Any, bytes]:
    blob = serialize_message(msg)
    return deserialize_message(blob, type(msg)), blob


def ros_drivers(case: dict) -> tuple[Any, Any, bytes, str]:
    from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo

    info = AudioInfo(channels=case["channels"], sample_rate=case["rate"],
                     sample_format=case["sample_format"], bitrate=192,
                     coding_format=case["coding_format"])
    code = {"S16LE": "<h", "S32LE": "<i", "F32LE": "<f"}[case["sample_format"]]
    data = b"".join(struct.pack(code, v) for v in case["values"])
    audio = AudioData(data=data)  # audio_capture: memcpy of the GStreamer buffer
    if case["stamped"]:
        msg = AudioDataStamped(audio=audio)
        msg.header.stamp.sec, msg.header.stamp.nanosec = 7, 250
        type_name = "audio_common_msgs/msg/AudioDataStamped"
    else:
        msg, type_name = audio, "audio_common_msgs/msg/AudioData"
    info, _ = wire(info)
    msg, blob = wire(msg)
    return msg, dec.read_audio_info(info), blob, type_name


def mgonzs13(case: dict) -> tuple[Any, Any, bytes, str]:
    from audio_common_msgs.msg import AudioStamped

    msg = AudioStamped()  # audio_capturer_node::work()
    msg.header.frame_id = "mic"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 7, 250
    setattr(msg.audio.audio_data, case["field"], case["values"])
    msg.audio.info.format = case["format"]
    msg.audio.info.channels = case["channels"]
    msg.audio.info.chunk = len(case["values"]) // case["channels"]
    msg.audio.info.rate = case["rate"]
    msg, blob = wire(msg)
    return msg, None, blob, "audio_common_msgs/msg/AudioStamped"


def main() -> None:
    spec = json.load(sys.stdin)
    build = {"ros_drivers": ros_drivers, "mgonzs13": mgonzs13}[spec["variant"]]
    out = []
    for case in spec["cases"]:
        msg, info, blob, type_name = build(case)
        row: dict[str, Any] = {"name": case["name"], "cdr": blob.hex(), "type": type_name,
                               "stamp_ns": dec.header_stamp_ns(msg),
                               "class": type(msg).__module__ + "." + type(msg).__name__}
        try:
            sound = dec.decode_audio(msg, info)
            row.update(rate=sound.sample_rate, samples=sound.samples.tolist())
        except dec.DecodeError as e:
            row.update(kind=e.kind, error=str(e))
        out.append(row)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
