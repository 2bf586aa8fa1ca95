"""The encoder node's live audio path against a direct one-clip forward of the same encoder.

Usage (docs/benchmarks.md, "Live audio"):
    flock /tmp/imagebind_heavy.lock env PYTHONPATH=. .venv/bin/python bench/live_audio.py \\
        --preset imagebind_huge --repeats 10 --out docs/bench/live_audio_imagebind_huge.json

An ``EncoderNode`` runs in this process (modalities [audio], torch fp32, its default thread
count) and gets a 2-s window from the windower its audio subscription uses (100-ms chunks
at 16 kHz). Timed, interleaved round-robin so the shared CPU's noise hits all alike:
``node``: what the node's worker does per window (``to_tensor`` + ``shared.encode``, the
``inference_ms`` it publishes); ``direct``: ``model.encode`` of the same window's one clip;
``three clips``: the same encoder on the reference's three clips of the window (what the
node did before: ``preprocess.audio_to_tensor``). The goal is node <= 1.2x direct.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from common import cosine
from imagebind_ros import preprocess as pp
from imagebind_ros.modalities import to_batch
from imagebind_ros.streams import AudioWindower

SR = 16000


def node_for(preset: str) -> Any:
    """An EncoderNode of ``preset`` (random init) encoding audio only, in this process."""
    import rclpy
    from rclpy.parameter import Parameter

    from imagebind_ros.ros.encoder_node import EncoderNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=(os.getpid() % 100) + 101)
    return EncoderNode(context=ctx, parameter_overrides=[
        Parameter("preset", value=preset), Parameter("modalities", value=["audio"])])


def window(seconds: float = 2.0) -> Any:
    """A 2-s window exactly as the node's AudioWindower emits it from 100-ms chunks."""
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * (seconds + 0.5))) / SR
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size))
    wave = wave.astype(np.float32)
    win = AudioWindower(seconds, 0.5)
    out = None
    chunk = SR // 10
    for i in range(0, wave.size - chunk + 1, chunk):
        out = win.push(wave[i:i + chunk, None], SR, i * 10**9 // SR) or out
    assert out is not None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="imagebind_huge")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    from imagebind_ros.ros.encoder_node import _Input

    node = node_for(args.preset)
    model, cfg = node.shared.model, node.config
    w = window()
    item = _Input(w.stamp_ns, "mic", w)
    one = to_batch("audio", [w], cfg)
    three = pp.audio_to_tensor(w.samples, w.sample_rate, cfg.audio)[None]

    def node_path() -> np.ndarray:
        return node.shared.encode("audio", node.to_tensor("audio", item).numpy())

    def direct() -> np.ndarray:
        with torch.inference_mode():
            return model.encode("audio", one).numpy()

    def three_clips() -> np.ndarray:
        return node.shared.encode("audio", three.numpy())

    paths: dict[str, Callable[[], np.ndarray]] = {
        "node": node_path, "direct": direct, "three clips": three_clips}
    outs = {k: f() for k, f in paths.items()}  # warm-up, and the equality check
    times: dict[str, list[float]] = {k: [] for k in paths}
    load = [os.getloadavg()]
    for _ in range(args.repeats):
        for k, f in paths.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    load.append(os.getloadavg())
    p50 = {k: float(np.median(v)) for k, v in times.items()}
    res = {"command": "bench/live_audio.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "preset": args.preset, "threads": torch.get_num_threads(), "loadavg": load,
           "clips_per_node_call": int(one.shape[1]), "times_s": times, "p50_s": p50,
           "node_over_direct": p50["node"] / p50["direct"],
           "three_over_direct": p50["three clips"] / p50["direct"],
           "cosine_node_vs_three": cosine(outs["node"], outs["three clips"]),
           "cosine_node_vs_direct": cosine(outs["node"], outs["direct"])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"preset {args.preset}, {res['threads']} threads, load average "
          f"{load[0][0]:.2f} -> {load[1][0]:.2f}, {args.repeats} interleaved rounds")
    print("| path | p50 ms | min ms | / direct one-clip forward |\n|---|---|---|---|")
    for k in paths:
        print(f"| {k} | {p50[k] * 1e3:.0f} | {min(times[k]) * 1e3:.0f} | "
              f"{p50[k] / p50['direct']:.2f}x |")
    print(f"cosine node vs three clips {res['cosine_node_vs_three']:.6f}")
    node.destroy_node()
    return 0


if __name__ == "__main__":
    sys.exit(main())
