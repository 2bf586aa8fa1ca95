"""The one small interface every runtime backend implements, and what they share.

Nodes and the CLI hold a ``Backend`` and call ``encode(modality, batch)``; they never care
which runtime is underneath. Every backend takes the same preprocessed tensors as the model
(``imagebind_ros.modalities``) and returns float32 unit-norm embeddings (B, D), renormalised
in float32 so reduced-precision runtimes keep the unit norm that cosine scores rely on.
The backend modules (``torch_backend``, ``onnxruntime_backend``, ``tensorrt_backend``)
import this module and ``manifest``; ``factory.create_backend`` imports them lazily.
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..modalities import spec
from ..model import ImageBindConfig

KINDS = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS: dict[str, tuple[str, ...]] = {
    "torch": ("fp32", "bf16", "fp16"),
    "onnxruntime": ("fp32", "int8", "fp16"),
    "tensorrt": ("fp16", "fp32"),
}
# Why a precision is missing where users look for it first.
NO_PRECISION_HINT = {
    ("onnxruntime", "bf16"): " (ONNX Runtime's CPU provider has no bfloat16 MatMul kernel on "
                             "x86: use the torch backend's bf16 autocast, or onnxruntime int8)",
    ("torch", "int8"): " (int8 runs on the onnxruntime backend, from an ONNX export)",
}


class BackendUnavailable(RuntimeError):
    """A backend cannot run here; the message is the one-line reason."""


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    m = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(m.group(1).split()) if m else set()


def has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def check_precision(kind: str, precision: str) -> None:
    """ValueError, with a hint where there is one, unless ``kind`` runs ``precision``."""
    if precision not in PRECISIONS[kind]:
        raise ValueError(f"{kind} backend has no precision {precision!r}; "
                         f"choose from {', '.join(PRECISIONS[kind])}"
                         + NO_PRECISION_HINT.get((kind, precision), ""))


def select_modalities(available: Sequence[str], wanted: Iterable[str] | None, where: str
                      ) -> tuple[str, ...]:
    """``wanted`` (None = all of ``available``), KeyError naming any that ``where`` lacks."""
    if wanted is None:
        return tuple(available)
    mods = tuple(wanted)
    missing = [m for m in mods if m not in available]
    if missing or not mods:
        raise KeyError(f"modalities {missing or list(mods)} are not in {where} "
                       f"(has: {', '.join(available)})")
    return mods


class Backend(ABC):
    """Encode preprocessed batches into unit-norm embeddings.

    ``encode`` accepts a batch (B, *sample_shape) or one sample (*sample_shape), as numpy or
    torch, and returns float32 numpy (B, out_dim). Batches above ``max_batch`` are split.
    """

    name: str = "backend"

    def __init__(self, config: ImageBindConfig, modalities: Iterable[str], precision: str,
                 max_batch: int | None = None) -> None:
        self.config = config
        self._modalities = tuple(modalities)
        self.precision = precision
        self.max_batch = max_batch

    @property
    def modalities(self) -> tuple[str, ...]:
        return self._modalities

    @property
    def out_dim(self) -> int:
        return self.config.out_embed_dim

    def sample_shape(self, modality: str) -> tuple[int, ...]:
        """One row of ``_run``'s input: a clip for audio (``ModalitySpec.encoder_shape``)."""
        return spec(modality).encoder_shape(self.config)

    def describe(self) -> str:
        """One line for logs: runtime, precision and modalities."""
        return f"{self.name} {self.precision} ({', '.join(self.modalities)})"

    def encode(self, modality: str, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """Unit-norm float32 embeddings (B, out_dim) of a preprocessed batch.

        Clip modalities (audio) run every clip as a row and average the unit clip
        embeddings, as the model does (a common logit scale does not change the direction),
        so a one-clip live window costs one clip on every runtime.
        """
        x = self._validate(modality, batch)
        if x.shape[0] == 0:
            return np.zeros((0, self.out_dim), np.float32)
        b = x.shape[0]
        if spec(modality).clips:
            x = x.reshape(-1, *x.shape[2:])
        step = self.max_batch or x.shape[0]
        out = np.concatenate([np.asarray(self._run(modality, x[i:i + step]), np.float32)
                              for i in range(0, x.shape[0], step)])
        out = out.reshape(b, -1, out.shape[-1]).mean(axis=1)
        norms = np.linalg.norm(out, axis=-1, keepdims=True)
        if not np.all(np.isfinite(out)) or not np.all(norms > 0):
            raise FloatingPointError(f"{self.describe()} produced non-finite or zero "
                                     f"embeddings for {modality} (reduced-precision overflow?)")
        return out / norms

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The torch context that callers running the backend's torch model themselves
        need (torch reduced precision); nothing for the other runtimes."""
        return contextlib.nullcontext()

    @property
    def dense_variants(self) -> tuple[str, ...]:
        """Last-block readings (``model.dense``) whose patch embeddings this backend runs."""
        return ()

    def encode_dense(self, frame: np.ndarray | torch.Tensor, variant: str) -> np.ndarray:
        """A normalised (1, 3, H, W) frame -> float32 (1, H/p, W/p, D) unit-norm patch
        embeddings (``model.dense.DenseVisionEncoder``); H and W multiples of the patch."""
        if variant not in self.dense_variants:
            has = ", ".join(self.dense_variants) or "none; an ONNX export needs --dense VARIANT"
            raise BackendUnavailable(f"{self.describe()} has no dense vision output "
                                     f"{variant!r} (has: {has})")
        x = np.ascontiguousarray(np.asarray(frame, np.float32))
        p = self.config.modality("vision").kernel_size[1]  # type: ignore[union-attr]
        if x.ndim != 4 or x.shape[:2] != (1, 3) or x.shape[2] % p or x.shape[3] % p:
            raise ValueError(f"dense input must be (1, 3, H, W) with H, W multiples of {p}, "
                             f"got {x.shape}")
        out = np.asarray(self._run_dense(x, variant), np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)

    def _run_dense(self, x: np.ndarray, variant: str) -> np.ndarray:
        raise NotImplementedError  # only reached for variants a subclass lists

    def warmup(self, batch: int = 1) -> None:
        """Run every modality once, so first-call costs (allocation, autotuning) happen now."""
        gen = torch.Generator().manual_seed(0)
        for m in self.modalities:
            self.encode(m, spec(m).example(self.config, batch, gen, clips=1))

    @abstractmethod
    def _run(self, modality: str, x: np.ndarray) -> np.ndarray:
        """Encode a validated batch (1 <= B <= max_batch); the result need not be unit norm."""

    def _validate(self, modality: str, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        if modality not in self.modalities:
            raise KeyError(f"{self.name} backend has no {modality!r} encoder "
                           f"(has: {', '.join(self.modalities)})")
        return spec(modality).validate(batch, self.config)
