"""Shared by bench/inference.py and bench/gpu_tensorrt.py: models, timers, FLOPs, peaks."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..model import MODALITY_CONFIGS, ImageBindModel, get_config


def single_encoder_model(preset: str, modality: str, seed: int = 0,
                         device: str = "cpu") -> ImageBindModel:
    """A random-init model of ``preset`` holding only ``modality`` (ViT-H vision alone is
    2.5 GB; building all six encoders to bench one would need 4.8 GB)."""
    cfg = get_config(preset)
    for m in MODALITY_CONFIGS:
        if m != modality:
            setattr(cfg, m, None)
    torch.manual_seed(seed)
    with torch.device(device):
        return ImageBindModel(cfg).eval()


@dataclass
class Timing:
    """Per-call wall-clock latencies (seconds) of one configuration."""

    times: list[float]
    batch: int

    @property
    def p50(self) -> float:
        return statistics.median(self.times)

    @property
    def p99(self) -> float:
        return float(np.percentile(self.times, 99))

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency."""
        return self.batch / self.p50


def time_calls(fn: Callable[[], object], batch: int, repeats: int, warmup: int = 1) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (synchronous calls:
    every backend's ``encode`` returns host numpy, so GPU work is finished when it returns)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return Timing(times, batch)


def count_flops(model: ImageBindModel, modality: str, x: torch.Tensor) -> int:
    """FLOPs of one forward as torch counts them (matmuls, convolutions, attention)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model.encode(modality, x)
    return int(counter.get_total_flops())


def matmul_peak_gflops(dtype: torch.dtype = torch.float32, n: int = 1024,
                       seconds: float = 2.0) -> float:
    """Best GFLOP/s of an n x n x n CPU ``F.linear`` in ``dtype``: this run's peak.

    ``F.linear`` is the call the encoders make; in bf16 on a CPU without native bf16 it is
    ~20x faster than ``torch.mm`` (which falls back to a reference kernel), so it is the
    fair ceiling to compare the model's bf16 runs with.
    """
    a, w = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.nn.functional.linear(a, w)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        torch.nn.functional.linear(a, w)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine similarity between two embedding batches."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    num = (a64 * b64).sum(1)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return float((num / den).min())
