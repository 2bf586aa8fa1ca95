"""``create_backend``: one call that makes any backend, importing its runtime only then.

Each backend module is imported when it is asked for, so a node on the torch backend never
loads onnxruntime or TensorRT, and ``auto`` can skip what is not installed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

import torch

from ..model import ImageBindModel
from .base import KINDS, PRECISIONS, Backend, BackendUnavailable

log = logging.getLogger(__name__)


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
        from .torch_backend import TorchBackend
        return TorchBackend(model, precision or "fp32", mods, device, compile, max_batch=None)
    if kind == "onnxruntime":
        if onnx_dir is None:
            raise ValueError("the onnxruntime backend needs an export directory (--onnx DIR)")
        from .onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend(onnx_dir, precision or "fp32", mods, threads=threads,
                                  cache_dir=cache_dir)
    if kind == "tensorrt":
        if onnx_dir is None:
            raise ValueError("the tensorrt backend needs an export directory (--onnx DIR)")
        from .tensorrt_backend import TensorRTBackend
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

    def torch_on(device: str, default: str) -> Callable[[str | None], Backend]:
        def make(p: str | None) -> Backend:
            from .torch_backend import TorchBackend
            return TorchBackend(model, p or default, mods, device, compile)  # type: ignore
        return make

    def ort_cpu(p: str | None) -> Backend:
        from .onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend(onnx_dir, p or "fp32", mods,  # type: ignore[arg-type]
                                  providers=["CPUExecutionProvider"], threads=threads,
                                  cache_dir=cache_dir)

    tries: list[tuple[str, str | None, Callable[[str | None], Backend]]] = [
        ("tensorrt", "no export directory" if onnx_dir is None else None,
         lambda p: create_backend("tensorrt", onnx_dir=onnx_dir, precision=p, modalities=mods,
                                  max_batch=max_batch, cache_dir=cache_dir)),
        ("onnxruntime (GPU)", None if onnx_dir is not None and gpu_ort else
         "no export directory" if onnx_dir is None else "no CUDA provider in onnxruntime",
         lambda p: create_backend("onnxruntime", onnx_dir=onnx_dir, precision=p,
                                  modalities=mods, threads=threads, cache_dir=cache_dir)),
        ("torch (CUDA)", None if model is not None and gpu else
         "no model" if model is None else "no CUDA GPU", torch_on("cuda", "fp16")),
        ("onnxruntime (CPU)", "no export directory" if onnx_dir is None else None, ort_cpu),
        ("torch (CPU)", "no model" if model is None else None, torch_on("cpu", "fp32")),
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
