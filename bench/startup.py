"""Process start -> first embedding of an encoder node, per backend, and its resident memory.

Usage (docs/benchmarks.md, "Start-up and memory"):
    flock /tmp/imagebind_heavy.lock env PYTHONPATH=. .venv/bin/python bench/startup.py \\
        --preset imagebind_huge --rounds 2 --work /tmp/ibr_startup \\
        --out docs/bench/startup_imagebind_huge.json

Every configuration is a fresh process running a real ``EncoderNode`` (rclpy, in-process;
five zero-shot labels, embedded at start where the model has text): the parent takes the
time just before it starts the child, the child reports when imports were done, when the
node (model + backend + label embeddings) was built, and when each configured modality's
first embedding was out (a camera frame, a 2-s audio window, a depth and a thermal frame,
an IMU window, in the node's order, through its own ``to_tensor`` + ``shared.encode``),
then a second round (steady state), and its memory from /proc/self/status after that
(VmRSS = RssAnon + RssFile: memory-mapped checkpoint pages are file pages; VmHWM the
peak). Every configured encoder has run, so its weights are resident. Configurations run
round-robin, ``--rounds`` times, so page-cache and load effects hit each alike. The
weights are a random-init checkpoint of the preset written once to ``--work`` (a plain
state dict, like imagebind_huge.pth) and an ONNX export (with int8) of its audio encoder:
start-up of a real file, not of random initialisation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# name -> (backend, precision, modalities the node is configured for)
CONFIGS: dict[str, tuple[str, str, list[str]]] = {
    "torch fp32 vision+audio": ("torch", "fp32", ["vision", "audio"]),
    "torch fp32 all six": ("torch", "fp32", ["vision", "audio", "depth", "thermal", "imu"]),
    "torch bf16 vision+audio": ("torch", "bf16", ["vision", "audio"]),
    "torch bf16 all six": ("torch", "bf16", ["vision", "audio", "depth", "thermal", "imu"]),
    "torch fp32 audio": ("torch", "fp32", ["audio"]),
    "torch bf16 audio": ("torch", "bf16", ["audio"]),
    "onnxruntime fp32 audio": ("onnxruntime", "fp32", ["audio"]),
    "onnxruntime int8 audio": ("onnxruntime", "int8", ["audio"]),
}


LABELS = ["a dog", "a car", "a bird", "rain", "an engine"]


def _status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile in MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key + "_MB"] = int(line.split()[1]) // 1024
    return out


def child(args: argparse.Namespace) -> None:
    """One node start; prints one JSON line of phase times (s from the parent's spawn)."""
    t0 = float(os.environ["IBR_SPAWN_TIME"])
    import numpy as np
    import rclpy
    from rclpy.parameter import Parameter

    from imagebind_ros.modalities import ImuSamples
    from imagebind_ros.ros import conversions as cv
    from imagebind_ros.ros.encoder_node import EncoderNode, _Input
    from live_audio import window
    t_import = time.time() - t0
    backend, precision, mods = CONFIGS[args.child]
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=(os.getpid() % 100) + 101)
    params = [Parameter("backend", value=backend), Parameter("precision", value=precision),
              Parameter("modalities", value=mods), Parameter("preset", value=args.preset),
              Parameter("labels", value=LABELS)]
    if backend == "torch":
        params.append(Parameter("checkpoint", value=str(args.work / "model.pth")))
    else:
        params.append(Parameter("onnx_dir", value=str(args.work / "onnx")))
    node = EncoderNode(context=ctx, parameter_overrides=params)
    res: dict[str, Any] = {"config": args.child, "import_s": t_import,
                           "node_built_s": time.time() - t0,
                           "loaded": list(node.shared.modalities)}
    rng = np.random.default_rng(0)
    frame = (480, 640)
    items = {"vision": cv.numpy_to_image(rng.integers(0, 256, (*frame, 3), np.uint8), "rgb8"),
             "audio": window(),
             "depth": cv.numpy_to_image(rng.integers(300, 9000, frame, np.uint16), "16UC1"),
             "thermal": cv.numpy_to_image(rng.integers(0, 65535, frame, np.uint16), "mono16"),
             "imu": ImuSamples(rng.standard_normal((2000, 6)).astype(np.float32))}
    for rnd in ("first", "second"):
        for m in mods:
            t = time.time()
            node.shared.encode(m, node.to_tensor(m, _Input(0, m, items[m])).numpy())
            res[f"{rnd}_{m}_s"] = time.time() - t
            res[f"{rnd}_{m}_done_s"] = time.time() - t0
    res.update(_status())
    print("RESULT " + json.dumps(res), flush=True)
    node.destroy_node()
    rclpy.shutdown(context=ctx)


def prepare(args: argparse.Namespace) -> None:
    """The random-init checkpoint and the audio export (once per --work)."""
    import torch

    from imagebind_ros.inference.export import export_onnx
    from imagebind_ros.inference.manifest import load_manifest
    from imagebind_ros.inference.quantize import derived_model
    from imagebind_ros.model import create_model
    args.work.mkdir(parents=True, exist_ok=True)
    ckpt = args.work / "model.pth"
    if not ckpt.exists():
        torch.manual_seed(0)
        model = create_model(args.preset)
        torch.save(model.state_dict(), ckpt)
        del model
    if not (args.work / "onnx" / "manifest.json").exists():
        model = create_model(args.preset, checkpoint=ckpt, modalities=["audio"])
        export_onnx(model, ["audio"], args.work / "onnx", checkpoint_path=ckpt,
                    progress=False, verify=False)
        derived_model(load_manifest(args.work / "onnx"), "audio", "int8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="imagebind_huge")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--work", type=Path, required=True, help="checkpoint + export (kept)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="subset, comma-separated")
    p.add_argument("--out", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    prepare(args)
    names = [c.strip() for c in args.configs.split(",")]
    runs: list[dict[str, Any]] = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    for rnd in range(args.rounds):
        for name in names:
            load = os.getloadavg()[0]
            env["IBR_SPAWN_TIME"] = repr(time.time())
            proc = subprocess.run([sys.executable, __file__, "--child", name, "--preset",
                                   args.preset, "--work", str(args.work)], env=env,
                                  capture_output=True, text=True, timeout=900)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not lines:
                raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
            res = {**json.loads(lines[0][7:]), "round": rnd, "loadavg": load}
            runs.append(res)
            print(json.dumps(res), flush=True)
    if args.out:
        cmd = "bench/startup.py " + " ".join(sys.argv[1:] if argv is None else argv)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": cmd, "runs": runs}, indent=1) + "\n")
    print(table(runs))
    return 0


def table(runs: list[dict[str, Any]]) -> str:
    """The last round per configuration (warm page cache)."""
    last = {r["config"]: r for r in runs}
    out = ["| node | encoders held | imports s | node built s | first embedding s (done at) "
           "| second s | RSS MB (anon + file) | peak MB |", "|---" * 8 + "|"]
    for name, r in last.items():
        mods = [k[6:-2] for k in r if k.startswith("first_") and not k.endswith("done_s")]
        firsts = "; ".join(f"{m} {r[f'first_{m}_s']:.2f} ({r[f'first_{m}_done_s']:.1f})"
                           for m in mods)
        seconds = "; ".join(f"{m} {r[f'second_{m}_s']:.2f}" for m in mods)
        out.append(f"| {name} | {', '.join(r['loaded'])} | {r['import_s']:.1f} | "
                   f"{r['node_built_s']:.1f} | {firsts} | {seconds} | {r['VmRSS_MB']} "
                   f"({r['RssAnon_MB']} + {r['RssFile_MB']}) | {r['VmHWM_MB']} |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
