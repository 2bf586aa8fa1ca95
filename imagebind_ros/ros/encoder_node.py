"""Encoder node: sensor topics in, ImageBind embeddings and zero-shot labels out.

One model per process (``model_cache``), whatever number of modalities and nodes use it.
Subscription callbacks only convert cheap things and buffer; a worker thread takes the
newest unprocessed input of each modality (older ones are dropped and counted) at most at
``<modality>.max_rate_hz``, preprocesses it, encodes it and publishes:

- ``embeddings/<modality>`` (``imagebind_ros/Embedding``): header = source stamp and frame;
- ``zero_shot/<modality>`` (``imagebind_ros/ZeroShot``): top-k labels of the current set.

Image inputs are ``sensor_msgs/Image`` or, by ``<m>.transport`` or the image_transport topic
suffix (``.../compressed``, ``.../compressedDepth``), ``CompressedImage``; audio is any of
``decode.AUDIO_MSG_TYPES`` (``audio.msg_type``); IMU one topic or RealSense-style
separate gyro and accel topics combined (``imu_combine``). An input topic that carries
another message type gets one warning naming both. Inputs use sensor-data QoS (best
effort), outputs are reliable. Services: ``~/set_labels``
(``SetLabels``) and ``~/embed_text`` (``EmbedText``); the ``labels``/``templates``
parameters can also be set at runtime. Bad inputs are dropped with one rate-limited warning.
Lifecycle node (``ros.lifecycle``: configure loads the model, activate subscribes and starts
the worker); model-running services off the executor (``ros.slow_services``);
``/diagnostics`` per input and for the worker (``ros.diagnostics``).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image, Imu

from imagebind_ros import decode as dec
from imagebind_ros import modalities
from imagebind_ros.imu_combine import ImuCombiner
from imagebind_ros.msg import ClassHypothesis, Embedding, ZeroShot
from imagebind_ros.ros import conversions as cv
from imagebind_ros.ros.diagnostics import (InputCounts, InputDiagnostics, InputSpec,
                                           declare_diagnostics_parameters)
from imagebind_ros.ros.lifecycle import ManagedNode
from imagebind_ros.ros.model_params import declare_model_parameters, load_model
from imagebind_ros.ros.node_utils import (RELIABLE_QOS, SENSOR_QOS, TRANSPORTS,
                                          AudioInput, InputTopics, LabelParameters,
                                          StartupError, declare, fault_kind, fault_limiter,
                                          image_transport, labels_from, run_node, sensor_qos)
from imagebind_ros.ros.slow_services import SlowServices, declare_service_parameters
from imagebind_ros.ros.worker import Worker
from imagebind_ros.srv import EmbedText, SetLabels
from imagebind_ros.streams import AudioWindower, ImuWindower, Mailbox, StampGate, StreamError
from imagebind_ros.zeroshot import DEFAULT_TEMPLATES, ZeroShotClassifier

NODE_NAME = "encoder_node"
SENSOR_MODALITIES = ("vision", "audio", "depth", "thermal", "imu")
DEFAULT_TOPICS = {"vision": "camera/image_raw", "audio": "audio", "depth": "depth/image_raw",
                  "thermal": "thermal/image_raw", "imu": "imu/data"}
DEFAULT_RATES = {"vision": 10.0, "audio": 0.0, "depth": 10.0, "thermal": 10.0, "imu": 0.0}
BAD_INPUT = (dec.DecodeError, StreamError, ValueError)


@dataclass
class _Input:
    """One unit of work: an image message, or a ready audio/IMU window."""

    stamp_ns: int
    frame_id: str
    payload: Any


@dataclass
class ModalityStats:
    """Counters and recent timings of one modality (read by the runner and benchmarks)."""

    received: int = 0
    published: int = 0
    latency_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))
    inference_ms: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=2000))


class EncoderNode(LabelParameters, ManagedNode):
    """Embeds camera, depth, thermal, audio and IMU streams with one shared model."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._warn = fault_limiter(self)
        self._declare_parameters()
        self._srv_p = declare_service_parameters(self)
        self._diag_p = declare_diagnostics_parameters(
            self, [m for m in self.p["modalities"] if m in SENSOR_MODALITIES])
        self.add_on_set_parameters_callback(self._on_parameters)
        self._worker = Worker("encoder-worker", self._work, self.get_logger(), 10.0)
        self.modalities: tuple[str, ...] = ()
        self.mailbox = Mailbox({})
        self.diagnostics: InputDiagnostics | None = None
        self.classifier: ZeroShotClassifier | None = None
        self.start()

    # ------------------------------------------------------------------ lifecycle

    def configure(self) -> None:
        """Load the model, embed the labels; publishers, services and /diagnostics."""
        # its sensors, and text for the labels and ~/embed_text
        self.shared = load_model(self.p, uses=(*self.p["modalities"], "text"))
        self.model_id = self.shared.model_id
        self.config = self.shared.config
        self.modalities = self._check_modalities()
        self.stats = {m: ModalityStats() for m in self.modalities}
        self._specs = {m: modalities.spec(m) for m in self.modalities}
        # image_transport names resolved here: a contradicting transport fails configure
        self._topics = {m: image_transport(self.p[f"{m}.topic"], self.p[f"{m}.transport"])
                        if self._specs[m].from_picture is not None
                        else (self.p[f"{m}.topic"], "") for m in self.modalities}
        self._gates = {m: StampGate(agree=self.p["stamp_agree"],
                                    max_ahead_ns=int(self.p["stamp_max_ahead_s"] * 1e9))
                       for m in modalities.image_modalities()}
        self._embedding_pubs = {m: self.create_publisher(Embedding, f"embeddings/{m}",
                                                         RELIABLE_QOS)
                                for m in self.modalities}
        self._zero_shot_pubs = {m: self.create_publisher(ZeroShot, f"zero_shot/{m}",
                                                         RELIABLE_QOS)
                                for m in self.modalities}
        self.classifier = self._setup_zero_shot()
        self.slow_services = SlowServices(self, self._srv_p["timeout_s"],
                                          self._srv_p["max_pending"])
        self.slow_services.create_service(SetLabels, "set_labels", self._on_set_labels)
        self.slow_services.create_service(EmbedText, "embed_text", self._on_embed_text)
        self._stats_timer = (self.create_timer(self.p["stats_period_s"], self._log_stats)
                             if self.p["stats_period_s"] > 0 else None)
        diag = self._diag_p
        self.diagnostics = InputDiagnostics(
            self, diag, {m: InputSpec(self._topics[m][0], diag[f"expected_hz.{m}"],
                                      self.p[f"{m}.max_rate_hz"]) for m in self.modalities},
            self.input_counts, self._worker.health, self.shared)
        note = " RANDOM-INIT weights: outputs are meaningless" if self.shared.random_init else ""
        self.get_logger().info(f"encoding {', '.join(self.modalities)} with "
                               f"{self.shared.describe()}.{note}")

    def activate(self) -> None:
        """Subscribe to the sensors and start the worker (a fresh mailbox each time)."""
        self.start_work({m: self.p[f"{m}.max_rate_hz"] for m in self.modalities})

    def deactivate(self) -> None:
        self.stop_work()

    def cleanup(self) -> None:
        """Drop everything configure made; the model is freed once no node holds it."""
        self.destroy_configured(self._stats_timer, *self._embedding_pubs.values(),
                                *self._zero_shot_pubs.values())
        self.classifier = None
        self.release_model()

    # ------------------------------------------------------------------ setup

    def _declare_parameters(self) -> None:
        def d(name: str, default: Any, text: str, read_only: bool = True) -> Any:
            return declare(self, name, default, text, read_only)

        p = declare_model_parameters(self)
        p["modalities"] = d("modalities", list(SENSOR_MODALITIES),
                            "sensor modalities to encode (vision, audio, depth, thermal, imu)")
        for m in SENSOR_MODALITIES:
            p[f"{m}.topic"] = d(f"{m}.topic", DEFAULT_TOPICS[m], f"input topic for {m}")
            p[f"{m}.max_rate_hz"] = d(f"{m}.max_rate_hz", DEFAULT_RATES[m],
                                      f"most {m} embeddings per second (0 = no limit)", False)
        for m in ("vision", "depth", "thermal"):
            p[f"{m}.transport"] = d(f"{m}.transport", "auto", f"{', '.join(TRANSPORTS)}, "
                                    "or auto (a .../compressed or .../compressedDepth topic "
                                    "says which, else raw); not raw: topic/<transport>, "
                                    "sensor_msgs/CompressedImage, as image_transport does")
        p["audio.msg_type"] = d("audio.msg_type", dec.AUDIO_CHUNK, "audio message type: "
                                "imagebind_ros/msg/AudioChunk or audio_common_msgs/msg/"
                                "AudioStamped, AudioDataStamped or AudioData")
        p["audio.info_topic"] = d("audio.info_topic", "audio_info", "audio_common AudioInfo "
                                  "topic (AudioData and AudioDataStamped only)")
        p["audio.hop_s"] = d("audio.hop_s", 0.5, "seconds between audio windows")
        p["audio.sample_rate"] = d("audio.sample_rate", 0, "expected audio rate, Hz (0 = "
                                   "the majority of recent chunks'); other rates are refused")
        p["audio.channels"] = d("audio.channels", 0, "expected channel count (0 = the "
                                "majority of recent chunks'); other counts are refused")
        p["audio.max_abs"] = d("audio.max_abs", 2.0, "chunks with a sample beyond this "
                               "(x full scale) are dropped; the rest is clipped to [-1, 1]")
        p["audio.max_gap_s"] = d("audio.max_gap_s", 0.1, "stamp gaps up to this are filled "
                                 "with silence, longer ones restart the window")
        p["imu.hop_s"] = d("imu.hop_s", 0.5, "seconds between IMU windows")
        p["imu.max_gap_s"] = d("imu.max_gap_s", 0.5, "IMU gaps longer than this restart the "
                               "window (shorter ones are interpolated)")
        p["imu.gyro_topic"] = d("imu.gyro_topic", "", "gyroscope topic (sensor_msgs/Imu, "
                                "e.g. RealSense gyro/sample); with imu.accel_topic both "
                                "replace imu.topic and are combined onto the gyro's stamps "
                                "(empty = one topic)")
        p["imu.accel_topic"] = d("imu.accel_topic", "", "accelerometer topic (RealSense "
                                 "accel/sample), see imu.gyro_topic")
        p["imu.combine_max_gap_s"] = d("imu.combine_max_gap_s", 0.05, "separate topics: "
                                       "accel samples further apart than this are not "
                                       "interpolated between (the gyro sample is dropped)")
        p["imu.max_late_s"] = d("imu.max_late_s", 0.1, "how late (out of order) an IMU sample "
                                "may arrive and still be used")
        p["imu.max_accel"] = d("imu.max_accel", 160.0, "IMU samples with an acceleration "
                               "beyond this (m/s^2, any axis) are dropped one by one")
        p["imu.max_gyro"] = d("imu.max_gyro", 35.0, "IMU samples with an angular velocity "
                              "beyond this (rad/s, any axis) are dropped one by one")
        p["stamp_agree"] = d("stamp_agree", 3, "stamps off a stream's timeline (backwards, "
                             "jumps) are only accepted when this many in a row agree")
        p["stamp_max_ahead_s"] = d("stamp_max_ahead_s", 1.0, "inputs stamped further ahead of "
                                   "the node clock are dropped (0 = no limit)")
        p["depth.min_valid_fraction"] = d("depth.min_valid_fraction", 0.01, "depth frames "
                                          "with fewer valid pixels (finite, > 0) are dropped")
        p["max_image_bytes"] = d("max_image_bytes", dec.MAX_IMAGE_BYTES,
                                 "larger images are dropped")
        p["labels"] = d("labels", Parameter.Type.STRING_ARRAY,
                        "zero-shot labels (overrides labels_file)", False)
        p["labels_file"] = d("labels_file", "", "file with one label per line", False)
        p["templates"] = d("templates", list(DEFAULT_TEMPLATES),
                           "prompt templates, each with one '{}' for the label", False)
        p["top_k"] = d("top_k", 5, "labels per zero-shot result", False)
        p["logit_scale"] = d("logit_scale", 0.0, "zero-shot scores = softmax(logit_scale * "
                             "cosine); 0 = the model's learned text temperature (100 where "
                             "the backend cannot tell)")
        p["stats_period_s"] = d("stats_period_s", 30.0, "seconds between stats log lines "
                                "(0 = never)")
        self.p = p

    def _check_modalities(self) -> tuple[str, ...]:
        mods = tuple(self.p["modalities"])
        unknown = [m for m in mods if m not in SENSOR_MODALITIES]
        if unknown or not mods:
            raise StartupError(f"modalities {unknown or '[]'} not encodable; choose from "
                               f"{', '.join(SENSOR_MODALITIES)}")
        missing = [m for m in mods if m not in self.shared.modalities]
        if missing:
            raise StartupError(f"model {self.model_id} has no {', '.join(missing)} encoder "
                               f"(has: {', '.join(self.shared.modalities)}); remove "
                               "them from 'modalities'")
        return mods

    def _subscribe(self) -> None:
        self._inputs = InputTopics(self)
        for m in self.modalities:
            topic, transport = self._topics[m]
            if transport:  # an image topic
                self._inputs.subscribe(Image if transport == "raw" else CompressedImage,
                                       topic, self._image_cb(m), SENSOR_QOS,
                                       f"set {m}.transport or {m}.topic")
            elif m == "audio":
                acfg: Any = self.config.modality("audio")
                self._audio = AudioWindower(
                    acfg.clip_duration, self.p["audio.hop_s"],
                    self.p["audio.sample_rate"] or None, self.p["audio.channels"] or None,
                    max_gap_s=self.p["audio.max_gap_s"], agree=self.p["stamp_agree"],
                    max_abs=self.p["audio.max_abs"],
                    max_ahead_s=self.p["stamp_max_ahead_s"])
                self._audio_in = AudioInput(self._inputs, self, self.p["audio.msg_type"],
                                            topic, self.p["audio.info_topic"], self._audio_cb,
                                            sensor_qos(50))
            else:
                self._subscribe_imu(topic)

    def _subscribe_imu(self, topic: str) -> None:
        """One Imu topic, or RealSense-style separate gyro and accel topics combined."""
        icfg: Any = self.config.modality("imu")
        self._imu = ImuWindower(icfg.window_seconds, self.p["imu.hop_s"],
                                self.p["imu.max_late_s"], self.p["imu.max_gap_s"],
                                agree=self.p["stamp_agree"], max_accel=self.p["imu.max_accel"],
                                max_gyro=self.p["imu.max_gyro"],
                                max_ahead_s=self.p["stamp_max_ahead_s"])
        gyro, accel = self.p["imu.gyro_topic"], self.p["imu.accel_topic"]
        if bool(gyro) != bool(accel):
            raise StartupError("set both imu.gyro_topic and imu.accel_topic (separate "
                               "topics) or neither (imu.topic)")
        if not gyro:
            self._inputs.subscribe(Imu, topic, self._imu_cb, sensor_qos(200))
            return
        self._combiner = ImuCombiner(int(self.p["imu.combine_max_gap_s"] * 1e9))
        for field, name in (("gyro", gyro), ("accel", accel)):
            self._inputs.subscribe(Imu, name, self._imu_part_cb(field), sensor_qos(200))

    def _setup_zero_shot(self) -> ZeroShotClassifier | None:
        if "text" not in self.shared.modalities:
            self.get_logger().warning(f"model {self.model_id} has no text encoder: zero-shot "
                                      "labels are off")
            return None
        scale, source = self.p["logit_scale"], "parameter logit_scale"
        if scale <= 0:
            learned = self.shared.text_logit_scale()
            scale, source = ((learned, "the model's learned text temperature") if learned
                             else (100.0, "CLIP's default; this backend hides the learned one"))
        self.get_logger().info(f"zero-shot scores: softmax({scale:.4g} * cosine), {source}")
        clf = ZeroShotClassifier(self.embed_texts, scale)
        labels = labels_from(self.p["labels"], self.p["labels_file"])
        if labels:
            try:
                clf.set_labels(labels, self.p["templates"])
            except ValueError as e:
                raise StartupError(f"zero-shot labels: {e}") from None
        else:
            self.get_logger().warning("no zero-shot labels (set 'labels' or 'labels_file', or "
                                      "call ~/set_labels): only embeddings are published")
        return clf

    # ------------------------------------------------------------------ text

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Unit-norm text embeddings (N, D) with the shared model."""
        tokens = modalities.to_batch("text", texts, self.config)
        return self.shared.encode("text", tokens.numpy())

    # ------------------------------------------------------------------ callbacks

    def _bad(self, modality: str, what: str, err: Exception) -> None:
        """Count and report a dropped input (the limiter logs one line per topic per period)."""
        self._warn.fault(self.p[f"{modality}.topic"], fault_kind(err), f"dropped {what}: {err}")

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _image_cb(self, modality: str) -> Any:
        def callback(msg: Image | CompressedImage) -> None:
            self.stats[modality].received += 1
            stamp = dec.stamp_to_ns(msg.header.stamp)
            try:
                # metadata and file headers only (cheap): garbage never displaces a frame
                dec.check_picture(msg, self.p["max_image_bytes"])
                admitted = self._gates[modality].admit(stamp, msg, self._now_ns())
            except BAD_INPUT as e:
                self._bad(modality, "image", e)
                return
            stamp, msg = admitted.items[-1]
            self.mailbox.put(modality, _Input(stamp, msg.header.frame_id, msg))
        return callback

    def _audio_cb(self, msg: Any) -> None:
        self.stats["audio"].received += 1
        try:
            sound, stamp = self._audio_in.decode(msg, self._audio.config_rate,
                                                 self._audio.config_channels)
            window = self._audio.push(sound.samples, sound.sample_rate, stamp,
                                      self._now_ns())
        except BAD_INPUT as e:
            self._bad("audio", "chunk", e)
            return
        if window is not None:
            frame = msg.header.frame_id if hasattr(msg, "header") else ""
            self.mailbox.put("audio", _Input(window.stamp_ns, frame, window))

    def _imu_cb(self, msg: Imu) -> None:
        self.stats["imu"].received += 1
        try:
            sample, stamp = dec.decode_imu(msg)
        except BAD_INPUT as e:
            self._bad("imu", "sample", e)
            return
        self._imu_push(sample, stamp, msg.header.frame_id)

    def _imu_part_cb(self, field: str) -> Any:
        """Separate topics: this topic's field (REP 145 "not provided" is refused)."""
        def callback(msg: Imu) -> None:
            self.stats["imu"].received += 1
            name = "angular_velocity" if field == "gyro" else "linear_acceleration"
            try:
                sample = dec.read_imu(msg)
                value = sample.gyro if field == "gyro" else sample.accel
                if value is None:
                    raise dec.DecodeError(f"imu.{field}_topic message has no {name} "
                                          "(covariance[0] == -1, REP 145: not provided)",
                                          dec.MISSING_FIELD)
            except BAD_INPUT as e:
                self._bad("imu", "sample", e)
                return
            for combined, stamp in self._combiner.push(field, value, sample.stamp_ns):
                self._imu_push(combined, stamp, msg.header.frame_id)
        return callback

    def _imu_push(self, sample: np.ndarray, stamp: int, frame_id: str) -> None:
        try:
            window = self._imu.push(sample, stamp, self._now_ns())
            if window is not None:
                dec.check_imu_window(window.samples)
        except BAD_INPUT as e:
            self._bad("imu", "sample", e)
            return
        if window is not None:
            self.mailbox.put("imu", _Input(window.stamp_ns, frame_id, window))

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        while not self._worker.stopping and self.context.ok():
            for modality, item in self.mailbox.take(timeout=0.2):
                # the newest input that can be used: a corrupt frame falls back to the ones
                # it displaced (at most two: decode cost stays bounded), newest first
                for candidate in [item, *self.mailbox.spares(modality)]:
                    if self._try(modality, candidate):
                        break

    def _try(self, modality: str, item: _Input) -> bool:
        """Process one input; False if it was unusable (reported) and an older one may do.
        Exceptions other than bad input count toward the worker's persistent-failure ERROR."""
        try:
            self._process(modality, item)
            self._worker.succeeded()
        except BAD_INPUT as e:
            self._bad(modality, "input", e)
            return False
        except Exception as e:  # keep the worker alive whatever one input does
            if self.context.ok():  # else Ctrl-C shut ROS down mid-input: the loop ends
                self._bad(modality, f"input ({type(e).__name__}, a bug?)", e)
                self._worker.failed(modality, e)
        return True

    def to_tensor(self, modality: str, item: _Input) -> torch.Tensor:
        """Preprocess one input into the model's (1, ...) batch (public for benchmarks).

        An image message is decoded once and its picture becomes the modality's raw input
        (``imagebind_ros.modalities``); audio and IMU windows already are raw inputs.
        """
        spec = self._specs[modality]
        raw = item.payload
        if spec.from_picture is not None:
            raw = spec.picture_to_raw(dec.decode_picture(raw, self.p["max_image_bytes"]))
            if spec.valid_fraction is not None:
                valid = spec.valid_fraction(raw)
                if valid < self.p.get(f"{modality}.min_valid_fraction", 0.0):
                    raise dec.DecodeError(f"{modality} frame has {valid:.1%} valid pixels "
                                          "(NaN, Inf and 0 are no measurement)")
        return spec.to_batch([raw], self.config)

    def _process(self, modality: str, item: _Input) -> None:
        t0 = time.perf_counter()
        x = self.to_tensor(modality, item)
        vector = self.shared.encode(modality, x.numpy())[0]
        inference_ms = (time.perf_counter() - t0) * 1e3
        header = cv.make_header(item.stamp_ns, item.frame_id)
        self._embedding_pubs[modality].publish(Embedding(
            header=header, modality=modality, model_id=self.model_id,
            vector=vector.astype(np.float32).tolist(), inference_ms=float(inference_ms)))
        if self.classifier is not None and self.classifier.ready:
            top = self.classifier.top_k(vector, self.p["top_k"])
            self._zero_shot_pubs[modality].publish(ZeroShot(
                header=header, modality=modality, model_id=self.model_id,
                results=[ClassHypothesis(class_id=lab, score=s) for lab, s in top]))
        st = self.stats[modality]
        st.published += 1
        st.inference_ms.append(inference_ms)
        st.latency_ms.append((self.get_clock().now().nanoseconds - item.stamp_ns) / 1e6)

    # ------------------------------------------------------------------ labels

    def _apply_labels(self, labels: Sequence[str], templates: Sequence[str] | None) -> str:
        """Switch the label set; raises ValueError (old set kept) when it is unusable."""
        if self.unconfigured:  # the parameters are read at configure
            return "stored; embedded at configure"
        if self.classifier is None:
            raise ValueError(f"model {self.model_id} has no text encoder")
        changed = self.classifier.set_labels(labels, templates)
        n = len(self.classifier.labels)
        return (f"{n} labels x {len(self.classifier.templates)} templates embedded" if changed
                else f"{n} labels unchanged")

    def _on_parameters(self, params: list[Parameter]) -> SetParametersResult:
        new = {p.name: p.value for p in params}
        refused = self._label_parameters_refused(new)
        if refused is not None:
            return refused
        for name, value in new.items():
            if name.endswith(".max_rate_hz"):
                self.mailbox.set_max_rate(name.split(".")[0], float(value))
                if self.diagnostics and name.split(".")[0] in self.diagnostics.inputs:
                    self.diagnostics.inputs[name.split(".")[0]].spec.max_rate_hz = float(value)
            if name in self.p:
                self.p[name] = value if value is not None else []
        return SetParametersResult(successful=True)

    def _on_embed_text(self, req: EmbedText.Request, resp: EmbedText.Response
                       ) -> EmbedText.Response:
        texts = list(req.texts)
        try:
            if "text" not in self.shared.modalities:
                raise ValueError(f"model {self.model_id} has no text encoder")
            if not texts or not all(t.strip() for t in texts):
                raise ValueError("texts must be a non-empty list of non-empty strings")
            t0 = time.perf_counter()
            emb = self.embed_texts(texts)
            ms = (time.perf_counter() - t0) * 1e3 / len(texts)
        except ValueError as e:
            resp.success, resp.message = False, str(e)
            return resp
        header = cv.make_header(self.get_clock().now().nanoseconds, "")
        resp.embeddings = [Embedding(header=header, modality="text", model_id=self.model_id,
                                     vector=v.tolist(), inference_ms=ms) for v in emb]
        resp.success, resp.message = True, f"{len(texts)} texts embedded"
        return resp

    # ------------------------------------------------------------------ stats / shutdown

    def summary(self) -> dict[str, dict[str, float]]:
        """Per-modality counters, p50/p99 latency (source stamp -> published) and p50
        preprocess + encoder time (ms) over the last 2000 outputs."""
        boxes = self.mailbox.stats()
        out = {}
        for m, st in self.stats.items():
            box = boxes.get(m)
            lat = np.asarray(st.latency_ms) if st.latency_ms else np.full(1, np.nan)
            inf = np.asarray(st.inference_ms) if st.inference_ms else np.full(1, np.nan)
            out[m] = {"received": st.received, "invalid": self._bad_count(m),
                      "dropped": box.dropped if box else 0, "published": st.published,
                      "latency_p50_ms": float(np.percentile(lat, 50)),
                      "latency_p99_ms": float(np.percentile(lat, 99)),
                      "inference_p50_ms": float(np.percentile(inf, 50)),
                      "restarts": self._restarts(m)}
        return out

    def input_counts(self) -> dict[str, InputCounts]:
        """Each modality's counters for /diagnostics (bad = dropped as invalid)."""
        boxes = self.mailbox.stats()
        return {m: InputCounts(st.received, self._bad_count(m),
                               boxes[m].dropped if m in boxes else 0, st.published,
                               list(st.latency_ms)[-200:]) for m, st in self.stats.items()}

    def _bad_count(self, modality: str) -> int:
        """Inputs of ``modality`` dropped as bad: the fault limiter's count for its topic."""
        return sum(self._warn.counts().get(self.p[f"{modality}.topic"], {}).values())

    def _restarts(self, modality: str) -> int:
        """Times the audio/IMU window restarted (stamp gaps or clock resets)."""
        if modality == "audio":
            return self._audio.restarts
        return self._imu.restarts if modality == "imu" else 0

    def _log_stats(self) -> None:
        parts = [f"{m}: {s['received']} in, {s['published']} out, {s['dropped']} dropped, "
                 f"{s['invalid']} bad, p50 {s['latency_p50_ms']:.0f} ms"
                 for m, s in self.summary().items()]
        self.get_logger().info("; ".join(parts))

    def destroy_node(self) -> None:
        self.stop_work()
        super().destroy_node()


def main(argv: Sequence[str] | None = None) -> int:
    """``ros2 run imagebind_ros encoder_node`` / ``imagebind-ros-encoder``."""
    return run_node(EncoderNode, NODE_NAME, argv)
