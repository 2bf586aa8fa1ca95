"""Real robots' sensor formats into the encoder node over DDS (issue 12).

One child process (``sensor_graph_child.py``) holds two encoder nodes on one model (the
demo checkpoint): one on raw topics, one on image_transport's compressed topics. This
process publishes the same picture in every camera format a driver sends and compares the
embedding of each with the node's own embedding of the ``rgb8`` frame: cosine >= 0.98 where
the format loses a little (Bayer demosaicing, YUV chroma subsampling, JPEG), >= 0.9999
where it is lossless. The same for depth (16UC1 vs 32FC1, mono16, compressedDepth png/rvl)
and thermal (mono16 vs png). The node also takes audio_common's audio (mgonzs13's
AudioStamped; ros-drivers' AudioDataStamped with its AudioInfo; each variant's messages
from the fixture definitions, one child process per variant) and IMU from separate
gyro/accel topics; both are compared with the offline model on the same samples. The
detector node in the same process reads JPEG frames from the camera's ``/compressed`` topic
and hears audio_common's audio. A topic fed another type gets one warning per subscribing
node naming both types.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from interface_fixture import build_interfaces, child_env
from node_process import ENV, NodeProcess, wait_for
from ros_required import require_ros

require_ros()
from imagebind_ros.ros.node_utils import use_large_data_profile  # noqa: E402

use_large_data_profile()
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, Imu  # noqa: E402

from imagebind_ros import preprocess as pp  # noqa: E402
from imagebind_ros.decode import stamp_to_ns  # noqa: E402
from imagebind_ros.imu_combine import combine_imu  # noqa: E402
from imagebind_ros.model import create_model  # noqa: E402
from imagebind_ros.msg import AudioChunk, Detection2DArray, Embedding  # noqa: E402
from imagebind_ros.ros import conversions as cv  # noqa: E402
from imagebind_ros.ros.node_utils import RELIABLE_QOS, sensor_qos  # noqa: E402
from imagebind_ros.srv import SetPrompt  # noqa: E402
from imagebind_ros.synthetic import SyntheticWorld, depth_to_mm, thermal_to_mono16  # noqa

CHILD = Path(__file__).with_name("sensor_graph_child.py")
NS = 1_000_000_000
MODS = ("vision", "depth", "thermal", "audio", "imu")
IN_TOPICS = {("raw", "vision"): ("camera/image_raw", Image),
             ("raw", "depth"): ("depth/image_raw", Image),
             ("raw", "thermal"): ("thermal/image_raw", Image),
             ("raw", "audio"): ("mic_in", AudioChunk),
             ("raw", "gyro"): ("gyro", Imu), ("raw", "accel"): ("accel", Imu),
             ("comp", "vision"): ("camera/image_raw/compressed", CompressedImage),
             ("comp", "depth"): ("depth/image_raw/compressedDepth", CompressedImage),
             ("comp", "thermal"): ("thermal/image_raw/compressed", CompressedImage),
             ("comp", "imu"): ("imu/data", Imu)}
SCENE = SyntheticWorld(seed=12).render(3, np.random.default_rng(12), size=(240, 320))
RGB = SCENE.image
GREY = RGB.mean(axis=2).astype(np.uint8)
DEPTH_MM = depth_to_mm(SCENE.depth_m)
THERMAL = thermal_to_mono16(SCENE.thermal)
LOSSY, LOSSLESS = 0.98, 0.9999


def cosine(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


class Peer:
    """This process's side: a publisher per input topic, a subscriber per output."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("sensor_formats_peer")
        self.pubs = {k: self.node.create_publisher(t, f"/{k[0]}/{name}", sensor_qos(200))
                     for k, (name, t) in IN_TOPICS.items()}
        self.got: dict[tuple[str, str], list[Embedding]] = {}
        for ns in ("raw", "comp"):
            for m in MODS:
                box = self.got.setdefault((ns, m), [])
                self.node.create_subscription(Embedding, f"/{ns}/embeddings/{m}", box.append,
                                              RELIABLE_QOS)
        self.detections: list[Detection2DArray] = []
        self.node.create_subscription(Detection2DArray, "/comp/detections",
                                      self.detections.append, RELIABLE_QOS)
        self.set_prompt = self.node.create_client(SetPrompt, "/comp/detector_node/set_prompt")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()
        self._stamp = 1_000 * NS

    def next_stamp(self, step_s: float = 1.0) -> int:
        self._stamp += int(step_s * NS)
        return self._stamp

    def output(self, ns: str, m: str, stamp: int, timeout: float = 20) -> np.ndarray:
        box = self.got[(ns, m)]
        e = wait_for(lambda: next((e for e in list(box)
                                   if stamp_to_ns(e.header.stamp) == stamp), None),
                     timeout, f"/{ns} {m} embedding stamped {stamp}")
        return np.asarray(e.vector)

    def embed(self, ns: str, m: str, build: Any, tries: int = 1) -> np.ndarray:
        """Publish ``build(header)`` (again every 0.5 s up to ``tries`` times: best-effort
        messages before discovery completes are lost) -> the node's embedding of it."""
        for k in range(tries):
            stamp = self.next_stamp()
            self.pubs[(ns, m)].publish(build(cv.make_header(stamp, "sensor")))
            try:
                return self.output(ns, m, stamp, 20 if k == tries - 1 else 0.5)
            except AssertionError:
                if k == tries - 1:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    """The trained demo model: a random tiny one hardly tells RGB from BGR (cosine 0.995),
    the demo model does (0.10), so a swapped channel order fails here."""
    return Path(__file__).resolve().parents[1] / "checkpoints" / "demo" / "demo.pt"


@pytest.fixture(scope="module")
def graphs(checkpoint: Path) -> Iterator[Any]:
    """The sensor graph of an audio_common variant, started on first use (one at a time)."""
    running: dict[str, tuple[NodeProcess, Peer]] = {}
    rclpy.init()

    def stop() -> None:
        for child, peer in running.values():
            peer.executor.shutdown()
            peer.node.destroy_node()
            child.stop(timeout=20)
        running.clear()

    def get(variant: str) -> tuple[NodeProcess, Peer]:
        if variant in running:
            return running[variant]
        stop()
        try:
            env = child_env(build_interfaces(variant), base=ENV)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            if os.environ.get("IMAGEBIND_ROS_REQUIRE_ROS") == "1":
                pytest.fail(f"cannot build the {variant} fixture: {e}", pytrace=False)
            pytest.skip(f"cannot build the {variant} fixture: {e}")
        child = NodeProcess([sys.executable, str(CHILD), str(checkpoint), variant], env=env)
        running[variant] = child, Peer()
        wait_for(lambda: any("sensor graph ready" in ln for ln in child.lines)
                 or child.proc.poll() is not None, 90, "the sensor graph to start")
        assert child.proc.poll() is None, "\n".join(child.lines)
        for key, pub in running[variant][1].pubs.items():
            wait_for(lambda: pub.get_subscription_count() > 0, 30, f"{key} subscription")
        return running[variant]

    try:
        yield get
    finally:
        stop()
        rclpy.shutdown()


@pytest.fixture()
def graph(graphs: Any) -> tuple[NodeProcess, Peer]:
    return graphs("mgonzs13")


def test_camera_formats_match_rgb8(graph: Any) -> None:
    _, p = graph
    ref = p.embed("raw", "vision", lambda h: cv.numpy_to_image(RGB, "rgb8", h), tries=60)
    grey = p.embed("raw", "vision", lambda h: cv.numpy_to_image(GREY, "mono8", h))
    w = RGB.shape[1]
    raw = {  # encoding -> (build, reference, threshold), as the drivers send them
        "bayer_rggb8": (lambda h: cv.numpy_to_image(RGB, "bayer_rggb8", h, step=w + 64),
                        ref, LOSSY),  # FLIR Spinnaker / Basler pylon, padded rows
        "bayer_bggr8": (lambda h: cv.numpy_to_image(RGB, "bayer_bggr8", h), ref, LOSSY),
        "bayer_gbrg16": (lambda h: cv.numpy_to_image(RGB.astype(np.uint16) * 257,
                                                     "bayer_gbrg16", h, big_endian=True),
                         ref, LOSSY),
        "yuyv": (lambda h: cv.numpy_to_image(RGB, "yuyv", h), ref, LOSSY),  # usb_cam
        "yuv422_yuy2": (lambda h: cv.numpy_to_image(RGB, "yuv422_yuy2", h), ref, LOSSY),
        "uyvy": (lambda h: cv.numpy_to_image(RGB, "uyvy", h), ref, LOSSY),
        "yuv422": (lambda h: cv.numpy_to_image(RGB, "yuv422", h), ref, LOSSY),  # depthai
        "nv21": (lambda h: cv.numpy_to_image(RGB, "nv21", h), ref, LOSSY),
        "8UC3": (lambda h: cv.numpy_to_image(RGB, "8UC3", h), ref, LOSSLESS),  # cv_bridge
        "bgr8": (lambda h: cv.numpy_to_image(RGB, "bgr8", h, step=3 * w + 32), ref,
                 LOSSLESS),
        "rgb16": (lambda h: cv.numpy_to_image(RGB.astype(np.uint16) * 257, "rgb16", h,
                                              big_endian=True), ref, LOSSLESS),
        "8UC1": (lambda h: cv.numpy_to_image(GREY, "8UC1", h), grey, LOSSLESS),  # Orbbec IR
    }
    got = {}
    for enc, (build, want, _) in raw.items():
        got[enc] = cosine(p.embed("raw", "vision", build), want)
    for fmt, want_cos in (("jpeg", LOSSY), ("png", LOSSLESS)):
        v = p.embed("comp", "vision", lambda h: cv.numpy_to_compressed(RGB, "rgb8", fmt, h),
                    tries=60 if fmt == "jpeg" else 1)
        got[f"compressed {fmt}"] = cosine(v, ref)
        raw[f"compressed {fmt}"] = (None, ref, want_cos)
    bad = {k: c for k, c in got.items() if c < raw[k][2]}
    assert not bad, (bad, got)


def test_depth_and_thermal_formats_match(graph: Any) -> None:
    _, p = graph
    ref = p.embed("raw", "depth", lambda h: cv.numpy_to_image(DEPTH_MM, "16UC1", h), tries=60)
    metres = DEPTH_MM.astype(np.float32) / 1000
    metres[DEPTH_MM == 0] = np.nan
    got = {
        "32FC1": p.embed("raw", "depth", lambda h: cv.numpy_to_image(metres, "32FC1", h)),
        "mono16": p.embed("raw", "depth", lambda h: cv.numpy_to_image(DEPTH_MM, "mono16", h)),
        "compressedDepth png": p.embed(
            "comp", "depth", lambda h: cv.numpy_to_compressed_depth(DEPTH_MM, "16UC1", "png", h),
            tries=60),
        "compressedDepth rvl": p.embed(
            "comp", "depth", lambda h: cv.numpy_to_compressed_depth(DEPTH_MM, "16UC1", "rvl", h)),
        "32FC1 compressedDepth png": p.embed(
            "comp", "depth", lambda h: cv.numpy_to_compressed_depth(metres, "32FC1", "png", h)),
        "32FC1 compressedDepth rvl": p.embed(
            "comp", "depth", lambda h: cv.numpy_to_compressed_depth(metres, "32FC1", "rvl", h)),
    }
    cos = {k: cosine(v, ref) for k, v in got.items()}
    assert min(cos.values()) >= LOSSLESS, cos
    th = p.embed("raw", "thermal", lambda h: cv.numpy_to_image(THERMAL, "mono16", h), tries=60)
    png = p.embed("comp", "thermal", lambda h: cv.numpy_to_compressed(THERMAL, "mono16", "png",
                                                                      h), tries=60)
    assert cosine(png, th) >= LOSSLESS


def test_realsense_gyro_and_accel_topics(graph: Any, checkpoint: Path) -> None:
    """gyro/sample at 200 Hz and accel/sample at 63 Hz, each with only its own field (the
    other 0, as realsense2_camera sends them): the window equals the offline model's
    embedding of the two streams combined on the gyro stamps (``combine_imu``)."""
    _, p = graph
    model = create_model(checkpoint=checkpoint)
    cfg = model.config.imu
    seconds = cfg.window_seconds + 0.6
    t0 = p.next_stamp(100)
    rng = np.random.default_rng(7)
    gt = t0 + np.arange(int(200 * seconds)) * NS // 200
    at = t0 + np.arange(int(63 * seconds)) * NS // 63 - 3_000_000
    gyro = np.cumsum(rng.normal(0, 0.05, (gt.size, 3)), 0)
    accel = np.cumsum(rng.normal(0, 0.1, (at.size, 3)), 0) + [0, 0, 9.81]
    events = sorted([(int(t), "gyro", g) for t, g in zip(gt, gyro)]
                    + [(int(t), "accel", a) for t, a in zip(at, accel)], key=lambda e: e[0])
    for t, field, value in events:
        sample = np.concatenate([np.zeros(3), value] if field == "gyro"
                                else [value, np.zeros(3)])
        p.pubs[("raw", field)].publish(cv.numpy_to_imu(sample, cv.make_header(t, "imu")))
        time.sleep(0.0015)
    box = p.got[("raw", "imu")]
    e = wait_for(lambda: next((e for e in list(box) if stamp_to_ns(e.header.stamp) >= t0),
                              None), 20, "an IMU embedding")
    stamp = stamp_to_ns(e.header.stamp)
    ct, cs = combine_imu(gt, gyro, at, accel)
    keep = ct <= stamp
    with torch.inference_mode():
        want = model.encode("imu", pp.imu_to_tensor(cs[keep], (ct[keep] - stamp) / NS,
                                                    cfg)[None])[0]
    assert cosine(e.vector, want.numpy()) >= LOSSLESS


@pytest.mark.parametrize("case", ["rep145", "gyro_only"])
def test_imu_without_a_field_is_refused_not_zero_filled(graph: Any, checkpoint: Path,
                                                        case: str) -> None:
    """One Imu topic whose acceleration is "not provided" (REP 145: covariance[0] = -1), or
    RealSense's gyro/sample alone (acceleration 0 with a valid covariance): no embedding,
    a warning that says why (in full, or as the last of a summary: warn_period_s is 1 s)."""
    child, p = graph
    since = len(child.lines)
    seconds = create_model(checkpoint=checkpoint).config.imu.window_seconds + 0.6
    t0 = p.next_stamp(100)
    for k in range(int(200 * seconds)):
        msg = cv.numpy_to_imu(np.array([0, 0, 0, 0.1, 0.2, 0.3]),
                              cv.make_header(t0 + k * NS // 200, "imu"))
        if case == "rep145":
            msg.linear_acceleration_covariance[0] = -1.0
        p.pubs[("comp", "imu")].publish(msg)
        time.sleep(0.001)
    text = "not provided" if case == "rep145" else "exactly 0"
    wait_for(lambda: [ln for ln in child.warnings(since) if text in ln], 10, f"'{text}'")
    time.sleep(1.0)
    assert not [e for e in p.got[("comp", "imu")] if stamp_to_ns(e.header.stamp) >= t0]


def publish_audio(p: Peer, pcm: np.ndarray, t0: int, sr: int = 16000, chunk: int = 320
                  ) -> None:
    """S16LE chunks to the capturer stand-in, which republishes them as audio_common's."""
    for j in range(len(pcm) // chunk):
        header = cv.make_header(t0 + j * chunk * NS // sr, "mic")
        p.pubs[("raw", "audio")].publish(AudioChunk(
            header=header, sample_rate=sr, channels=1, sample_format="S16LE",
            data=pcm[j * chunk:(j + 1) * chunk].astype("<i2").tobytes()))
        time.sleep(0.004)


def test_detector_compressed_camera_and_audio_common_sound(graph: Any) -> None:
    """The detector hears AudioStamped (a 1-s sound prompt can be set from it) and detects
    in JPEG frames of the camera's ``/compressed`` topic."""
    child, p = graph
    since = len(child.lines)
    pcm = (SyntheticWorld(seed=5).audio(5, np.random.default_rng(5), seconds=1.5)
           * 32767).astype(np.int16)
    publish_audio(p, pcm, p.next_stamp(100))
    time.sleep(0.5)
    assert p.set_prompt.wait_for_service(timeout_sec=20)
    future = p.set_prompt.call_async(SetPrompt.Request(audio_seconds=1.0, label="heard"))
    wait_for(future.done, 20, "set_prompt")
    assert future.result().success, future.result().message
    stamp = p.next_stamp()
    p.pubs[("comp", "vision")].publish(cv.numpy_to_compressed(RGB, "rgb8", "jpeg",
                                                              cv.make_header(stamp, "cam")))
    dets = wait_for(lambda: next((d for d in list(p.detections)
                                  if stamp_to_ns(d.header.stamp) == stamp), None), 30,
                    "detections of the JPEG frame")
    assert dets.header.frame_id == "cam"
    assert all(d.results[0].class_id == "heard" for d in dets.detections)
    # (the encoder on the same camera may hold the test's jumping stamps: not the detector)
    assert not [ln for ln in child.warnings(since) if "dropped" in ln
                and "detector" in ln], child.warnings(since)


def test_other_type_on_an_input_topic_warns_once(graph: Any) -> None:
    """audio_common's case the other way round, and a raw Image on a compressed topic."""
    child, _ = graph
    since = len(child.lines)
    ctx = rclpy.Context()  # another participant: one may not have two types on a topic
    rclpy.init(context=ctx)
    other = rclpy.create_node("wrong_types", context=ctx)
    other.create_publisher(AudioChunk, "/raw/audio", sensor_qos(5))
    other.create_publisher(Image, "/comp/camera/image_raw/compressed", sensor_qos(5))

    def warned(text: str) -> list[str]:
        return [ln for ln in child.warnings(since) if text in ln]

    wait_for(lambda: warned("imagebind_ros/msg/AudioChunk"), 15, "the audio type warning")
    wait_for(lambda: warned("/comp/camera/image_raw/compressed carries"), 15,
             "the image type warning")
    time.sleep(4.5)  # two more graph checks: still one line each
    other.destroy_node()
    rclpy.shutdown(context=ctx)
    # one line per subscribing node: the encoder and the detector both read these topics
    audio = warned("imagebind_ros/msg/AudioChunk")
    assert sorted(ln.split("]: ")[0].rsplit("[", 1)[1] for ln in audio) == [
        "comp.detector_node", "raw.encoder_node"], audio
    assert all("audio_common_msgs/msg/AudioStamped" in ln and "/raw/audio " in ln
               and "audio.msg_type" in ln for ln in audio)
    image = warned("/comp/camera/image_raw/compressed carries")
    assert sorted(ln.split("]: ")[0].rsplit("[", 1)[1] for ln in image) == [
        "comp.detector_node", "comp.encoder_node"], image
    assert all("sensor_msgs/msg/Image" in ln and "sensor_msgs/msg/CompressedImage" in ln
               for ln in image)


@pytest.mark.parametrize("variant", ["mgonzs13", "ros_drivers"])
def test_audio_common_messages(graphs: Any, checkpoint: Path, variant: str) -> None:
    """mgonzs13's AudioStamped (paInt16) or ros-drivers' AudioDataStamped (S16LE bytes, the
    format on audio_info) in; the first 2-s window equals the offline model's embedding of
    the same int16 samples."""
    _, p = graphs(variant)
    model = create_model(checkpoint=checkpoint)
    sr, chunk = 16000, 320
    sig = SyntheticWorld(seed=4).audio(4, np.random.default_rng(4), seconds=2.6)
    pcm = np.round(sig * 32768).clip(-32768, 32767).astype(np.int16)
    t0 = p.next_stamp(100)
    # a first chunk 1 s before (ros-drivers: its AudioInfo may arrive after it, so it may
    # be refused); the 1-s gap restarts the window at t0 either way
    publish_audio(p, pcm[:chunk], t0 - NS)
    time.sleep(0.5)
    publish_audio(p, pcm, t0)
    first = 2 * sr
    v = p.output("raw", "audio", t0 + (first - 1) * NS // sr)
    with torch.inference_mode():
        want = model.encode("audio", pp.audio_to_tensor(pcm[:first] / 32768, sr,
                                                        model.config.audio)[None])[0]
    assert cosine(v, want.numpy()) >= LOSSLESS
