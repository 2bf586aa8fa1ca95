"""ONNX Runtime over an export directory (``imagebind-ros export``).

``onnxruntime`` is imported when a backend is made, so importing this module is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Backend, check_precision, select_modalities
from .manifest import EncoderEntry, ManifestError, load_manifest
from .quantize import derived_model


def onnxruntime_providers() -> list[str]:
    """GPU execution providers first where this onnxruntime build has them, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    return gpu + ["CPUExecutionProvider"]


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime sessions, one per exported encoder.

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

        check_precision("onnxruntime", precision)
        modalities = None if modalities is None else tuple(modalities)
        manifest = load_manifest(onnx_dir, verify=verify, modalities=modalities)
        mods = select_modalities(manifest.modalities, modalities, f"export {manifest.directory}")
        if manifest.precision != "fp32" and precision != manifest.precision:
            raise ValueError(f"{manifest.directory} is a {manifest.precision} export; it runs "
                             f"only as {manifest.precision} (export fp32 for {precision})")
        super().__init__(manifest.config, mods, precision, max_batch)
        self.manifest = manifest
        self._opts = opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._providers = list(providers) if providers is not None else onnxruntime_providers()
        self.sessions: dict[str, Any] = {}
        for m in mods:
            self.sessions[m] = self._session(self._model_path(m, cache_dir), manifest.entry(m))
        # made on first use: a dense graph holds a second copy of the vision weights
        self._dense_sessions: dict[str, Any] = {}

    def _session(self, path: Path, entry: EncoderEntry) -> Any:
        import onnxruntime as ort

        try:
            sess = ort.InferenceSession(str(path), self._opts, providers=self._providers)
        except Exception as e:  # onnxruntime raises its own unrelated exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ManifestError(f"ONNX Runtime cannot load {path}: "
                                f"{type(e).__name__}: {first}") from None
        check_io(sess, entry, path)
        return sess

    def _model_path(self, modality: str, cache_dir: str | os.PathLike[str] | None) -> Path:
        if self.precision == self.manifest.precision:
            return self.manifest.path(modality)
        return derived_model(self.manifest, modality, self.precision, cache_dir)

    @property
    def providers(self) -> list[str]:
        """The providers the sessions actually run on (ORT drops unusable ones)."""
        first = next(iter(self.sessions.values()), None)
        return list(first.get_providers()) if first is not None else []

    def describe(self) -> str:
        prov = ",".join(p.replace("ExecutionProvider", "") for p in self.providers)
        return f"onnxruntime[{prov}] {self.precision} ({', '.join(self.modalities)})"

    @property
    def dense_variants(self) -> tuple[str, ...]:
        return tuple(self.manifest.dense) if "vision" in self.modalities else ()

    def _run(self, modality: str, x: np.ndarray) -> np.ndarray:
        entry = self.manifest.entry(modality)
        return self.sessions[modality].run([entry.output_name], {entry.input_name: x})[0]

    def _run_dense(self, x: np.ndarray, variant: str) -> np.ndarray:
        """The float32 dense graph whatever ``precision`` (only fp32 dense graphs exist)."""
        entry = self.manifest.dense_entry(variant)
        if variant not in self._dense_sessions:
            self._dense_sessions[variant] = self._session(self.manifest.directory / entry.file,
                                                          entry)
        return self._dense_sessions[variant].run([entry.output_name], {entry.input_name: x})[0]


def check_io(sess: Any, entry: EncoderEntry, path: Path) -> None:
    """The graph must take and return what the manifest says (else: another export's file)."""
    ins, outs = sess.get_inputs(), sess.get_outputs()

    def dims(shape: list[Any], names: list[int | str]) -> list[int | str]:
        """Symbolic graph dimensions take the manifest's names (ONNX writes its own)."""
        return [d if isinstance(d, int) else (n if isinstance(n, str) else "?")
                for d, n in zip(shape, [*names, *["?"] * len(shape)])]

    got_in = [(i.name, dims(i.shape, entry.input_shape)) for i in ins]
    got_out = [(o.name, dims(o.shape, entry.output_shape)) for o in outs]
    want_in = [(entry.input_name, list(entry.input_shape))]
    want_out = [(entry.output_name, list(entry.output_shape))]
    if got_in != want_in or got_out != want_out:
        raise ManifestError(f"{path} takes {got_in} -> {got_out} but the manifest says "
                            f"{want_in} -> {want_out}: mismatched manifest; re-export")
