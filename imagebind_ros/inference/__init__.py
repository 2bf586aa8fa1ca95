"""Exported and accelerated inference: ONNX export, runtime backends, TensorRT engines.

``tensorrt`` is never imported here: ``tensorrt_engine`` loads it only when that backend is
asked for.
"""

from .backends import (KINDS, PRECISIONS, Backend, BackendUnavailable, OnnxRuntimeBackend,
                       TorchBackend, create_backend)
from .export import (ExportError, Manifest, ManifestError, example_input, export_onnx,
                     input_shape, load_manifest)

__all__ = [
    "Backend", "BackendUnavailable", "ExportError", "KINDS", "Manifest", "ManifestError",
    "OnnxRuntimeBackend", "PRECISIONS", "TorchBackend", "create_backend", "example_input",
    "export_onnx", "input_shape", "load_manifest",
]
