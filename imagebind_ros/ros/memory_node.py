"""Memory node: the recent embeddings of every modality, queried across modalities.

Subscribes (reliable, as the encoder publishes) to ``<embedding_prefix>/<modality>``
(``imagebind_ros/Embedding``) for each of ``modalities`` and stores them with their source
stamps and frames in a bounded per-modality ring (``capacity``, optionally thinned to one item
per ``min_interval_s``); ``<zero_shot_prefix>/<modality>`` (``ZeroShot``) results attach their
top label to the stored item of the same stamp. Service ``~/query`` (``QueryMemory``): texts,
audio files, image files and embeddings, weighted and summed into one query (embedding
arithmetic), return the top-k items across modalities with similarity, modality and stamp.
Text/file parts need a model (the process's shared one, ``model_cache``); embedding-only
queries work without one.
Lifecycle node (``ros.lifecycle``: configure loads the model and makes the memory, activate
subscribes, cleanup forgets); ``~/query`` runs off the executor (``ros.slow_services``);
``/diagnostics`` per input topic (``ros.diagnostics``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus

from imagebind_ros.decode import MALFORMED, stamp_to_ns
from imagebind_ros.embedder import Embedder
from imagebind_ros.memory import EmbeddingMemory, combine
from imagebind_ros.msg import Embedding, MemoryHit, ZeroShot
from imagebind_ros.ros import conversions as cv
from imagebind_ros.ros.diagnostics import (InputCounts, InputDiagnostics, InputSpec,
                                           declare_diagnostics_parameters)
from imagebind_ros.model_cache import SharedModel
from imagebind_ros.ros.lifecycle import ManagedNode
from imagebind_ros.ros.model_params import declare_model_parameters, has_model, load_model
from imagebind_ros.ros.node_utils import (RELIABLE_QOS, InputTopics, StartupError, declare,
                                          fault_limiter, run_node)
from imagebind_ros.ros.slow_services import SlowServices, declare_service_parameters
from imagebind_ros.srv import QueryMemory

NODE_NAME = "memory_node"
DEFAULT_MODALITIES = ["vision", "audio", "depth", "thermal", "imu"]


class MemoryNode(ManagedNode):
    """Keeps recent embeddings; answers cross-modal queries."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._warn = fault_limiter(self)
        p = declare_model_parameters(self)

        def d(name: str, default: Any, text: str) -> None:
            p[name] = declare(self, name, default, text, read_only=True)

        d("modalities", DEFAULT_MODALITIES, "modalities whose embeddings are stored")
        d("embedding_prefix", "embeddings", "embeddings arrive on <prefix>/<modality>")
        d("zero_shot_prefix", "zero_shot", "zero-shot labels arrive on <prefix>/<modality> "
          "(empty = store no labels)")
        d("capacity", 1000, "items kept per modality (the oldest goes)")
        d("min_interval_s", 0.0, "store at most one item per modality per this many seconds "
          "of stamp time (0 = every item)")
        d("top_k", 5, "items returned when a query asks for 0")
        self.p = p
        self._srv_p = declare_service_parameters(self)
        self._diag_p = declare_diagnostics_parameters(self, p["modalities"])
        self.shared: SharedModel | None = None
        self.embedder: Embedder | None = None
        self.diagnostics: InputDiagnostics | None = None
        self.received = 0
        self.inputs = {m: InputCounts(0) for m in p["modalities"]}  # per topic: /diagnostics
        self.start()

    # ------------------------------------------------------------------ lifecycle

    def configure(self) -> None:
        """Load the model (if one is set), make the memory, the query service and
        /diagnostics."""
        p = self.p
        if has_model(p):
            self.shared = load_model(p)
            self.embedder = Embedder(self.shared.encode, self.shared.config)
        try:
            self.memory = EmbeddingMemory(p["capacity"], p["min_interval_s"],
                                          self.shared.config.out_embed_dim
                                          if self.shared else None, p["modalities"],
                                          strict=True)
        except ValueError as e:
            raise StartupError(str(e)) from None
        if self.shared is not None:
            self.memory.model_id = self.shared.model_id
        self.slow_services = SlowServices(self, self._srv_p["timeout_s"],
                                          self._srv_p["max_pending"])
        self.slow_services.create_service(QueryMemory, "query", self._on_query)
        diag = self._diag_p
        self.diagnostics = InputDiagnostics(
            self, diag, {m: InputSpec(f"{p['embedding_prefix']}/{m}", diag[f"expected_hz.{m}"],
                                      required=False) for m in p["modalities"]},
            self._input_counts,
            lambda: (DiagnosticStatus.OK, "stores in its callbacks; queries on their thread"),
            self.shared)
        model = (self.shared.describe() if self.shared else
                 "no model (embedding-only queries; set 'checkpoint' for text and files)")
        self.get_logger().info(f"remembering {', '.join(p['modalities'])} "
                               f"({p['capacity']} each); {model}")

    def activate(self) -> None:
        self.activate_subscriptions(self._subscribe)

    def _input_counts(self) -> dict[str, InputCounts]:
        """Per-topic counters for /diagnostics (bad: the fault limiter's count of the topic)."""
        bad = self._warn.counts()
        return {m: replace(c, bad=sum(bad.get(f"{self.p['embedding_prefix']}/{m}", {}).values()))
                for m, c in self.inputs.items()}

    def _subscribe(self) -> None:
        p = self.p
        inputs = InputTopics(self)
        for m in p["modalities"]:
            topic = f"{p['embedding_prefix']}/{m}"
            inputs.subscribe(Embedding, topic, self._embedding_cb(m, topic), RELIABLE_QOS)
            if p["zero_shot_prefix"]:
                inputs.subscribe(ZeroShot, f"{p['zero_shot_prefix']}/{m}",
                                 self._zero_shot_cb(m), RELIABLE_QOS)

    def cleanup(self) -> None:
        """Forget the stored items and drop the model (freed once no node holds it)."""
        self.destroy_configured()
        del self.memory
        self.embedder = None
        self.release_model()

    # ------------------------------------------------------------------ inputs

    def _embedding_cb(self, modality: str, topic: str) -> Callable[[Embedding], None]:
        """The modality is the topic's: the message body's ``modality`` is never trusted."""
        counts = self.inputs[modality]

        def callback(msg: Embedding) -> None:
            self.received += 1
            counts.received += 1
            try:
                self.memory.add(np.asarray(msg.vector, np.float32), modality,
                                stamp_to_ns(msg.header.stamp), msg.header.frame_id,
                                model_id=msg.model_id)
            except ValueError as e:
                self._warn.fault(topic, MALFORMED, f"embedding dropped: {e}")
        return callback

    def _zero_shot_cb(self, modality: str) -> Any:
        def callback(msg: ZeroShot) -> None:
            if msg.results:
                self.memory.set_label(modality, stamp_to_ns(msg.header.stamp),
                                      msg.results[0].class_id)
        return callback

    # ------------------------------------------------------------------ queries

    def query_vector(self, req: QueryMemory.Request) -> np.ndarray:
        """The request's parts (texts, audio files, image files, embeddings, in that order)
        as one normalised weighted sum; ValueError/OSError say what is wrong."""
        parts: list[np.ndarray] = []
        if req.texts or req.audio_files or req.image_files:
            emb = self.embedder
            if emb is None:
                raise ValueError("this memory node has no model: only embedding parts can be "
                                 "queried (set its 'checkpoint' parameter)")
            parts += list(emb.texts(list(req.texts))) if req.texts else []
            parts += [emb.audio_file(path) for path in req.audio_files]
            parts += [emb.image_file(path) for path in req.image_files]
        for e in req.embeddings:
            if e.model_id and self.memory.model_id and e.model_id != self.memory.model_id:
                raise ValueError(f"query embedding is from model {e.model_id!r}, the memory "
                                 f"holds {self.memory.model_id!r}: not comparable")
            parts.append(np.asarray(e.vector, np.float32))
        return combine(parts, list(req.weights))

    def _on_query(self, req: QueryMemory.Request, resp: QueryMemory.Response
                  ) -> QueryMemory.Response:
        try:
            q = self.query_vector(req)
            k = int(req.top_k) or self.p["top_k"]
            hits = self.memory.query(q, k, list(req.modalities) or None)
        except (ValueError, OSError) as e:
            self._warn.warn("~/query", f"query refused: {e}")
            resp.success, resp.message = False, str(e)
            return resp
        resp.hits = [MemoryHit(header=cv.make_header(h.stamp_ns, h.frame_id),
                               modality=h.modality, similarity=h.similarity,
                               sequence=h.sequence, label=h.label) for h in hits]
        counts = ", ".join(f"{m} {n}" for m, n in self.memory.counts().items())
        resp.success, resp.message = True, f"{len(hits)} hits from {counts or 'nothing'}"
        return resp




def main(argv: Sequence[str] | None = None) -> int:
    """``ros2 run imagebind_ros memory_node`` / ``bin/memory_node``."""
    return run_node(MemoryNode, NODE_NAME, argv)
