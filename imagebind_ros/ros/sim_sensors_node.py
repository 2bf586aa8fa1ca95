"""Simulated sensors: camera, depth, thermal, audio and IMU from the SYNTHETIC world or
from files.

Publishes what real drivers would, at their rates, so the node graph runs anywhere:
``sensor_msgs/Image`` camera (rgb8/bgr8, 30 Hz), aligned depth (16UC1 mm or 32FC1 m) and
thermal (mono16 0.01 K counts or 32FC1 deg C) frames, ``AudioChunk`` 20-ms chunks of 16 kHz
mono S16LE, and ``sensor_msgs/Imu`` at 200 Hz. The scene's sounding (and shaking) class
changes every ``switch_seconds``, so labels downstream should change with it.
With ``source: files`` the node plays sensor files instead (``imagebind_ros.playback``):
the i-th file of each ``files.<modality>`` list is scene i, shown for ``switch_seconds``;
images are published as read (encoding from the file: rgb8, 16UC1/32FC1 depth,
mono8/mono16/32FC1 thermal), sounds down-mixed and resampled to ``audio.sample_rate``.

Stamps are exact sensor times on a grid that starts when the node starts: frame k at
``t0 + k / rate``, audio chunk j at its first sample, IMU sample i at ``t0 + i / rate``.
Timers publish everything that is due, so a busy CPU delays messages but never skips audio or
IMU samples (a late camera frame is skipped, as a real camera would).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, Imu

from imagebind_ros.msg import AudioChunk
from imagebind_ros.playback import FilePlayback, PlaybackError
from imagebind_ros.ros import conversions as cv
from imagebind_ros.ros.diagnostics import (InputCounts, InputDiagnostics, InputSpec,
                                           declare_diagnostics_parameters)
from imagebind_ros.ros.node_utils import StartupError, declare, run_node, sensor_qos
from imagebind_ros.synthetic import SyntheticWorld, depth_to_mm, thermal_to_mono16

NODE_NAME = "sim_sensors_node"
MODALITIES = ("vision", "depth", "thermal", "audio", "imu")
TOPICS = {"vision": "camera/image_raw", "depth": "depth/image_raw",
          "thermal": "thermal/image_raw", "audio": "audio", "imu": "imu/data"}
FRAMES = {"vision": "camera_optical_frame", "depth": "camera_optical_frame",
          "thermal": "thermal_optical_frame", "audio": "microphone", "imu": "imu_link"}
QUEUE = {"audio": 50, "imu": 200}  # deeper queues for the high-rate streams
NS = 1_000_000_000


class SimSensorsNode(Node):
    """Publishes a SyntheticWorld sensor stream in real time."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)

        def d(name: str, default: Any, text: str) -> Any:
            return declare(self, name, default, text, read_only=True)

        self.publish_modalities = tuple(d("publish", list(MODALITIES),
                                          "modalities to publish"))
        unknown = set(self.publish_modalities) - set(MODALITIES)
        if unknown:
            raise StartupError(f"unknown modalities in 'publish': {sorted(unknown)}")
        seed = d("seed", 0, "random seed of the synthetic world and stream")
        switch = d("switch_seconds", 4.0, "seconds before the sounding class changes")
        distractors = d("distractors", 2, "extra (silent) objects in each camera frame "
                        "(camera_mode scene)")
        self.camera_mode = d("camera_mode", "scene", "scene: the stream's scene (sounding "
                             "object + distractors, fresh noise per frame); object: one "
                             "frame-filling object of the sounding class, static per segment "
                             "(as the training renders)")
        if self.camera_mode not in ("scene", "object"):
            raise StartupError(f"camera_mode must be scene or object, got {self.camera_mode!r}")
        classes = d("num_classes", 8, "number of synthetic classes (2..8)")
        width, height = d("width", 640, "image width"), d("height", 480, "image height")
        self.camera_rate = d("camera_rate_hz", 30.0, "camera/depth/thermal frame rate")
        self.sample_rate = d("audio.sample_rate", 16000, "audio sample rate, Hz")
        self.chunk = max(1, round(d("audio.chunk_s", 0.02, "audio chunk length, s")
                                  * self.sample_rate))
        self.imu_rate = d("imu.rate_hz", 200.0, "IMU sample rate, Hz")
        self.camera_encoding = d("vision.encoding", "rgb8", "rgb8 or bgr8")
        self.depth_encoding = d("depth.encoding", "16UC1", "16UC1 (mm) or 32FC1 (m)")
        self.thermal_encoding = d("thermal.encoding", "mono16",
                                  "mono16 (0.01 K counts) or 32FC1 (deg C)")
        for name, value, allowed in (("vision.encoding", self.camera_encoding, ("rgb8", "bgr8")),
                                     ("depth.encoding", self.depth_encoding, ("16UC1", "32FC1")),
                                     ("thermal.encoding", self.thermal_encoding,
                                      ("mono16", "32FC1"))):
            if value not in allowed:
                raise StartupError(f"{name} must be one of {allowed}, got {value!r}")
        self.frames = {m: d(f"{m}.frame_id", FRAMES[m], f"frame_id of {m}") for m in MODALITIES}
        source = d("source", "synthetic", "synthetic: the SYNTHETIC world; files: play the "
                   "files.<modality> lists")
        files = {m: d(f"files.{m}", Parameter.Type.STRING_ARRAY, f"{m} files, directories or "
                      f"glob patterns; entry i of every list is scene i (source files)")
                 for m in MODALITIES}
        self.scene_labels = list(d("files.labels", Parameter.Type.STRING_ARRAY,
                                   "optional class of scene i, for the runner's truth column"))
        self.playback: FilePlayback | None = None
        self.world: SyntheticWorld | None = None
        if source == "files":
            try:
                self.playback = FilePlayback({m: f for m, f in files.items() if f}, switch,
                                             self.sample_rate, self.imu_rate)
            except PlaybackError as e:
                raise StartupError(str(e)) from None
            self.publish_modalities = tuple(m for m in self.publish_modalities
                                            if m in self.playback.modalities)
            if not self.publish_modalities:
                raise StartupError("source files: no files.<modality> list has files for the "
                                   "modalities in 'publish'")
            self.stream: Any = self.playback
        elif source == "synthetic":
            try:
                self.world = SyntheticWorld(num_classes=classes, seed=seed,
                                            sample_rate=self.sample_rate,
                                            imu_rate=self.imu_rate)
                self.stream = self.world.stream(seed, switch, (height, width), distractors)
            except ValueError as e:
                raise StartupError(f"synthetic world: {e}") from None
        else:
            raise StartupError(f"source must be synthetic or files, got {source!r}")
        self.pubs = {m: self.create_publisher(
            {"audio": AudioChunk, "imu": Imu}.get(m, Image),
            d(f"{m}.topic", TOPICS[m], f"output topic for {m}"), sensor_qos(QUEUE.get(m, 5)))
            for m in self.publish_modalities}
        self._object_frames: tuple[int, Any] = (-1, None)
        self.t0_ns = self.get_clock().now().nanoseconds
        self._next = {"camera": 0, "audio": 0, "imu": 0}
        self.published = {m: 0 for m in self.publish_modalities}
        rates = {"audio": self.sample_rate / self.chunk, "imu": self.imu_rate}
        self.diagnostics = InputDiagnostics(
            self, declare_diagnostics_parameters(self, []),
            {m: InputSpec(self.pubs[m].topic_name, rates.get(m, self.camera_rate))
             for m in self.publish_modalities},
            lambda: {m: InputCounts(n) for m, n in self.published.items()},
            lambda: (DiagnosticStatus.OK, f"source: {source}"), None, kind="output",
            task="source")
        if set(self.publish_modalities) & {"vision", "depth", "thermal"}:
            self.create_timer(1.0 / self.camera_rate / 2, self._camera_tick)
        if "audio" in self.publish_modalities:
            self.create_timer(self.chunk / self.sample_rate / 2, self._audio_tick)
        if "imu" in self.publish_modalities:
            self.create_timer(0.01, self._imu_tick)
        if self.world is not None:
            self.get_logger().info(
                f"SYNTHETIC sensors: {', '.join(self.publish_modalities)}; classes "
                f"{', '.join(self.world.classes)}; the sounding class changes every "
                f"{switch:g} s")
        else:
            self.get_logger().info(
                f"playing files: {', '.join(self.publish_modalities)}; the scene changes "
                f"every {switch:g} s")

    def _elapsed_ns(self) -> int:
        return self.get_clock().now().nanoseconds - self.t0_ns

    def truth(self, stamp_ns: int, window_s: float = 0.0
              ) -> tuple[str, tuple[str, ...]] | None:
        """(class sounding for most of the ``window_s`` before this stamp, classes visible in
        the camera frame of this stamp): what a right zero-shot answer is; None when unknown
        (files without ``files.labels``)."""
        t = max(0.0, (stamp_ns - self.t0_ns) / NS)
        times = np.linspace(max(0.0, t - window_s), t, 41)
        if self.playback is not None:
            if not self.scene_labels:
                return None
            labels = self.scene_labels
            ks = [self.playback.scene_index(x) % len(labels) for x in times]
            return labels[int(np.bincount(ks).argmax())], (labels[ks[-1]],)
        assert self.world is not None
        names = self.world.classes
        sounding = np.bincount([self.stream.class_at(x) for x in times]).argmax()
        return names[int(sounding)], tuple(names[int(c)] for c in self._frame(t).class_ids)

    def _frame(self, t: float) -> Any:
        """The camera/depth/thermal frame at stream time t (see camera_mode)."""
        assert self.world is not None
        if self.camera_mode == "scene":
            return self.stream.camera(t)
        k = int(t // self.stream.switch_seconds)
        if self._object_frames[0] != k:
            rng = np.random.default_rng([self.world.seed, 5, k])
            self._object_frames = (k, self.world.render(self.stream.class_at(t), rng,
                                                        size=self.stream.size))
        return self._object_frames[1]

    def _camera_tick(self) -> None:
        k = int(self._elapsed_ns() * self.camera_rate // NS)
        if k < self._next["camera"]:
            return
        self._next["camera"] = k + 1
        stamp = self.t0_ns + round(k * NS / self.camera_rate)
        if self.playback is not None:
            for m in ("vision", "depth", "thermal"):
                if m in self.pubs:
                    pic = self.playback.picture(m, k / self.camera_rate)
                    self.pubs[m].publish(cv.numpy_to_image(
                        pic.array, pic.encoding, cv.make_header(stamp, self.frames[m])))
                    self.published[m] += 1
            return
        scene = self._frame(k / self.camera_rate)
        for m in ("vision", "depth", "thermal"):
            if m not in self.pubs:
                continue
            header = cv.make_header(stamp, self.frames[m])
            if m == "vision":
                msg = cv.numpy_to_image(scene.image, self.camera_encoding, header)
            elif m == "depth":
                depth = depth_to_mm(scene.depth_m) if self.depth_encoding == "16UC1" else \
                    scene.depth_m
                msg = cv.numpy_to_image(depth, self.depth_encoding, header)
            else:
                temp = thermal_to_mono16(scene.thermal) if self.thermal_encoding == "mono16" \
                    else scene.thermal
                msg = cv.numpy_to_image(temp, self.thermal_encoding, header)
            self.pubs[m].publish(msg)
            self.published[m] += 1

    def _audio_tick(self) -> None:
        due = self._elapsed_ns() * self.sample_rate // NS  # samples captured so far
        while (self._next["audio"] + 1) * self.chunk <= due:
            j = self._next["audio"]
            start = j * self.chunk
            samples = self.stream.audio(start, self.chunk)
            header = cv.make_header(self.t0_ns + start * NS // self.sample_rate,
                                    self.frames["audio"])
            self.pubs["audio"].publish(cv.numpy_to_audio_chunk(samples, self.sample_rate,
                                                               header))
            self.published["audio"] += 1
            self._next["audio"] = j + 1

    def _imu_tick(self) -> None:
        due = int(self._elapsed_ns() * self.imu_rate // NS) + 1  # samples with stamp <= now
        first = self._next["imu"]
        if due <= first:
            return
        data, times = self.stream.imu(first, due - first)
        for row, t in zip(data, times):
            header = cv.make_header(self.t0_ns + round(float(t) * NS), self.frames["imu"])
            self.pubs["imu"].publish(cv.numpy_to_imu(row, header))
        self.published["imu"] += due - first
        self._next["imu"] = due


def main(argv: Sequence[str] | None = None) -> int:
    """``ros2 run imagebind_ros sim_sensors_node`` / ``imagebind-ros-sim-sensors``."""
    return run_node(SimSensorsNode, NODE_NAME, argv)
