"""Hostile-input soak: the node graph under a broken driver and an attacker, phase by phase.

Usage: flock /tmp/imagebind_heavy.lock python bench/soak.py [--phase-s 30] [--out FILE]

Starts the graph as a user would (``imagebind-ros run`` with config/fusion.yaml +
config/demo.yaml: simulated sensors, encoder, fusion, memory; the demo model) in a child
process, and from this process injects, next to the valid simulated streams:

1. baseline: nothing;
2. hostile stamps: well-formed audio chunks and IMU samples (copies of the stream's) stamped
   far in the future, zero, 10 s back or 0.4 s ahead, 10 + 40 per second;
3. absurd values: 1e30 in one IMU sample of fifty (4 per second) and F32LE audio chunks
   holding 1e30 (2 per second), stamped as the live stream;
4. format flip: 8-kHz stereo audio chunks, 10 per second (the stream is 16-kHz mono);
5. garbage flood: 200 camera frames per second with random encoding strings, sizes that
   disagree, or a 50 MB declared size;
6. memory flood: 200 embeddings per second on embeddings/<modality> with random modality
   strings in the body, empty or foreign model ids, 1024 random values;
7. shutdown: SIGINT to the graph.

Reported per phase: embeddings per modality per second (valid streams only; vs the
baseline), warning lines per topic in the worst 5-s bucket, the graph's resident memory
(max, and growth since the end of the baseline) and the exit code. Prints markdown for
docs/reliability.md and writes the numbers as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = ("vision", "depth", "thermal", "audio", "imu")
PHASES = ("baseline", "hostile stamps", "absurd values", "format flip", "garbage flood",
          "memory flood")
NS = 1_000_000_000
# a warning line names its topic: "<topic>: text" or "... bad inputs on <topic> in ..."
TOPIC = re.compile(r"\]: (?:dropped \d+ bad inputs on )?([\w/~()\- ]+?)(?::| in the last)")


class Graph:
    """The ``imagebind-ros run`` child: its output lines with arrival times, its RSS."""

    def __init__(self, env: dict[str, str]) -> None:
        cmd = [sys.executable, "-m", "imagebind_ros.cli", "run", "--params",
               "config/fusion.yaml", "--params", "config/demo.yaml", "--set",
               "use_memory:=true"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip()))

    def rss_mb(self) -> float:
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return float("nan")
        return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024  # type: ignore


class Injector:
    """This process's ROS side: hostile publishers and embedding counters."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image, Imu

        from imagebind_ros.msg import AudioChunk, Embedding
        from imagebind_ros.ros.node_utils import RELIABLE_QOS, sensor_qos

        rclpy.init()
        self.node = rclpy.create_node("soak_injector")
        self.pubs = {"audio": self.node.create_publisher(AudioChunk, "audio", sensor_qos(50)),
                     "imu": self.node.create_publisher(Imu, "imu/data", sensor_qos(200)),
                     "vision": self.node.create_publisher(Image, "camera/image_raw",
                                                          sensor_qos())}
        self.mem_pubs = {m: self.node.create_publisher(Embedding, f"embeddings/{m}",
                                                       RELIABLE_QOS) for m in MODALITIES}
        self.counts: collections.Counter = collections.Counter()
        self.last: dict[str, Any] = {}  # the newest valid message of each stream
        self._lock = threading.Lock()
        for m in MODALITIES:
            self.node.create_subscription(Embedding, f"embeddings/{m}", self._count(m),
                                          RELIABLE_QOS)
        self.node.create_subscription(AudioChunk, "audio", self._keep("audio"), sensor_qos(50))
        self.node.create_subscription(Imu, "imu/data", self._keep("imu"), sensor_qos(200))
        self.ex = SingleThreadedExecutor()
        self.ex.add_node(self.node)
        self._stop = threading.Event()
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.ex.spin_once(timeout_sec=0.1)

    def _count(self, modality: str) -> Any:
        def cb(msg: Any) -> None:
            if "demo.pt" in msg.model_id:  # the graph's, not our injections
                with self._lock:
                    self.counts[modality] += 1
        return cb

    def _keep(self, modality: str) -> Any:
        def cb(msg: Any) -> None:
            if msg.header.frame_id != "soak":  # not our own injections
                self.last[modality] = msg
        return cb

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._spinner.join(timeout=5)
        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.shutdown()


def hostile_stamp(rng: np.random.Generator, stamp: int) -> int:
    return int(rng.choice([stamp + 10**6 * NS, 0, stamp - 10 * NS, stamp + 4 * NS // 10]))


def inject(phase: str, inj: Injector, rng: np.random.Generator, t: float) -> None:
    """One 5-ms tick of ``phase``'s hostile traffic (``t``: seconds into the phase)."""
    from sensor_msgs.msg import Image

    from imagebind_ros.msg import Embedding
    from imagebind_ros.ros import conversions as cv

    tick = int(t * 200)
    audio, imu = inj.last.get("audio"), inj.last.get("imu")
    if phase == "hostile stamps" and audio is not None and imu is not None:
        if tick % 5 == 0:
            imu_msg = cv.numpy_to_imu(np.array([0.1, 0.2, 9.8, 0.01, 0.02, 0.03]),
                                      cv.make_header(hostile_stamp(rng, inj.now_ns()), "soak"))
            inj.pubs["imu"].publish(imu_msg)
        if tick % 20 == 0:
            audio.header = cv.make_header(hostile_stamp(rng, inj.now_ns()), "soak")
            inj.pubs["audio"].publish(audio)
    elif phase == "absurd values":
        now = inj.now_ns()
        if tick % 50 == 0:
            sample = np.array([0.1, 0.2, 9.8, 0.01, 0.02, 0.03])
            sample[int(rng.integers(6))] = 1e30
            inj.pubs["imu"].publish(cv.numpy_to_imu(sample, cv.make_header(now, "soak")))
        if tick % 100 == 0:
            x = np.zeros((320, 1), np.float32)
            x[7] = 1e30
            inj.pubs["audio"].publish(cv.numpy_to_audio_chunk(
                x, 16000, cv.make_header(now, "soak"), sample_format="F32LE"))
    elif phase == "format flip" and tick % 20 == 0:
        x = (rng.normal(size=(160, 2)) * 0.1).astype(np.float32)
        inj.pubs["audio"].publish(cv.numpy_to_audio_chunk(
            x, 8000, cv.make_header(inj.now_ns(), "soak")))
    elif phase == "garbage flood":
        kind = tick % 3
        enc = "".join(rng.choice(list("abcdefgh0123456789"), 8)) if kind == 0 else "rgb8"
        h, w = (4000, 4400) if kind == 2 else (48, 64)
        data = bytes(64 if kind else 48 * 64 * 3)
        inj.pubs["vision"].publish(Image(header=cv.make_header(inj.now_ns(), "soak"),
                                         height=h, width=w, encoding=enc, step=w * 3,
                                         data=data))
    elif phase == "memory flood":
        name = "".join(rng.choice(list("abcdefghijklmnop"), 16))
        model = rng.choice(["", "foreign.pt:" + name[:6], name])
        v = rng.normal(size=1024).astype(np.float32)
        inj.mem_pubs[MODALITIES[tick % 5]].publish(Embedding(
            header=cv.make_header(inj.now_ns(), "soak"), modality=name, model_id=str(model),
            vector=v.tolist()))


def warnings_per_topic(lines: list[tuple[float, str]], start: float, end: float
                       ) -> dict[str, int]:
    """The most warning lines of each topic in any 5-s bucket of [start, end)."""
    buckets: collections.Counter = collections.Counter()
    for t, line in lines:
        if start <= t < end and "WARN" in line:
            m = TOPIC.search(line)
            topic = m.group(1).strip() if m else "(unparsed)"
            buckets[(topic, int((t - start) // 5))] += 1
    out: dict[str, int] = {}
    for (topic, _), n in buckets.items():
        out[topic] = max(out.get(topic, 0), n)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phase-s", type=float, default=30.0, help="seconds per phase")
    ap.add_argument("--warmup-s", type=float, default=20.0, help="seconds before baseline")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RCUTILS_COLORIZED_OUTPUT": "0",
           "RCUTILS_LOGGING_BUFFERED_STREAM": "0"}
    load_before = os.getloadavg()
    graph = Graph(env)
    inj = Injector()
    rng = np.random.default_rng(0)
    rows = []
    try:
        end = time.monotonic() + 120
        while not inj.snapshot().get("imu") and time.monotonic() < end:
            if graph.proc.poll() is not None:
                raise SystemExit("the graph exited:\n" + "\n".join(ln for _, ln in
                                                                   graph.lines[-30:]))
            time.sleep(0.5)
        time.sleep(args.warmup_s)
        base_rss = None
        for phase in PHASES:
            start, before, rss = time.monotonic(), inj.snapshot(), []
            next_tick, next_rss = start, start
            while (now := time.monotonic()) < start + args.phase_s:
                if now >= next_rss:
                    rss.append(graph.rss_mb())
                    next_rss += 1.0
                inject(phase, inj, rng, now - start)
                next_tick += 0.005
                time.sleep(max(0.0, next_tick - time.monotonic()))
            stop = time.monotonic()
            after = inj.snapshot()
            rate = {m: (after.get(m, 0) - before.get(m, 0)) / (stop - start)
                    for m in MODALITIES}
            if base_rss is None:
                base_rss = rss[-1]
            rows.append({"phase": phase, "rate": rate, "rss_max_mb": max(rss),
                         "rss_growth_mb": rss[-1] - base_rss,
                         "warnings": warnings_per_topic(graph.lines, start, stop)})
            print(f"{phase}: {rows[-1]}", flush=True)
    finally:
        inj.close()
        graph.proc.send_signal(signal.SIGINT)
        try:
            code = graph.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            graph.proc.kill()
            code = graph.proc.wait()
    time.sleep(0.5)
    text = "\n".join(ln for _, ln in graph.lines)
    shutdown = {"exit_code": code, "traceback": "Traceback" in text,
                "never_retrieved": "never retrieved" in text}
    report(rows, shutdown, load_before, os.getloadavg(), args.phase_s)
    if args.out:
        args.out.write_text(json.dumps({"phases": rows, "shutdown": shutdown,
                                        "load": [load_before, os.getloadavg()]}, indent=1))
    return 0


def report(rows: list[dict[str, Any]], shutdown: dict[str, Any], load_before: Any,
           load_after: Any, phase_s: float) -> None:
    """Markdown for docs/reliability.md."""
    base = rows[0]["rate"]
    print(f"\n{phase_s:g} s per phase; load average before {load_before[0]:.2f}, after "
          f"{load_after[0]:.2f} (2 cores)\n")
    print("| phase | " + " | ".join(f"{m} /s (vs base)" for m in MODALITIES)
          + " | worst warnings / topic / 5 s | RSS max, growth (MB) |")
    print("|---" * (len(MODALITIES) + 3) + "|")
    for r in rows:
        cells = [f"{r['rate'][m]:.2f} ({r['rate'][m] / base[m]:.0%})" if base[m] else
                 f"{r['rate'][m]:.2f}" for m in MODALITIES]
        worst = max(r["warnings"].items(), key=lambda kv: kv[1], default=("-", 0))
        print(f"| {r['phase']} | " + " | ".join(cells)
              + f" | {worst[1]} ({worst[0]}) | {r['rss_max_mb']:.0f}, "
              f"{r['rss_growth_mb']:+.0f} |")
    print(f"\nshutdown (SIGINT): exit code {shutdown['exit_code']}, traceback "
          f"{shutdown['traceback']}, 'never retrieved' {shutdown['never_retrieved']}")


if __name__ == "__main__":
    sys.exit(main())
