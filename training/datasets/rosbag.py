"""Kind ``rosbag``: camera frames of a ROS 2 bag paired by time with another topic, read
with ``rosbags`` (no ROS install; sqlite3 and MCAP storage alike). Every message is decoded
by ``imagebind_ros.decode``, as the nodes decode it live."""

from __future__ import annotations

import functools
import logging
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from imagebind_ros import decode as dec
from imagebind_ros import modalities
from imagebind_ros.decode import Sound
from imagebind_ros.imu_combine import combine_imu
from imagebind_ros.modalities import ImuSamples

from ..data import Transforms, register_eval_dataset, register_pair_dataset
from .common import PairEval, RawPairs, eval_modality, existing_path, limited

log = logging.getLogger(__name__)
# X topics of images (paired with the nearest frame) rather than streams (windowed)
FRAMES = modalities.image_modalities()

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
# Topic types each X modality may have; audio_common's come with the bag's definitions.
X_TYPES = {"depth": IMAGE_TYPES, "thermal": IMAGE_TYPES, "imu": ("sensor_msgs/msg/Imu",),
           "audio": dec.AUDIO_MSG_TYPES}
MSG_DIR = Path(__file__).resolve().parents[2] / "msg"


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """rosbags' ROS 2 message types plus ours (AudioChunk, from msg/AudioChunk.msg)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(getattr(Stores, "ROS2_KILTED", Stores.LATEST))
    msg = MSG_DIR / "AudioChunk.msg"
    if msg.is_file():
        store.register(get_types_from_msg(msg.read_text(encoding="utf-8"), dec.AUDIO_CHUNK))
    return store


def _stamp(msg: Any, bag_ns: int) -> float:
    """Header stamp in seconds; the bag's receive time when there is no header or it is
    unset (audio_common's AudioData)."""
    ns = dec.header_stamp_ns(msg) or bag_ns
    return ns // 1_000_000_000 + (ns % 1_000_000_000) * 1e-9  # as sec + nanosec * 1e-9


def frame_reader(modality: str) -> Callable[[Any], Any]:
    """An Image/CompressedImage -> the raw input of ``modality`` ("vision": RGB uint8), by
    ``decode`` and the modality's role view, exactly as the encoder node reads it."""
    if modality == "vision":
        return lambda msg: dec.as_rgb8(dec.decode_picture(msg))
    spec = modalities.spec(modality)
    return lambda msg: spec.picture_to_raw(dec.decode_picture(msg))


class RosbagPairs(RawPairs):
    """Camera frames of ``image_topic`` paired with ``x_topic`` of the same bag by time.

    Frames (depth, thermal: sensor_msgs Image/CompressedImage, any encoding or transport
    ``decode`` reads): the nearest message within ``tolerance`` seconds. Streams (audio:
    our AudioChunk or audio_common's messages, ros-drivers' AudioData read as the bag's
    ``audio_info`` topic says; IMU: sensor_msgs Imu, or with ``accel_topic`` RealSense's
    separate gyro (``x_topic``) and accel topics combined onto the gyro stamps): the
    ``window`` seconds ending at the frame (default: the model's audio clips / IMU window),
    kept only when the stream covers the window (no gap longer than ``tolerance`` at either
    end). ``stride`` keeps every k-th frame. Every message of both topics is checked while
    the dataset is built (frames: metadata and file headers, and one full decode per
    encoding or format), so an unsupported one fails here with one message, not at a batch.
    The paired frames are held in memory as serialized bytes; for bags larger than RAM,
    export them to webdataset shards.
    """

    KEYS = frozenset({"path", "image_topic", "x_topic", "accel_topic", "info_topic",
                      "tolerance", "window", "stride", "limit"})

    def __init__(self, spec: dict[str, Any], modality: str, transforms: Transforms) -> None:
        super().__init__(spec, modality, transforms, self.KEYS)
        from rosbags.highlevel import AnyReader
        path = existing_path(spec, "path")
        itopic, xtopic = spec.get("image_topic"), spec.get("x_topic")
        if not itopic or not xtopic:
            raise ValueError("rosbag dataset needs image_topic and x_topic")
        self.tol = float(spec.get("tolerance", 0.05))
        self.window = float(spec.get("window") or self._default_window(modality))
        frames: list[tuple[float, bytes, str]] = []
        with AnyReader([path], default_typestore=typestore()) as reader:
            topics = {c.topic: c for c in reader.connections}
            want, self._info_topic = self._topics(spec, topics, modality)
            self._checked: set[tuple[str, str]] = set()
            xs: list[tuple[float, Any]] = []
            extra: dict[str, list[tuple[int, Any]]] = {}
            conns = [c for c in reader.connections if c.topic in want]
            for conn, ns, raw in reader.messages(connections=conns):
                where = f"{path}: {conn.topic} message at {ns * 1e-9:.3f}"
                try:
                    msg = reader.deserialize(raw, conn.msgtype)
                    t = _stamp(msg, ns)
                    if conn.topic == itopic:
                        self._check_frame(msg, "vision")
                        frames.append((t, bytes(raw), conn.msgtype))
                    elif conn.topic == xtopic and modality in FRAMES:
                        self._check_frame(msg, modality)
                        xs.append((t, (bytes(raw), conn.msgtype)))
                    else:
                        extra.setdefault(conn.topic, []).append((ns, msg))
                except (ValueError, KeyError) as e:  # DecodeError and rosbags' errors
                    raise ValueError(f"{where}: {e}") from None
            if modality not in FRAMES:
                xs = self._streams(spec, extra, modality, str(path))
        frames.sort(key=lambda f: f[0])
        xs.sort(key=lambda x: x[0])
        frames = frames[::max(1, int(spec.get("stride", 1)))]
        self.xt = np.array([t for t, _ in xs])
        self.xv = [v for _, v in xs]
        self.items: list[tuple[float, bytes, str, Any]] = []
        for t, raw, mtype in frames:
            sel = self._pair(t)
            if sel is not None:
                self.items.append((t, raw, mtype, sel))
        skipped = len(frames) - len(self.items)
        if skipped:
            log.warning("%s: %d of %d frames have no %s data within the tolerance/window and "
                        "are skipped", path, skipped, len(frames), modality)
        self.items = limited(self.items, spec)
        self._id = (f"rosbag:{path.resolve()}|{itopic}|{xtopic}|{spec.get('accel_topic')}|"
                    f"{self.tol}|{self.window}")

    @staticmethod
    def _topics(spec: dict[str, Any], topics: dict[str, Any], modality: str
                ) -> tuple[set[str], str]:
        """The topics to read (their types checked: a ValueError naming what is wrong) and
        the AudioInfo topic ("" unless the audio is ros-drivers' AudioData)."""
        need = {spec["image_topic"]: IMAGE_TYPES, spec["x_topic"]: X_TYPES[modality]}
        if spec.get("accel_topic"):
            if modality != "imu":
                raise ValueError("accel_topic is for modality imu (x_topic = the gyro topic)")
            need[spec["accel_topic"]] = X_TYPES["imu"]
        for topic, ok in need.items():
            if topic not in topics:
                raise ValueError(f"{spec['path']}: no topic {topic}; topics: {sorted(topics)}")
            if topics[topic].msgtype not in ok:
                raise ValueError(f"{spec['path']}: {topic} has type {topics[topic].msgtype}; "
                                 f"it must be {' or '.join(ok)}")
        info = ""
        if topics[spec["x_topic"]].msgtype in dec.NEEDS_AUDIO_INFO:
            info = spec.get("info_topic") or next(
                (t for t, c in topics.items() if c.msgtype == dec.AUDIO_INFO), None)
            if info not in topics or topics[info].msgtype != dec.AUDIO_INFO:
                raise ValueError(f"{spec['path']}: {spec['x_topic']} is audio_common AudioData, "
                                 "whose format is on an AudioInfo topic; the bag has none "
                                 "(record audio_info) or set info_topic")
            need[info] = (dec.AUDIO_INFO,)
        return set(need), info

    def _check_frame(self, msg: Any, modality: str) -> None:
        """Metadata and headers of every frame; one full decode per format (a frame of an
        encoding this role refuses fails here, not in a batch)."""
        dec.check_picture(msg)
        fmt = msg.format if dec.is_compressed(msg) else msg.encoding
        if (modality, fmt) not in self._checked:
            frame_reader(modality)(msg)
            self._checked.add((modality, fmt))

    def _streams(self, spec: dict[str, Any], msgs: dict[str, list[tuple[int, Any]]],
                 modality: str, path: str) -> list[tuple[float, Any]]:
        """Audio chunks -> [(start s, (samples, rate))]; IMU -> [(s, (6,) sample)]."""
        xtopic = spec["x_topic"]
        xs: list[tuple[float, Any]] = []
        if modality == "audio":
            infos = msgs.get(self._info_topic, [])
            for ns, msg in msgs.get(xtopic, []):
                info = next((dec.read_audio_info(m) for n, m in reversed(infos) if n <= ns),
                            dec.read_audio_info(infos[0][1]) if infos else None)
                try:
                    sound = dec.decode_audio(msg, info)
                except dec.DecodeError as e:
                    raise ValueError(f"{path}: {xtopic} message at {ns * 1e-9:.3f}: {e}") from None
                xs.append((_stamp(msg, ns), (sound.samples, sound.sample_rate)))
            return xs
        if not spec.get("accel_topic"):
            for ns, msg in msgs.get(xtopic, []):
                try:
                    sample, _ = dec.decode_imu(msg)
                except dec.DecodeError as e:
                    raise ValueError(f"{path}: {xtopic} message at {ns * 1e-9:.3f}: {e}") from None
                xs.append((_stamp(msg, ns), tuple(sample)))
            try:  # a field the topic never fills (RealSense gyro/sample alone)
                dec.check_imu_window(np.array([v for _, v in xs]).reshape(-1, 6))
            except dec.DecodeError as e:
                raise ValueError(f"{path}: {xtopic}: {e}") from None
            return xs
        parts = {}
        for field, topic in (("gyro", xtopic), ("accel", spec["accel_topic"])):
            samples = [dec.read_imu(m) for _, m in msgs.get(topic, [])]
            values = [getattr(s, field) for s in samples]
            if any(v is None for v in values):
                raise ValueError(f"{path}: {topic} has messages without {field} (REP 145 "
                                 "covariance[0] == -1: not provided)")
            parts[field] = (np.array([s.stamp_ns for s in samples], np.int64),
                            np.array(values, np.float64).reshape(-1, 3))
        stamps, combined = combine_imu(*parts["gyro"], *parts["accel"],
                                       max_gap_ns=int(self.tol * 1e9))
        return [(t * 1e-9, tuple(v)) for t, v in zip(stamps, combined)]

    def _default_window(self, modality: str) -> float:
        if modality == "audio":
            a = self.transforms.config.modality("audio")
            return float(a.clip_duration) * int(a.clips_per_video)
        if modality == "imu":
            return float(self.transforms.config.modality("imu").window_seconds)
        return 0.0

    def _pair(self, t: float) -> Any:
        """The X data of the frame at ``t``, or None if there is none close enough."""
        xt = self.xt
        if not len(xt):
            return None
        if self.modality in FRAMES:
            i = int(np.argmin(np.abs(xt - t)))
            return self.xv[i] if abs(xt[i] - t) <= self.tol else None
        lo = t - self.window
        if self.modality == "imu":
            # from the last sample at or before the window start (interpolation needs it)
            i0, i1 = max(0, bisect_right(xt, lo) - 1), bisect_right(xt, t + 1e-9)
            if i1 - i0 < 2 or xt[i0] > lo + self.tol or xt[i1 - 1] < t - self.tol:
                return None
            if np.diff(xt[i0:i1]).max() > self.tol:
                return None  # dropped samples inside the window
            return ImuSamples(np.array(self.xv[i0:i1]), xt[i0:i1].copy())
        # audio chunks (stamp = time of the chunk's first sample): the round(window * rate)
        # samples ending at the one nearest the frame time
        parts, rate = [], None
        for i in range(max(0, bisect_left(xt, lo) - 1), bisect_right(xt, t)):
            samples, sr = self.xv[i]
            if rate is not None and sr != rate:
                raise ValueError(f"audio sample rate changes within a window ({rate} -> {sr})")
            rate = sr
            parts.append((xt[i] + np.arange(len(samples)) / sr, samples))
        if not parts or rate is None:
            return None
        times = np.concatenate([p[0] for p in parts])
        end = int(np.searchsorted(times, t + 0.5 / rate))
        start = end - round(self.window * rate)
        if start < 0 or times[end - 1] < t - self.tol:
            return None  # the stream starts after the window does, or stops before the frame
        if np.diff(times[start:end]).max(initial=0) > self.tol:
            return None  # a dropped chunk inside the window
        return Sound(np.concatenate([p[1] for p in parts])[start:end], rate)

    def __len__(self) -> int:
        return len(self.items)

    def key(self, index: int) -> str:
        return f"{self._id}/{self.items[index][0]:.9f}"

    def read_image(self, index: int) -> np.ndarray:
        _, raw, mtype, _ = self.items[index]
        return frame_reader("vision")(typestore().deserialize_cdr(raw, mtype))

    def read_x(self, index: int) -> Any:
        sel = self.items[index][3]
        if self.modality in FRAMES:
            raw, mtype = sel
            return frame_reader(self.modality)(typestore().deserialize_cdr(raw, mtype))
        return sel


@register_pair_dataset("rosbag")
def _bag(spec: dict[str, Any], modality: str, transforms: Transforms) -> RosbagPairs:
    return RosbagPairs(spec, modality, transforms)


@register_eval_dataset("rosbag")
def _bag_eval(spec: dict[str, Any], transforms: Transforms) -> PairEval:
    spec, m = eval_modality(spec)
    return PairEval(RosbagPairs(spec, m, transforms))
