"""Peak resident memory of the node graph against the encoder alone (issue 13).

    flock /tmp/imagebind_heavy.lock .venv/bin/python bench/graph_memory.py \\
        --preset imagebind_huge --seconds 30 --out docs/bench/graph_memory.json

Each configuration runs as its own process tree, one after the other (one model copy in
memory at a time), on simulated sensors, for ``--seconds`` after every node is up; the
peak RSS of the model-holding process is sampled every 0.2 s with psutil:

- ``encoder alone``: ``graph_container --nodes encoder_node`` (the baseline);
- ``container``: ``graph_container --nodes encoder_node,detector_node,memory_node``, what
  ``fusion.launch.py`` starts (its sensors are a process of their own, as here);
- ``imagebind-ros run``: the same three nodes and the simulated sensors in one process.

The ratio to the baseline of the same run is the figure (goal <= 1.25; one process per node
holds one model copy each: about 3x). Random weights: memory, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
CONTAINER = "import sys; from imagebind_ros.ros.container import main; sys.exit(main())"
SIM = "import sys; from imagebind_ros.ros.sim_sensors_node import main; sys.exit(main())"
READY = ("model instance(s)", "is a RANDOM-INIT model")  # container, imagebind-ros run


def params_file(preset: str, folder: Path, region_batch: int) -> Path:
    path = folder / "graph_memory.yaml"
    path.write_text(f"""\
/**:
  ros__parameters:
    preset: {preset}
    threads: 1
encoder_node:
  ros__parameters:
    labels: [dog, car, bird]
    vision.max_rate_hz: 2.0
detector_node:
  ros__parameters:
    prompt: {{texts: [dog]}}
    max_rate_hz: 0.5
    region_batch_size: {region_batch}
sim_sensors_node:
  ros__parameters:
    camera_rate_hz: 10.0
""")
    return path


def rss_tree(proc: psutil.Process) -> int:
    """RSS of a process and its children (bytes)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def measure(cmd: list[str], seconds: float, env: dict[str, str], log: Path,
            load_timeout: float) -> dict[str, float]:
    """Peak RSS (MiB) of ``cmd``'s process tree from start to ``seconds`` after it is up."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak, ready_at, t0 = 0, None, time.monotonic()
    try:
        while proc.poll() is None:
            peak = max(peak, rss_tree(ps))
            if ready_at is None and any(r in log.read_text() for r in READY):
                ready_at = time.monotonic()
            if ready_at is None and time.monotonic() - t0 > load_timeout:
                raise RuntimeError(f"{cmd[-1]} not up after {load_timeout} s: see {log}")
            if ready_at is not None and time.monotonic() - ready_at >= seconds:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"exited with {proc.returncode}: see {log}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {"peak_rss_mib": peak / 2 ** 20, "load_s": (ready_at or t0) - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="imagebind_huge")
    ap.add_argument("--seconds", type=float, default=30.0,
                    help="seconds measured after the nodes are up")
    ap.add_argument("--load-timeout", type=float, default=900.0)
    ap.add_argument("--region-batch", type=int, default=64,
                    help="the detector's region_batch_size (its working memory; 64 = default)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="graph_memory_"))
    params = params_file(args.preset, tmp, args.region_batch)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}",
           "ROS_DOMAIN_ID": str(int(os.environ.get("ROS_DOMAIN_ID", "0")) % 100 + 170),
           "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0"}
    ros = ["--ros-args", "--params-file", str(params)]
    configs = {
        "encoder alone": [sys.executable, "-c", CONTAINER, "--nodes", "encoder_node", *ros],
        "container": [sys.executable, "-c", CONTAINER, "--nodes",
                      "encoder_node,detector_node,memory_node", *ros],
        "imagebind-ros run": [sys.executable, "-m", "imagebind_ros.cli", "run", "--params",
                              str(params), "--set", "use_sim_sensors:=true", "--set",
                              "use_detector:=true", "--set", "use_memory:=true", "--set",
                              "use_fusion:=false", "--duration", "100000"],
    }
    sim_cmd = [sys.executable, "-c", SIM, *ros]
    results: dict[str, dict[str, float]] = {}
    for name, cmd in configs.items():
        sim = None
        if name != "imagebind-ros run":  # the launch file's sensors: a process of their own
            sim = subprocess.Popen(sim_cmd, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            results[name] = measure(cmd, args.seconds, env, tmp / f"{name.split()[0]}.log",
                                    args.load_timeout)
        finally:
            if sim is not None:
                sim.terminate()
                sim.wait(timeout=30)
        print(f"{name:>18}: peak RSS {results[name]['peak_rss_mib']:8.0f} MiB "
              f"(up after {results[name]['load_s']:.0f} s)", flush=True)
    base = results["encoder alone"]["peak_rss_mib"]
    for name, r in results.items():
        r["ratio_to_encoder_alone"] = r["peak_rss_mib"] / base
        print(f"{name:>18}: {r['ratio_to_encoder_alone']:.2f}x the encoder alone")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"preset": args.preset, "seconds": args.seconds,
                                        "region_batch_size": args.region_batch,
                                        "cpu_count": os.cpu_count(), "results": results},
                                       indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
