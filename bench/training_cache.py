"""Training throughput with and without the hub-feature cache, measured in the same run.

Usage:
    python bench/training_cache.py [--config training/configs/synthetic_spokes.yaml]
        [--steps 5] [--rounds 4] [--warmup 2] [--out result.json] [--dotted.key value ...]

Both trainers use the same config, data and spokes; the only difference is
``cache.enabled``. Without the cache every step loads and preprocesses the images and runs the
frozen hub on them; with it a step reads one stored embedding per sample. The two alternate
in rounds (so a change in machine load hits both) and the median round counts. Reported:
training samples/s (all spokes together) of each, their ratio, the one-off cost of building
the cache (and after how many steps it has paid for itself), and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/training_cache.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from training.config import load_config  # noqa: E402
from training.train import Trainer  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(cfg: dict[str, Any]) -> tuple[Trainer, float]:
    """A trainer and, with the cache on, the time its hub-feature cache took to build."""
    want = cfg["cache"]["enabled"]
    cfg["cache"]["enabled"] = False  # construct without, then build it once, timed
    trainer = Trainer(cfg)
    cfg["cache"]["enabled"] = want
    if not want:
        return trainer, 0.0
    t0 = time.perf_counter()
    trainer.caches = trainer._build_caches()
    return trainer, time.perf_counter() - t0


def timed_steps(trainer: Trainer, it: dict[str, Any], steps: int) -> float:
    """Seconds for ``steps`` training steps (data loading included)."""
    _sync(trainer.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step({m: next(x) for m, x in it.items()})
    _sync(trainer.device)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="training/configs/synthetic_spokes.yaml")
    p.add_argument("--steps", type=int, default=5, help="steps per round and variant")
    p.add_argument("--rounds", type=int, default=4,
                   help="alternating rounds (uncached, cached, ...): load drifts hit both")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", help="also write the result JSON here")
    args, overrides = p.parse_known_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        common = [*overrides, "--log.tensorboard", "false", "--log.progress", "false",
                  "--data.eval", "null", "--epochs", "1", "--cache.dir", "null"]
        trainers = {}
        for name, on in (("uncached", "false"), ("cached", "true")):
            cfg = load_config(args.config, common + ["--out_dir", f"{tmp}/{name}",
                                                     "--cache.enabled", on])
            trainers[name] = build(cfg)
        need = args.warmup + args.steps * args.rounds
        for name, (trainer, _) in trainers.items():
            if need > trainer.plan.steps:
                raise ValueError(f"an epoch has {trainer.plan.steps} steps, fewer than "
                                 f"warmup + steps x rounds = {need}: use more data")
        its = {name: t.loaders(0, 0) for name, (t, _) in trainers.items()}
        for name, (trainer, _) in trainers.items():
            timed_steps(trainer, its[name], args.warmup)
        secs: dict[str, list[float]] = {name: [] for name in trainers}
        for _ in range(args.rounds):
            for name, (trainer, _) in trainers.items():
                secs[name].append(timed_steps(trainer, its[name], args.steps))
    trainer = trainers["cached"][0]
    per_step = trainer.plan.global_batch * len(trainer.mods)
    rate = {n: args.steps * per_step / statistics.median(v) for n, v in secs.items()}
    build_s = trainers["cached"][1]
    saved = per_step / rate["uncached"] - per_step / rate["cached"]
    result = {
        "device": (torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"),
        "threads": torch.get_num_threads(), "config": args.config, "overrides": overrides,
        "steps_per_round": args.steps, "rounds": args.rounds,
        "samples_per_step": per_step,
        "uncached_samples_per_s": round(rate["uncached"], 2),
        "cached_samples_per_s": round(rate["cached"], 2),
        "speedup": round(rate["cached"] / rate["uncached"], 2),
        "round_speedups": [round(u / c, 2) for u, c in zip(secs["uncached"], secs["cached"])],
        "cache_build_s": round(build_s, 2),
        "cached_items": int(sum(c.shape[0] * c.shape[1] for c in trainer.caches.values())),
        "break_even_steps": round(build_s / saved, 1) if saved > 0 else None,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
