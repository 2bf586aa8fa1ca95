"""Detector and memory nodes over real DDS, in a separate `imagebind-ros run` process that
holds ONE model for both; this process publishes camera frames, sound, prompts and
embeddings and checks what comes back against the offline library on the same data:
detections (box, score, label, modality, stamp, frame) equal ``RegionDetector``'s, the
annotated image is stamped like its frame, memory hits equal ``EmbeddingMemory``'s; bad
inputs get one warning and the node keeps working; a node without a model stops with one
line."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from node_process import ENV, NodeProcess, wait_for
from ros_required import require_ros

require_ros()
from imagebind_ros.ros.node_utils import use_large_data_profile  # noqa: E402

use_large_data_profile()  # 0.9-MB camera frames to another process
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from imagebind_ros import preprocess as pp  # noqa: E402
from imagebind_ros.decode import decode_image, stamp_to_ns  # noqa: E402
from imagebind_ros.detection import DetectorConfig, Prompt, RegionDetector  # noqa: E402
from imagebind_ros.memory import NS, EmbeddingMemory, combine  # noqa: E402
from imagebind_ros.model import create_model, save_model  # noqa: E402
from imagebind_ros.msg import (AudioChunk, ClassHypothesis, Detection2DArray,  # noqa: E402
                               Embedding, ZeroShot)
from imagebind_ros.ros import conversions as cv  # noqa: E402
from imagebind_ros.ros.node_utils import RELIABLE_QOS, SENSOR_QOS, sensor_qos  # noqa: E402
from imagebind_ros.srv import QueryMemory, SetPrompt  # noqa: E402
from imagebind_ros.synthetic import SyntheticWorld  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo" / "demo.pt"
# a coarse grid keeps each frame quick; the parity checks do not depend on it
DETECTOR = {"scales": [0.14, 0.28], "stride": 0.34, "max_detections": 2}
WORLD = SyntheticWorld()


def run_process(args: list[str]) -> NodeProcess:
    """``imagebind-ros run`` with these arguments."""
    return NodeProcess([sys.executable, "-m", "imagebind_ros.cli", "run", *args], cwd=ROOT)


class Harness:
    def __init__(self) -> None:
        self.node = rclpy.create_node("detector_test_harness")
        n = self.node
        self.camera = n.create_publisher(Image, "camera/image_raw", SENSOR_QOS)
        self.audio = n.create_publisher(AudioChunk, "audio", sensor_qos(50))
        self.text = n.create_publisher(String, "detector/prompt_text", RELIABLE_QOS)
        self.prompt_emb = n.create_publisher(Embedding, "detector/prompt_embedding",
                                             RELIABLE_QOS)
        self.emb = {m: n.create_publisher(Embedding, f"embeddings/{m}", RELIABLE_QOS)
                    for m in ("vision", "depth", "audio")}
        self.zs = {m: n.create_publisher(ZeroShot, f"zero_shot/{m}", RELIABLE_QOS)
                   for m in ("vision", "depth", "audio")}
        self.detections: list[Detection2DArray] = []
        self.images: list[Image] = []
        n.create_subscription(Detection2DArray, "detections", self.detections.append,
                              RELIABLE_QOS)
        n.create_subscription(Image, "detections/image", self.images.append, RELIABLE_QOS)
        self.set_prompt = n.create_client(SetPrompt, "detector_node/set_prompt")
        self.query = n.create_client(QueryMemory, "memory_node/query")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(n)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def call(self, client: Any, request: Any, timeout: float = 60) -> Any:
        assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} missing"
        future = client.call_async(request)
        wait_for(future.done, timeout, f"{client.srv_name} response")
        return future.result()

    def frame(self, rgb: np.ndarray, stamp: int, timeout: float = 90
              ) -> tuple[Detection2DArray, Image]:
        """Publish a frame (again until it is taken: best effort) and wait for its outputs."""
        msg = cv.numpy_to_image(rgb, "rgb8", cv.make_header(stamp, "cam_test"))
        end = time.monotonic() + timeout

        def mine(box: list) -> Any:
            return next((m for m in list(box) if stamp_to_ns(m.header.stamp) == stamp),
                        None)

        while time.monotonic() < end:
            self.camera.publish(msg)
            retry = time.monotonic() + 5
            while time.monotonic() < retry:
                got = mine(self.detections)
                if got is not None:
                    return got, wait_for(lambda: mine(self.images), 30, "annotated image")
                time.sleep(0.02)
        raise AssertionError(f"no detections for the frame stamped {stamp}")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if DEMO.is_file():
        return DEMO
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(path, create_model("tiny"))
    return path


@pytest.fixture(scope="module")
def offline(checkpoint: Path) -> Any:
    torch.set_num_threads(1)
    return create_model(checkpoint=checkpoint)


def encode(model: Any, modality: str, x: Any) -> np.ndarray:
    with torch.inference_mode():
        return model.encode(modality, torch.as_tensor(np.asarray(x))).numpy()


@contextmanager
def node_graph(sets: list[str], ready: Sequence[str]) -> Iterator[tuple[NodeProcess, Harness]]:
    """An ``imagebind-ros run`` child with these ``--set``s and a harness, once every
    ``ready`` line was logged and the camera is subscribed; both stopped afterwards."""
    child = run_process([a for s in sets for a in ("--set", s)] + ["--executor", "single"])
    rclpy.init()
    harness = Harness()
    try:
        wait_for(lambda: all(any(r in ln for ln in child.lines) for r in ready)
                 or child.proc.poll() is not None, 120, "the nodes to start")
        assert child.proc.poll() is None, "\n".join(child.lines)
        wait_for(lambda: harness.camera.get_subscription_count() > 0, 30, "camera sub")
        yield child, harness
    finally:
        harness.close()
        rclpy.shutdown()
        child.stop(signal.SIGINT, 30)


@pytest.fixture(scope="module")
def graph(checkpoint: Path) -> Any:
    sets = ["use_encoder:=false", "use_detector:=true", "use_memory:=true",
            f"checkpoint:={checkpoint}", "detector_node.max_rate_hz:=0.0",
            "memory_node.capacity:=20", "threads:=1"]
    sets += [f"detector_node.{k}:={v}" for k, v in DETECTOR.items()]
    with node_graph(sets, ("remembering", "detecting in")) as (child, harness):
        wait_for(lambda: harness.emb["vision"].get_subscription_count() > 0, 30, "memory sub")
        yield child, harness


def offline_detector(model: Any) -> RegionDetector:
    cfg = DetectorConfig(scales=tuple(DETECTOR["scales"]), stride=DETECTOR["stride"],
                         max_detections=DETECTOR["max_detections"])
    return RegionDetector(lambda x: encode(model, "vision", x), model.config.vision, cfg)


def check_detections(msg: Detection2DArray, want: list, stamp: int) -> None:
    """The published detections equal the offline ones (order, box, score, label)."""
    assert msg.header.frame_id == "cam_test" and stamp_to_ns(msg.header.stamp) == stamp
    assert len(msg.detections) == len(want)
    for d, w in zip(msg.detections, want):
        assert stamp_to_ns(d.header.stamp) == stamp
        assert [r.class_id for r in d.results] == [w.label]
        assert d.results[0].score == pytest.approx(np.clip(w.score, 0, 1), abs=1e-4)
        assert d.prompt_modality == w.modality
        b = d.bbox
        got = [b.center_x - b.size_x / 2, b.center_y - b.size_y / 2,
               b.center_x + b.size_x / 2, b.center_y + b.size_y / 2]
        np.testing.assert_allclose(got, w.box, atol=0.5)


_stamp = [5_000 * NS]


def next_stamp() -> int:
    _stamp[0] += NS
    return _stamp[0]


def test_text_prompt_detections_equal_offline_and_image_is_annotated(graph: Any,
                                                                     offline: Any) -> None:
    _, h = graph
    scene = WORLD.scene([0, 1, 2], np.random.default_rng(3))
    resp = h.call(h.set_prompt, SetPrompt.Request(text="a photo of a car", label="car"))
    assert resp.success and "car" in resp.message
    stamp = next_stamp()
    dets, img = h.frame(scene.image, stamp)
    text = encode(offline, "text", pp.tokenize(["a photo of a car"], offline.config.text))[0]
    want = offline_detector(offline).detect_all(
        offline_detector(offline).regions(scene.image), [Prompt("car", "text", text)])
    assert want
    check_detections(dets, want, stamp)
    pic = decode_image(img)
    arr = pic.array
    assert pic.encoding == "rgb8" and arr.shape == scene.image.shape
    assert img.header.frame_id == "cam_test" and stamp_to_ns(img.header.stamp) == stamp
    assert (arr != scene.image).any()


def test_sound_from_the_audio_topic_prompts_detection(graph: Any, offline: Any) -> None:
    _, h = graph
    sr, chunk = 16000, 320
    sig = WORLD.audio(5, np.random.default_rng(7), seconds=2.5)  # an engine
    t0 = next_stamp()
    wait_for(lambda: h.audio.get_subscription_count() > 0, 30, "audio sub")
    for j in range(len(sig) // chunk):
        header = cv.make_header(t0 + j * chunk * NS // sr, "mic")
        h.audio.publish(cv.numpy_to_audio_chunk(sig[j * chunk:(j + 1) * chunk], sr, header))
        time.sleep(0.003)
    time.sleep(1.0)
    resp = h.call(h.set_prompt, SetPrompt.Request(audio_seconds=2.0, label="heard"))
    assert resp.success, resp.message
    scene = WORLD.scene([5, 3, 6], np.random.default_rng(8))
    stamp = next_stamp()
    dets, _ = h.frame(scene.image, stamp)
    heard = np.round(sig * 32768).clip(-32768, 32767)[-2 * sr:] / 32768  # S16LE on the wire
    vec = encode(offline, "audio", pp.audio_to_tensor(heard.astype(np.float32), sr,
                                                      offline.config.audio)[None])[0]
    det = offline_detector(offline)
    check_detections(dets, det.detect_all(det.regions(scene.image),
                                          [Prompt("heard", "audio", vec)]), stamp)


def test_prompt_topics_bad_inputs_and_clearing(graph: Any, offline: Any) -> None:
    child, h = graph
    since = len(child.lines)
    # refused: two sources; a wrong-size embedding; a malformed frame
    resp = h.call(h.set_prompt, SetPrompt.Request(text="a dog", audio_seconds=1.0))
    assert not resp.success and "one source" in resp.message
    h.prompt_emb.publish(Embedding(modality="thermal", vector=[1.0, 0.0, 0.0]))
    bad = cv.numpy_to_image(np.zeros((4, 4, 3), np.uint8), "rgb8")
    bad.step = 5
    h.camera.publish(bad)
    wait_for(lambda: len(child.warnings(since)) >= 3, 30, "three warnings")
    warned = "\n".join(child.warnings(since))
    assert "one source" in warned and "3 values" in warned and "dropped image" in warned
    # an embedding of any modality on the prompt topic adds a prompt labelled by it
    h.call(h.set_prompt, SetPrompt.Request(text="a photo of a dog", label="dog"))
    vec = encode(offline, "text", pp.tokenize(["a photo of a kettle"], offline.config.text))[0]
    h.prompt_emb.publish(Embedding(modality="thermal", vector=vec.tolist()))
    h.text.publish(String(data="a photo of a bird"))
    time.sleep(1.0)
    scene = WORLD.scene([6, 0], np.random.default_rng(9))
    stamp = next_stamp()
    dets, _ = h.frame(scene.image, stamp)
    det = offline_detector(offline)
    text = encode(offline, "text", pp.tokenize(["a photo of a dog", "a photo of a bird"],
                                               offline.config.text))
    prompts = [Prompt("dog", "text", text[0]), Prompt("thermal", "thermal", vec),
               Prompt("a photo of a bird", "text", text[1])]
    check_detections(dets, det.detect_all(det.regions(scene.image), prompts), stamp)
    assert h.call(h.set_prompt, SetPrompt.Request()).success  # no source: clear all
    stamp = next_stamp()
    dets, _ = h.frame(scene.image, stamp)
    assert dets.detections == []


def test_memory_answers_text_and_arithmetic_queries_like_offline(graph: Any, offline: Any,
                                                                 checkpoint: Path) -> None:
    """Also hostile embeddings: the modality is the topic's whatever the body says, and
    empty or foreign model ids are refused (the reference memory never sees them)."""
    _, h = graph
    cfg = offline.config
    ref = EmbeddingMemory(capacity=20)
    model_id = f"{checkpoint.name}:{cfg.name}"
    samples = WORLD.dataset(24, split="test", seed=3,
                            modalities=("vision", "depth", "audio"))
    for i, s in enumerate(samples):
        stamp = 9_000 * NS + i * NS
        vecs = {"vision": encode(offline, "vision", pp.image_to_tensor(s.image,
                                                                       cfg.vision)[None]),
                "depth": encode(offline, "depth", pp.depth_to_tensor(s.depth_m, cfg.depth,
                                                                     "m")[None]),
                "audio": encode(offline, "audio", pp.audio_to_tensor(
                    s.audio, WORLD.sample_rate, cfg.audio)[None])}
        for m, v in vecs.items():
            header = cv.make_header(stamp, f"{m}_frame")
            for body, mid in (("bogus", ""), (f"random{i}", "foreign.pt:x"), (m, "")):
                h.emb[m].publish(Embedding(header=header, modality=body, model_id=mid,
                                           vector=v[0].tolist()))
            h.emb[m].publish(Embedding(header=header, modality="bogus" if m == "depth" else m,
                                       vector=v[0].tolist(), model_id=model_id))
            ref.add(v[0], m, stamp, f"{m}_frame", label=s.label)
            time.sleep(0.02)  # within the reliable queue depth (10) of each topic
    time.sleep(1.0)  # labels attach to stored items: after the embeddings (other topics)
    for i, s in enumerate(samples):
        for m in ("vision", "depth", "audio"):
            h.zs[m].publish(ZeroShot(header=cv.make_header(9_000 * NS + i * NS, f"{m}_frame"),
                                     modality=m,
                                     results=[ClassHypothesis(class_id=s.label, score=1.0)]))
        time.sleep(0.01)
    time.sleep(1.0)

    def same(resp: Any, want: list) -> None:
        assert resp.success, resp.message
        got = [(x.modality, stamp_to_ns(x.header.stamp), x.header.frame_id, x.label)
               for x in resp.hits]
        assert got == [(w.modality, w.stamp_ns, w.frame_id, w.label) for w in want]
        np.testing.assert_allclose([x.similarity for x in resp.hits],
                                   [w.similarity for w in want], atol=1e-4)

    text = encode(offline, "text", pp.tokenize(["a photo of a kettle"], cfg.text))[0]
    same(h.call(h.query, QueryMemory.Request(texts=["a photo of a kettle"], top_k=6,
                                             modalities=["vision", "depth"])),
         ref.query(text, 6, ["vision", "depth"]))
    image = encode(offline, "vision", pp.image_to_tensor(samples[0].image, cfg.vision)[None])
    sound = encode(offline, "audio", pp.audio_to_tensor(samples[1].audio, WORLD.sample_rate,
                                                        cfg.audio)[None])
    parts = [Embedding(modality="vision", vector=image[0].tolist()),
             Embedding(modality="audio", vector=sound[0].tolist())]
    same(h.call(h.query, QueryMemory.Request(embeddings=parts, weights=[1.0, 2.0])),
         ref.query(combine([image[0], sound[0]], [1.0, 2.0]), 5))
    for req, msg in ((QueryMemory.Request(), "at least one"),
                     (QueryMemory.Request(embeddings=parts, weights=[1.0]), "1 weights"),
                     (QueryMemory.Request(audio_files=["/no/such.wav"]), "not found")):
        resp = h.call(h.query, req)
        assert not resp.success and msg in resp.message, resp.message


def test_runner_holds_one_model_for_both_nodes(checkpoint: Path) -> None:
    """A run of its own (stopping the shared graph would take it from the tests after this
    one): detector and memory in one process hold one model, and a timed run exits 0."""
    sets = ["use_encoder:=false", "use_detector:=true", "use_memory:=true",
            f"checkpoint:={checkpoint}", "threads:=1"]
    proc = subprocess.run(
        [sys.executable, "-m", "imagebind_ros.cli", "run", "--duration", "2",
         "--executor", "single", *[a for s in sets for a in ("--set", s)]],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    assert "remembering" in out and "detecting in" in out, out[-2000:]
    assert "1 model instance(s) in this process" in out, out[-2000:]


def test_detector_without_model_stops_with_one_line() -> None:
    code = "import sys; from imagebind_ros.ros.detector_node import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True,
                          text=True, timeout=120)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, lines
    assert "cannot start: no model" in lines[0]
