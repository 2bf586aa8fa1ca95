"""CPU inference: torch eager fp32 (the baseline) against every reduced-precision CPU option.

Usage (the commands behind docs/benchmarks.md, "Inference (CPU)"):
    PYTHONPATH=. .venv/bin/python bench/inference.py --preset tiny --repeats 30 \\
        --out docs/bench/inference_tiny.json
    PYTHONPATH=. .venv/bin/python bench/inference.py --preset imagebind_huge --repeats 5 2 \\
        --out docs/bench/inference_imagebind_huge.json
    PYTHONPATH=. .venv/bin/python bench/inference.py --preset imagebind_huge \\
        --modalities vision,audio --configs "torch bf16" --batch 1 --repeats 8 \\
        --out docs/bench/bf16_imagebind_huge.json        # torch bf16 vs fp32 only

Per modality (one encoder at a time, seeded random weights: speed is what is measured;
accuracy is the cosine to the fp32 output of the same random model), for each batch size:
torch fp32 (baseline), torch bf16 (bf16 weights, CPU autocast), ONNX Runtime fp32 and
ONNX Runtime int8 (dynamic quantisation) from an ONNX export made in the run. ONNX
Runtime bf16 is listed with the reason it cannot run. Calls are interleaved round-robin
across the configurations, with a short pause between them (OpenMP / ONNX Runtime
threads spin after a call), so a burst of load from other processes hits every
configuration alike; the CPU-seconds other processes
used during the timed calls are recorded next to each figure, as is os.getloadavg(). Idle
threads sleep rather than spin in both runtimes (OMP_WAIT_POLICY=PASSIVE, ONNX Runtime
allow_spinning=0): with spinning, a 2-core machine shared with other work made torch eager
up to 10x slower and ONNX Runtime up to 1.8x, which no ratio could be trusted across.

Peaks: best F.linear GFLOP/s in fp32 and bf16 (2048^3) and best ONNX Runtime int8
MatMulInteger GOP/s (1024^3), probed for 2 s at the start and after every modality and once
in every timing round; the fastest call of the run is the peak (a busy moment lowers one
probe, never the best).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Before torch loads libgomp: idle OpenMP threads sleep instead of spinning. Other processes
# share these cores; a spinning thread then holds a core its partner needs, and torch's
# small parallel regions wait on each other (ViT-S depth: 3 s a call instead of 0.3 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import (CpuShare, best_rate, count_flops, matmul_kernel,  # noqa: E402
                    ort_int8_kernel, single_encoder_model)
from imagebind_ros.inference import load_manifest  # noqa: E402
from imagebind_ros.inference.base import cpu_flags  # noqa: E402
from imagebind_ros.inference.export import export_onnx  # noqa: E402
from imagebind_ros.inference.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from imagebind_ros.inference.quantize import derived_model, int8_defaults  # noqa: E402
from imagebind_ros.inference.torch_backend import TorchBackend  # noqa: E402
from imagebind_ros.modalities import spec  # noqa: E402

log = logging.getLogger("bench.inference")
ALL = ("vision", "text", "audio", "depth", "thermal", "imu")
BASELINE = "torch fp32"
# name -> (backend kind, precision, arithmetic whose peak bounds it)
CONFIGS: dict[str, tuple[str, str, str]] = {
    BASELINE: ("torch", "fp32", "fp32"),
    "torch bf16": ("torch", "bf16", "bf16"),
    "ORT fp32": ("onnxruntime", "fp32", "fp32"),
    "ORT int8": ("onnxruntime", "int8", "int8"),
}
NOT_RUN = {"ORT bf16": "ONNX Runtime's CPU provider has no bfloat16 MatMul kernel on x86 "
                       "(bf16 on CPU runs through torch autocast)"}
PAUSE_S = 0.02


class Peaks:
    """Matmul probes in fp32, bf16 (torch F.linear) and int8 (ONNX Runtime MatMulInteger);
    ``best`` is the fastest call seen in the whole run, so contention cannot lower it."""

    def __init__(self) -> None:
        self.kernels = {"fp32": matmul_kernel(torch.float32), "bf16": matmul_kernel(
            torch.bfloat16), "int8": ort_int8_kernel()}
        self.best = {k: 0.0 for k in self.kernels}

    def measure(self, seconds: float) -> dict[str, float]:
        """Best rate of each probe over ``seconds`` of calls (start, between modalities)."""
        got = {k: best_rate(kern, seconds) for k, kern in self.kernels.items()}
        self.best = {k: max(self.best[k], got[k]) for k in got}
        return got

    def probe_once(self) -> None:
        """One call of each probe: taken inside the timing rounds, under their load."""
        for k, (fn, ops) in self.kernels.items():
            time.sleep(PAUSE_S)
            t = time.perf_counter()
            fn()
            self.best[k] = max(self.best[k], ops / (time.perf_counter() - t) / 1e9)


def make_backends(model: torch.nn.Module, modality: str, onnx_dir: Path,
                  names: list[str]) -> dict[str, Any]:
    out = {}
    for name in names:
        kind, precision, _ = CONFIGS[name]
        if kind == "torch":  # reduced precisions cast their model's weights: own copy
            own = model if precision == "fp32" else copy.deepcopy(model)
            out[name] = TorchBackend(own, precision, [modality], device="cpu")
        else:  # no spinning, like OMP_WAIT_POLICY=PASSIVE for torch
            out[name] = OnnxRuntimeBackend(onnx_dir, precision, [modality],
                                           providers=["CPUExecutionProvider"], spin=False)
    return out


def accuracy(backends: dict[str, Any], modality: str, x: torch.Tensor) -> dict[str, Any]:
    """Cosine (per row: min and mean) and max |diff| of each configuration to the baseline.

    Runs every configuration once at the largest batch: also their warm-up at that shape.
    """
    ref = backends[BASELINE].encode(modality, x)
    res: dict[str, Any] = {}
    for name, b in backends.items():
        got = ref if name == BASELINE else b.encode(modality, x)
        cos = (got.astype(np.float64) * ref).sum(1) / (
            np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
        res[name] = {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                     "max_abs_diff": float(np.abs(got - ref).max())}
    return res


def time_interleaved(backends: dict[str, Any], modality: str, x: torch.Tensor,
                     repeats: int, warm: bool, peaks: Peaks) -> dict[str, dict[str, Any]]:
    """``repeats`` rounds, each calling every configuration once (timed, own CpuShare),
    then each peak probe once."""
    xs = x.numpy()
    if not warm:
        for b in backends.values():
            b.encode(modality, xs)
    times: dict[str, list[float]] = {n: [] for n in backends}
    share = {n: CpuShare() for n in backends}
    block = CpuShare()  # the whole block too: /proc/stat ticks (10 ms) blur short calls
    block.__enter__()
    for _ in range(repeats):
        for name, b in backends.items():
            time.sleep(PAUSE_S)
            with share[name]:
                t = time.perf_counter()
                b.encode(modality, xs)
                times[name].append(time.perf_counter() - t)
        peaks.probe_once()
    block.__exit__()
    return {n: {"times_s": times[n], "others_cores": share[n].others_cores,
                "own_cores": share[n].own_cores, "others_cores_block": block.others_cores}
            for n in backends}


def run_modality(args: argparse.Namespace, modality: str, work: Path,
                 peaks: Peaks) -> dict[str, Any]:
    res: dict[str, Any] = {"loadavg_start": os.getloadavg()}
    model = single_encoder_model(args.preset, modality, seed=0)
    res["params_M"] = sum(p.numel() for p in model.parameters()) / 1e6
    big = max(args.batch)
    # one clip per audio sample: what a live window is (recordings run their clips as rows)
    x = spec(modality).example(model.config, big, torch.Generator().manual_seed(1), clips=1)
    res["gflop_per_sample"] = count_flops(model, modality, x[:1]) / 1e9
    onnx_dir = work / modality
    names = [n for n in CONFIGS if n in args.configs]
    if any(CONFIGS[n][0] == "onnxruntime" for n in names):  # ViT-H export: minutes
        _export(model, modality, onnx_dir, res)
    backends = make_backends(model, modality, onnx_dir, names)
    res["backends"] = {n: b.describe() for n, b in backends.items()}
    log.info("%s: %.1f GFLOP/sample, export %.0f s, int8 %.0f s; accuracy at batch %d",
             modality, res["gflop_per_sample"], res.get("export_s", 0),
             res.get("int8_make_s", 0), big)
    res["accuracy"] = accuracy(backends, modality, x)
    res["timing"] = {}
    for b, reps in zip(args.batch, args.repeats):
        log.info("%s: batch %d, %d rounds of %s", modality, b, reps, ", ".join(backends))
        res["timing"][str(b)] = time_interleaved(backends, modality, x[:b], reps,
                                                 warm=b == big, peaks=peaks)
    res["loadavg_end"] = os.getloadavg()
    del backends, model
    gc.collect()
    shutil.rmtree(onnx_dir, ignore_errors=True)  # ViT-H vision: 2.5 GB of ONNX
    return res


def _export(model: torch.nn.Module, modality: str, onnx_dir: Path, res: dict[str, Any]
            ) -> None:
    """The fp32 export and its int8 variant the ONNX Runtime configurations run."""
    t = time.perf_counter()
    export_onnx(model, [modality], onnx_dir, progress=False, verify=False)
    res["export_s"] = time.perf_counter() - t
    manifest = load_manifest(onnx_dir, verify=False)
    e = manifest.entry(modality)
    res["onnx_fp32_bytes"] = e.size + (e.external_data_size or 0)
    t = time.perf_counter()
    int8_path = derived_model(manifest, modality, "int8")
    res["int8_make_s"] = time.perf_counter() - t
    res["onnx_int8_bytes"] = int8_path.stat().st_size


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per modality x batch x configuration, with ratios to the baseline."""
    peaks = results["peaks_best"]
    rows = []
    for m, r in results["modalities"].items():
        for b, per in r["timing"].items():
            base = float(np.median(per[BASELINE]["times_s"]))
            base_best = min(per[BASELINE]["times_s"])
            for name, t in per.items():
                p50 = float(np.median(t["times_s"]))
                rate = r["gflop_per_sample"] * int(b) / p50
                arith = CONFIGS[name][2]
                rows.append({
                    "modality": m, "batch": int(b), "config": name,
                    "p50_ms": p50 * 1e3, "p99_ms": float(np.percentile(t["times_s"], 99)) * 1e3,
                    "best_ms": min(t["times_s"]) * 1e3,
                    "samples_per_s": int(b) / p50, "speedup": base / p50,
                    "speedup_best": base_best / min(t["times_s"]),
                    "cosine_min": r["accuracy"][name]["cosine_min"],
                    "gflops": rate, "pct_fp32_peak": 100 * rate / peaks["fp32"],
                    "pct_own_peak": 100 * rate / peaks[arith], "peak": arith,
                    "others_cores": t["others_cores"],
                    "others_cores_block": t["others_cores_block"], "n": len(t["times_s"])})
    return rows


def table(results: dict[str, Any]) -> str:
    rows = summarize(results)
    out = ["| modality | batch | config | p50 ms | p99 ms | samples/s | speed-up vs torch "
           "fp32 | cosine to fp32 (min) | GFLOP/s | % fp32 peak | % own peak | other "
           "procs' cores: its calls (all rounds) |", "|---" * 12 + "|"]
    for r in rows:
        out.append(f"| {r['modality']} | {r['batch']} | {r['config']} | {r['p50_ms']:.1f} | "
                   f"{r['p99_ms']:.1f} | {r['samples_per_s']:.2f} | {r['speedup']:.2f}x | "
                   f"{r['cosine_min']:.5f} | {r['gflops']:.0f} | {r['pct_fp32_peak']:.0f}% | "
                   f"{r['pct_own_peak']:.0f}% ({r['peak']}) | {r['others_cores']:.2f} "
                   f"({r['others_cores_block']:.2f}) |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="imagebind_huge")
    p.add_argument("--modalities", default=",".join(ALL))
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, nargs="+", default=[5, 2],
                   help="timed rounds per batch size (one value: the same for all)")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"subset of: {', '.join(CONFIGS)} (the baseline is always run)")
    p.add_argument("--peak-seconds", type=float, default=2.0)
    p.add_argument("--out", type=Path, required=True, help="JSON of raw results")
    args = p.parse_args(argv)
    if len(args.repeats) == 1:
        args.repeats = args.repeats * len(args.batch)
    if len(args.repeats) != len(args.batch):
        p.error("--repeats takes one value or one per --batch size")
    args.configs = {BASELINE, *[c.strip() for c in args.configs.split(",")]}
    unknown = args.configs - set(CONFIGS)
    if unknown:
        p.error(f"unknown configs {sorted(unknown)}; choose from {', '.join(CONFIGS)}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s",
                        stream=sys.stdout)
    log.setLevel(logging.INFO)
    import onnxruntime as ort

    flags = cpu_flags()
    results: dict[str, Any] = {
        "command": "bench/inference.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "preset": args.preset, "batch": args.batch, "repeats": args.repeats,
        "env": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                "onnxruntime": ort.__version__, "python": platform.python_version(),
                "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16",
                                             "avx512_vnni", "avx_vnni"}),
                "int8_options": int8_defaults(),
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                "onnxruntime_spinning": False},
        "not_run": NOT_RUN, "loadavg_start": os.getloadavg(), "peaks": [],
        "modalities": {}}
    _cpu_model(results)

    probes = Peaks()

    def peaks(when: str) -> None:
        pk = probes.measure(args.peak_seconds)
        results["peaks"].append({"when": when, "loadavg": os.getloadavg(), **pk})
        results["peaks_best"] = dict(probes.best)  # includes the probes inside the rounds
        log.info("peaks (%s): fp32 %.0f GFLOP/s, bf16 %.0f GFLOP/s, int8 %.0f GOP/s; best "
                 "so far %s", when, pk["fp32"], pk["bf16"], pk["int8"],
                 {k: round(v) for k, v in probes.best.items()})

    peaks("start")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ibr_bench_") as tmp:
        for m in args.modalities.split(","):
            t = time.perf_counter()
            results["modalities"][m] = run_modality(args, m, Path(tmp), probes)
            results["modalities"][m]["wall_s"] = time.perf_counter() - t
            peaks(f"after {m}")
            results["loadavg_end"] = os.getloadavg()
            results["rows"] = summarize(results)
            args.out.write_text(json.dumps(results, indent=1) + "\n")  # after each modality
            log.info("%s done in %.0f s", m, results["modalities"][m]["wall_s"])
    pk = results["peaks_best"]
    print(f"\npreset {args.preset}; peaks (best of the run): fp32 {pk['fp32']:.0f} GFLOP/s, "
          f"bf16 {pk['bf16']:.0f} GFLOP/s, int8 {pk['int8']:.0f} GOP/s; load average "
          f"{results['loadavg_start'][0]:.2f} at start, {results['loadavg_end'][0]:.2f} at "
          f"end; bf16/fp32 matmul peak ratio {pk['bf16'] / pk['fp32']:.2f} (the ceiling of "
          f"torch bf16's speed-up)\n")
    print(table(results))
    for name, why in NOT_RUN.items():
        print(f"\n{name}: not run: {why}")
    return 0


def _cpu_model(results: dict[str, Any]) -> None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                results["env"]["cpu"] = line.split(":", 1)[1].strip()
                return
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
