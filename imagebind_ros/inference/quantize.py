"""Reduced-precision variants of exported encoders: float16 graphs and int8 weights.

* ``convert_fp16``: float16 weights and arithmetic, float32 in and out. LayerNorm, the
  reductions and the final L2 normalisation stay float32 (they overflow or lose the unit norm
  in float16). This is the input TensorRT >= 11 needs for FP16 (it has no FP16 builder flag:
  every network is strongly typed), and what ONNX Runtime's CUDA provider runs fastest.
* ``quantize_int8``: ONNX Runtime dynamic quantisation of every MatMul/Gemm weight to int8,
  per output channel; activations are quantised per call (the attention score/value
  products, activation by activation, stay float32). The CPU option: it moves a quarter of
  the weight bytes and uses integer dot products (AVX-512 VNNI where the CPU has it).
  There is no bf16 ONNX variant: ONNX Runtime's CPU provider has no bfloat16 MatMul kernel
  on x86 (bf16 on CPU is the torch backend's autocast).

``derived_model`` makes these next to an export once and reuses them while the source file's
sha256 and the options are unchanged. Imports the manifest and the backend base only: the
runtimes make variants on first use without the exporter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from .base import cpu_flags
from .manifest import EXTERNAL_DATA_BYTES, Manifest, fingerprint, sha256_file

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "int8")

# Kept in float32 by convert_fp16: statistics and norms over 1280 channels overflow in fp16.
FP32_OPS = ["LayerNormalization", "ReduceL2", "ReduceSumSquare", "ReduceMean", "Sqrt", "Div",
            "Pow", "Softmax"]


def _initializer_bytes(model: Any) -> int:
    import numpy as np
    from onnx import helper

    total = 0
    for t in model.graph.initializer:
        n = int(np.prod(t.dims)) if t.dims else 1
        total += n * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return total


def _save(model: Any, dst: Path) -> Path:
    """Save, with external data above the size limit; remove a stale ``.data`` file."""
    import onnx

    data = dst.with_name(dst.name + ".data")
    external = _initializer_bytes(model) > EXTERNAL_DATA_BYTES
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp_data = tmp.with_name(tmp.name + ".data")
    if external:
        onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=tmp_data.name, size_threshold=1024)
        # The graph names its data file: rewrite it to the final name before moving both.
        model_final = onnx.load(str(tmp), load_external_data=False)
        for t in model_final.graph.initializer:
            for kv in t.external_data:
                if kv.key == "location":
                    kv.value = data.name
        onnx.save_model(model_final, str(tmp))
        os.chmod(tmp_data, 0o644)  # onnx creates it private; the graph file is not
        os.replace(tmp_data, data)
    else:
        onnx.save_model(model, str(tmp))
        data.unlink(missing_ok=True)
    os.replace(tmp, dst)
    return dst


@contextlib.contextmanager
def _reinferred(src: str | os.PathLike[str]) -> Iterator[Path]:
    """A copy of the graph whose intermediate types come from onnx's own shape inference.

    torch 2.11's exporter wrote intermediate shapes that onnx's inference contradicts (the
    quantizer then stops with "Inferred shape and existing shape differ"), so they are
    dropped and re-inferred. The copy sits next to ``src`` so it shares the external weights
    file; ``infer_shapes_path`` works on graphs over 2 GiB where ``infer_shapes`` cannot.
    """
    import onnx

    src = Path(src)
    stripped = src.with_name(f".{src.stem}.stripped.onnx")
    inferred = src.with_name(f".{src.stem}.inferred.onnx")
    try:
        graph = onnx.load(str(src), load_external_data=False)
        del graph.graph.value_info[:]
        onnx.save_model(graph, str(stripped))
        onnx.shape_inference.infer_shapes_path(str(stripped), str(inferred))
        yield inferred
    finally:
        stripped.unlink(missing_ok=True)
        inferred.unlink(missing_ok=True)


def _unique_node_names(model: Any) -> None:
    """Rename repeated node names (the fp16 converter repeats a cast's name when one shared
    initializer, e.g. deduplicated LayerNorm weights, feeds several kept-fp32 nodes)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if node.name and node.name in seen:
            node.name = f"{node.name}_{i}"
        seen.add(node.name)


def convert_fp16(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Write a float16 copy of an ONNX encoder (float32 I/O); ``dst`` may equal ``src``."""
    import onnx
    from onnxruntime.transformers.float16 import (DEFAULT_OP_BLOCK_LIST,
                                                  convert_float_to_float16)

    with _reinferred(src) as typed:
        model = onnx.load(str(typed))
    # Types are already inferred: the converter's own inference would serialize the whole
    # model in memory, impossible above 2 GiB (ViT-H).
    half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True,
                                    op_block_list=DEFAULT_OP_BLOCK_LIST + FP32_OPS)
    del model
    _unique_node_names(half)
    return _save(half, Path(dst))


def int8_defaults() -> dict[str, bool]:
    """Quantisation options for this CPU: 7-bit weights (``reduce_range``) only without VNNI.

    Without VNNI, x86 multiplies u8*s8 pairs into saturating int16 sums (``vpmaddubsw``),
    which 8-bit weights can overflow; VNNI sums in int32, so full 8-bit weights are safe
    there and a little more accurate (the variant cache records the options, so a file made
    on one kind of CPU is rebuilt, not reused, on the other).
    """
    vnni = bool(cpu_flags() & {"avx512_vnni", "avx_vnni"})
    return {"per_channel": True, "reduce_range": not vnni}


class _QuietQuantizer(logging.Filter):
    """ONNX Runtime's quantizer logs to the root logger: per-tensor INFO lines (hundreds for
    ViT-H) and a pre-processing advice WARNING on every call. Neither is ours to show."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace(os.sep, "/")
        if "onnxruntime/quantization" not in path:
            return True
        return (record.levelno >= logging.WARNING
                and "pre-processing before quantization" not in record.getMessage())


def quantize_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                  per_channel: bool = True, reduce_range: bool | None = None) -> Path:
    """Dynamic int8 quantisation of MatMul/Gemm weights (QInt8, per channel by default).

    ``reduce_range=None`` takes this CPU's default (``int8_defaults``).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if reduce_range is None:
        reduce_range = int8_defaults()["reduce_range"]
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    quiet = _QuietQuantizer()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        with _reinferred(src) as typed:
            quantize_dynamic(str(typed), os.fspath(tmp),
                             op_types_to_quantize=["MatMul", "Gemm"], per_channel=per_channel,
                             reduce_range=reduce_range, weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(quiet)
    os.replace(tmp, dst)
    return dst


def derived_model(manifest: Manifest, modality: str, precision: str,
                  cache_dir: str | os.PathLike[str] | None = None,
                  **options: Any) -> Path:
    """Path of ``modality``'s encoder in ``precision``, made once from the fp32 export.

    The file sits in ``cache_dir`` (default ``<export>/derived``) with a JSON sidecar holding
    the source fingerprint and the options; a stale or damaged entry is rebuilt (one log line).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"no derived ONNX precision {precision!r}; choose from {PRECISIONS}")
    if manifest.precision != "fp32":
        raise ValueError(f"{precision} variants are made from an fp32 export; "
                         f"{manifest.directory} holds a {manifest.precision} export")
    root = Path(cache_dir) if cache_dir is not None else manifest.directory / "derived"
    root.mkdir(parents=True, exist_ok=True)
    dst = root / f"{modality}.{precision}.onnx"
    meta_path = dst.with_suffix(".json")
    if precision == "int8":  # record effective options, so a changed default is a miss
        options = {**int8_defaults(), **options}
    want = {"source": fingerprint(manifest, modality), "precision": precision,
            "options": options}
    if dst.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if {k: meta.get(k) for k in want} == want and sha256_file(dst) == meta.get("sha256"):
                return dst
            reason = "made from another export or with other options"
        except (json.JSONDecodeError, OSError) as e:
            reason = f"unreadable sidecar ({e})"
        log.warning("rebuilding %s: %s", dst, reason)
    src = manifest.path(modality)
    log.info("making %s variant of %s (once; cached in %s)", precision, src.name, root)
    if precision == "fp16":
        convert_fp16(src, dst)
    else:
        quantize_int8(src, dst, **options)
    meta_path.write_text(json.dumps({**want, "sha256": sha256_file(dst)}, indent=2) + "\n")
    return dst
