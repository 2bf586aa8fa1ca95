"""What the ``rosbag`` training dataset costs: building it (topic types, every frame's
metadata and file header, one full decode per format) and reading one pair, per camera
format and rosbag2 storage.

    python bench/rosbag_dataset.py [--frames 100] [--repeats 3] [--json out.json]

The bag holds ``--frames`` 640x480 camera frames at 10 Hz in the given format plus the
same number of 16UC1 depth frames (raw, or compressedDepth rvl), written as a recorder
writes them (rclpy's serialisation, ``rosbags`` writer). Baseline, measured in the same run
on the same bag: ``rosbags``' AnyReader reading and deserialising every message of the two
topics, which any bag reader must pay; the ratio is the construction time over it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

from imagebind_ros.ros import conversions as cv  # noqa: E402
from imagebind_ros.synthetic import SyntheticWorld, depth_to_mm  # noqa: E402
from test_rosbag_formats import write_bag  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data import Transforms, build_pair_dataset  # noqa: E402
from training.datasets import typestore  # noqa: E402
from training.hub import load_hub  # noqa: E402
from training.model_io import build_config  # noqa: E402

TINY = str(ROOT / "training" / "configs" / "tiny.yaml")
NS = 1_000_000_000
CAMERA = {"rgb8": lambda a, h: cv.numpy_to_image(a, "rgb8", h),
          "bayer_rggb8": lambda a, h: cv.numpy_to_image(a, "bayer_rggb8", h),
          "yuyv": lambda a, h: cv.numpy_to_image(a, "yuyv", h),
          "jpeg": lambda a, h: cv.numpy_to_compressed(a, "rgb8", "jpeg", h)}
DEPTH = {"16UC1": lambda d, h: cv.numpy_to_image(d, "16UC1", h),
         "compressedDepth rvl": lambda d, h: cv.numpy_to_compressed_depth(d, "16UC1", "rvl",
                                                                           h)}


def baseline_s(bag: Path) -> float:
    from rosbags.highlevel import AnyReader

    t = time.perf_counter()
    with AnyReader([bag], default_typestore=typestore()) as reader:
        for conn, _, raw in reader.messages(connections=reader.connections):
            reader.deserialize(raw, conn.msgtype)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    cfg = load_config(TINY, ["--modalities", "depth"])
    hub = load_hub(cfg["hub"])
    tf = Transforms(build_config(cfg, hub.out_dim), hub.image_transform)
    scene = SyntheticWorld(seed=1).render(2, np.random.default_rng(2), size=(480, 640))
    rgb, mm = scene.image, depth_to_mm(scene.depth_m)
    stamps = [(1_700_000_000 + k // 10) * NS + (k % 10) * NS // 10 for k in range(args.frames)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for storage in ("sqlite3", "mcap"):
            for cam, build in CAMERA.items():
                for depth, dbuild in DEPTH.items():
                    msgs = {"/cam": [(t, build(rgb, cv.make_header(t, "c"))) for t in stamps],
                            "/depth": [(t, dbuild(mm, cv.make_header(t, "d")))
                                       for t in stamps]}
                    bag = write_bag(Path(tmp) / f"{storage}-{cam}-{len(rows)}", storage, msgs)
                    spec = {"kind": "rosbag", "path": str(bag), "image_topic": "/cam",
                            "x_topic": "/depth"}
                    if not rows:  # first use pays imports and OpenCV's start: not timed
                        build_pair_dataset(spec, "depth", tf)
                    base = min(baseline_s(bag) for _ in range(args.repeats))
                    build_s, ds = float("inf"), None
                    for _ in range(args.repeats):
                        t = time.perf_counter()
                        ds = build_pair_dataset(spec, "depth", tf)
                        build_s = min(build_s, time.perf_counter() - t)
                    assert ds is not None and len(ds) == args.frames
                    t = time.perf_counter()
                    for i in range(len(ds)):
                        ds.read_image(i)
                        ds.read_x(i)
                    pair_ms = (time.perf_counter() - t) / len(ds) * 1e3
                    rows.append({"storage": storage, "camera": cam, "depth": depth,
                                 "baseline_s": base, "build_s": build_s,
                                 "x_baseline": build_s / base, "read_pair_ms": pair_ms})
    print(f"{args.frames} frames 640x480 + depth; best of {args.repeats}")
    print(f"{'storage':8s} {'camera':12s} {'depth':20s} {'read s':>7s} {'build s':>8s} "
          f"{'x read':>7s} {'pair ms':>8s}")
    for r in rows:
        print(f"{r['storage']:8s} {r['camera']:12s} {r['depth']:20s} {r['baseline_s']:7.3f} "
              f"{r['build_s']:8.3f} {r['x_baseline']:7.2f} {r['read_pair_ms']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
