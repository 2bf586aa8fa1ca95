"""Fusion node: every sensor's embedding in, one fused scene embedding and label out.

Subscribes (reliable, as the encoder publishes) to ``embeddings/<modality>`` for each of
``modalities``, aligns the streams in time (``fusion.ApproximateSync``: ``slop_s``, and
per sensor ``<m>.timeout_s`` after which a silent sensor no longer counts) and fuses each
aligned set (``fusion.Fuser``, ``method``, ``calibration_file``). It publishes

- ``embeddings/fused`` (``Embedding``, modality ``fused``): stamp = the newest contributing
  source stamp, frame = ``frame_id``;
- ``zero_shot/fused`` (``ZeroShot``): the top-k fused labels, as the encoder's
  ``zero_shot/<modality>``;
- ``fusion/contributors`` (``FusionContributors``): which sensors counted with what weight,
  and why the others did not (``timeout``, ``disabled``, ``never received``, ...);
- ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``, every ``diagnostics.period_s``):
  one status ``fusion_node: fusion``, WARN while a configured sensor is silent, ERROR when
  none contributes (or there are no labels).

Label embeddings come from the process's shared model (``model_cache``: in
``imagebind-ros run`` the encoder's instance), with the encoder's label parameters
(``labels``, ``labels_file``, ``templates``, settable at runtime) and service
``~/set_labels``. Fusion itself is numpy on a few vectors (about 1 ms a set), so it runs in
the subscription callbacks. Bad inputs (another model's embedding, wrong width, NaN) are dropped
with one rate-limited warning. The method and its numbers: docs/fusion.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter

from imagebind_ros import fusion
from imagebind_ros.decode import MALFORMED, stamp_to_ns
from imagebind_ros.embedder import Embedder
from imagebind_ros.inference.manifest import load_manifest, sha256_file
from imagebind_ros.model_cache import SharedModel
from imagebind_ros.msg import ClassHypothesis, Embedding, FusionContributors, ZeroShot
from imagebind_ros.ros import conversions as cv
from imagebind_ros.ros.diagnostics import NodeDiagnostics, declare_diagnostics_parameters
from imagebind_ros.ros.lifecycle import ManagedNode
from imagebind_ros.ros.model_params import declare_model_parameters, load_model
from imagebind_ros.ros.node_utils import (RELIABLE_QOS, InputTopics, LabelParameters,
                                          StartupError, declare, fault_limiter, labels_from,
                                          run_node)
from imagebind_ros.ros.slow_services import SlowServices, declare_service_parameters
from imagebind_ros.srv import SetLabels
from imagebind_ros.zeroshot import DEFAULT_TEMPLATES, ZeroShotClassifier

NODE_NAME = "fusion_node"
STATUS_NAME = f"{NODE_NAME}: fusion"
FUSED = "fused"
NS = 1_000_000_000
POLL_PERIOD_S = 0.05  # how often a set waiting for a silent sensor is re-checked


@dataclass
class InputStats:
    """Counters of one input stream (diagnostics; read by tests)."""

    received: int = 0
    invalid: int = 0
    newest_ns: int | None = None  # newest source stamp
    last_count: int = 0  # `received` at the previous diagnostics tick


def contributors_message(res: fusion.FusionResult, header: Any) -> FusionContributors:
    """The ``FusionContributors`` of one fusion result."""
    return FusionContributors(
        header=header, method=res.method,
        modalities=[c.modality for c in res.contributions],
        weights=[float(c.weight) for c in res.contributions],
        reliabilities=[float(c.reliability) for c in res.contributions],
        ages_s=[float(c.age_s) for c in res.contributions],
        excluded=[m for m, _ in res.excluded], reasons=[r for _, r in res.excluded])


def input_states(config: fusion.FusionConfig, live: Sequence[str],
                 received: Mapping[str, int], last: fusion.FusionResult | None
                 ) -> dict[str, str]:
    """Per configured sensor, what the diagnostics say about it now: ``used`` (it counted in
    the last result), ``disabled``, ``timeout`` (silent longer than its timeout),
    ``never received``, or the reason the last result left it out."""
    used = {c.modality for c in last.contributions} if last is not None else set()
    reasons = dict(last.excluded) if last is not None else {}
    out = {}
    for m, mc in config.modalities.items():
        if not mc.enabled:
            out[m] = fusion.DISABLED
        elif m not in live:
            out[m] = fusion.TIMEOUT if received.get(m) else fusion.NEVER
        elif m in used:
            out[m] = "used"
        else:
            out[m] = reasons.get(m, fusion.NO_INPUT)
    return out


def status_level(states: Mapping[str, str], has_labels: bool) -> tuple[int, str]:
    """(DiagnosticStatus level, message): ERROR when no sensor can contribute (all silent
    or disabled) or there are no labels, WARN while a configured sensor is silent, else
    OK."""
    silent = [m for m, s in states.items() if s in (fusion.TIMEOUT, fusion.NEVER)]
    alive = [m for m, s in states.items() if s not in (fusion.TIMEOUT, fusion.NEVER,
                                                       fusion.DISABLED)]
    if not has_labels:
        return DiagnosticStatus.ERROR, "no labels: nothing is fused (set 'labels')"
    if not alive:
        return DiagnosticStatus.ERROR, "no sensor contributes: " + (
            ", ".join(f"{m} {states[m]}" for m in silent) or "all disabled")
    if silent:
        return DiagnosticStatus.WARN, "; ".join(f"{m}: {states[m]}" for m in silent)
    return DiagnosticStatus.OK, f"fusing {', '.join(alive)}"


class FusionNode(LabelParameters, ManagedNode):
    """Fuses the latest embeddings of every sensor into one scene embedding and label."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._warn = fault_limiter(self)
        self._declare_parameters()
        self._srv_p = declare_service_parameters(self)
        self._diag_period_s = declare_diagnostics_parameters(self, None)["period_s"]
        self.add_on_set_parameters_callback(self._on_parameters)
        self.diagnostics: NodeDiagnostics | None = None
        self.start()

    # ------------------------------------------------------------------ lifecycle

    def configure(self) -> None:
        """Load the model, calibration and labels; publishers, services, /diagnostics."""
        self.shared: SharedModel = load_model(self.p, needs=("text",), uses=())
        self.model_id = self.shared.model_id
        self.config = self._fusion_config()
        self.calibration = self._load_calibration(self.p["calibration_file"])
        try:
            self.sync = fusion.sync_from_config(self.config, self.p["slop_s"],
                                                self.p["queue_size"])
        except ValueError as e:
            raise StartupError(str(e)) from None
        self.stats = {m: InputStats() for m in self.config.modalities}
        self.published = 0
        self._published_at_tick = 0
        self._last_tick = time.monotonic()
        self.last: fusion.FusionResult | None = None
        self.fuser: fusion.Fuser | None = None
        self.classifier = ZeroShotClassifier(Embedder(self.shared.encode,
                                                      self.shared.config).texts)
        labels = labels_from(self.p["labels"], self.p["labels_file"])
        if labels:
            try:
                self._apply_labels(labels, self.p["templates"])
            except ValueError as e:
                raise StartupError(f"fusion labels: {e}") from None
        else:
            self.get_logger().warning("no labels (set 'labels' or 'labels_file', or call "
                                      "~/set_labels): nothing is fused until there are")
        self._pubs = {"embedding": self.create_publisher(Embedding, f"embeddings/{FUSED}",
                                                         RELIABLE_QOS),
                      "zero_shot": self.create_publisher(ZeroShot, f"zero_shot/{FUSED}",
                                                         RELIABLE_QOS),
                      "contributors": self.create_publisher(
                          FusionContributors, "fusion/contributors", RELIABLE_QOS)}
        self._poll_timer = self.create_timer(POLL_PERIOD_S, self._poll)
        self.diagnostics = NodeDiagnostics(self, self._diag_period_s,
                                           lambda: [self.diagnostic_status()])
        self.slow_services = SlowServices(self, self._srv_p["timeout_s"],
                                          self._srv_p["max_pending"])
        self.slow_services.create_service(SetLabels, "set_labels", self._on_set_labels)
        cal = (f"calibration {self.p['calibration_file']}" if self.calibration else
               "NO calibration (raw cosines, typicality off: docs/fusion.md)")
        self.get_logger().info(
            f"fusing {', '.join(self.sync.timeouts)} ({self.config.method}, slop "
            f"{self.sync.slop:g} s, {cal}) with {self.shared.describe()}")

    def activate(self) -> None:
        self.activate_subscriptions(self._subscribe)

    def _subscribe(self) -> None:
        inputs = InputTopics(self)
        for m in self.sync.timeouts:  # the enabled sensors
            inputs.subscribe(Embedding, f"embeddings/{m}", self._embedding_cb(m), RELIABLE_QOS)

    def cleanup(self) -> None:
        """Drop everything configure made; the model is freed once no node holds it."""
        self.destroy_configured(self._poll_timer, *self._pubs.values())
        del self.classifier
        self.fuser = None
        self.release_model()

    # ------------------------------------------------------------------ setup

    def _declare_parameters(self) -> None:
        def d(name: str, default: Any, text: str, read_only: bool = True) -> Any:
            return declare(self, name, default, text, read_only)

        p = declare_model_parameters(self)
        p["method"] = d("method", "robust", "fusion method: robust (default), decision, "
                        "embedding or mean (docs/fusion.md)")
        p["modalities"] = d("modalities", list(fusion.SENSORS), "sensors to fuse; each is "
                            "read from embeddings/<modality>")
        for m in fusion.SENSORS:
            p[f"{m}.enabled"] = d(f"{m}.enabled", True, f"false: {m} never counts "
                                  "(reported as disabled)")
            p[f"{m}.weight"] = d(f"{m}.weight", 1.0, f"> 0: how much {m} counts (exponent "
                                 "of its posterior; 2 = as much as two sensors)")
            p[f"{m}.timeout_s"] = d(f"{m}.timeout_s", 1.0, f"{m} no longer counts once its "
                                    "newest source stamp is older than this (seconds)")
        p["slop_s"] = d("slop_s", 0.25, "most seconds between the stamps of one fused set "
                        "(at least half the slowest input's period)")
        p["queue_size"] = d("queue_size", 10, "embeddings kept per sensor for alignment")
        p["calibration_file"] = d("calibration_file", "", "fusion calibration of this model "
                                  "(fusion.fit_calibration); empty = none (raw cosines)")
        p["labels"] = d("labels", Parameter.Type.STRING_ARRAY,
                        "fused labels (overrides labels_file)", False)
        p["labels_file"] = d("labels_file", "", "file with one label per line", False)
        p["templates"] = d("templates", list(DEFAULT_TEMPLATES),
                           "prompt templates, each with one '{}' for the label", False)
        p["top_k"] = d("top_k", 5, "labels per zero_shot/fused result", False)
        p["logit_scale"] = d("logit_scale", 0.0, "temperature of uncalibrated sensors and of "
                             "the mean method; 0 = the model's learned text temperature")
        p["frame_id"] = d("frame_id", "base_link", "frame_id of the fused outputs")
        self.p = p

    def _fusion_config(self) -> fusion.FusionConfig:
        mods = list(self.p["modalities"])
        unknown = [m for m in mods if m not in fusion.SENSORS]
        if unknown or not mods:
            raise StartupError(f"modalities {unknown or '[]'} cannot be fused; choose from "
                               f"{', '.join(fusion.SENSORS)}")
        scale = self.p["logit_scale"] if self.p["logit_scale"] > 0 else (
            self.shared.text_logit_scale() or 100.0)
        try:
            return fusion.FusionConfig(
                self.p["method"], fusion.modality_configs(
                    mods, {m: self.p[f"{m}.weight"] for m in mods},
                    {m: self.p[f"{m}.timeout_s"] for m in mods},
                    [m for m in mods if not self.p[f"{m}.enabled"]]), scale)
        except ValueError as e:
            raise StartupError(str(e)) from None

    def _load_calibration(self, path: str) -> fusion.Calibration | None:
        """The calibration file, refused (StartupError) when it was fitted for another
        model: its checkpoint sha256 (or, where the node cannot hash one, its model id)
        must match."""
        if not path:
            return None
        try:
            cal = fusion.Calibration.load(path)
        except OSError as e:
            raise StartupError(f"cannot read calibration_file {path!r}: {e}") from None
        except ValueError as e:
            raise StartupError(str(e)) from None
        mine = self._checkpoint_sha256()
        if cal.checkpoint_sha256 and mine:
            same, what = cal.checkpoint_sha256 == mine, f"checkpoint sha256 {mine[:12]}"
        else:
            same, what = (not cal.model_id or cal.model_id == self.model_id), self.model_id
        if not same:
            raise StartupError(f"calibration_file {path} was fitted for model "
                               f"{cal.model_id} ({cal.checkpoint_sha256[:12] or 'no sha'}), "
                               f"this node runs {what}: fit one for this model "
                               "(docs/fusion.md) or leave calibration_file empty")
        return cal

    def _checkpoint_sha256(self) -> str:
        """sha256 of the weights in use: the checkpoint file, or the one an export records."""
        if self.p["checkpoint"]:
            return sha256_file(self.p["checkpoint"])
        if self.p["onnx_dir"]:
            info = load_manifest(self.p["onnx_dir"], verify=False).checkpoint or {}
            return str(info.get("sha256", ""))
        return ""

    # ------------------------------------------------------------------ labels

    def _apply_labels(self, labels: Sequence[str], templates: Sequence[str] | None) -> str:
        """Switch the label set; raises ValueError (old set kept) when it is unusable."""
        if self.unconfigured:  # the parameters are read at configure
            return "stored; embedded at configure"
        changed = self.classifier.set_labels(labels, templates)
        names, text = self.classifier.label_embeddings
        if self.fuser is None:
            self.fuser = fusion.Fuser(self.config, names, text, self.calibration)
        else:
            self.fuser.set_labels(names, text)
        n = len(names)
        return (f"{n} labels x {len(self.classifier.templates)} templates embedded" if changed
                else f"{n} labels unchanged")

    def _on_parameters(self, params: list[Parameter]) -> SetParametersResult:
        new = {p.name: p.value for p in params}
        refused = self._label_parameters_refused(new)
        if refused is not None:
            return refused
        for name, value in new.items():
            if name in self.p:
                self.p[name] = value if value is not None else []
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ inputs

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds / NS

    def _embedding_cb(self, modality: str) -> Any:
        def callback(msg: Embedding) -> None:
            self.on_embedding(modality, msg)
        return callback

    def on_embedding(self, modality: str, msg: Embedding) -> None:
        """One embedding of ``modality`` (from its topic, whatever the body says): checked,
        queued for alignment, and every set it completes fused and published."""
        st = self.stats[modality]
        st.received += 1
        vector = np.asarray(msg.vector, np.float32)
        width = self.shared.config.out_embed_dim
        problem = None
        if msg.model_id and msg.model_id != self.model_id:
            problem = f"it is from model {msg.model_id!r}, not {self.model_id!r}"
        elif vector.shape != (width,):
            problem = f"{vector.size} values, the model's embeddings have {width}"
        elif not np.isfinite(vector).all() or float(np.linalg.norm(vector)) < 1e-6:
            problem = "NaN, Inf or zero vector"
        if problem is not None:
            st.invalid += 1
            self._warn.fault(f"embeddings/{modality}", MALFORMED,
                             f"embedding dropped: {problem}")
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        st.newest_ns = max(stamp_ns, st.newest_ns or 0)
        for s in self.sync.add(modality, stamp_ns / NS, (stamp_ns, vector), self._now()):
            self._publish(s)

    def _poll(self) -> None:
        for s in self.sync.poll(self._now()):
            self._publish(s)

    # ------------------------------------------------------------------ outputs

    def _publish(self, synced: fusion.SyncedSet[Any]) -> None:
        fuser = self.fuser
        if fuser is None:  # no labels yet
            return
        t0 = time.perf_counter()
        res = fuser.fuse({m: fusion.Observation(v, ns / NS)
                          for m, (_, (ns, v)) in synced.members.items()},
                         now=synced.stamp, reasons=synced.excluded)
        ms = (time.perf_counter() - t0) * 1e3
        self.last = res
        stamp_ns = max(ns for _, (ns, _) in synced.members.values())
        header = cv.make_header(stamp_ns, self.p["frame_id"])
        if res.embedding is not None:
            self._pubs["embedding"].publish(Embedding(
                header=header, modality=FUSED, model_id=self.model_id,
                vector=res.embedding.astype(np.float32).tolist(), inference_ms=float(ms)))
            self._pubs["zero_shot"].publish(ZeroShot(
                header=header, modality=FUSED, model_id=self.model_id,
                results=[ClassHypothesis(class_id=lab, score=s)
                         for lab, s in res.top_k(self.p["top_k"])]))
        self._pubs["contributors"].publish(contributors_message(res, header))
        self.published += 1

    def diagnostic_status(self) -> DiagnosticStatus:
        """The node's one status: level, a one-line message, and per sensor its state,
        input rate (since the last status) and age of its newest stamp."""
        now, mono = self._now(), time.monotonic()
        dt = max(mono - self._last_tick, 1e-6)
        states = input_states(self.config, self.sync.live(now),
                              {m: s.received for m, s in self.stats.items()}, self.last)
        level, message = status_level(states, self.fuser is not None)
        weights = ({c.modality: c.weight for c in self.last.contributions}
                   if self.last is not None else {})
        values = [KeyValue(key="method", value=self.config.method),
                  KeyValue(key="fused rate_hz",
                           value=f"{(self.published - self._published_at_tick) / dt:.2f}")]
        for m, state in states.items():
            st = self.stats[m]
            text = f"used (weight {weights[m]:.2f})" if state == "used" else (
                state if state == fusion.DISABLED else f"excluded: {state}")
            age = f"{now - st.newest_ns / NS:.2f}" if st.newest_ns is not None else "never"
            rate = (st.received - st.last_count) / dt
            values += [KeyValue(key=m, value=text),
                       KeyValue(key=f"{m} rate_hz", value=f"{rate:.2f}"),
                       KeyValue(key=f"{m} age_s", value=age),
                       KeyValue(key=f"{m} invalid", value=str(st.invalid))]
            st.last_count = st.received
        values += [KeyValue(key="late", value=str(self.sync.late)),
                   KeyValue(key="overflow", value=str(self.sync.overflow))]
        self._published_at_tick, self._last_tick = self.published, mono
        return DiagnosticStatus(level=level, name=STATUS_NAME, message=message,
                                hardware_id=self.model_id, values=values)



def main(argv: Sequence[str] | None = None) -> int:
    """``ros2 run imagebind_ros fusion_node`` / ``imagebind-ros-fusion``."""
    return run_node(FusionNode, NODE_NAME, argv)
