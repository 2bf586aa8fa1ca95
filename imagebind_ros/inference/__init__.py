"""Exported and accelerated inference: runtime backends behind one interface, ONNX export.

The import graph runs one way: ``manifest`` (reading an export) and ``base`` (the
``Backend`` interface) at the bottom; ``quantize`` on them; one module per runtime
(``torch_backend``, ``onnxruntime_backend``, ``tensorrt_backend``) on those; ``factory``
(``create_backend``) importing a runtime's module only when it is asked for; and ``export``
(writing exports) on top, which nothing at runtime imports. ``tensorrt`` and
``onnxruntime`` themselves load only when their backend is made.
"""

from .base import KINDS, PRECISIONS, Backend, BackendUnavailable
from .factory import create_backend
from .manifest import Manifest, ManifestError, load_manifest

__all__ = ["Backend", "BackendUnavailable", "KINDS", "Manifest", "ManifestError",
           "PRECISIONS", "create_backend", "load_manifest"]
