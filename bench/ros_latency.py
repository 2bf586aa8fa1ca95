"""ROS overhead of the encoder node: publish -> embedding latency minus the model's own time.

Usage: python bench/ros_latency.py [--checkpoint PATH | --preset tiny] [--repeats 30]
                                   [--duration 60] [--executor-seconds 20]

1. Overhead per input (encoder node in its own process, this process publishing): a 640x480
   rgb8 image, the chunk that completes a 2-s audio window, the sample that completes an
   IMU window. latency = embedding arrival - publish time; the node's own preprocessing +
   encoder time for that very input is the message's ``inference_ms``; overhead = the
   difference (DDS both ways, conversion, buffering, queueing, worker hand-off).
2. A ``--duration`` run at the simulated sensors' rates (30-Hz camera/depth/thermal, 20-ms
   audio chunks, 200-Hz IMU; sim node and encoder node in separate processes): latency
   (arrival - source stamp) p50/p99 per modality, inputs received/dropped, and the encoder
   process's resident memory after warm-up and at the end.
3. The same graph in ONE process (``imagebind-ros run``, as ``make demo``) for
   ``--executor-seconds`` per rclpy executor: multi-threaded, single-threaded, events.
Prints markdown for docs/benchmarks.md, with the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from imagebind_ros.ros.node_utils import use_large_data_profile  # noqa: E402

use_large_data_profile()  # this process publishes 0.9-MB images to another process
os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 80))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import psutil  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image, Imu  # noqa: E402

from imagebind_ros.msg import AudioChunk, Embedding  # noqa: E402
from imagebind_ros.decode import stamp_to_ns  # noqa: E402
from imagebind_ros.ros import conversions as cv  # noqa: E402
from imagebind_ros.ros.node_utils import RELIABLE_QOS, sensor_qos  # noqa: E402
from imagebind_ros.synthetic import SyntheticWorld  # noqa: E402

NS = 1_000_000_000
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
       "RCUTILS_COLORIZED_OUTPUT": "0"}
MAIN = "import sys; from imagebind_ros.ros.{0} import main; sys.exit(main())"
MODALITIES = ("vision", "audio", "depth", "thermal", "imu")


class Proc:
    """A node process with its log lines collected."""

    def __init__(self, module: str, ros_args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MAIN.format(module), "--ros-args", *ros_args], env=ENV,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def started(self, timeout: float = 120) -> None:
        """Wait for the node's "encoding ..." line; its log if it exits instead."""
        wait_for(lambda: any("encoding" in ln for ln in self.lines)
                 or self.proc.poll() is not None, timeout, "encoder node")
        if self.proc.poll() is not None:
            raise RuntimeError("encoder node exited:\n" + "\n".join(self.lines))

    def rss_mib(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2 ** 20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wait_for(pred: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.002)
    raise TimeoutError(f"no {what} within {timeout} s")


class Listener:
    """Embeddings of every modality with their arrival times (system clock, ns)."""

    def __init__(self, node: Any) -> None:
        self.got: dict[str, list[tuple[int, Embedding]]] = {m: [] for m in MODALITIES}
        for m in MODALITIES:
            node.create_subscription(
                Embedding, f"embeddings/{m}",
                lambda msg, m=m: self.got[m].append((time.time_ns(), msg)), RELIABLE_QOS)

    def find(self, modality: str, stamp_ns: int) -> tuple[int, Embedding] | None:
        return next(((t, e) for t, e in list(self.got[modality])
                     if stamp_to_ns(e.header.stamp) == stamp_ns), None)


def encoder_args(model: list[str], extra: list[str]) -> list[str]:
    return ["--params-file", str(ROOT / "config" / "fusion.yaml"), *model,
            "-p", "labels:=[dog, car, bird, fire, rain, engine, kettle, drill]", *extra]


def overhead(model: list[str], repeats: int) -> list[str]:
    """Part 1: one input at a time, latency - node-side model time."""
    enc = Proc("encoder_node", encoder_args(model, ["-p", "vision.max_rate_hz:=0.0",
                                                    "-p", "stats_period_s:=0.0"]))
    node = rclpy.create_node("bench_overhead")
    pubs = {"vision": node.create_publisher(Image, "camera/image_raw", sensor_qos(5)),
            "audio": node.create_publisher(AudioChunk, "audio", sensor_qos(50)),
            "imu": node.create_publisher(Imu, "imu/data", sensor_qos(200))}
    listener = Listener(node)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    world = SyntheticWorld()
    rows: dict[str, list[tuple[float, float]]] = {m: [] for m in pubs}
    try:
        enc.started()
        wait_for(lambda: all(p.get_subscription_count() for p in pubs.values()), 60,
                 "subscriptions")
        image = world.render(0, np.random.default_rng(0), size=(480, 640)).image
        for i in range(repeats + 3):  # the first 3 warm up
            stamp = time.time_ns()
            pubs["vision"].publish(cv.numpy_to_image(image, "rgb8", cv.make_header(stamp, "c")))
            t, e = wait_for(lambda: listener.find("vision", stamp), 30, "image embedding")
            if i >= 3:
                rows["vision"].append(((t - stamp) / 1e6, e.inference_ms))
        sr, chunk, hop = 16000, 320, 25  # 25 chunks = the 0.5-s hop
        audio = world.audio(1, np.random.default_rng(1), seconds=2.0 + 0.5 * (repeats + 3))
        t0 = time.time_ns()
        for j in range(len(audio) // chunk):
            start = t0 + j * chunk * NS // sr
            msg = cv.numpy_to_audio_chunk(audio[j * chunk:(j + 1) * chunk], sr,
                                          cv.make_header(start, "mic"))
            sent = time.time_ns()
            pubs["audio"].publish(msg)
            if (j + 1) >= 100 and (j + 1 - 100) % hop == 0:  # this chunk completes a window
                last = start + (chunk - 1) * NS // sr
                t, e = wait_for(lambda: listener.find("audio", last), 30, "audio embedding")
                if j + 1 > 100 + 2 * hop:
                    rows["audio"].append(((t - sent) / 1e6, e.inference_ms))
            else:
                time.sleep(0.001)
        imu, _ = world.imu(2, np.random.default_rng(2), seconds=5.0 + 0.5 * (repeats + 3))
        t0 = time.time_ns()
        for k, row in enumerate(imu):
            stamp = t0 + k * 5_000_000
            sent = time.time_ns()
            pubs["imu"].publish(cv.numpy_to_imu(row, cv.make_header(stamp, "imu")))
            # windows are due once 95% of 5 s is covered (sample 950), then every 0.5 s
            if k >= 950 and (k - 950) % 100 == 0:
                t, e = wait_for(lambda: listener.find("imu", stamp), 30, "IMU embedding")
                if k >= 950 + 200:
                    rows["imu"].append(((t - sent) / 1e6, e.inference_ms))
            else:
                time.sleep(0.0005)
    finally:
        ex.shutdown()
        node.destroy_node()
        enc.stop()
    out = ["| input | n | publish->embedding p50 ms | node preprocess+encode p50 ms "
           "| ROS overhead p50 ms | overhead p90 ms | overhead / model time |",
           "|---|---|---|---|---|---|---|"]
    names = {"vision": "640x480 rgb8 image", "audio": "2-s audio window (16 kHz)",
             "imu": "IMU window (5 s, 200 Hz)"}
    for m, r in rows.items():
        if not r:
            out.append(f"| {names[m]} | 0 | - | - | - | - | - |")
            continue
        lat, model = np.array(r).T
        over = lat - model
        out.append(f"| {names[m]} | {len(r)} | {np.median(lat):.1f} | {np.median(model):.1f} "
                   f"| {np.median(over):.1f} | {np.percentile(over, 90):.1f} "
                   f"| {np.median(over) / np.median(model):.2f} |")
    return out


STATS = re.compile(r"(\w+): (\d+) in, (\d+) out, (\d+) dropped, (\d+) bad")


def sustained(model: list[str], duration: float) -> list[str]:
    """Part 2: sim node and encoder node in separate processes at sensor rates."""
    enc = Proc("encoder_node", encoder_args(model, ["-p", f"stats_period_s:={duration:.1f}"]))
    node = rclpy.create_node("bench_sustained")
    listener = Listener(node)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    sim = None
    try:
        enc.started()
        sim = Proc("sim_sensors_node", ["-p", "camera_mode:=object"])
        wait_for(lambda: sum(len(v) for v in listener.got.values()) > 0, 60, "first output")
        time.sleep(5)  # warm-up: every modality has run
        rss_start = enc.rss_mib()
        mark = {m: len(v) for m, v in listener.got.items()}
        time.sleep(duration - 5)
        rss_end = enc.rss_mib()
        wait_for(lambda: any(STATS.search(ln) for ln in enc.lines), 30, "stats line")
        stats = {m.group(1): m.groups()[1:] for ln in enc.lines for m in STATS.finditer(ln)}
    finally:
        if sim is not None:
            sim.stop()
        ex.shutdown()
        node.destroy_node()
        enc.stop()
    out = [f"Encoder process RSS: {rss_start:.0f} MiB after 5 s warm-up, {rss_end:.0f} MiB at "
           f"{duration:.0f} s ({rss_end - rss_start:+.1f} MiB).", "",
           "| modality | received | embedded | dropped (newer input first) | bad "
           "| latency p50 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
    for m in MODALITIES:
        lat = [(t - stamp_to_ns(e.header.stamp)) / 1e6 for t, e in listener.got[m][mark[m]:]]
        got, pub, drop, bad = stats.get(m, ("-",) * 4)
        p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if lat else (np.nan,) * 2
        out.append(f"| {m} | {got} | {pub} | {drop} | {bad} | {p50:.0f} | {p99:.0f} |")
    return out


SUMMARY = re.compile(r"^\s+(\w+)\s+(\d+) in,\s+(\d+) out,.*latency p50 (\d+) ms, p99 (\d+) ms",
                     re.M)


def executors(sets: list[str], seconds: float) -> list[str]:
    """Part 3: the whole graph in one process per executor kind."""
    out = ["| executor | " + " | ".join(f"{m} p50/p99 ms" for m in MODALITIES)
           + " | IMU received |", "|---|" + "---|" * (len(MODALITIES) + 1)]
    for kind in ("multi", "single", "events"):
        proc = subprocess.run(
            [sys.executable, "-m", "imagebind_ros.cli", "run", "--params", "config/fusion.yaml",
             "--params", "config/demo.yaml", *sets, "--duration", f"{seconds:g}",
             "--executor", kind], cwd=ROOT, env=ENV, capture_output=True, text=True,
            timeout=seconds + 180)
        rows = {m.group(1): m.groups()[1:] for m in SUMMARY.finditer(proc.stdout)}
        cells = [f"{rows[m][2]}/{rows[m][3]}" if m in rows else "-" for m in MODALITIES]
        imu_in = rows["imu"][0] if "imu" in rows else "-"
        out.append(f"| {kind} | " + " | ".join(cells) + f" | {imu_in} |")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--executor-seconds", type=float, default=20.0)
    args = p.parse_args(argv)
    model = (["-p", f"checkpoint:={args.checkpoint}"] if args.checkpoint
             else ["-p", f"preset:={args.preset}"])
    sets = (["--set", f"checkpoint:={args.checkpoint}"] if args.checkpoint
            else ["--set", "checkpoint:=", "--set", f"preset:={args.preset}"])
    print(f"load before={os.getloadavg()[0]:.1f} cpus={os.cpu_count()} "
          f"model={args.checkpoint or args.preset}\n", flush=True)
    rclpy.init()
    try:
        print("\n".join(overhead(model, args.repeats)) + "\n", flush=True)
        print("\n".join(sustained(model, args.duration)) + "\n", flush=True)
    finally:
        rclpy.shutdown()
    print("\n".join(executors(sets, args.executor_seconds)) + "\n", flush=True)
    print(f"load after={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
