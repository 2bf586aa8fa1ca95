"""Decode cost per 640x480 frame for every image format the decoder takes.

    python bench/decode.py [--repeats 30] [--json out.json]

Each format's message is built from one synthetic scene (``SyntheticWorld.scene``: camera,
depth scaled to 1.3-7.6 m with 3 % dropouts, thermal) as a driver would send it (``ros.conversions``), then decoded with the one
decoder plus the topic role's view (camera -> ``as_rgb8``, depth -> ``as_depth``, thermal ->
``as_thermal``), which is what a node pays per frame. Ratios are against ``rgb8`` measured
in the same run; compressed formats also against OpenCV's bare ``imdecode`` of the same
bytes (the cost of the whitelist, the header check and the colour order), and RVL against
the per-pixel reference decoder of the tests on one frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from imagebind_ros import decode as dec  # noqa: E402
from imagebind_ros.ros import conversions as cv  # noqa: E402
from imagebind_ros.synthetic import SyntheticWorld, depth_to_mm, thermal_to_mono16  # noqa


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def messages() -> list[tuple[str, str, object]]:
    """(name, role, message) for every format, from one 640x480 scene."""
    scene = SyntheticWorld(seed=0).scene([0, 1, 2], np.random.default_rng(0))
    rgb, depth_m, thermal = scene.image, scene.depth_m, scene.thermal
    depth_m = depth_m * np.float32(0.6)  # an indoor range (1.3-7.6 m), inside depth_max
    depth_m[np.random.default_rng(1).random(depth_m.shape) < 0.03] = np.nan  # dropouts
    mm = depth_to_mm(np.nan_to_num(depth_m))
    rgb16 = rgb.astype(np.uint16) * 257
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out: list[tuple[str, str, object]] = []
    for enc in ("rgb8", "bgr8", "rgba8", "8UC3", "rgb16", "bayer_rggb8", "bayer_rggb16",
                "yuyv", "uyvy", "nv12", "nv21", "nv24"):
        x = rgb16 if enc in ("rgb16", "bayer_rggb16") else rgb
        out.append((enc, "camera", cv.numpy_to_image(x, enc)))
    out.append(("rgb16 big-endian", "camera", cv.numpy_to_image(rgb16, "rgb16",
                                                                big_endian=True)))
    out.append(("mono8", "camera", cv.numpy_to_image(grey, "mono8")))
    out.append(("16UC1", "depth", cv.numpy_to_image(mm, "16UC1")))
    out.append(("32FC1", "depth", cv.numpy_to_image(depth_m, "32FC1")))
    out.append(("mono16 thermal", "thermal", cv.numpy_to_image(thermal_to_mono16(thermal),
                                                                "mono16")))
    for enc, x, fmt in (("rgb8", rgb, "jpeg"), ("rgb8", rgb, "png"), ("rgb16", rgb16, "png"),
                        ("mono16", thermal_to_mono16(thermal), "png")):
        role = "thermal" if enc == "mono16" else "camera"
        out.append((f"{enc}; {fmt} compressed", role, cv.numpy_to_compressed(x, enc, fmt)))
    for enc, x in (("16UC1", mm), ("32FC1", depth_m)):
        for fmt in ("png", "rvl"):
            out.append((f"{enc}; compressedDepth {fmt}", "depth",
                        cv.numpy_to_compressed_depth(x, enc, fmt)))
    return out


VIEWS = {"camera": dec.as_rgb8, "depth": dec.as_depth, "thermal": dec.as_thermal}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    base = None
    for name, role, msg in messages():
        view = VIEWS[role]
        ms = median_ms(lambda: view(dec.decode_picture(msg)), args.repeats)  # noqa: B023
        base = ms if name == "rgb8" else base
        row = {"format": name, "role": role, "ms": round(ms, 3), "bytes": len(msg.data)}
        if dec.is_compressed(msg) and "compressedDepth" not in msg.format:
            raw = np.frombuffer(bytes(msg.data), np.uint8)
            bare = median_ms(lambda: cv2.imdecode(raw, cv2.IMREAD_UNCHANGED),  # noqa: B023
                             args.repeats)
            row["imdecode_ms"] = round(bare, 3)
        rows.append(row)
    for r in rows:
        r["x_rgb8"] = round(r["ms"] / base, 2)
    # RVL: the vectorised decoder against the per-pixel reference, one frame each
    import reference_codecs as ref
    from imagebind_ros import rvl

    depth = next(m for n, _, m in messages() if n == "16UC1; compressedDepth rvl")
    body = bytes(depth.data)[12 + 8:]
    t = time.perf_counter()
    ref.rvl_decode(body, 640 * 480)
    per_pixel = (time.perf_counter() - t) * 1e3
    fast = median_ms(lambda: rvl.decode(body, 640 * 480), args.repeats)
    print(f"{'format':34s} {'role':8s} {'ms':>8s} {'x rgb8':>7s} {'imdecode':>9s} "
          f"{'bytes':>9s}")
    for r in rows:
        bare = f"{r['imdecode_ms']:9.2f}" if "imdecode_ms" in r else " " * 9
        print(f"{r['format']:34s} {r['role']:8s} {r['ms']:8.2f} {r['x_rgb8']:7.2f} {bare} "
              f"{r['bytes']:9d}")
    print(f"RVL 640x480: vectorised {fast:.2f} ms, per-pixel reference {per_pixel:.0f} ms "
          f"({per_pixel / fast:.0f}x)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "rvl_vectorised_ms": fast,
                                         "rvl_per_pixel_ms": per_pixel}, indent=1))


if __name__ == "__main__":
    main()
