"""GPU check of the inference backends on imagebind_huge (random weights): one command.

Usage (on a machine with an NVIDIA GPU; writes JSON + a log under --out):
    PYTHONPATH=. python bench/gpu_tensorrt.py --out /tmp/gpu [--modalities vision,audio]
        [--batch 1 8] [--repeats 30] [--max-batch 8] [--no-onnx]

Per modality, against torch fp32 on the GPU with TF32 off (the reference):
* torch CUDA fp16 / bf16 autocast: cosine and latency;
* TensorRT FP16 and FP32 engines built from the ONNX export (when ``tensorrt`` imports; else
  its one-line reason is recorded): cosine, build time, latency;
* the ONNX export at full size (external data for ViT-H), ONNX Runtime CPU fp32 parity, and
  the fp16 graph (what a TensorRT >= 11 FP16 engine is built from) and the int8 variant, run
  in ONNX Runtime on CPU: their cosine to fp32.
Latency is wall-clock per ``Backend.encode`` call (host numpy in and out), p50/p99.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import cosine, single_encoder_model, time_calls
from imagebind_ros.inference import create_backend, load_manifest
from imagebind_ros.inference.export import export_onnx
from imagebind_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
from imagebind_ros.inference.quantize import derived_model
from imagebind_ros.inference.tensorrt_backend import tensorrt_unavailable_reason
from imagebind_ros.inference.torch_backend import TorchBackend
from imagebind_ros.modalities import example_input

log = logging.getLogger("gpu_bench")
ALL = ("vision", "text", "audio", "depth", "thermal", "imu")


def _timing(backend: Any, modality: str, x: torch.Tensor, batches: list[int],
            repeats: int) -> dict[str, Any]:
    out = {}
    for b in batches:
        t = time_calls(lambda: backend.encode(modality, x[:b]), b, repeats, warmup=3)
        out[f"b{b}"] = {"p50_ms": t.p50 * 1e3, "p99_ms": t.p99 * 1e3,
                        "samples_per_s": t.throughput}
    return out


def _onnx_checks(model: torch.nn.Module, modality: str, x: torch.Tensor, ref: np.ndarray,
                 work: Path) -> dict[str, Any]:
    """Export at full size, then fp32/fp16/int8 in ONNX Runtime (CPU) against the reference."""
    out_dir = work / "onnx"
    t = time.perf_counter()
    export_onnx(model.cpu(), [modality], out_dir, progress=False)
    res: dict[str, Any] = {"export_s": time.perf_counter() - t}
    manifest = load_manifest(out_dir)
    e = manifest.entry(modality)
    res["onnx_bytes"] = e.size + (e.external_data_size or 0)
    res["external_data"] = e.external_data is not None
    res["export_max_abs_diff"] = e.max_abs_diff
    xs = x[:2].numpy()
    for prec in ("fp32", "fp16", "int8"):
        t = time.perf_counter()
        path = manifest.path(modality) if prec == "fp32" else derived_model(manifest, modality,
                                                                           prec)
        made = time.perf_counter() - t
        backend = OnnxRuntimeBackend(out_dir, prec, [modality],
                                     providers=["CPUExecutionProvider"])
        got = backend.encode(modality, xs)
        res[f"ort_cpu_{prec}"] = {"cosine": cosine(got, ref[:2]),
                                  "max_abs_diff": float(np.abs(got - ref[:2]).max()),
                                  "make_s": made, "file_mb": path.stat().st_size / 2**20}
        del backend
    return res


def run_modality(args: argparse.Namespace, modality: str, work: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"modality": modality}
    t = time.perf_counter()
    model = single_encoder_model(args.preset, modality, seed=0, device=args.device)
    res["params_M"] = sum(p.numel() for p in model.parameters()) / 1e6
    res["init_s"] = time.perf_counter() - t
    big = max(args.batch)
    x = example_input(model.config, modality, big, torch.Generator().manual_seed(1))
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ref_backend = TorchBackend(model, "fp32", device=args.device)
    ref = ref_backend.encode(modality, x)
    res["torch_fp32"] = _timing(ref_backend, modality, x, args.batch, args.repeats)
    for prec in ("fp16", "bf16") if args.device == "cuda" else ("bf16",):
        b = TorchBackend(copy.deepcopy(model), prec, device=args.device)  # casts its copy
        res[f"torch_{prec}"] = {"cosine": cosine(b.encode(modality, x), ref),
                                **_timing(b, modality, x, args.batch, args.repeats)}
    reason = tensorrt_unavailable_reason()
    if args.onnx:
        res.update(_onnx_checks(model, modality, x, ref, work))
        model.to(args.device)
    if reason is None and args.onnx:
        for prec in ("fp16", "fp32"):
            t = time.perf_counter()
            b = create_backend("tensorrt", onnx_dir=work / "onnx", precision=prec,
                               modalities=[modality], max_batch=args.max_batch,
                               cache_dir=work / "engines")
            res[f"tensorrt_{prec}"] = {"build_s": time.perf_counter() - t,
                                       "cosine": cosine(b.encode(modality, x), ref),
                                       **_timing(b, modality, x, args.batch, args.repeats)}
            del b
    else:
        res["tensorrt"] = reason or "skipped (--no-onnx)"
    del model, ref_backend
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="imagebind_huge")
    p.add_argument("--modalities", default=",".join(ALL))
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--no-onnx", dest="onnx", action="store_false")
    p.add_argument("--device", default="cuda", help="cpu: a smoke test of this script")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_results")))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        handlers=[logging.StreamHandler(sys.stdout),
                                  logging.FileHandler(args.out / "gpu_log.txt")])
    for noisy in ("onnxscript", "onnx_ir", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.device == "cuda" and not torch.cuda.is_available():
        log.error("no CUDA GPU visible: this script is for the GPU machine (--device cpu "
                  "for a smoke test)")
        return 2
    import onnxruntime as ort
    gpu = args.device == "cuda"
    env = {"gpu": torch.cuda.get_device_name() if gpu else None,
           "capability": torch.cuda.get_device_capability() if gpu else None,
           "torch": torch.__version__, "cuda": torch.version.cuda, "onnxruntime": ort.__version__,
           "ort_providers": ort.get_available_providers(), "python": platform.python_version(),
           "cpu_threads": torch.get_num_threads(),
           "tensorrt": tensorrt_unavailable_reason() or "available"}
    log.info("env %s", env)
    results: dict[str, Any] = {"env": env, "preset": args.preset, "modalities": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.modalities.split(","):
            log.info("=== %s", m)
            results["modalities"][m] = run_modality(args, m, Path(tmp) / m)
            log.info("%s: %s", m, json.dumps(results["modalities"][m]))
            (args.out / "gpu_results.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


def table(results: dict[str, Any]) -> str:
    """A markdown table of the headline numbers."""
    rows = ["| modality | config | cosine to fp32 | p50 ms per batch size |", "|---|---|---|---|"]
    for m, r in results["modalities"].items():
        for k, v in r.items():
            if isinstance(v, dict) and ("cosine" in v or "p50_ms" in str(v)):
                lat = " / ".join(f"b{b[1:]}: {t['p50_ms']:.1f}" for b, t in v.items()
                                 if isinstance(t, dict) and "p50_ms" in t)
                cos = f"{v['cosine']:.5f}" if "cosine" in v else "(reference)"
                rows.append(f"| {m} | {k} | {cos} | {lat or '-'} |")
        if "tensorrt" in r:
            rows.append(f"| {m} | tensorrt | - | {r['tensorrt']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
