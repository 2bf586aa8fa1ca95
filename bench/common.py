"""What the bench/ scripts share: one-encoder models, timers, FLOPs, peaks, CPU share.

Imported by the scripts as ``common`` (they run as ``python bench/<name>.py``, which puts
this folder first on ``sys.path``); the package never imports it.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from imagebind_ros.model import MODALITY_CONFIGS, ImageBindModel, get_config


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


def matmul_kernel(dtype: torch.dtype = torch.float32, n: int = 2048
                  ) -> tuple[Callable[[], object], float]:
    """One n x n x n CPU ``F.linear`` in ``dtype`` and its FLOPs: a peak probe.

    ``F.linear`` is the call the encoders make (oneDNN in bf16; ``torch.mm`` in bf16 takes
    another, slower path), so it is the fair ceiling for the model's runs.
    """
    a, w = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.nn.functional.linear(a, w)
    return (lambda: torch.nn.functional.linear(a, w)), 2.0 * n ** 3


def ort_int8_kernel(n: int = 1024) -> tuple[Callable[[], object], float]:
    """ONNX Runtime's u8 x s8 ``MatMulInteger`` (int32 out) and its ops: the ceiling of the
    int8 backend's matmuls (VNNI where the CPU has it)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.integers(-128, 128, (n, n), dtype=np.int8), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "int8_peak",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8)}
    sess.run(None, feed)
    return (lambda: sess.run(None, feed)), 2.0 * n ** 3


def best_rate(kernel: tuple[Callable[[], object], float], seconds: float = 2.0) -> float:
    """Best G(FL)OP/s of ``kernel`` over ``seconds`` of calls. Best, not median: on a shared
    machine most calls lose time to other processes; the fastest is the hardware's."""
    fn, ops = kernel
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        best = max(best, ops / (time.perf_counter() - t) / 1e9)
    return best


def matmul_peak_gflops(dtype: torch.dtype = torch.float32, n: int = 2048,
                       seconds: float = 2.0) -> float:
    """Best GFLOP/s of an n x n x n CPU ``F.linear`` in ``dtype``: this run's peak."""
    return best_rate(matmul_kernel(dtype, n), seconds)


def ort_int8_matmul_peak_gops(n: int = 1024, seconds: float = 2.0) -> float:
    """Best GOP/s of ONNX Runtime's int8 ``MatMulInteger``: this run's int8 peak."""
    return best_rate(ort_int8_kernel(n), seconds)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine similarity between two embedding batches."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    num = (a64 * b64).sum(1)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return float((num / den).min())


def _machine_busy_s() -> float:
    """CPU-seconds all processes on this machine have used (/proc/stat), 0 where absent."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuShare:
    """What else ran while we timed: CPU-seconds of other processes per wall second.

    On a 2-core machine, 0 means the cores were ours; 1 means another process held one core
    on average (our timings then are up to 2x slow). Accumulated over many timed calls,
    because /proc/stat counts in 10 ms ticks.
    """

    wall: float = 0.0
    busy: float = 0.0
    own: float = 0.0
    _start: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0), repr=False)

    def __enter__(self) -> "CpuShare":
        t = os.times()
        self._start = (time.perf_counter(), _machine_busy_s(), t.user + t.system)
        return self

    def __exit__(self, *exc: object) -> None:
        t = os.times()
        self.wall += time.perf_counter() - self._start[0]
        self.busy += _machine_busy_s() - self._start[1]
        self.own += t.user + t.system - self._start[2]

    @property
    def others_cores(self) -> float:
        return max(0.0, self.busy - self.own) / self.wall if self.wall else 0.0

    @property
    def own_cores(self) -> float:
        return self.own / self.wall if self.wall else 0.0
