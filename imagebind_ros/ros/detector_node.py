"""Detector node: find what a prompt (a sound, a caption, any embedding) names in the camera.

Subscriptions (sensor-data QoS): ``camera.topic`` (``sensor_msgs/Image``, or
``CompressedImage`` by ``camera.transport`` or a ``.../compressed`` topic), ``audio.topic``
(``audio.msg_type``: our ``AudioChunk`` or audio_common's, kept for ``audio.buffer_s`` seconds
for "the last N seconds" prompts); an input topic carrying another type gets one warning.
Prompt topics (reliable): ``prompt.text_topic`` (``std_msgs/String``) and
``prompt.embedding_topic`` (``imagebind_ros/Embedding``: any modality, e.g. an encoder's
``embeddings/thermal``).
Service ``~/set_prompt`` (``SetPrompt``). Publications (reliable): ``detections``
(``imagebind_ros/Detection2DArray``) and, with ``publish_image``, ``detections/image`` (rgb8
with boxes, labels and scores drawn, for rqt/rviz).

A worker thread takes the newest frame (older ones are dropped and counted) at most at
``max_rate_hz``, embeds its windows ONCE and scores every active prompt against them
(``imagebind_ros.detection``). The model is the process's shared instance
(``model_cache``): in ``imagebind-ros run`` the encoder, detector and memory nodes hold one.
Parameters (all described: ``ros2 param describe /detector_node <name>``) set the windows,
the batch size, the maximum number of regions and the localisation.
Lifecycle node (``ros.lifecycle``: configure loads the model, activate subscribes and starts
the worker); model-running services off the executor (``ros.slow_services``);
``/diagnostics`` per input and for the worker (``ros.diagnostics``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from imagebind_ros import decode as dec
from imagebind_ros.detection import (LOCALIZERS, METHODS, Detection, DetectorConfig, Level,
                                     Prompt, RegionDetector, check_vector, draw_detections,
                                     heatmap, pyramid)
from imagebind_ros.embedder import Embedder, RecentAudio
from imagebind_ros.msg import (BoundingBox2D, ClassHypothesis, Detection2D,
                               Detection2DArray, Embedding)
from imagebind_ros.ros import conversions as cv
from imagebind_ros.ros.diagnostics import (InputCounts, InputDiagnostics, InputSpec,
                                           declare_diagnostics_parameters)
from imagebind_ros.ros.lifecycle import ManagedNode
from imagebind_ros.ros.model_params import declare_model_parameters, load_model
from imagebind_ros.ros.node_utils import (RELIABLE_QOS, SENSOR_QOS, TRANSPORTS,
                                          AudioInput, InputTopics, StartupError, declare,
                                          fault_kind, fault_limiter, image_transport, run_node,
                                          sensor_qos)
from imagebind_ros.ros.slow_services import SlowServices, declare_service_parameters
from imagebind_ros.ros.worker import Worker
from imagebind_ros.srv import SetPrompt
from imagebind_ros.streams import Mailbox

NODE_NAME = "detector_node"
BAD_INPUT = (dec.DecodeError, ValueError)
DETECTION_FIELDS = {f.name for f in fields(DetectorConfig)}


class DetectorNode(ManagedNode):
    """Prompted object detection on a camera stream with the process's shared model."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._warn = fault_limiter(self)
        self.p = self._declare_parameters()
        self._srv_p = declare_service_parameters(self)
        self.inputs = {"camera": InputCounts(0), "audio": InputCounts(0)}  # /diagnostics
        self._diag_p = declare_diagnostics_parameters(self, list(self.inputs))
        self.add_on_set_parameters_callback(self._on_parameters)
        self._worker = Worker("detector-worker", self._work, self.get_logger(), 30.0)
        self._prompts: OrderedDict[str, Prompt] = OrderedDict()
        self._prompt_lock = threading.Lock()
        self.mailbox = Mailbox({})
        self.diagnostics: InputDiagnostics | None = None
        self.frames = 0
        self.frame_ms: list[float] = []
        self.start()

    # ------------------------------------------------------------------ lifecycle

    def configure(self) -> None:
        """Load the model, embed the start prompts; publishers, services, /diagnostics."""
        self.shared = load_model(self.p, needs=("vision",), uses=("text", "audio"))
        self.model_id = self.shared.model_id
        self.config = self.shared.config
        try:
            det_cfg = DetectorConfig(**{k: self.p[k] for k in DETECTION_FIELDS
                                        if k in self.p and k not in ("scales", "dense_sizes")},
                                     batch_size=self.p["region_batch_size"],
                                     scales=tuple(self.p["scales"]),
                                     dense_sizes=tuple(self.p["dense_sizes"]))
            self.detector = RegionDetector(
                lambda x: self.shared.encode("vision", x),
                self.config.modality("vision"),  # type: ignore[arg-type]
                det_cfg, self._dense_encoder() if det_cfg.method == "dense" else None)
        except (ValueError, TypeError) as e:
            raise StartupError(f"detection parameters: {e}") from None
        self.embedder = Embedder(self.shared.encode, self.config)
        self.dim = self.config.out_embed_dim
        self.audio = RecentAudio(self.p["audio.buffer_s"])
        self._vision_msgs = self._vision_msgs_module()
        # image_transport's name resolved here: a contradicting transport fails configure
        self._camera = image_transport(self.p["camera.topic"], self.p["camera.transport"])
        self._det_pub = self.create_publisher(
            self._vision_msgs.Detection2DArray if self._vision_msgs else Detection2DArray,
            self.p["detections_topic"], RELIABLE_QOS)
        self._img_pub = (self.create_publisher(Image, self.p["image_topic"], RELIABLE_QOS)
                         if self.p["publish_image"] else None)
        self._heat_pub = (self.create_publisher(Image, "~/heatmap", RELIABLE_QOS)
                          if self.p["publish_heatmap"] else None)
        self._initial_prompts()
        self.slow_services = SlowServices(self, self._srv_p["timeout_s"],
                                          self._srv_p["max_pending"])
        self.slow_services.create_service(SetPrompt, "set_prompt", self._on_set_prompt)
        diag = self._diag_p
        self.diagnostics = InputDiagnostics(
            self, diag, {"camera": InputSpec(self._camera[0], diag["expected_hz.camera"],
                                             self.p["max_rate_hz"]),
                         "audio": InputSpec(self.p["audio.topic"], diag["expected_hz.audio"],
                                            required=self.p["prompt.live_audio_s"] > 0)},
            self.input_counts, self._worker.health, self.shared)
        note = " RANDOM-INIT weights: detections are meaningless" if self.shared.random_init \
            else ""
        self.get_logger().info(
            f"detecting in {self.p['camera.topic']} with {self.shared.describe()}; "
            f"{self._regions_note()}; prompts: "
            f"{', '.join(self.prompt_labels()) or 'none yet'}.{note}")

    def activate(self) -> None:
        """Subscribe (camera, audio, prompt topics) and start the worker."""
        self.start_work({"camera": self.p["max_rate_hz"]})

    def deactivate(self) -> None:
        self.stop_work()

    def cleanup(self) -> None:
        """Drop everything configure made; the model is freed once no node holds it."""
        self.destroy_configured(self._det_pub, self._img_pub, self._heat_pub)
        with self._prompt_lock:
            self._prompts.clear()
        del self.embedder, self.detector
        self.release_model()

    # ------------------------------------------------------------------ setup

    def _declare_parameters(self) -> dict[str, Any]:
        p = declare_model_parameters(self)
        base = DetectorConfig()

        def d(name: str, default: Any, text: str, read_only: bool = True) -> None:
            p[name] = declare(self, name, default, text, read_only)

        d("camera.topic", "camera/image_raw", "camera topic (sensor_msgs/Image: colour, "
          "Bayer, YUV, mono; or CompressedImage, see camera.transport)")
        d("camera.transport", "auto", f"{', '.join(TRANSPORTS[:2])}, or auto (a "
          ".../compressed topic is compressed, else raw); compressed: camera.topic/compressed, "
          "as image_transport does")
        d("audio.topic", "audio", "audio topic for sound prompts (type: audio.msg_type)")
        d("audio.msg_type", dec.AUDIO_CHUNK, "audio message type: imagebind_ros/msg/"
          "AudioChunk or audio_common_msgs/msg/AudioStamped, AudioDataStamped or AudioData")
        d("audio.info_topic", "audio_info", "audio_common AudioInfo topic (AudioData and "
          "AudioDataStamped only)")
        d("audio.buffer_s", 10.0, "seconds of audio kept for 'the last N seconds' prompts")
        d("prompt.text_topic", "detector/prompt_text", "std_msgs/String: a text prompt "
          "(labelled with its text; replaces a prompt of the same label)")
        d("prompt.embedding_topic", "detector/prompt_embedding", "imagebind_ros/Embedding of "
          "any modality as a prompt (labelled with its modality)")
        d("prompt.texts", Parameter.Type.STRING_ARRAY, "text prompts active at start")
        d("prompt.audio_file", "", "an audio file whose sound is a prompt at start")
        d("prompt.live_audio_s", 0.0, "> 0: a live 'sound' prompt, the last N seconds of the "
          "audio topic, re-embedded before each frame (at most every live_audio_period_s)")
        d("prompt.live_audio_period_s", 0.5, "seconds between re-embeddings of the live sound")
        d("max_prompts", 8, "most prompts at once (the oldest goes)")
        d("detections_topic", "detections", "output imagebind_ros/Detection2DArray")
        d("detections_format", "imagebind_ros", "imagebind_ros: our Detection2DArray; "
          "vision_msgs: vision_msgs/Detection2DArray (needs the vision_msgs package)")
        d("image_topic", "detections/image", "output annotated sensor_msgs/Image (rgb8)")
        d("publish_image", True, "publish the annotated image")
        d("max_rate_hz", 2.0, "most frames processed per second (0 = as fast as possible); "
          "newer frames replace unprocessed ones", read_only=False)
        d("max_image_bytes", dec.MAX_IMAGE_BYTES, "larger images are dropped")
        d("method", base.method, f"{' or '.join(METHODS)}: embed sliding windows, or one "
          "forward whose patch embeddings are the regions (torch backend, or an ONNX export "
          "with --dense)")
        d("dense_sizes", list(base.dense_sizes), "dense: short sides in pixels of the frame "
          "fed to the encoder, one forward each (0 = the encoder's training size)")
        d("dense_variant", "naclip", "dense: last-block reading (plain, maskclip, sclip, "
          "clearclip, naclip; naclip won the demo model's tuning, docs/detection.md)")
        d("publish_heatmap", True, "publish ~/heatmap: the newest prompt's similarity map "
          "over the frame (rgb8)")
        d("scales", list(base.scales), "window sides as fractions of the short image side")
        d("stride", base.stride, "window grid step as a fraction of the window side")
        d("max_regions", base.max_regions, "most windows per frame (the grid is coarsened, "
          "then the smallest scales dropped, to fit)")
        d("region_batch_size", base.batch_size, "windows per encoder call")
        d("localize", base.localize, f"{' or '.join(LOCALIZERS)}: similarity-map regions "
          "(default) or thresholded windows + NMS")
        d("map_threshold", base.map_threshold, "map regions: fraction between the map's "
          "median (0) and peak (1)")
        d("background", base.background, "background subtraction weight (0 = plain cosine)")
        d("refine_iterations", base.refine_iterations, "GrabCut iterations snapping a region "
          "to the object outline (0 = off)")
        d("max_detections", base.max_detections, "most detections per prompt")
        d("min_score", base.min_score, "detections with a lower cosine are dropped")
        d("nms_iou", base.nms_iou, "non-maximum suppression overlap")
        return p

    def _vision_msgs_module(self) -> Any:
        """``vision_msgs.msg`` when ``detections_format`` asks for it, else None."""
        fmt = self.p["detections_format"]
        if fmt not in ("imagebind_ros", "vision_msgs"):
            raise StartupError(f"detections_format {fmt!r}: choose imagebind_ros or "
                               "vision_msgs")
        if fmt == "imagebind_ros":
            return None
        try:
            import vision_msgs.msg
        except ImportError:
            raise StartupError("detections_format vision_msgs needs the vision_msgs package "
                               "(a full ROS 2 install: ros-<distro>-vision-msgs)") from None
        return vision_msgs.msg

    def _dense_encoder(self) -> Callable[[np.ndarray], np.ndarray]:
        variant = self.p["dense_variant"]
        if variant not in self.shared.dense_variants:
            has = ", ".join(self.shared.dense_variants) or "none"
            raise ValueError(f"method 'dense': {self.shared.describe()} has no dense vision "
                             f"output {variant!r} (has: {has}; an ONNX export needs "
                             f"`imagebind-ros export --dense {variant}`)")
        return lambda x: self.shared.encode_dense(x, variant)

    def _regions_note(self) -> str:
        cfg = self.detector.config
        if cfg.method == "dense":
            return (f"dense ({self.p['dense_variant']}, short sides "
                    f"{', '.join(str(s) for s in cfg.dense_sizes)} px)")
        n = sum(len(lv.origins) for lv in self._levels((480, 640)))
        return f"{n} windows per 640x480 frame"

    def _levels(self, hw: tuple[int, int]) -> list[Level]:
        return pyramid(hw, self.detector.vision.image_size, self.detector.config)

    def _subscribe(self) -> None:
        self._inputs = InputTopics(self)
        topic, transport = self._camera
        self._inputs.subscribe(Image if transport == "raw" else CompressedImage, topic,
                               self._counted("camera", self._on_image), SENSOR_QOS,
                               "set camera.transport or camera.topic")
        self._audio_in = AudioInput(self._inputs, self, self.p["audio.msg_type"],
                                    self.p["audio.topic"], self.p["audio.info_topic"],
                                    self._counted("audio", self._on_audio), sensor_qos(50))
        self._inputs.subscribe(String, self.p["prompt.text_topic"], self._on_text_prompt,
                               RELIABLE_QOS)
        self._inputs.subscribe(Embedding, self.p["prompt.embedding_topic"],
                               self._on_embedding_prompt, RELIABLE_QOS)

    def _initial_prompts(self) -> None:
        try:
            for text in self.p["prompt.texts"]:
                self.set_prompt(self._text_prompt(text, ""), append=True)
            if self.p["prompt.audio_file"]:
                path = self.p["prompt.audio_file"]
                self.set_prompt(Prompt(Path(path).stem, "audio",
                                       self.embedder.audio_file(path)), append=True)
        except (ValueError, OSError) as e:
            raise StartupError(f"start prompt: {e}") from None
        if self.p["prompt.live_audio_s"] > self.p["audio.buffer_s"]:
            raise StartupError(f"prompt.live_audio_s ({self.p['prompt.live_audio_s']}) "
                               f"exceeds audio.buffer_s ({self.p['audio.buffer_s']})")
        self._live_at = -float("inf")

    def _on_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for prm in params:
            if prm.name == "max_rate_hz":
                if prm.value < 0:
                    return SetParametersResult(successful=False, reason="max_rate_hz >= 0")
                self.mailbox.set_max_rate("camera", float(prm.value))
                if self.diagnostics is not None:
                    self.diagnostics.inputs["camera"].spec.max_rate_hz = float(prm.value)
                self.p["max_rate_hz"] = prm.value
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ prompts

    def prompt_labels(self) -> list[str]:
        with self._prompt_lock:
            return list(self._prompts)

    def set_prompt(self, prompt: Prompt, append: bool) -> None:
        """Add (or with append False: make the only) prompt; same label replaces."""
        check_vector(prompt.vector, self.dim)
        with self._prompt_lock:
            if not append:
                self._prompts.clear()
            self._prompts.pop(prompt.label, None)
            self._prompts[prompt.label] = prompt
            while len(self._prompts) > self.p["max_prompts"]:
                self._prompts.popitem(last=False)

    def _text_prompt(self, text: str, label: str) -> Prompt:
        return Prompt(label or text, "text", self.embedder.texts([text])[0])

    def _embedding_prompt(self, msg: Embedding, label: str) -> Prompt:
        if msg.model_id and msg.model_id != self.model_id:
            raise ValueError(f"embedding is from model {msg.model_id!r}, the detector uses "
                             f"{self.model_id!r}: not comparable")
        vec = check_vector(np.asarray(msg.vector, np.float32), self.dim,
                           f"{msg.modality or 'prompt'}")
        return Prompt(label or msg.modality, msg.modality, vec)

    def _on_text_prompt(self, msg: String) -> None:
        try:
            self.set_prompt(self._text_prompt(msg.data, ""), append=True)
        except ValueError as e:
            self._warn.warn("text prompt", f"text prompt refused: {e}")

    def _on_embedding_prompt(self, msg: Embedding) -> None:
        try:
            self.set_prompt(self._embedding_prompt(msg, ""), append=True)
        except ValueError as e:
            self._warn.warn("embedding prompt", f"embedding prompt refused: {e}")

    def _on_set_prompt(self, req: SetPrompt.Request, resp: SetPrompt.Response
                       ) -> SetPrompt.Response:
        sources = [bool(req.text), bool(req.audio_file), req.audio_seconds > 0,
                   bool(req.embedding.modality)]
        try:
            if sum(sources) > 1:
                raise ValueError("give one source: text, audio_file, audio_seconds or "
                                 "embedding")
            if not any(sources):
                if req.append:
                    raise ValueError("no source given (append with nothing to add)")
                with self._prompt_lock:
                    self._prompts.clear()
                resp.success, resp.message = True, "all prompts cleared"
                return resp
            if req.text:
                prompt = self._text_prompt(req.text, req.label)
            elif req.audio_file:
                prompt = Prompt(req.label or Path(req.audio_file).stem, "audio",
                                self.embedder.audio_file(req.audio_file))
            elif req.audio_seconds > 0:
                wave, rate = self.audio.last(float(req.audio_seconds))
                prompt = Prompt(req.label or "sound", "audio", self.embedder.audio(wave, rate))
            else:
                prompt = self._embedding_prompt(req.embedding, req.label)
            self.set_prompt(prompt, append=req.append)
        except (ValueError, OSError) as e:
            self._warn.warn("set_prompt", f"set_prompt refused: {e}")
            resp.success, resp.message = False, str(e)
            return resp
        resp.success = True
        resp.message = f"prompts: {', '.join(self.prompt_labels())}"
        return resp

    def _live_prompt(self) -> None:
        seconds = self.p["prompt.live_audio_s"]
        now = time.monotonic()
        if seconds <= 0 or now - self._live_at < self.p["prompt.live_audio_period_s"]:
            return
        try:
            wave, rate = self.audio.last(seconds)
        except ValueError:
            return  # not enough heard yet: keep the previous live prompt
        self._live_at = now
        self.set_prompt(Prompt("sound", "audio", self.embedder.audio(wave, rate)), append=True)

    # ------------------------------------------------------------------ inputs

    def _on_audio(self, msg: Any) -> None:
        try:
            sound, _ = self._audio_in.decode(msg, self.audio.sample_rate, self.audio.channels)
            self.audio.push(sound.samples, sound.sample_rate)
        except BAD_INPUT as e:
            self._warn.fault("audio", fault_kind(e), f"dropped chunk: {e}")

    def _on_image(self, msg: Image | CompressedImage) -> None:
        try:
            dec.check_picture(msg, self.p["max_image_bytes"])  # headers only: cheap
        except BAD_INPUT as e:
            self._warn.fault("camera", fault_kind(e), f"dropped image: {e}")
            return
        self.mailbox.put("camera", msg)

    # ------------------------------------------------------------------ worker

    def _counted(self, name: str, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        def counted(msg: Any) -> None:
            self.inputs[name].received += 1
            callback(msg)
        return counted

    def input_counts(self) -> dict[str, InputCounts]:
        """Snapshots of the input counters for /diagnostics (bad: the fault limiter's)."""
        box = self.mailbox.stats().get("camera")
        bad = {topic: sum(kinds.values()) for topic, kinds in self._warn.counts().items()}
        return {"camera": replace(self.inputs["camera"], dropped=box.dropped if box else 0,
                                  processed=self.frames, bad=bad.get("camera", 0)),
                "audio": replace(self.inputs["audio"], bad=bad.get("audio", 0))}

    def _work(self) -> None:
        while not self._worker.stopping:
            for _, msg in self.mailbox.take(timeout=0.2):
                try:
                    self.process(msg)
                    self._worker.succeeded()
                except BAD_INPUT as e:
                    self._warn.fault("camera", fault_kind(e), f"dropped frame: {e}")
                except Exception as e:  # keep the worker alive whatever one frame does
                    if not self.context.ok():  # Ctrl-C shut ROS down mid-frame: just stop
                        return
                    self._warn.fault("camera", "other", f"failed on one frame "
                                    f"({type(e).__name__}: {e}); continuing")
                    self._worker.failed("frame", e)

    def process(self, msg: Image | CompressedImage) -> list[Detection]:
        """Detect every active prompt in one frame and publish (public for benchmarks)."""
        t0 = time.perf_counter()
        self._live_prompt()
        with self._prompt_lock:
            prompts = list(self._prompts.values())
        rgb = dec.as_rgb8(dec.decode_picture(msg, self.p["max_image_bytes"]))
        dets: list[Detection] = []
        if prompts:
            regions = self.detector.regions(rgb)
            dets = self.detector.detect_all(regions, prompts)
            if self._heat_pub is not None:
                heat = heatmap(rgb, self.detector.similarity(regions, prompts[-1].vector))
                self._heat_pub.publish(cv.numpy_to_image(heat, "rgb8", msg.header))
        header = msg.header
        if self._vision_msgs is not None:
            self._det_pub.publish(cv.detections_to_vision_msgs(self._vision_msgs, header, dets))
        else:
            self._det_pub.publish(Detection2DArray(header=header, detections=[
                Detection2D(header=header, results=[ClassHypothesis(
                    class_id=d.label, score=float(np.clip(d.score, 0.0, 1.0)))],
                    bbox=_bbox(d.box), prompt_modality=d.modality, id="") for d in dets]))
        if self._img_pub is not None:
            self._img_pub.publish(cv.numpy_to_image(draw_detections(rgb, dets), "rgb8",
                                                    header))
        self.frames += 1
        self.frame_ms.append((time.perf_counter() - t0) * 1e3)
        del self.frame_ms[:-1000]
        if not prompts:
            self._warn.warn("no-prompt", "no prompt set: publishing empty detections (set one "
                            "with ~/set_prompt, prompt.texts or a prompt topic)")
        return dets

    def destroy_node(self) -> None:
        self.stop_work()
        super().destroy_node()


def _bbox(box: np.ndarray) -> BoundingBox2D:
    x0, y0, x1, y1 = (float(v) for v in box)
    return BoundingBox2D(center_x=(x0 + x1) / 2, center_y=(y0 + y1) / 2, size_x=x1 - x0,
                         size_y=y1 - y0)


def main(argv: Sequence[str] | None = None) -> int:
    """``ros2 run imagebind_ros detector_node`` / ``bin/detector_node``."""
    return run_node(DetectorNode, NODE_NAME, argv)
