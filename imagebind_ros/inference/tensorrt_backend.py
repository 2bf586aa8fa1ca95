"""TensorRT engines built from the ONNX export, cached on disk, run through the Python API.

``tensorrt`` is an optional extra, imported only here and only when used. Engines are built
strongly typed (the only mode TensorRT 11 has, and available since 10.0): precision comes
from the graph, so FP16 engines are built from the float16 variant of each encoder
(``quantize.convert_fp16``: float16 matmuls, LayerNorm/normalisation in float32, float32 I/O)
and FP32 engines from the exported files, with TF32 off so they match torch's fp32.

An engine is valid only for one ONNX file, TensorRT version, GPU model and precision, so
the cache key is all of these (plus the batch profile); an entry whose metadata or checksum
does not match is rebuilt with one log line, never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm import tqdm

from .base import Backend, BackendUnavailable, check_precision, select_modalities
from .manifest import fingerprint, load_manifest
from .quantize import derived_model

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build an engine from it."""


def default_cache_dir() -> Path:
    """``$IMAGEBIND_ROS_CACHE/tensorrt``, else ``~/.cache/imagebind_ros/tensorrt``."""
    root = os.environ.get("IMAGEBIND_ROS_CACHE")
    return Path(root) / "tensorrt" if root else Path.home() / ".cache/imagebind_ros/tensorrt"


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or ``BackendUnavailable`` with the one-line reason."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(
            f"tensorrt: the 'tensorrt' Python package is not importable ({e}); it is an "
            "optional extra (NVIDIA's tensorrt-cu12/-cu13 wheels)") from None
    if not torch.cuda.is_available():
        raise BackendUnavailable("tensorrt: no CUDA GPU is visible (torch.cuda.is_available() "
                                 "is False)")
    return trt


def tensorrt_unavailable_reason() -> str | None:
    """Why the TensorRT backend cannot run here, or None if it can."""
    try:
        import_tensorrt()
    except BackendUnavailable as e:
        return str(e)
    return None


class EngineCache:
    """Serialized engines in one directory, each with a JSON sidecar of its full key.

    The file name holds a hash of the key, so another GPU or TensorRT version never even
    opens this one; the sidecar (key + sha256 of the engine bytes) catches hash collisions,
    half-written files and bit rot.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @staticmethod
    def digest(key: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]

    def path(self, name: str, key: dict[str, Any]) -> Path:
        return self.root / f"{name}-{self.digest(key)}.engine"

    def load(self, name: str, key: dict[str, Any]) -> bytes | None:
        """The cached engine for ``key``, or None (logging why if an entry was unusable)."""
        path = self.path(name, key)
        meta_path = path.with_suffix(".json")
        if not path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            blob = path.read_bytes()
            if meta.get("key") != key:
                reason = "its key differs"
            elif hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
                reason = "checksum mismatch (corrupt or truncated)"
            else:
                return blob
        except (OSError, json.JSONDecodeError, AttributeError) as e:
            reason = f"unreadable ({type(e).__name__})"
        log.warning("TensorRT engine cache entry %s is unusable (%s): rebuilding", path, reason)
        return None

    def store(self, name: str, key: dict[str, Any], blob: bytes) -> Path:
        """Write engine and sidecar atomically (a crash never leaves a valid-looking entry)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(name, key)
        for target, data in ((path, blob), (path.with_suffix(".json"), json.dumps(
                {"key": key, "sha256": hashlib.sha256(blob).hexdigest()}, indent=2).encode())):
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return path


def _progress_monitor(trt: Any, desc: str) -> Any:
    """A TensorRT IProgressMonitor (TRT >= 10) that draws one tqdm bar per build phase."""

    class TqdmMonitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._bars: dict[str, tqdm] = {}
            self._lock = threading.Lock()  # TensorRT calls from several threads

        def phase_start(self, phase_name: str, parent_phase: str | None,
                        num_steps: int) -> None:
            with self._lock:
                self._bars[phase_name] = tqdm(total=num_steps, desc=f"{desc}: {phase_name}",
                                              leave=False, position=len(self._bars))

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.update(step + 1 - bar.n)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

    return TqdmMonitor()


def build_engine(onnx_path: Path, input_name: str, sample_shape: tuple[int, ...],
                 max_batch: int, precision: str, timing_cache: Path | None = None,
                 progress: bool = True) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine for batch 1..max_batch."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # reads external .data files too
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    opt = min(max_batch, 8)
    profile.set_shape(input_name, (1, *sample_shape), (opt, *sample_shape),
                      (max_batch, *sample_shape))
    config.add_optimization_profile(profile)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    cache = None
    if timing_cache is not None:
        data = timing_cache.read_bytes() if timing_cache.exists() else b""
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, ignore_mismatch=True)
    if progress and hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _progress_monitor(trt, onnx_path.stem)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path} "
                               "(see the TensorRT log above)")
    if timing_cache is not None and cache is not None:
        tmp = timing_cache.with_name(f".{timing_cache.name}.tmp")
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
        os.replace(tmp, timing_cache)
    return bytes(blob)


class _Engine:
    """One deserialized engine and its execution context; I/O through torch CUDA tensors."""

    def __init__(self, trt: Any, runtime: Any, blob: bytes) -> None:
        self.engine = runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise EngineBuildError("TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == mode)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) != mode)
        self.in_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.input))
        self.out_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.output))

    def run(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to("cuda").to(self.in_dtype).contiguous()
        self.context.set_input_shape(self.input, tuple(t.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output)),
                          dtype=self.out_dtype, device="cuda")
        self.context.set_tensor_address(self.input, t.data_ptr())
        self.context.set_tensor_address(self.output, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed (see the TensorRT log)")
        stream.synchronize()
        return out.float().cpu().numpy()


def _torch_dtype(trt: Any, dt: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int64: torch.int64,
             trt.int32: torch.int32, trt.bfloat16: torch.bfloat16}
    if dt not in table:
        raise EngineBuildError(f"unsupported engine I/O type {dt}")
    return table[dt]


class TensorRTBackend(Backend):
    """Native TensorRT engines, one per modality, built on first use and cached on disk."""

    name = "tensorrt"

    def __init__(self, onnx_dir: str | os.PathLike[str], precision: str = "fp16",
                 modalities: Iterable[str] | None = None, max_batch: int = 8,
                 cache_dir: str | os.PathLike[str] | None = None, progress: bool = True,
                 verify: bool = True) -> None:
        check_precision("tensorrt", precision)
        trt = import_tensorrt()
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        modalities = None if modalities is None else tuple(modalities)
        manifest = load_manifest(onnx_dir, verify=verify, modalities=modalities)
        mods = select_modalities(manifest.modalities, modalities,
                                 f"export {manifest.directory}")
        super().__init__(manifest.config, mods, precision, max_batch)
        self.manifest = manifest
        self.cache = EngineCache(cache_dir if cache_dir is not None else default_cache_dir())
        idx = torch.cuda.current_device()
        cap = torch.cuda.get_device_capability(idx)
        self.gpu = f"{torch.cuda.get_device_name(idx)} (sm_{cap[0]}{cap[1]})"
        base = {"format": CACHE_FORMAT, "tensorrt": trt.__version__, "gpu": self.gpu,
                "precision": precision, "max_batch": max_batch}
        timing = self.cache.root / f"timing-{EngineCache.digest(base)}.cache"
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._runtime = runtime  # engines must not outlive their runtime
        self.engines: dict[str, _Engine] = {}
        for m in mods:
            key = {**base, "onnx": fingerprint(manifest, m),
                   "input_shape": list(self.sample_shape(m))}
            blob = self.cache.load(m, key)
            if blob is not None:
                try:
                    self.engines[m] = _Engine(trt, runtime, blob)
                    continue
                except EngineBuildError:
                    log.warning("cached TensorRT engine for %s does not deserialize: "
                                "rebuilding", m)
            onnx_path = self._onnx_for(m, cache_dir)
            log.warning("building TensorRT %s engine for %s on %s (batch 1..%d): the first "
                        "build takes minutes; cached in %s", precision, m, self.gpu,
                        max_batch, self.cache.root)
            self.cache.root.mkdir(parents=True, exist_ok=True)
            blob = build_engine(onnx_path, manifest.entry(m).input_name, self.sample_shape(m),
                                max_batch, precision, timing, progress)
            self.cache.store(m, key, blob)
            self.engines[m] = _Engine(trt, runtime, blob)

    def _onnx_for(self, modality: str, cache_dir: str | os.PathLike[str] | None) -> Path:
        """The graph whose types give the wanted precision (strongly typed build)."""
        if self.precision == self.manifest.precision:
            return self.manifest.path(modality)
        if self.precision == "fp32":
            raise ValueError(f"{self.manifest.directory} is an fp16 export; an fp32 engine "
                             "needs an fp32 export")
        derived = Path(cache_dir) / "onnx" if cache_dir is not None else None
        return derived_model(self.manifest, modality, "fp16", derived)

    def describe(self) -> str:
        return f"tensorrt[{self.gpu}] {self.precision} ({', '.join(self.modalities)})"

    def _run(self, modality: str, x: np.ndarray) -> np.ndarray:
        return self.engines[modality].run(x)

