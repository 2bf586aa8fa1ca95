"""Runtime backends: one small interface over torch, ONNX Runtime and TensorRT.

Nodes and the CLI hold a ``Backend`` and call ``encode(modality, batch)``; they never care
which runtime is underneath. Every backend takes the same preprocessed tensors as the model
(``imagebind_ros.preprocess``) and returns float32 unit-norm embeddings (B, D), renormalised
in float32 so reduced-precision runtimes keep the unit norm that cosine scores rely on.
"""

from __future__ import annotations

import logging
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..model import ImageBindConfig, ImageBindModel
from .export import ManifestError, input_shape, load_manifest

log = logging.getLogger(__name__)

KINDS = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS: dict[str, tuple[str, ...]] = {
    "torch": ("fp32", "bf16", "fp16"),
    "onnxruntime": ("fp32", "int8", "fp16"),
    "tensorrt": ("fp16", "fp32"),
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
        return input_shape(self.config, modality)

    def describe(self) -> str:
        """One line for logs: runtime, precision and modalities."""
        return f"{self.name} {self.precision} ({', '.join(self.modalities)})"

    def encode(self, modality: str, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """Unit-norm float32 embeddings (B, out_dim) of a preprocessed batch."""
        x = self._validate(modality, batch)
        if x.shape[0] == 0:
            return np.zeros((0, self.out_dim), np.float32)
        step = self.max_batch or x.shape[0]
        out = np.concatenate([np.asarray(self._run(modality, x[i:i + step]), np.float32)
                              for i in range(0, x.shape[0], step)])
        norms = np.linalg.norm(out, axis=-1, keepdims=True)
        if not np.all(np.isfinite(out)) or not np.all(norms > 0):
            raise FloatingPointError(f"{self.describe()} produced non-finite or zero "
                                     f"embeddings for {modality} (reduced-precision overflow?)")
        return out / norms

    def warmup(self, batch: int = 1) -> None:
        """Run every modality once, so first-call costs (allocation, autotuning) happen now."""
        gen = np.random.default_rng(0)
        for m in self.modalities:
            shape = (batch, *self.sample_shape(m))
            x = np.ones(shape, np.int64) if m == "text" else gen.standard_normal(shape)
            self.encode(m, x.astype(np.int64 if m == "text" else np.float32))

    @abstractmethod
    def _run(self, modality: str, x: np.ndarray) -> np.ndarray:
        """Encode a validated batch (1 <= B <= max_batch); the result need not be unit norm."""

    def _validate(self, modality: str, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        if modality not in self.modalities:
            raise KeyError(f"{self.name} backend has no {modality!r} encoder "
                           f"(has: {', '.join(self.modalities)})")
        x = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
        shape = self.sample_shape(modality)
        if x.ndim == len(shape):
            x = x[None]
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"{modality} input must be (B, {', '.join(map(str, shape))}) "
                             f"(see imagebind_ros.preprocess), got {tuple(x.shape)}")
        if modality == "text":
            if not np.issubdtype(x.dtype, np.integer):
                raise TypeError(f"text input must be integer token ids from tokenize(), "
                                f"got {x.dtype}")
            vocab = self.config.modality("text").vocab_size  # type: ignore[attr-defined]
            if x.size and (x.min() < 0 or x.max() >= vocab):
                raise ValueError(f"text token ids must lie in [0, {vocab}), got "
                                 f"[{x.min()}, {x.max()}]")
            return np.ascontiguousarray(x, np.int64)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"{modality} input must be numeric, got {x.dtype}")
        x = np.ascontiguousarray(x, np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{modality} input contains NaN or inf")
        return x


class TorchBackend(Backend):
    """The PyTorch model itself: eager by default, ``torch.compile`` optional.

    ``bf16`` runs under CPU/CUDA autocast; ``fp16`` under CUDA autocast only (CPU torch has
    no fast float16 matmul).
    """

    name = "torch"

    def __init__(self, model: ImageBindModel, precision: str = "fp32",
                 modalities: Iterable[str] | None = None, device: str | None = None,
                 compile: bool = False, max_batch: int | None = None) -> None:
        _check_precision("torch", precision)
        mods = _select(model.modalities, modalities, "the model")
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
        self._encoders = {m: self.model.encoder(m).eval() for m in mods}
        if compile:
            self._encoders = {m: torch.compile(e) for m, e in self._encoders.items()}
        self._dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    def describe(self) -> str:
        return f"torch[{self.device}] {self.precision} ({', '.join(self.modalities)})"

    def _run(self, modality: str, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self._dtype,
                                                    enabled=self._dtype is not None):
            out = self._encoders[modality](t)
        return out.float().cpu().numpy()


def onnxruntime_providers() -> list[str]:
    """GPU execution providers first where this onnxruntime build has them, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    return gpu + ["CPUExecutionProvider"]


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime over an export directory (``imagebind-ros export``).

    ``fp32`` runs the exported files; ``int8`` and ``fp16`` run variants made once from them
    (``quantize.derived_model``). An ``fp16`` export runs only as ``fp16``. ``spin=False``
    stops idle worker threads from busy-waiting: on a CPU shared with other busy processes
    that is faster (ViT-S depth, 2 cores, another process on 1: ~1.5x) and frees the cores.
    """

    name = "onnxruntime"

    def __init__(self, onnx_dir: str | os.PathLike[str], precision: str = "fp32",
                 modalities: Iterable[str] | None = None,
                 providers: Sequence[Any] | None = None, threads: int | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, verify: bool = True,
                 max_batch: int | None = None, spin: bool = True) -> None:
        import onnxruntime as ort

        _check_precision("onnxruntime", precision)
        manifest = load_manifest(onnx_dir, verify=verify)
        mods = _select(manifest.modalities, modalities, f"export {manifest.directory}")
        if manifest.precision != "fp32" and precision != manifest.precision:
            raise ValueError(f"{manifest.directory} is a {manifest.precision} export; it runs "
                             f"only as {manifest.precision} (export fp32 for {precision})")
        super().__init__(manifest.config, mods, precision, max_batch)
        self.manifest = manifest
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._providers = list(providers) if providers is not None else onnxruntime_providers()
        self.sessions: dict[str, Any] = {}
        for m in mods:
            path = self._model_path(m, cache_dir)
            try:
                sess = ort.InferenceSession(str(path), opts, providers=self._providers)
            except Exception as e:  # onnxruntime raises its own unrelated exception types
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise ManifestError(f"ONNX Runtime cannot load {path}: "
                                    f"{type(e).__name__}: {first}") from None
            _check_io(sess, manifest.entry(m), path)
            self.sessions[m] = sess

    def _model_path(self, modality: str, cache_dir: str | os.PathLike[str] | None) -> Path:
        if self.precision == self.manifest.precision:
            return self.manifest.path(modality)
        from .quantize import derived_model
        return derived_model(self.manifest, modality, self.precision, cache_dir)

    @property
    def providers(self) -> list[str]:
        """The providers the sessions actually run on (ORT drops unusable ones)."""
        first = next(iter(self.sessions.values()), None)
        return list(first.get_providers()) if first is not None else []

    def describe(self) -> str:
        prov = ",".join(p.replace("ExecutionProvider", "") for p in self.providers)
        return f"onnxruntime[{prov}] {self.precision} ({', '.join(self.modalities)})"

    def _run(self, modality: str, x: np.ndarray) -> np.ndarray:
        entry = self.manifest.entry(modality)
        return self.sessions[modality].run([entry.output_name], {entry.input_name: x})[0]


def _check_io(sess: Any, entry: Any, path: Path) -> None:
    """The graph must take and return what the manifest says (else: another export's file)."""
    ins, outs = sess.get_inputs(), sess.get_outputs()
    got_in = [(i.name, [d if isinstance(d, int) else "batch" for d in i.shape]) for i in ins]
    got_out = [(o.name, [d if isinstance(d, int) else "batch" for d in o.shape]) for o in outs]
    want_in = [(entry.input_name, list(entry.input_shape))]
    want_out = [(entry.output_name, list(entry.output_shape))]
    if got_in != want_in or got_out != want_out:
        raise ManifestError(f"{path} takes {got_in} -> {got_out} but the manifest says "
                            f"{want_in} -> {want_out}: mismatched manifest; re-export")


# Why a precision is missing where users look for it first.
_NO_PRECISION_HINT = {
    ("onnxruntime", "bf16"): " (ONNX Runtime's CPU provider has no bfloat16 MatMul kernel on "
                             "x86: use the torch backend's bf16 autocast, or onnxruntime int8)",
    ("torch", "int8"): " (int8 runs on the onnxruntime backend, from an ONNX export)",
}


def _check_precision(kind: str, precision: str) -> None:
    if precision not in PRECISIONS[kind]:
        raise ValueError(f"{kind} backend has no precision {precision!r}; "
                         f"choose from {', '.join(PRECISIONS[kind])}"
                         + _NO_PRECISION_HINT.get((kind, precision), ""))


def _select(available: Sequence[str], wanted: Iterable[str] | None, where: str
            ) -> tuple[str, ...]:
    if wanted is None:
        return tuple(available)
    mods = tuple(wanted)
    missing = [m for m in mods if m not in available]
    if missing or not mods:
        raise KeyError(f"modalities {missing or list(mods)} are not in {where} "
                       f"(has: {', '.join(available)})")
    return mods


def create_backend(kind: str = "auto", model: ImageBindModel | None = None,
                   onnx_dir: str | os.PathLike[str] | None = None,
                   precision: str | None = None, modalities: Iterable[str] | None = None,
                   device: str | None = None, threads: int | None = None, max_batch: int = 8,
                   cache_dir: str | os.PathLike[str] | None = None, compile: bool = False
                   ) -> Backend:
    """Make a backend. ``precision=None`` takes each runtime's default (TensorRT fp16, else
    fp32). ``auto`` tries, in order, TensorRT, ONNX Runtime on a GPU provider, torch on CUDA,
    ONNX Runtime on CPU, torch on CPU, skipping (one log line each) what cannot run here or
    lacks its input (``onnx_dir`` for the ONNX runtimes, ``model`` for torch).
    """
    mods = list(modalities) if modalities is not None else None
    if kind not in KINDS:
        raise ValueError(f"unknown backend {kind!r}; choose from {', '.join(KINDS)}")
    if kind == "torch":
        if model is None:
            raise ValueError("the torch backend needs a model (--checkpoint/--preset)")
        return TorchBackend(model, precision or "fp32", mods, device, compile, max_batch=None)
    if kind == "onnxruntime":
        if onnx_dir is None:
            raise ValueError("the onnxruntime backend needs an export directory (--onnx DIR)")
        return OnnxRuntimeBackend(onnx_dir, precision or "fp32", mods, threads=threads,
                                  cache_dir=cache_dir)
    if kind == "tensorrt":
        if onnx_dir is None:
            raise ValueError("the tensorrt backend needs an export directory (--onnx DIR)")
        from .tensorrt_engine import TensorRTBackend
        return TensorRTBackend(onnx_dir, precision or "fp16", mods, max_batch=max_batch,
                               cache_dir=cache_dir)
    return _auto(model, onnx_dir, precision, mods, threads, max_batch, cache_dir, compile)


def _auto(model: ImageBindModel | None, onnx_dir: str | os.PathLike[str] | None,
          precision: str | None, mods: list[str] | None, threads: int | None,
          max_batch: int, cache_dir: str | os.PathLike[str] | None, compile: bool) -> Backend:
    gpu = torch.cuda.is_available()
    gpu_ort = False
    if onnx_dir is not None:
        import onnxruntime as ort
        gpu_ort = "CUDAExecutionProvider" in ort.get_available_providers()
    tries: list[tuple[str, str | None, Any]] = [
        ("tensorrt", "no export directory" if onnx_dir is None else None,
         lambda p: create_backend("tensorrt", onnx_dir=onnx_dir, precision=p, modalities=mods,
                                  max_batch=max_batch, cache_dir=cache_dir)),
        ("onnxruntime (GPU)", None if onnx_dir is not None and gpu_ort else
         "no export directory" if onnx_dir is None else "no CUDA provider in onnxruntime",
         lambda p: create_backend("onnxruntime", onnx_dir=onnx_dir, precision=p,
                                  modalities=mods, threads=threads, cache_dir=cache_dir)),
        ("torch (CUDA)", None if model is not None and gpu else
         "no model" if model is None else "no CUDA GPU",
         lambda p: TorchBackend(model, p or "fp16", mods, "cuda", compile)),  # type: ignore
        ("onnxruntime (CPU)", "no export directory" if onnx_dir is None else None,
         lambda p: OnnxRuntimeBackend(onnx_dir, p or "fp32", mods,  # type: ignore[arg-type]
                                      providers=["CPUExecutionProvider"], threads=threads,
                                      cache_dir=cache_dir)),
        ("torch (CPU)", "no model" if model is None else None,
         lambda p: TorchBackend(model, p or "fp32", mods, "cpu", compile)),  # type: ignore
    ]
    reasons = []
    for label, skip, make in tries:
        runtime = label.split()[0]
        if skip is None and precision is not None and precision not in PRECISIONS[runtime]:
            skip = f"no {precision} precision"
        if skip is None:
            try:
                backend = make(precision)
                log.info("backend auto: using %s", backend.describe())
                return backend
            except BackendUnavailable as e:
                skip = str(e)
        log.info("backend auto: skipping %s: %s", label, skip)
        reasons.append(f"{label}: {skip}")
    raise BackendUnavailable("no backend can run here: " + "; ".join(reasons))
