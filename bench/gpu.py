"""torch CUDA on imagebind_huge: fp32 (TF32 off), bf16, fp16 for every modality, one command.

Usage (on a lent NVIDIA H100/H200 with torch CUDA; no TensorRT there), one call, minutes:
    PYTHONPATH=. python bench/gpu.py --out-dir "$OUT"          # gpu.json + gpu.md
    PYTHONPATH=. python bench/gpu.py --preset tiny --device cpu --precisions fp32,bf16 \\
        --batch 1 2 --repeats 2 --out-dir /tmp/gpu                # its CPU-side logic

Per modality (one encoder at a time, seeded random weights: speed is measured, accuracy is
the cosine to the fp32 output of the same model), per batch size (default 1 and 8), per
precision: p50 / p99 latency of ``Backend.encode`` (host numpy in and out, as the nodes
call it) and the smallest row cosine to fp32. fp32 runs with TF32 off, so it is the true
fp32 reference. Audio batches are one clip per sample (a live window). Then dense
prompted detection per 640x480 frame (``RegionDetector`` method "dense": one vision
forward, the patch map, GrabCut refinement on the CPU) in each precision. A precision that
cannot run here (fp16 on a CPU) is recorded with its one-line reason. ``--budget-s`` stops
starting new work when exceeded and still writes what was measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from common import cosine, single_encoder_model, time_calls
from imagebind_ros.detection import DetectorConfig, Prompt, RegionDetector
from imagebind_ros.inference import BackendUnavailable
from imagebind_ros.inference.torch_backend import TorchBackend
from imagebind_ros.modalities import spec

ALL = ("vision", "text", "audio", "depth", "thermal", "imu")


def backends(model: torch.nn.Module, precisions: list[str], device: str
             ) -> tuple[dict[str, TorchBackend], dict[str, str]]:
    """fp32 on ``model``, each reduced precision on its own copy (it casts its weights)."""
    made: dict[str, TorchBackend] = {}
    skipped: dict[str, str] = {}
    for prec in precisions:
        try:
            own = model if prec == "fp32" else copy.deepcopy(model)
            made[prec] = TorchBackend(own, prec, device=device)
        except BackendUnavailable as e:
            skipped[prec] = str(e)
    return made, skipped


def bench_modality(preset: str, modality: str, args: argparse.Namespace) -> dict[str, Any]:
    t = time.perf_counter()
    model = single_encoder_model(preset, modality, device=args.device)
    res: dict[str, Any] = {"params_M": sum(p.numel() for p in model.parameters()) / 1e6,
                           "init_s": time.perf_counter() - t, "rows": []}
    made, res["skipped"] = backends(model, args.precisions, args.device)
    big = max(args.batch)
    x = spec(modality).example(model.config, big, torch.Generator().manual_seed(1), clips=1)
    ref = made["fp32"].encode(modality, x)
    for b in args.batch:
        xb = x[:b].numpy()
        for prec, backend in made.items():
            try:  # fp16 may overflow on some encoder: a row that says so, not a lost run
                got = backend.encode(modality, xb)
            except FloatingPointError as e:
                res["skipped"][f"{prec} batch {b}"] = str(e)
                continue
            timing = time_calls(lambda: backend.encode(modality, xb), batch=b,
                                repeats=args.repeats, warmup=args.warmup)
            res["rows"].append({"modality": modality, "batch": b, "precision": prec,
                                "p50_ms": timing.p50 * 1e3, "p99_ms": timing.p99 * 1e3,
                                "samples_per_s": timing.throughput,
                                "cosine_min": cosine(got, ref[:b])})
    del made, model
    return res


def bench_dense(preset: str, args: argparse.Namespace) -> dict[str, Any]:
    """Prompted dense detection per frame, per precision (its cosine: the patch map's)."""
    model = single_encoder_model(preset, "vision", device=args.device)
    made, skipped = backends(model, args.precisions, args.device)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    vcfg = model.config.vision
    cfg = replace(DetectorConfig(), method="dense", dense_sizes=(args.dense_size,))
    prompt = Prompt("x", "text", np.ones(model.config.out_embed_dim, np.float32))
    rows, maps = [], {}
    for prec, backend in made.items():
        def dense(x: np.ndarray, backend: TorchBackend = backend) -> np.ndarray:
            return backend.encode_dense(x, "maskclip")
        det = RegionDetector(lambda x: backend.encode("vision", x), vcfg, cfg, dense)
        maps[prec] = det.regions(frame).embeddings
        timing = time_calls(lambda: det(frame, [prompt]), batch=1, repeats=args.repeats,
                            warmup=args.warmup)
        rows.append({"precision": prec, "dense_size": args.dense_size,
                     "patches": int(maps[prec].shape[0]), "p50_ms": timing.p50 * 1e3,
                     "p99_ms": timing.p99 * 1e3,
                     "cosine_min": cosine(maps[prec], maps["fp32"])})
    return {"rows": rows, "skipped": skipped}


def environment(device: str) -> dict[str, Any]:
    env: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                           "device": device, "tf32": False}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
    return env


def markdown(results: dict[str, Any]) -> str:
    out = [f"`{results['command']}` on {results['env'].get('gpu', results['env']['device'])}"
           f" (torch {results['env']['torch']}, TF32 off)", "",
           "| modality | batch | precision | p50 ms | p99 ms | samples/s | speed-up vs fp32 "
           "| cosine to fp32 (min) |", "|---" * 8 + "|"]
    for m, r in results["modalities"].items():
        base = {row["batch"]: row["p50_ms"] for row in r["rows"] if row["precision"] == "fp32"}
        for row in r["rows"]:
            out.append(f"| {m} | {row['batch']} | {row['precision']} | {row['p50_ms']:.2f} | "
                       f"{row['p99_ms']:.2f} | {row['samples_per_s']:.1f} | "
                       f"{base[row['batch']] / row['p50_ms']:.2f}x | "
                       f"{row['cosine_min']:.5f} |")
        out += [f"| {m} | - | {p} | not run: {why} | | | | |" for p, why in r["skipped"].items()]
    if "dense" in results:
        out += ["", "| dense detection per 640x480 frame | patches | p50 ms | p99 ms | "
                "cosine of the patch map to fp32 (min) |", "|---" * 5 + "|"]
        for row in results["dense"]["rows"]:
            out.append(f"| {row['precision']}, {row['dense_size']} px short side | "
                       f"{row['patches']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                       f"{row['cosine_min']:.5f} |")
    if results["unfinished"]:
        out += ["", f"Not reached within --budget-s: {', '.join(results['unfinished'])}"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="imagebind_huge")
    p.add_argument("--device", default="cuda")
    p.add_argument("--modalities", default=",".join(ALL))
    p.add_argument("--precisions", default="fp32,bf16,fp16")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dense-size", type=int, default=448, help="dense short side (px)")
    p.add_argument("--no-dense", dest="dense", action="store_false")
    p.add_argument("--budget-s", type=float, default=400.0,
                   help="start no new modality after this many seconds")
    p.add_argument("--out-dir", type=Path, required=True)
    args = p.parse_args(argv)
    args.precisions = ["fp32", *[q for q in args.precisions.split(",") if q != "fp32"]]
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA GPU visible (use --device cpu to check the script itself)")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    start = time.perf_counter()
    todo = args.modalities.split(",") + (["dense"] if args.dense else [])
    results: dict[str, Any] = {
        "command": "bench/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "preset": args.preset, "env": environment(args.device), "modalities": {},
        "unfinished": []}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, Callable[[], dict[str, Any]]] = {
        m: (lambda m=m: bench_modality(args.preset, m, args)) for m in todo if m != "dense"}
    for name in todo:
        if time.perf_counter() - start > args.budget_s:
            results["unfinished"].append(name)
            continue
        if name == "dense":
            results["dense"] = bench_dense(args.preset, args)
        else:
            results["modalities"][name] = jobs[name]()
        if args.device == "cuda":
            torch.cuda.empty_cache()
        results["wall_s"] = time.perf_counter() - start
        (args.out_dir / "gpu.json").write_text(json.dumps(results, indent=1) + "\n")
        print(f"{name} done at {results['wall_s']:.0f} s", flush=True)
    (args.out_dir / "gpu.json").write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    (args.out_dir / "gpu.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
