"""fp32 forward latency per modality at batch 1, and how close it gets to this CPU's peak.

Usage: python bench/model_forward.py [--preset imagebind_huge] [--repeats 5] [--modalities ...]

The fp32 matmul peak is measured in the same run (large square ``F.linear``, the call the
encoders make), so "achieved GFLOP/s / peak" is comparable across machines and runs; FLOPs
are counted by torch's FlopCounterMode (matmuls, convolutions, attention), not by hand.
Each modality is built alone (ViT-H vision is 2.5 GB) with seeded random weights.
"""

from __future__ import annotations

import argparse
import os

import torch

from common import count_flops, matmul_peak_gflops, single_encoder_model, time_calls
from imagebind_ros.modalities import example_input


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="imagebind_huge")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--modalities", default="vision,text,audio,depth,thermal,imu")
    args = p.parse_args(argv)
    peak = matmul_peak_gflops(torch.float32)
    print(f"preset={args.preset} threads={torch.get_num_threads()} "
          f"load={os.getloadavg()[0]:.1f} fp32 matmul peak={peak:.0f} GFLOP/s")
    print("| modality | GFLOP | p50 ms | min ms | GFLOP/s | % of fp32 peak |")
    print("|---|---|---|---|---|---|")
    for m in args.modalities.split(","):
        model = single_encoder_model(args.preset, m)
        x = example_input(model.config, m, batch=1)
        gflop = count_flops(model, m, x) / 1e9
        with torch.inference_mode():
            timing = time_calls(lambda: model.encode(m, x), batch=1, repeats=args.repeats)
        rate = gflop / timing.p50
        print(f"| {m} | {gflop:.1f} | {timing.p50 * 1e3:.0f} | {min(timing.times) * 1e3:.0f} "
              f"| {rate:.0f} | {100 * rate / peak:.0f}% |", flush=True)
        del model
    print(f"load after={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
