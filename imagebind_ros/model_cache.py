"""One model instance per process, shared by every node that asks for the same weights.

``imagebind_huge`` is 4.8 GB: the encoder, detector and memory nodes started in one process
(``imagebind-ros run``, or composed nodes) must not each load a copy. Nodes call
``get_shared_model(checkpoint, preset, backend, ..., modalities)``; equal arguments (but
the modalities) give the same ``SharedModel``. It loads only the encoders asked for so far
(a robot without a thermal camera never reads the thermal weights) and adds those a later
node asks for, sharing the ones already loaded. Its ``encode`` holds a lock, so nodes in
different executor threads take turns on the CPU/GPU instead of thrashing it. No rclpy here.
"""

from __future__ import annotations

import gc
import os
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .inference import KINDS, Backend, create_backend, load_manifest
from .model import ImageBindConfig, ImageBindModel, create_model, get_config
from .model.checkpoint import read_checkpoint
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
    """Backends plus what nodes need around them: config, model id, a lock, the torch model.

    One backend per ``add`` call (the first load, then each node that asked for encoders
    not loaded yet); with torch they all run one ``ImageBindModel`` that grows.
    """

    def __init__(self, key: ModelKey, available: ImageBindConfig, threads: int) -> None:
        self.key = key
        self.available = available  # every encoder the checkpoint / export / preset has
        self.model: ImageBindModel | None = None
        self._backends: dict[str, Backend] = {}
        self._threads = threads
        self.lock = threading.Lock()
        source = key.checkpoint or key.onnx_dir
        self.model_id = f"{Path(source).name if source else 'random-init'}:{available.name}"

    def add(self, modalities: tuple[str, ...] | None) -> None:
        """Load the encoders of ``modalities`` (None: all) that are available and not
        loaded yet; the others are left out (callers check ``modalities``)."""
        wanted = self.available.modalities if modalities is None else modalities
        new = [m for m in self.available.modalities
               if m in wanted and m not in self._backends]
        if not new:
            return
        key, model = self.key, None
        # ONNX Runtime / TensorRT read their own artefacts; only torch and auto need the model.
        if backend_needs_model(key.backend) or not key.onnx_dir:
            model = create_model(key.preset or None, checkpoint=key.checkpoint or None,
                                 device=key.device or "cpu", modalities=new)
            if self.model is None:
                self.model = model
            else:
                self.model.add_encoders(model)
        backend = create_backend(key.backend, model=self.model if model else None,
                                 onnx_dir=key.onnx_dir or None, modalities=new,
                                 precision=key.precision or None, device=key.device or None,
                                 threads=self._threads or None)
        self._backends.update({m: backend for m in new})

    @property
    def backend(self) -> Backend:
        """The first backend (every one has the same runtime, precision and device)."""
        if not self._backends:
            raise KeyError(f"model {self.model_id} has none of the encoders asked for "
                           f"(has: {', '.join(self.available.modalities)})")
        return next(iter(self._backends.values()))

    @property
    def config(self) -> ImageBindConfig:
        """The whole model's config (every encoder's preprocessing constants, loaded or
        not)."""
        return self.available

    @property
    def random_init(self) -> bool:
        """True when no weights were loaded (a preset's random initialisation)."""
        return not self.key.checkpoint and not self.key.onnx_dir

    @property
    def modalities(self) -> tuple[str, ...]:
        """The encoders loaded so far (in the package's modality order)."""
        return tuple(m for m in self.available.modalities if m in self._backends)

    def encode(self, modality: str, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """Unit-norm float32 (B, D) embeddings of a preprocessed batch (serialised)."""
        # a modality not loaded: the first backend's KeyError names what it has
        backend = self._backends.get(modality, self.backend)
        with self.lock:
            return backend.encode(modality, batch)

    @property
    def dense_variants(self) -> tuple[str, ...]:
        """The dense vision outputs of the backend holding the vision encoder (another node
        may have loaded a backend without it first)."""
        return self._backends.get("vision", self.backend).dense_variants

    def encode_dense(self, frame: np.ndarray, variant: str) -> np.ndarray:
        """Unit-norm (1, H/p, W/p, D) patch embeddings of a normalised frame (serialised)."""
        with self.lock:
            return self._backends.get("vision", self.backend).encode_dense(frame, variant)

    def describe(self) -> str:
        desc = self.backend.describe()
        return f"{self.model_id} on {desc.split(' (')[0]} ({', '.join(self.modalities)})"

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
                     threads: int = 0, modalities: Iterable[str] | None = None
                     ) -> SharedModel:
    """The process's model for these arguments, loaded on first request.

    ``modalities`` (None: all) are the encoders this caller uses; only those the model has
    are loaded, once per process, and a later request for more adds the missing ones.

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
    wanted = None if modalities is None else tuple(modalities)
    with _CACHE_LOCK:
        shared = _CACHE.get(key)
        if shared is None:
            if threads > 0:
                torch.set_num_threads(threads)
            shared = SharedModel(key, _available(key), threads)
        shared.add(wanted)  # nothing is cached when the first load fails
        _CACHE[key] = shared
        return shared


def _available(key: ModelKey) -> ImageBindConfig:
    """The full config of what the request names (reads no weights: the checkpoint is
    memory-mapped, an export's manifest is JSON)."""
    if key.onnx_dir and not backend_needs_model(key.backend):
        manifest = load_manifest(key.onnx_dir, verify=False)
        return manifest.config.subset(manifest.modalities)
    if key.checkpoint:
        ckpt = read_checkpoint(key.checkpoint)
        if "config" in ckpt:
            return ImageBindConfig.from_dict(ckpt["config"])
    return get_config(key.preset or "imagebind_huge")


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
