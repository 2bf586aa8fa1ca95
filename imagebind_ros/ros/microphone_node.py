"""Microphone node: a sound card (via ``sounddevice``/PortAudio) -> ``AudioChunk`` messages.

16 kHz mono S16LE in 20-ms chunks by default (what the audio encoder wants, so nothing is
resampled downstream). Chunk stamps are the capture time of their first sample, counted
from the sample clock (no jitter between chunks) and re-anchored to the system clock when
they drift apart by more than ``resync_s`` (an overflow lost samples, say).

No input device (servers, CI): one log line, then exit status 1, or, with
``wait_for_device:=true``, a quiet retry every ``retry_period_s`` until one appears.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node

from imagebind_ros.decode import AUDIO_FORMATS
from imagebind_ros.msg import AudioChunk
from imagebind_ros.ros import conversions as cv
from imagebind_ros.ros.diagnostics import (InputCounts, InputDiagnostics, InputSpec,
                                           declare_diagnostics_parameters)
from imagebind_ros.ros.node_utils import (StartupError, declare, fault_limiter, run_node,
                                          sensor_qos)

NODE_NAME = "microphone_node"
NS = 1_000_000_000


def find_input_device(sd: Any, device: str) -> tuple[Any, str]:
    """(device for InputStream, its name); ``device`` is "" (default), an index or part of a
    name. Raises ``LookupError`` with the reason when there is no such input device."""
    try:
        devices = list(sd.query_devices())
    except Exception as e:  # PortAudio raises its own error types
        raise LookupError(f"cannot list audio devices ({e})") from None
    inputs = [(i, d) for i, d in enumerate(devices) if d.get("max_input_channels", 0) > 0]
    if not inputs:
        raise LookupError("no audio input device (PortAudio lists "
                          f"{len(devices)} device(s), none with input channels)")
    if device == "":
        try:
            d = sd.query_devices(kind="input")
            return None, d["name"]
        except Exception:
            i, d = inputs[0]
            return i, d["name"]
    if device.isdigit():
        match = [(i, d) for i, d in inputs if i == int(device)]
    else:
        match = [(i, d) for i, d in inputs if device.lower() in d["name"].lower()]
    if not match:
        names = ", ".join(f"{i}: {d['name']}" for i, d in inputs)
        raise LookupError(f"no input device matches {device!r} (inputs: {names})")
    return match[0][0], match[0][1]["name"]


class MicrophoneNode(Node):
    """Publishes a sound card's input as ``AudioChunk`` messages."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)

        def d(name: str, default: Any, text: str) -> Any:
            return declare(self, name, default, text, read_only=True)

        self.device = str(d("device", "", "input device: empty = default, an index, or part "
                            "of its name"))
        self.sample_rate = d("sample_rate", 16000, "sample rate, Hz")
        self.channels = d("channels", 1, "channels")
        self.chunk = max(1, round(d("chunk_s", 0.02, "chunk length, s") * self.sample_rate))
        self.sample_format = d("sample_format", "S16LE", "S16LE or F32LE")
        self.frame_id = d("frame_id", "microphone", "frame_id of the chunks")
        self.resync_ns = int(d("resync_s", 0.1, "re-anchor stamps to the clock beyond this "
                               "drift, s") * NS)
        wait = d("wait_for_device", False, "no device: wait for one instead of exiting")
        retry = d("retry_period_s", 5.0, "seconds between device checks while waiting")
        topic = d("topic", "audio", "output topic")
        if self.sample_format not in AUDIO_FORMATS:
            raise StartupError(f"sample_format must be one of {list(AUDIO_FORMATS)}")
        if self.sample_rate <= 0 or self.channels <= 0:
            raise StartupError("sample_rate and channels must be positive")
        self.pub = self.create_publisher(AudioChunk, topic, sensor_qos(50))
        self._warn = fault_limiter(self)
        self._stream: Any = None
        self._next_ns: int | None = None
        self.published = 0
        self.diagnostics = InputDiagnostics(
            self, declare_diagnostics_parameters(self, []),
            {"audio": InputSpec(topic, self.sample_rate / self.chunk)},
            lambda: {"audio": InputCounts(self.published, bad=self._status_count())},
            lambda: ((DiagnosticStatus.OK, "streaming") if self._stream is not None else
                     (DiagnosticStatus.ERROR, "no input device (waiting for one)")),
            None, kind="output", task="device")
        try:
            import sounddevice
        except OSError as e:  # PortAudio library missing
            raise StartupError(f"sounddevice unusable ({e}); install libportaudio2") from None
        self._sd = sounddevice
        why = self._try_open()
        if why is not None:
            if not wait:
                raise StartupError(f"{why} (set wait_for_device:=true to wait for one)")
            self.get_logger().warning(f"{why}; waiting for one (checking every {retry:g} s)")
            self._retry = self.create_timer(retry, self._retry_open)

    def _try_open(self) -> str | None:
        """Open and start the input stream; None on success, else why not."""
        try:
            device, name = find_input_device(self._sd, self.device)
            stream = self._sd.InputStream(samplerate=self.sample_rate, channels=self.channels,
                                          dtype="float32", blocksize=self.chunk,
                                          device=device, callback=self._on_audio)
            stream.start()
        except (LookupError, self._sd.PortAudioError) as e:
            return f"microphone: {e}"
        self._stream = stream
        self.get_logger().info(f"microphone: {name!r} at {self.sample_rate} Hz x "
                               f"{self.channels} ch, {self.chunk}-frame chunks")
        return None

    def _retry_open(self) -> None:
        if self._try_open() is None:
            self._retry.cancel()

    def _status_count(self) -> int:
        """PortAudio status flags raised (overflows ...), as the fault limiter counted them."""
        return sum(self._warn.counts().get("status", {}).values())

    def _on_audio(self, data: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio thread: stamp and publish one chunk (stop quietly once ROS is down)."""
        if not self.context.ok():
            raise self._sd.CallbackStop
        now = self.get_clock().now().nanoseconds
        first = now - frames * NS // self.sample_rate  # the clock's view of the first sample
        if status:
            self._warn.warn("status", f"microphone: {status}")
        if self._next_ns is None or abs(self._next_ns - first) > self.resync_ns:
            self._next_ns = first
        header = cv.make_header(self._next_ns, self.frame_id)
        msg = cv.numpy_to_audio_chunk(data.copy(), self.sample_rate, header, self.sample_format)
        try:
            self.pub.publish(msg)
        except Exception:
            if self.context.ok():
                raise
            raise self._sd.CallbackStop from None  # shut down between the check and here
        self._next_ns += frames * NS // self.sample_rate
        self.published += 1

    def destroy_node(self) -> None:
        if self._stream is not None:
            self._stream.abort()  # drop what is buffered: nobody will publish it
            self._stream.close()
        super().destroy_node()


def main(argv: Sequence[str] | None = None) -> int:
    """``ros2 run imagebind_ros microphone_node`` / ``imagebind-ros-microphone``."""
    return run_node(MicrophoneNode, NODE_NAME, argv)
