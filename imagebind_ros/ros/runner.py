"""``imagebind-ros run``: the node graph in ONE process, for installs without ``ros2 launch``.

    imagebind-ros run --params config/fusion.yaml --set checkpoint:=model.pt --set use_mic:=true

Reads the same ROS parameter files as ``launch/fusion.launch.py`` (node sections and the
``/**`` wildcard), starts the selected nodes on one executor (rclpy's events executor by
default: the least overhead per message in docs/benchmarks.md, "ROS overhead") and, with
``--table``, prints modality -> top label, score and latency as results arrive. All nodes of
the process share one model instance per (checkpoint, preset, backend, ...) through
``model_cache``. Node switches are the launch file's arguments: ``use_encoder``,
``use_sim_sensors``, ``use_mic``, ``use_detector``, ``use_memory``, ``use_fusion`` (the only
one on by default besides the encoder); set them with ``--set`` or in an ``imagebind_ros_run``
section of a parameter file. With the fusion node, the table has a ``fused`` row.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NODES = {  # node name -> (module, class)
    "encoder_node": ("imagebind_ros.ros.encoder_node", "EncoderNode"),
    "sim_sensors_node": ("imagebind_ros.ros.sim_sensors_node", "SimSensorsNode"),
    "microphone_node": ("imagebind_ros.ros.microphone_node", "MicrophoneNode"),
    "detector_node": ("imagebind_ros.ros.detector_node", "DetectorNode"),
    "memory_node": ("imagebind_ros.ros.memory_node", "MemoryNode"),
    "fusion_node": ("imagebind_ros.ros.fusion_node", "FusionNode"),
}
SWITCHES = {"use_encoder": ("encoder_node", True),
            "use_sim_sensors": ("sim_sensors_node", False),
            "use_mic": ("microphone_node", False),
            "use_detector": ("detector_node", False),
            "use_memory": ("memory_node", False),
            "use_fusion": ("fusion_node", True)}
RUN_SECTION = "imagebind_ros_run"
VISUAL = ("vision", "depth", "thermal")


def parse_set(items: Sequence[str]) -> list[tuple[str, Any]]:
    """``key:=value`` pairs; values are YAML scalars/lists as in ``ros2 launch`` arguments."""
    out = []
    for item in items:
        key, sep, value = item.partition(":=")
        if not sep or not key:
            raise ValueError(f"--set expects key:=value, got {item!r}")
        out.append((key.strip(), yaml.safe_load(value) if value.strip() else ""))
    return out


def _parameter(name: str, value: Any) -> Any:
    from rclpy.parameter import Parameter

    if isinstance(value, (list, tuple)) and not value:
        # YAML cannot type an empty list; every list parameter of ours is a string array
        return Parameter(name, Parameter.Type.STRING_ARRAY, [])
    return Parameter(name, value=value)


def read_params(files: Sequence[str], node: str) -> dict[str, Any]:
    """A node's parameters from ROS parameter files (later files win), flattened."""
    from rclpy.parameter import Parameter, parameter_dict_from_yaml_file

    out: dict[str, Any] = {}
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"parameter file not found: {f}")
        found = parameter_dict_from_yaml_file(f, use_wildcard=True, target_nodes=[node])
        for name, msg in found.items():
            value = Parameter.from_parameter_msg(msg).value
            out[name] = list(value) if isinstance(value, (list, tuple)) or hasattr(
                value, "tolist") else value
    return out


def switches(files: Sequence[str], sets: list[tuple[str, Any]]) -> dict[str, bool]:
    """Which nodes to start: defaults, then files' ``imagebind_ros_run`` section, then --set."""
    on = {node: default for node, default in SWITCHES.values()}
    for f in files:
        section = (yaml.safe_load(Path(f).read_text()) or {}).get(RUN_SECTION) or {}
        for key, value in (section.get("ros__parameters") or {}).items():
            if key not in SWITCHES:
                raise ValueError(f"{f}: unknown {RUN_SECTION} key {key!r}; known: "
                                 f"{', '.join(SWITCHES)}")
            on[SWITCHES[key][0]] = bool(value)
    for key, value in sets:
        if key in SWITCHES:
            on[SWITCHES[key][0]] = bool(value)
    return on


def node_overrides(files: Sequence[str], sets: list[tuple[str, Any]], node: str) -> list[Any]:
    """Parameter overrides of one node: files, then ``--set key:=v`` (all nodes) and
    ``--set node.key:=v`` (that node)."""
    params = read_params(files, node)
    for key, value in sets:
        if key in SWITCHES:
            continue
        head, _, rest = key.partition(".")
        if head in NODES:
            if head == node:
                params[rest] = value
        else:
            params[key] = value
    return [_parameter(k, v) for k, v in params.items()]


@dataclass
class _Row:
    label: str = "-"
    score: float = float("nan")
    latency_ms: float = float("nan")
    inference_ms: float = float("nan")
    truth: str = ""
    correct: bool | None = None
    count: int = 0
    hits: int = 0
    judged: int = 0
    latencies: list[float] = field(default_factory=list)


class Monitor:
    """Subscribes to the encoder's outputs like any other node and keeps the latest row per
    modality (latency = arrival time - source stamp, so it includes DDS and buffering)."""

    def __init__(self, modalities: Sequence[str], sim: Any | None,
                 windows: dict[str, float]) -> None:
        import rclpy

        from imagebind_ros.msg import Embedding, ZeroShot
        from imagebind_ros.ros.node_utils import RELIABLE_QOS

        self.node = rclpy.create_node("imagebind_ros_monitor")
        self.sim = sim
        self.windows = windows  # seconds of input behind one result (audio, IMU windows)
        self.rows = {m: _Row() for m in modalities}
        self._lock = threading.Lock()
        for m in modalities:
            self.node.create_subscription(ZeroShot, f"zero_shot/{m}", self._on_zero_shot,
                                          RELIABLE_QOS)
            self.node.create_subscription(Embedding, f"embeddings/{m}", self._on_embedding,
                                          RELIABLE_QOS)

    def _on_embedding(self, msg: Any) -> None:
        with self._lock:
            self.rows.setdefault(msg.modality, _Row()).inference_ms = msg.inference_ms

    def _on_zero_shot(self, msg: Any) -> None:
        from imagebind_ros.decode import stamp_to_ns

        stamp = stamp_to_ns(msg.header.stamp)
        latency = (self.node.get_clock().now().nanoseconds - stamp) / 1e6
        truth, correct = "", None
        top = msg.results[0] if msg.results else None
        known = (self.sim.truth(stamp, self.windows.get(msg.modality, 0.0))
                 if self.sim is not None else None)
        if known is not None and top is not None:
            sounding, visible = known
            if msg.modality in VISUAL:
                truth, correct = "/".join(visible), top.class_id in visible
            else:
                truth, correct = sounding, top.class_id == sounding
        with self._lock:
            r = self.rows.setdefault(msg.modality, _Row())
            r.count += 1
            r.latency_ms = latency
            r.latencies.append(latency)
            if top is not None:
                r.label, r.score = top.class_id, top.score
            r.truth, r.correct = truth, correct
            if correct is not None:
                r.judged += 1
                r.hits += int(correct)

    def table(self, elapsed: float, title: str) -> str:
        with self._lock:
            lines = [f"t={elapsed:5.1f} s  {title}",
                     f"{'modality':<9}{'top label':<12}{'score':>6}{'latency':>10}"
                     f"{'model':>9}  {'truth':<18}{'n':>5}"]
            for m, r in self.rows.items():
                mark = {True: "ok", False: "x", None: ""}[r.correct]
                lines.append(f"{m:<9}{r.label[:11]:<12}{r.score:>6.2f}{r.latency_ms:>7.0f} ms"
                             f"{r.inference_ms:>6.0f} ms  {(r.truth[:14] + ' ' + mark):<18}"
                             f"{r.count:>5}")
        return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imagebind-ros run", description="Run the node graph "
                                "in one process (no ros2 launch needed).")
    p.add_argument("--params", action="append", default=[], metavar="FILE",
                   help="ROS 2 parameter file (repeatable; later files win)")
    p.add_argument("--set", action="append", default=[], metavar="KEY:=VALUE",
                   help="parameter for every node that has it, NODE.KEY:=VALUE for one node, "
                        "or a node switch (use_sim_sensors, use_mic, use_detector, "
                        "use_memory, use_encoder, use_fusion)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (0 = until Ctrl-C)")
    p.add_argument("--table", action="store_true",
                   help="print modality -> top label, score, latency while running")
    p.add_argument("--table-period", type=float, default=2.0, help="seconds between tables")
    p.add_argument("--executor", choices=("events", "single", "multi"), default="events",
                   help="rclpy executor: the events executor (default; least overhead per "
                        "message, docs/benchmarks.md), single-threaded, or multi-threaded "
                        "(the slowest here: every callback is handed to a thread pool)")
    return p


def _start(name: str, overrides: list[Any]) -> Any:
    module, cls = NODES[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise RuntimeError(f"{name} is not available ({e})") from None
    return getattr(mod, cls)(parameter_overrides=overrides)


def _check_sets(nodes: dict[str, Any], sets: list[tuple[str, Any]]) -> None:
    """A --set that no started node declares is a typo: say so instead of ignoring it."""
    for key, _ in sets:
        if key in SWITCHES:
            continue
        head, _, rest = key.partition(".")
        if head in NODES:
            if head in nodes and not nodes[head].has_parameter(rest):
                raise ValueError(f"--set {key}: {head} has no parameter {rest!r}")
        elif not any(n.has_parameter(key) for n in nodes.values()):
            raise ValueError(f"--set {key}: no started node has a parameter {key!r} "
                             f"(started: {', '.join(nodes)})")


def _summary(nodes: dict[str, Any], monitor: Monitor | None) -> str:
    from imagebind_ros.model_cache import cached_models

    lines = []
    enc = nodes.get("encoder_node")
    if enc is not None:
        for m, s in enc.summary().items():
            line = (f"  {m:<8} {s['received']:>5} in, {s['published']:>5} out, "
                    f"{s['dropped']:>5} dropped (newer input first), {s['invalid']:>3} bad; "
                    f"latency p50 "
                    f"{s['latency_p50_ms']:.0f} ms, p99 {s['latency_p99_ms']:.0f} ms "
                    f"(model {s['inference_p50_ms']:.0f} ms)")
            if s["restarts"]:
                line += f"; window restarted {s['restarts']}x (stamp gaps)"
            row = monitor.rows.get(m) if monitor else None
            if row is not None and row.judged:
                line += f"; top label right {row.hits}/{row.judged}"
            lines.append(line)
    fus = nodes.get("fusion_node")
    if fus is not None:
        line = f"  fused    {fus.published:>5} out ({fus.config.method})"
        row = monitor.rows.get("fused") if monitor else None
        if row is not None and row.judged:
            line += f"; top label right {row.hits}/{row.judged}"
        lines.append(line)
    models = cached_models()
    lines.append(f"  {len(models)} model instance(s) in this process: "
                 + "; ".join(s.describe() for s in models))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sets = parse_set(args.set)
        on = switches(args.params, sets)
        overrides = {n: node_overrides(args.params, sets, n) for n, use in on.items() if use}
    except (OSError, ValueError, RuntimeError) as e:
        print(f"imagebind-ros run: error: {e}", file=sys.stderr)
        return 2
    if not overrides:
        print("imagebind-ros run: error: every node is switched off", file=sys.stderr)
        return 2
    _demo_model_default(overrides)

    import rclpy
    from imagebind_ros.ros.node_utils import STARTUP_ERRORS, spin, use_large_data_profile

    use_large_data_profile()
    rclpy.init(args=[])
    nodes: dict[str, Any] = {}
    log = rclpy.logging.get_logger("imagebind_ros_run")
    try:
        # the encoder first: it loads the model that later nodes find in the cache
        for name in sorted(overrides, key=lambda n: n != "encoder_node"):
            try:
                nodes[name] = _start(name, overrides[name])
            except STARTUP_ERRORS as e:
                log.error(f"{name} cannot start: {e}")
                return 1
        try:
            _check_sets(nodes, sets)
        except ValueError as e:
            log.error(str(e))
            return 2
        enc = nodes.get("encoder_node")
        monitor = None
        if args.table and enc is not None:
            cfg = enc.config
            windows = {m: float(getattr(cfg.modality(m), attr)) for m, attr in
                       (("audio", "clip_duration"), ("imu", "window_seconds"))
                       if m in enc.modalities}
            rows = tuple(enc.modalities) + (("fused",) if "fusion_node" in nodes else ())
            monitor = Monitor(rows, nodes.get("sim_sensors_node"), windows)
        if enc is not None and enc.shared.random_init:
            print(f"NOTE: {enc.model_id} is a RANDOM-INIT model (no checkpoint): the pipeline "
                  "runs, but its labels are meaningless.", flush=True)
        executor = _executor(args.executor)
        for n in list(nodes.values()) + ([monitor.node] if monitor else []):
            executor.add_node(n)
        stop = threading.Event()
        spinner = threading.Thread(target=spin, args=(executor, stop), daemon=True)
        spinner.start()
        title = f"model {enc.shared.describe()}" if enc is not None else ""
        start = time.monotonic()
        next_table = start + args.table_period
        try:
            while rclpy.ok() and spinner.is_alive():
                now = time.monotonic()
                if args.duration and now - start >= args.duration:
                    break
                if monitor is not None and now >= next_table:
                    print(monitor.table(now - start, title) + "\n", flush=True)
                    next_table += args.table_period
                time.sleep(0.05)
        except KeyboardInterrupt:
            pass
        stop.set()
        spinner.join(timeout=5)
        _drain(executor)
        executor.shutdown(timeout_sec=5)
        print(f"imagebind-ros run: stopped after {time.monotonic() - start:.1f} s\n"
              + _summary(nodes, monitor), flush=True)
        return 0
    finally:
        _shutdown(nodes)


def _shutdown(nodes: dict[str, Any]) -> None:
    """Destroy the process's nodes, then rclpy (also ``graph_container``'s ending)."""
    import rclpy

    for n in nodes.values():
        n.destroy_node()
    if rclpy.ok():
        rclpy.shutdown()


def _demo_model_default(overrides: dict[str, list[Any]]) -> None:
    """Simulated sensors and no model anywhere: every model node gets the demo model."""
    from rclpy.parameter import Parameter

    from imagebind_ros.ros.model_params import MODEL_NODES, demo_model_default

    models = [n for n in overrides if n in MODEL_NODES]
    if "sim_sensors_node" not in overrides or not models:
        return
    demo = demo_model_default({n: {p.name: p.value for p in overrides[n]} for n in models})
    for n in models if demo else ():
        overrides[n].append(Parameter("checkpoint", value=demo))


def _executor(kind: str) -> Any:
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    if kind == "events":
        from rclpy.experimental import EventsExecutor
        return EventsExecutor()
    return MultiThreadedExecutor() if kind == "multi" else SingleThreadedExecutor()


def _drain(executor: Any, timeout: float = 5.0) -> None:
    """Wait for callbacks still running in the pool. rclpy 9.1's ``Executor.shutdown`` skips
    this wait and destroys its guard condition under them ("cannot use Destroyable")."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not all(f.done() for f in
                                             getattr(executor, "_futures", [])[:]):
        time.sleep(0.01)


if __name__ == "__main__":
    sys.exit(main())
