"""One model instance per process, shared by every node that asks for the same weights.

``imagebind_huge`` is 4.8 GB: the encoder, detector and memory nodes started in one process
(``imagebind-ros run``, or composed nodes) must not each load a copy. Nodes call
``get_shared_model(checkpoint, preset, backend, ...)``; equal arguments give the same
``SharedModel``. Its ``encode`` holds a lock, so nodes in different executor threads take
turns on the CPU/GPU instead of thrashing it. No rclpy here.
"""

from __future__ import annotations

import gc
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .inference import KINDS, Backend, create_backend
from .model import ImageBindConfig, ImageBindModel, create_model
from .model.layers import LogitScale


@dataclass(frozen=True)
class ModelKey:
    """What makes two requests the same model (paths resolved, so spellings do not matter)."""

    checkpoint: str
    preset: str
    backend: str
    onnx_dir: str
    precision: str
    device: str


class SharedModel:
    """A backend plus what nodes need around it: config, model id, a lock, the torch model."""

    def __init__(self, key: ModelKey, backend: Backend, model: ImageBindModel | None) -> None:
        self.key = key
        self.backend = backend
        self.model = model
        self.lock = threading.Lock()
        source = key.checkpoint or key.onnx_dir
        self.model_id = f"{Path(source).name if source else 'random-init'}:{self.config.name}"

    @property
    def config(self) -> ImageBindConfig:
        return self.backend.config

    @property
    def random_init(self) -> bool:
        """True when no weights were loaded (a preset's random initialisation)."""
        return not self.key.checkpoint and not self.key.onnx_dir

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.backend.modalities

    def encode(self, modality: str, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """Unit-norm float32 (B, D) embeddings of a preprocessed batch (serialised)."""
        with self.lock:
            return self.backend.encode(modality, batch)

    def encode_dense(self, frame: np.ndarray, variant: str) -> np.ndarray:
        """Unit-norm (1, H/p, W/p, D) patch embeddings of a normalised frame (serialised)."""
        with self.lock:
            return self.backend.encode_dense(frame, variant)

    def describe(self) -> str:
        return f"{self.model_id} on {self.backend.describe()}"

    def text_logit_scale(self) -> float | None:
        """The learned text temperature (CLIP's logit_scale.exp(), capped as the model caps
        it); None without a torch model (exports keep only unit-norm outputs)."""
        if self.model is None or "text" not in self.model.modality_postprocessors:
            return None
        for module in self.model.modality_postprocessors["text"].modules():
            if isinstance(module, LogitScale):
                return float(module.log_logit_scale.detach().exp().clamp(max=module.max_scale))
        return None


_CACHE: dict[ModelKey, SharedModel] = {}
_CACHE_LOCK = threading.Lock()


def make_key(checkpoint: str | os.PathLike[str] | None = None, preset: str | None = None,
             backend: str = "torch", onnx_dir: str | os.PathLike[str] | None = None,
             precision: str | None = None, device: str | None = None) -> ModelKey:
    """Normalise request arguments ("" and None mean "not given")."""
    def path(p: str | os.PathLike[str] | None) -> str:
        return str(Path(p).expanduser().resolve()) if p else ""

    return ModelKey(path(checkpoint), preset or "", backend, path(onnx_dir), precision or "",
                    device or "")


def get_shared_model(checkpoint: str | os.PathLike[str] | None = None,
                     preset: str | None = None, backend: str = "torch",
                     onnx_dir: str | os.PathLike[str] | None = None,
                     precision: str | None = None, device: str | None = None,
                     threads: int = 0) -> SharedModel:
    """The process's model for these arguments, loaded on first request.

    ``threads`` > 0 caps the CPU threads of the runtime (process-wide for torch; the first
    request decides): on a small CPU, inference must leave a core to the middleware, or
    subscriptions starve and high-rate messages (IMU, audio) are lost.

    Raises ``FileNotFoundError`` / ``CheckpointError`` (missing or mismatched checkpoint),
    ``ManifestError`` (bad export), ``BackendUnavailable`` or ``ValueError`` with a one-line
    reason; nothing is cached on failure. With neither checkpoint nor export the preset is
    random-initialised (``SharedModel.random_init``).
    """
    if backend not in KINDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(KINDS)}")
    key = make_key(checkpoint, preset, backend, onnx_dir, precision, device)
    with _CACHE_LOCK:
        if key not in _CACHE:
            if threads > 0:
                torch.set_num_threads(threads)
            _CACHE[key] = _load(key, threads)
        return _CACHE[key]


def _load(key: ModelKey, threads: int) -> SharedModel:
    model = None
    # ONNX Runtime / TensorRT read their own artefacts; only torch and auto need the model.
    if backend_needs_model(key.backend) or not key.onnx_dir:
        model = create_model(key.preset or None, checkpoint=key.checkpoint or None,
                             device=key.device or "cpu")
    kwargs: dict[str, Any] = dict(model=model, onnx_dir=key.onnx_dir or None,
                                  precision=key.precision or None, device=key.device or None,
                                  threads=threads or None)
    return SharedModel(key, create_backend(key.backend, **kwargs), model)


def backend_needs_model(kind: str) -> bool:
    return kind in ("torch", "auto")


def cached_models() -> list[SharedModel]:
    """Every model loaded in this process (one per distinct request)."""
    with _CACHE_LOCK:
        return list(_CACHE.values())


def release(key: ModelKey) -> bool:
    """Forget the model of ``key`` if nothing but the cache holds it (a node's lifecycle
    cleanup), so its memory is freed; True if it was dropped."""
    with _CACHE_LOCK:
        shared = _CACHE.pop(key, None)
        if shared is None:
            return False
        ref = weakref.ref(shared)
        del shared
        gc.collect()  # reference cycles inside torch modules
        alive = ref()
        if alive is not None:  # another node still uses it
            _CACHE[key] = alive
        return alive is None


def clear() -> None:
    """Forget every cached model (tests; memory is freed once no node holds it)."""
    with _CACHE_LOCK:
        _CACHE.clear()
