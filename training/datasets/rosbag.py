"""Kind ``rosbag``: camera frames of a ROS 2 bag paired by time with another topic, read
with ``rosbags`` (no ROS install)."""

from __future__ import annotations

import functools
import logging
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Any

import numpy as np

from imagebind_ros import modalities
from imagebind_ros.decode import DepthImage, Sound
from imagebind_ros.modalities import ImuSamples

from ..data import Transforms, register_eval_dataset, register_pair_dataset
from .common import PairEval, RawPairs, eval_modality, existing_path, limited

log = logging.getLogger(__name__)
# X topics of images (paired with the nearest frame) rather than streams (windowed)
FRAMES = modalities.image_modalities()

AUDIO_CHUNK = "imagebind_ros/msg/AudioChunk"
MSG_DIR = Path(__file__).resolve().parents[2] / "msg"


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """rosbags' ROS 2 message types plus ours (AudioChunk, from msg/AudioChunk.msg)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(getattr(Stores, "ROS2_KILTED", Stores.LATEST))
    msg = MSG_DIR / "AudioChunk.msg"
    if msg.is_file():
        store.register(get_types_from_msg(msg.read_text(encoding="utf-8"), AUDIO_CHUNK))
    return store


def _stamp(msg: Any, bag_ns: int) -> float:
    """Header stamp in seconds; the bag's receive time when the header is unset."""
    h = getattr(msg, "header", None)
    if h is not None and (h.stamp.sec or h.stamp.nanosec):
        return h.stamp.sec + h.stamp.nanosec * 1e-9
    return bag_ns * 1e-9


def image_msg_array(msg: Any) -> np.ndarray:
    """sensor_msgs Image or CompressedImage -> numpy (H, W[, C]) in its own units/dtype."""
    if hasattr(msg, "format"):  # CompressedImage
        import cv2
        data = bytes(msg.data)
        if "compresseddepth" in msg.format.lower():
            data = data[12:]  # compressed_depth_image_transport's config header
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ValueError(f"cannot decode a {msg.format!r} CompressedImage")
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB if arr.shape[2] == 4
                               else cv2.COLOR_BGR2RGB)
        return arr
    enc = msg.encoding.lower()
    dtypes = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4),
              "bgra8": (np.uint8, 4), "mono8": (np.uint8, 1), "8uc1": (np.uint8, 1),
              "mono16": (np.uint16, 1), "16uc1": (np.uint16, 1), "32fc1": (np.float32, 1)}
    if enc not in dtypes:
        raise ValueError(f"unsupported Image encoding {msg.encoding!r}; supported: "
                         f"{', '.join(dtypes)}")
    dt, ch = dtypes[enc]
    dt = np.dtype(dt).newbyteorder(">" if msg.is_bigendian else "<")
    row = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    arr = row[:, :msg.width * ch * dt.itemsize].copy().view(dt).reshape(
        msg.height, msg.width, ch).astype(dt.newbyteorder("="))
    if ch == 1:
        return arr[:, :, 0]
    if enc.startswith("bgr"):
        arr = arr[:, :, [2, 1, 0]]
    return np.ascontiguousarray(arr[:, :, :3])


def _rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        if arr.dtype != np.uint8:
            raise ValueError(f"camera frames must be 8-bit, got {arr.dtype}")
        return np.repeat(arr[:, :, None], 3, axis=2)
    return arr


def audio_chunk_samples(msg: Any) -> np.ndarray:
    """AudioChunk -> float32 (frames, channels) in [-1, 1]."""
    fmt = msg.sample_format.upper()
    if fmt == "S16LE":
        x = np.frombuffer(bytes(msg.data), "<i2").astype(np.float32) / 32768.0
    elif fmt == "F32LE":
        x = np.frombuffer(bytes(msg.data), "<f4").astype(np.float32)
    else:
        raise ValueError(f"unsupported AudioChunk sample_format {msg.sample_format!r}")
    ch = max(1, int(msg.channels))
    if x.size % ch:
        raise ValueError(f"AudioChunk has {x.size} samples, not a multiple of {ch} channels")
    return x.reshape(-1, ch)


class RosbagPairs(RawPairs):
    """Camera frames of ``image_topic`` paired with ``x_topic`` of the same bag by time.

    Frames (depth, thermal: sensor_msgs Image/CompressedImage): the nearest message within
    ``tolerance`` seconds. Streams (audio: imagebind_ros AudioChunk; IMU: sensor_msgs Imu):
    the ``window`` seconds ending at the frame (default: the model's audio clips / IMU window),
    kept only when the stream covers the window (no gap longer than ``tolerance`` at either
    end). ``stride`` keeps every k-th frame. The paired messages are held in memory as
    serialized bytes; for bags larger than RAM, export them to webdataset shards.
    """

    KEYS = frozenset({"path", "image_topic", "x_topic", "tolerance", "window", "stride",
                      "limit"})

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
        xs: list[tuple[float, Any]] = []
        with AnyReader([path], default_typestore=typestore()) as reader:
            topics = {c.topic: c for c in reader.connections}
            for t in (itopic, xtopic):
                if t not in topics:
                    raise ValueError(f"{path}: no topic {t}; topics: {sorted(topics)}")
            self._check_type(topics[xtopic].msgtype, modality)
            conns = [c for c in reader.connections if c.topic in (itopic, xtopic)]
            for conn, ns, raw in reader.messages(connections=conns):
                msg = reader.deserialize(raw, conn.msgtype)
                t = _stamp(msg, ns)
                if conn.topic == itopic:
                    frames.append((t, bytes(raw), conn.msgtype))
                elif modality in FRAMES:
                    xs.append((t, (bytes(raw), conn.msgtype)))
                elif modality == "imu":
                    a, w = msg.linear_acceleration, msg.angular_velocity
                    xs.append((t, (a.x, a.y, a.z, w.x, w.y, w.z)))
                else:
                    xs.append((t, (audio_chunk_samples(msg), int(msg.sample_rate))))
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
        self._id = f"rosbag:{path.resolve()}|{itopic}|{xtopic}|{self.tol}|{self.window}"

    def _default_window(self, modality: str) -> float:
        if modality == "audio":
            a = self.transforms.config.modality("audio")
            return float(a.clip_duration) * int(a.clips_per_video)
        if modality == "imu":
            return float(self.transforms.config.modality("imu").window_seconds)
        return 0.0

    @staticmethod
    def _check_type(msgtype: str, modality: str) -> None:
        ok = {"depth": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
              "thermal": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
              "imu": ("sensor_msgs/msg/Imu",), "audio": (AUDIO_CHUNK,)}[modality]
        if msgtype not in ok:
            raise ValueError(f"x_topic has type {msgtype}; {modality} needs {' or '.join(ok)}")

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
        return _rgb(image_msg_array(typestore().deserialize_cdr(raw, mtype)))

    def read_x(self, index: int) -> Any:
        sel = self.items[index][3]
        if self.modality in FRAMES:
            raw, mtype = sel
            arr = image_msg_array(typestore().deserialize_cdr(raw, mtype))
            if self.modality == "depth":
                return DepthImage(arr, "m" if np.issubdtype(arr.dtype, np.floating) else "mm")
            return arr
        return sel


@register_pair_dataset("rosbag")
def _bag(spec: dict[str, Any], modality: str, transforms: Transforms) -> RosbagPairs:
    return RosbagPairs(spec, modality, transforms)


@register_eval_dataset("rosbag")
def _bag_eval(spec: dict[str, Any], transforms: Transforms) -> PairEval:
    spec, m = eval_modality(spec)
    return PairEval(RosbagPairs(spec, m, transforms))
