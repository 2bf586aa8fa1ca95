"""The PyTorch model itself as a backend: eager by default, ``torch.compile`` optional."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch

from ..model import ImageBindModel
from ..model.dense import DENSE_VARIANTS, DenseVisionEncoder
from ..model.layers import cast_matmul_weights
from .base import Backend, BackendUnavailable, check_precision, has_native_bf16, select_modalities

log = logging.getLogger(__name__)


class TorchBackend(Backend):
    """The PyTorch model: fp32, or reduced precision under autocast.

    ``bf16`` runs under CPU/CUDA autocast; ``fp16`` under CUDA autocast only (CPU torch has
    no fast float16 matmul). Reduced precisions hold the selected encoders' matmul and
    convolution weights in that dtype, cast once here, in place (the backend owns the
    model: the weights exist once, at half the memory); LayerNorms and embeddings stay
    fp32 (``cast_matmul_weights``).
    """

    name = "torch"

    def __init__(self, model: ImageBindModel, precision: str = "fp32",
                 modalities: Iterable[str] | None = None, device: str | None = None,
                 compile: bool = False, max_batch: int | None = None) -> None:
        check_precision("torch", precision)
        mods = select_modalities(model.modalities, modalities, "the model")
        super().__init__(model.config, mods, precision, max_batch)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("torch: device 'cuda' requested but no CUDA GPU is visible")
        if precision == "fp16" and self.device.type != "cuda":
            raise BackendUnavailable("torch fp16 needs a CUDA GPU; on CPU use fp32, bf16 "
                                     "or onnxruntime int8")
        if precision == "bf16" and self.device.type == "cpu" and not has_native_bf16():
            log.warning("torch bf16: this CPU has no AVX-512 BF16/AMX, so bf16 matmuls are "
                        "emulated and slower than fp32 (see docs/benchmarks.md)")
        self.model = model.to(self.device).eval()
        self._dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        if self._dtype is not None:
            for part in self.model.parts(mods):
                cast_matmul_weights(part, self._dtype)
        self._encoders = {m: self.model.encoder(m).eval() for m in mods}
        if compile:
            self._encoders = {m: torch.compile(e) for m, e in self._encoders.items()}
        self._dense: dict[str, DenseVisionEncoder] = {}

    def describe(self) -> str:
        return f"torch[{self.device}] {self.precision} ({', '.join(self.modalities)})"

    def autocast(self) -> torch.autocast:
        """The context the encoders run in (callers of ``self.model`` need it too: its
        matmul weights are in the backend's dtype)."""
        return torch.autocast(self.device.type, dtype=self._dtype,
                              enabled=self._dtype is not None)

    @property
    def dense_variants(self) -> tuple[str, ...]:
        return DENSE_VARIANTS if "vision" in self.modalities else ()

    def _run(self, modality: str, x: np.ndarray) -> np.ndarray:
        return self._call(self._encoders[modality], x)

    def _run_dense(self, x: np.ndarray, variant: str) -> np.ndarray:
        if variant not in self._dense:
            self._dense[variant] = DenseVisionEncoder(self.model, variant).eval()
        return self._call(self._dense[variant], x)

    def _call(self, module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to(self.device)
        with torch.inference_mode(), self.autocast():
            out = module(t)
        return out.float().cpu().numpy()
