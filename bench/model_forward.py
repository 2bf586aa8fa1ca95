"""fp32 forward latency per modality, and how close it gets to this CPU's matmul peak.

Usage: python bench/model_forward.py [--preset imagebind_huge] [--repeats 5] [--modalities ...]

The peak is measured in the same run (large square sgemm), so the ratio "achieved GFLOP/s /
peak" is comparable across machines and runs; FLOPs are counted by torch's FlopCounterMode
(matmuls, convolutions and attention), not estimated by hand.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from imagebind_ros.model import create_model

SAMPLE = {"vision": (1, 3, 224, 224), "audio": (1, 3, 1, 128, 204), "depth": (1, 1, 224, 224),
          "thermal": (1, 1, 224, 224), "imu": (1, 6, 2000)}


def matmul_peak_gflops(dtype: torch.dtype = torch.float32, n: int = 2048,
                       seconds: float = 2.0) -> float:
    """Best sustained GFLOP/s of an n x n x n matmul (the practical peak for this CPU)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def sample_input(modality: str) -> torch.Tensor:
    if modality == "text":
        t = torch.randint(1, 49406, (1, 77))
        t[0, 12] = 49407
        return t
    return torch.randn(SAMPLE[modality])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="imagebind_huge")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--modalities", default="vision,text,audio,depth,thermal,imu")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model = create_model(args.preset)
    peak = matmul_peak_gflops()
    print(f"threads={torch.get_num_threads()} fp32 matmul peak={peak:.0f} GFLOP/s")
    print("| modality | GFLOP | p50 ms | min ms | GFLOP/s | % of fp32 peak |")
    print("|---|---|---|---|---|---|")
    with torch.inference_mode():
        for m in args.modalities.split(","):
            x = sample_input(m)
            with FlopCounterMode(display=False) as fc:
                model({m: x})
            gflop = fc.get_total_flops() / 1e9
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                model({m: x})
                times.append(time.perf_counter() - t)
            p50, best = statistics.median(times), min(times)
            print(f"| {m} | {gflop:.1f} | {p50 * 1e3:.0f} | {best * 1e3:.0f} | "
                  f"{gflop / p50:.0f} | {100 * gflop / p50 / peak:.0f}% |")


if __name__ == "__main__":
    main()
