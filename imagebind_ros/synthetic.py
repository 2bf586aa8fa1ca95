"""SYNTHETIC multi-sensor world: procedurally generated images, captions, sound, depth, thermal
and IMU in which every class has a consistent, randomised signature in every sensor.

Nothing here is real data. It exists because no data set or weight can be downloaded: the
training demo, the simulated-sensor ROS node, the detection demo and the benchmarks need paired
multi-sensor data with learnable structure. Accuracy measured on it says nothing about
real-world accuracy. numpy + OpenCV only (no torch, no rclpy), so it is cheap to import anywhere.

Units: image RGB uint8; depth float32 metres (``depth_to_mm`` gives 16UC1 millimetres); thermal
float32 degrees Celsius (``thermal_to_mono16`` gives 0.01 K counts); audio float32 mono in
[-1, 1]; IMU float32 (N, 6) = accel x, y, z in m/s^2 including gravity (z up at rest), gyro
x, y, z in rad/s; timestamps float64 seconds. Boxes are int32 (x0, y0, x1, y1), x1/y1 exclusive.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np

from imagebind_ros import MODALITIES

CLASSES = ("dog", "car", "bird", "fire", "rain", "engine", "kettle", "drill")
SPLITS = ("train", "val", "test")
VISUAL = ("vision", "depth", "thermal")
GRAVITY = 9.80665

Rng = np.random.Generator
Prim = tuple  # ("poly", part, pts) | ("line", part, pts, width) | ("ellipse", part, ...)


@dataclass(frozen=True)
class _Part:
    rgb: tuple[int, int, int]
    temp_c: float
    relative: bool = False  # temp_c is an offset from the ambient temperature
    gradient: tuple[tuple[int, int, int], ...] = ()  # colour stops from edge to core


@dataclass(frozen=True)
class _Spec:
    parts: tuple[_Part, ...]
    scale: tuple[float, float]  # object extent / short image side
    distance_m: tuple[float, float]
    size_m: float
    roundness: float  # depth bulge at the core, as a fraction of size_m
    tilt_deg: float
    texture: float  # grey levels of surface texture
    hot_core: float  # extra degrees C at the silhouette's core
    speckle_m: float = 0.0  # per-pixel depth scatter (rain drops, flames)


_SPECS = {
    "dog": _Spec((_Part((140, 90, 50), 31.0), _Part((160, 105, 62), 34.0),
                  _Part((45, 30, 22), 36.0), _Part((118, 74, 40), 28.0)),
                 (0.5, 0.85), (1.5, 3.5), 0.8, 0.4, 20, 18.0, 3.0),
    "car": _Spec((_Part((200, 30, 32), 4.0, True), _Part((150, 200, 230), 1.0, True),
                  _Part((25, 25, 25), 15.0, True), _Part((170, 170, 170), 22.0, True),
                  _Part((250, 240, 180), 10.0, True)),
                 (0.65, 0.95), (3.0, 4.5), 4.0, 0.1, 8, 6.0, 10.0),
    "bird": _Spec((_Part((40, 90, 200), 38.0), _Part((22, 50, 140), 31.0),
                   _Part((240, 170, 30), 34.0), _Part((15, 15, 15), 39.0)),
                  (0.3, 0.5), (2.5, 4.5), 0.25, 0.5, 35, 10.0, 2.0),
    "fire": _Spec((_Part((230, 90, 20), 240.0, gradient=((190, 30, 10), (245, 120, 20),
                                                         (255, 210, 60), (255, 250, 210))),
                   _Part((70, 40, 20), 140.0)),
                  (0.5, 0.85), (1.5, 3.5), 1.0, 0.3, 10, 10.0, 100.0, 0.15),
    "rain": _Spec((_Part((75, 80, 92), -12.0, True), _Part((170, 205, 235), -9.0, True)),
                  (0.6, 0.95), (3.0, 4.0), 3.0, 0.0, 8, 8.0, 0.0, 0.25),
    "engine": _Spec((_Part((112, 112, 118), 80.0), _Part((68, 68, 74), 70.0),
                     _Part((150, 150, 160), 92.0), _Part((140, 78, 48), 150.0),
                     _Part((30, 30, 30), 50.0)),
                    (0.5, 0.8), (1.0, 2.5), 0.8, 0.15, 20, 12.0, 10.0),
    "kettle": _Spec((_Part((205, 205, 212), 95.0), _Part((168, 168, 176), 88.0),
                     _Part((25, 25, 25), 35.0)),
                    (0.45, 0.75), (0.6, 1.5), 0.3, 0.5, 15, 5.0, 4.0),
    "drill": _Spec((_Part((0, 140, 135), 38.0), _Part((30, 30, 30), 30.0),
                    _Part((45, 45, 45), 36.0), _Part((190, 190, 195), 45.0)),
                   (0.45, 0.8), (0.4, 1.2), 0.3, 0.3, 40, 8.0, 4.0),
}

_CAPTION_WORDS = {
    "dog": (("brown", "furry", "playful", "small", "friendly", "barking"),
            ("on grass", "in a park", "in the living room", "next to a door", "on a sidewalk")),
    "car": (("red", "parked", "fast", "old", "shiny", "moving"),
            ("on the street", "in a parking lot", "on a road", "near a building")),
    "bird": (("blue", "small", "singing", "little", "chirping"),
             ("on a branch", "in the sky", "on a fence", "near a tree")),
    "fire": (("bright", "hot", "burning", "roaring", "orange"),
             ("in a fireplace", "at a campsite", "in the woods", "on the ground")),
    "rain": (("heavy", "cold", "steady", "light", "pouring"),
             ("over the street", "on a window", "in the city", "from a dark cloud")),
    "engine": (("loud", "running", "old", "metal", "greasy"),
               ("in a workshop", "in a garage", "on a test bench", "in a factory")),
    "kettle": (("steel", "boiling", "whistling", "shiny", "hot"),
               ("on a stove", "in the kitchen", "on a counter", "next to a mug")),
    "drill": (("electric", "green", "cordless", "spinning", "power"),
              ("in a workshop", "on a workbench", "in a toolbox", "on a construction site")),
}
# Captions of object-free frames (walls, floor, clutter): training pairs them with such frames
# so that "mostly background" gets an embedding of its own instead of the nearest class's.
BACKGROUND_CAPTIONS = ("an empty room", "a photo of the background", "a plain wall and floor",
                       "nothing in particular", "an empty scene", "a photo of an empty room",
                       "just the background", "a wall with some clutter")
_TEMPLATES = ("a photo of a {adj} {name}", "a {name} {ctx}", "a {adj} {name} {ctx}",
              "there is a {name} {ctx}", "a picture of the {adj} {name}",
              "the robot sees a {name} {ctx}", "a close-up of a {adj} {name}", "a {name}")


class Scene(NamedTuple):
    """Aligned camera, depth and thermal frames with the objects' boxes and classes."""

    image: np.ndarray | None  # (H, W, 3) uint8 RGB
    depth_m: np.ndarray | None  # (H, W) float32 metres
    thermal: np.ndarray | None  # (H, W) float32 degrees C
    boxes: np.ndarray  # (n, 4) int32 x0, y0, x1, y1 (exclusive)
    class_ids: np.ndarray  # (n,) int64


@dataclass
class Sample:
    """One synthetic multi-sensor observation of one class; unrequested modalities are None."""

    class_id: int
    label: str
    caption: str | None = None
    image: np.ndarray | None = None
    box: np.ndarray | None = None
    audio: np.ndarray | None = None
    depth_m: np.ndarray | None = None
    thermal: np.ndarray | None = None
    imu: np.ndarray | None = None
    imu_t: np.ndarray | None = None


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """Depth in metres -> 16UC1 millimetres (the ROS depth-image convention; 0 = invalid)."""
    return np.clip(np.rint(depth_m * 1000.0), 0, 65535).astype(np.uint16)


def thermal_to_mono16(thermal_c: np.ndarray) -> np.ndarray:
    """Degrees C -> radiometric mono16 in 0.01 K counts (FLIR TLinear style; max 382.2 C)."""
    return np.clip(np.rint((thermal_c + 273.15) * 100.0), 0, 65535).astype(np.uint16)


def stack(samples: Sequence[Sample]) -> dict[str, np.ndarray | list[str]]:
    """Stack a list of Samples into batch arrays (only fields every sample has)."""
    out: dict[str, np.ndarray | list[str]] = {
        "class_id": np.array([s.class_id for s in samples], dtype=np.int64)}
    for name in ("image", "box", "audio", "depth_m", "thermal", "imu", "imu_t"):
        if samples and all(getattr(s, name) is not None for s in samples):
            out[name] = np.stack([getattr(s, name) for s in samples])
    if samples and all(s.caption is not None for s in samples):
        out["caption"] = [s.caption for s in samples]
    return out


# ----------------------------------------------------------------------------- shapes
# Unit coordinates: x right, y down, the object spans about [-1, 1]; faces right before a flip.


def _ell(part: int, c: tuple[float, float], ax: tuple[float, float], rot: float = 0.0,
         width: float = 0.0, arc: tuple[float, float] = (0.0, 360.0)) -> Prim:
    return ("ellipse", part, c, ax, rot, width, arc)


def _shape_dog(g: Rng) -> list[Prim]:
    length, leg, head = g.uniform(0.5, 0.65), g.uniform(0.45, 0.65), g.uniform(0.2, 0.27)
    hx, hy = 0.1 + 0.85 * length, -0.3 + g.uniform(-0.1, 0.05)
    prims = [_ell(0, (-0.1, 0.0), (length, 0.28))]
    for x in (-0.45, -0.3, 0.15, 0.3):
        prims.append(("line", 3, [(x * length / 0.55, 0.1),
                                  (x * length / 0.55 + g.uniform(-0.12, 0.12), 0.1 + leg)], 0.11))
    tail = g.uniform(-1.2, 0.2)
    tx = -0.1 - length + 0.05
    prims.append(("line", 0, [(tx, -0.05), (tx - 0.35 * math.cos(tail), -0.05 + 0.35 *
                                            math.sin(tail))], 0.08))
    prims += [_ell(1, (hx, hy), (head, head)),
              _ell(1, (hx + head * 0.9, hy + 0.08), (0.16, 0.1)),
              _ell(2, (hx + head * 0.9 + 0.14, hy + 0.06), (0.05, 0.05)),
              ("poly", 2, [(hx - 0.15, hy - 0.1), (hx - 0.1, hy + 0.25 * g.uniform(0.4, 1.2)),
                           (hx + 0.05, hy - 0.15)])]
    return prims


def _shape_car(g: Rng) -> list[Prim]:
    top, cab = g.uniform(-0.55, -0.4), g.uniform(-0.45, -0.3)
    r = g.uniform(0.18, 0.24)
    prims = [("poly", 0, [(-1.0, -0.1), (1.0, -0.05), (1.0, 0.35), (-1.0, 0.35)]),
             ("poly", 0, [(cab - 0.15, -0.08), (cab, top), (cab + 0.75, top), (cab + 1.0, -0.08)]),
             ("poly", 1, [(cab - 0.05, -0.12), (cab + 0.05, top + 0.06), (cab + 0.33, top + 0.06),
                          (cab + 0.33, -0.12)]),
             ("poly", 1, [(cab + 0.42, -0.12), (cab + 0.42, top + 0.06), (cab + 0.7, top + 0.06),
                          (cab + 0.9, -0.12)]),
             _ell(4, (0.95, 0.05), (0.06, 0.05))]
    for x in (-0.6, 0.6):
        prims += [_ell(2, (x, 0.35), (r, r)), _ell(3, (x, 0.35), (0.4 * r, 0.4 * r))]
    return prims


def _shape_bird(g: Rng) -> list[Prim]:
    flap = g.uniform(-0.85, 0.45)
    return [("poly", 1, [(-0.4, 0.0), (-0.95, -0.15 + g.uniform(-0.1, 0.1)), (-0.95, 0.18)]),
            _ell(0, (0.0, 0.05), (0.5, 0.28), g.uniform(-15, 15)),
            _ell(0, (0.45, -0.22), (0.2, 0.2)),
            ("poly", 2, [(0.6, -0.3), (0.92, -0.22), (0.6, -0.15)]),
            _ell(3, (0.5, -0.27), (0.04, 0.04)),
            ("poly", 1, [(-0.25, -0.02), (0.2, -0.02), (-0.3 + g.uniform(-0.1, 0.2), flap)]),
            ("line", 2, [(-0.05, 0.3), (-0.1, 0.55)], 0.04),
            ("line", 2, [(0.1, 0.3), (0.08, 0.55)], 0.04)]


def _shape_fire(g: Rng) -> list[Prim]:
    prims: list[Prim] = [("line", 1, [(-0.65, 0.9), (0.65, 0.68)], 0.14),
                         ("line", 1, [(-0.65, 0.68), (0.65, 0.9)], 0.14),
                         _ell(0, (0.0, 0.58), (0.6, 0.22))]
    ts = np.linspace(0.0, 1.0, 9)
    for _ in range(g.integers(3, 6)):
        xc, half, top = g.uniform(-0.4, 0.4), g.uniform(0.15, 0.35), g.uniform(-1.0, -0.2)
        ys = 0.65 + (top - 0.65) * ts
        xs = xc + g.uniform(-0.3, 0.3) * ts ** 1.5 + g.uniform(-0.06, 0.06, ts.size)
        w = half * (1.0 - ts) ** 0.7
        pts = np.concatenate([np.stack([xs - w, ys], 1), np.stack([xs + w, ys], 1)[::-1]])
        prims.append(("poly", 0, pts))
    return prims


def _shape_rain(g: Rng) -> list[Prim]:
    prims: list[Prim] = [_ell(0, (g.uniform(-0.8, 0.8), g.uniform(-0.85, -0.45)),
                              (r := g.uniform(0.22, 0.4), r * g.uniform(0.7, 1.0)))
                         for _ in range(g.integers(4, 7))]
    slant = g.uniform(-0.3, 0.3)
    for _ in range(g.integers(12, 26)):
        x, y, ln = g.uniform(-0.85, 0.85), g.uniform(-0.35, 0.7), g.uniform(0.15, 0.35)
        prims.append(("line", 1, [(x, y), (x + slant * ln, y + ln)], g.uniform(0.022, 0.035)))
    return prims


def _shape_engine(g: Rng) -> list[Prim]:
    prims: list[Prim] = [("poly", 0, [(-0.8, -0.5), (0.8, -0.5), (0.8, 0.7), (-0.8, 0.7)]),
                         ("poly", 2, [(-0.6, -0.85), (0.6, -0.85), (0.65, -0.5), (-0.65, -0.5)])]
    for y in np.linspace(-0.4, 0.6, g.integers(5, 8)):
        prims.append(("line", 1, [(-0.9, y), (0.9, y)], 0.06))
    ex = g.uniform(0.0, 0.4)
    prims += [("line", 3, [(0.75, ex), (1.0, ex), (1.0, 0.95)], 0.1),
              _ell(4, (-0.5, 0.45), (0.2, 0.2))]
    return prims


def _shape_kettle(g: Rng) -> list[Prim]:
    w = g.uniform(0.5, 0.65)
    return [_ell(2, (-w - 0.05, 0.0), (0.3, 0.42), 0, 0.1, (90, 270)),
            ("poly", 0, [(w * 0.8, 0.15), (w + 0.4, -0.4), (w + 0.48, -0.34), (w * 0.8, 0.4)]),
            _ell(0, (0.0, 0.12), (w, 0.6)),
            ("poly", 0, [(-w, 0.2), (w, 0.2), (w * 0.95, 0.72), (-w * 0.95, 0.72)]),
            _ell(1, (0.0, -0.45), (0.36 * w / 0.6, 0.1)),
            _ell(2, (0.0, -0.58), (0.08, 0.08))]


def _shape_drill(g: Rng) -> list[Prim]:
    bit = g.uniform(0.25, 0.45)
    return [("poly", 0, [(-0.7, -0.5), (0.35, -0.48), (0.35, -0.06), (-0.7, -0.04)]),
            _ell(0, (-0.7, -0.27), (0.23, 0.23)),
            ("poly", 1, [(-0.38, -0.06), (-0.06, -0.06), (-0.14, 0.6), (-0.46, 0.6)]),
            ("poly", 0, [(-0.62, 0.6), (0.12, 0.6), (0.12, 0.86), (-0.62, 0.86)]),
            ("poly", 2, [(0.35, -0.42), (0.6, -0.38), (0.6, -0.16), (0.35, -0.12)]),
            ("line", 3, [(0.6, -0.27), (0.6 + bit, -0.27)], 0.05),
            ("poly", 1, [(-0.06, -0.04), (0.02, 0.0), (-0.06, 0.14)])]


_SHAPES: dict[str, Callable[[Rng], list[Prim]]] = {
    "dog": _shape_dog, "car": _shape_car, "bird": _shape_bird, "fire": _shape_fire,
    "rain": _shape_rain, "engine": _shape_engine, "kettle": _shape_kettle, "drill": _shape_drill}
_SHIFT = 4  # cv2 fixed-point drawing: 1/16 pixel


def _draw(canvas: np.ndarray, prims: list[Prim], cx: float, cy: float, s: float, angle: float,
          flip: bool) -> None:
    """Rasterise unit-coordinate primitives as part labels (part p -> p + 1)."""
    co, si, fx = math.cos(angle), math.sin(angle), -1.0 if flip else 1.0
    unit = (1 << _SHIFT) * s * np.array([[fx * co, fx * si], [-si, co]])
    offset = (1 << _SHIFT) * np.array([cx, cy])

    def tf(pts: Sequence) -> np.ndarray:
        return np.rint(np.asarray(pts, dtype=np.float64) @ unit + offset).astype(np.int32)

    for kind, part, *args in prims:
        v = part + 1
        if kind == "poly":
            cv2.fillPoly(canvas, [tf(args[0])], v, cv2.LINE_8, _SHIFT)
        elif kind == "line":
            cv2.polylines(canvas, [tf(args[0])], False, v, max(1, round(args[1] * s)),
                          cv2.LINE_8, _SHIFT)
        else:
            c, (ax, ay), rot, width, (a0, a1) = args
            if flip:
                rot, a0, a1 = -rot, 180.0 - a1, 180.0 - a0
            centre = tf([c])[0]
            axes = (round(ax * s * (1 << _SHIFT)), round(ay * s * (1 << _SHIFT)))
            cv2.ellipse(canvas, (int(centre[0]), int(centre[1])), axes,
                        rot + math.degrees(angle), a0, a1, v,
                        -1 if width == 0 else max(1, round(width * s)), cv2.LINE_8, _SHIFT)


# ----------------------------------------------------------------------------- signals


@lru_cache(maxsize=128)
def _band(n: int, sr: float, lo: float, hi: float, slope: float) -> tuple[int, np.ndarray]:
    """First rfft bin in [lo, hi] Hz and the amplitude gains of the bins in the band."""
    f = np.fft.rfftfreq(n, 1.0 / sr)
    i0, i1 = int(np.searchsorted(f, lo)), int(np.searchsorted(f, hi, "right"))
    return i0, (np.maximum(f[i0:i1], 1e-3) ** (-slope / 2.0)).astype(np.float32)


def _noise(g: Rng, n: int, sr: float, lo: float, hi: float, slope: float = 0.0,
           channels: int | None = None) -> np.ndarray:
    """Unit-std noise band-limited to [lo, hi] Hz with a 1/f**slope power spectrum; only the
    in-band bins are drawn, which keeps narrow bands cheap."""
    i0, gain = _band(n, float(sr), float(lo), float(hi), float(slope))
    c = 1 if channels is None else channels
    z = g.standard_normal((2, gain.size, c), dtype=np.float32)
    spec = np.zeros((n // 2 + 1, c), np.complex64)
    spec[i0:i0 + gain.size] = (z[0] + 1j * z[1]) * gain[:, None]
    x = np.fft.irfft(spec, n, axis=0)
    x /= x.std(axis=0) + 1e-12
    return x[:, 0] if channels is None else x


def _events(n: int, starts: np.ndarray, amps: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Sum of `kernel` copies placed at `starts` with gains `amps` (vectorised impulse train)."""
    idx = (np.asarray(starts, dtype=np.int64)[:, None] + np.arange(kernel.size)).ravel()
    w = (np.asarray(amps, dtype=np.float64)[:, None] * kernel).ravel()
    keep = idx < n
    return np.bincount(idx[keep], weights=w[keep], minlength=n)[:n]


def _time(n: int, sr: float) -> np.ndarray:
    """Sample times in float32: audio-rate maths in float64 costs twice as much."""
    return np.arange(n, dtype=np.float32) / np.float32(sr)


def _phase(freq: np.ndarray, sr: float, divide: float = 1.0) -> np.ndarray:
    """float32 phase in [0, 2 pi) of an oscillator at `freq` Hz (per sample) / `divide`,
    accumulated in float64 so that long signals stay in tune."""
    cycles = np.cumsum(freq, dtype=np.float64) / (sr * divide)
    return ((cycles - np.floor(cycles)) * (2 * np.pi)).astype(np.float32)


def _harmonics(phase: np.ndarray, amps: Sequence[float]) -> np.ndarray:
    """sum_h amps[h] * sin((h + 1) * phase) by the Chebyshev recursion (one sin, one cos)."""
    cur, two_cos = np.sin(phase), 2 * np.cos(phase)
    prev, out = np.zeros_like(cur), amps[0] * cur
    for a in amps[1:]:
        prev, cur = cur, two_cos * cur - prev
        out += a * cur
    return out


def _sweep(n: int, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample event index (-1 outside events) and position 0..1 inside the event."""
    which, pos = np.full(n, -1), np.zeros(n, np.float32)
    for k, (a, ln) in enumerate(zip(starts, lengths)):
        b = min(n, a + ln)
        which[a:b], pos[a:b] = k, np.arange(b - a) / max(ln, 1)
    return which, pos


def _audio_dog(g: Rng, n: int, sr: float) -> np.ndarray:
    """Barks: short harmonic bursts (400-750 Hz, falling pitch) with a breathy noise part."""
    starts, t = [], g.uniform(0.0, 0.3)
    while t < n / sr:
        starts.append(t)
        t += g.uniform(0.25, 0.8)
    st = (np.array(starts) * sr).astype(int)
    ln = (g.uniform(0.08, 0.2, st.size) * sr).astype(int)
    which, pos = _sweep(n, st, ln)
    f0 = g.uniform(400, 750, st.size).astype(np.float32)[which] * (1.2 - 0.35 * pos)
    env = np.where(which >= 0, (1 - np.exp(-pos * 40)) * np.exp(-3 * pos), 0.0)
    tone = _harmonics(_phase(f0, sr), (1, 0.7, 0.5, 0.35, 0.25, 0.15))
    return env * (tone + 0.4 * _noise(g, n, sr, 800, 4000))


def _audio_car(g: Rng, n: int, sr: float) -> np.ndarray:
    """Passing car: rising 60-110 Hz engine tone with Doppler drop, road hiss, swelling level."""
    t = _time(n, sr)
    tc, w = g.uniform(0.2, 0.8) * n / sr, g.uniform(0.3, 0.8)
    f = g.uniform(60, 110) * (1 + g.uniform(0.1, 0.4) * t * (sr / n)) * (
        1 - 0.06 * np.tanh((t - tc) / w))
    tone = _harmonics(_phase(f, sr), (1, 0.5, 0.33, 0.25, 0.2, 0.16, 0.14))
    swell = 0.3 + np.exp(-0.5 * ((t - tc) / w) ** 2)
    return swell * (0.4 * tone + _noise(g, n, sr, 100, 3000, 1.0))


def _audio_bird(g: Rng, n: int, sr: float) -> np.ndarray:
    """Chirps: 40-150 ms frequency sweeps around 2.5-6 kHz with fast vibrato."""
    m = max(1, g.poisson(g.uniform(2.0, 5.0) * n / sr))
    st = (g.uniform(0, 1, m) * n).astype(int)
    ln = (g.uniform(0.04, 0.15, m) * sr).astype(int)
    which, pos = _sweep(n, st, ln)
    f_a = g.uniform(2500, 4500, m).astype(np.float32)[which]
    ratio = g.uniform(0.7, 1.5, m).astype(np.float32)[which]
    vib = np.sin((2 * np.pi * g.uniform(20, 60)) * _time(n, sr))
    f = f_a * (1 + (ratio - 1) * pos) + g.uniform(50, 250) * vib
    env = np.where(which >= 0, np.sin(np.pi * pos) ** 2, 0.0)
    return env * _harmonics(_phase(f, sr), (1, 0.2))


def _audio_fire(g: Rng, n: int, sr: float) -> np.ndarray:
    """Fire: low brown-noise roar plus random crackles (15-50 pops/s, heavy-tailed level)."""
    m = g.poisson(g.uniform(15, 50) * n / sr)
    k = int(g.uniform(0.003, 0.008) * sr)
    kernel = g.standard_normal(k) * np.exp(-np.arange(k) / (0.25 * k))
    pops = _events(n, g.integers(0, n, m), g.exponential(1.0, m) ** 1.5 * g.choice([-1, 1], m),
                   kernel)
    return 0.5 * _noise(g, n, sr, 20, 600, 2.0) + 0.6 * pops


def _audio_rain(g: Rng, n: int, sr: float) -> np.ndarray:
    """Rain: pink hiss plus dense tiny drop ticks (300-700/s)."""
    m = g.poisson(g.uniform(300, 700) * n / sr)
    k = max(4, int(0.0015 * sr))
    kernel = np.diff(g.standard_normal(k + 1)) * np.exp(-np.arange(k) / (0.3 * k))
    ticks = _events(n, g.integers(0, n, m), g.exponential(0.3, m) * g.choice([-1, 1], m), kernel)
    return 0.7 * _noise(g, n, sr, 300, 8000, 1.0) + ticks


def _audio_engine(g: Rng, n: int, sr: float) -> np.ndarray:
    """Engine: 25-50 Hz firing pulses ringing a 150-400 Hz resonance, uneven cylinders (AM)."""
    t = _time(n, sr)
    wobble = sum(np.sin((2 * np.pi * g.uniform(0.1, 2.0)) * t + g.uniform(0, 2 * np.pi))
                 for _ in range(2))
    f = g.uniform(25, 50) * (1 + 0.01 * wobble)
    cycles = np.cumsum(f, dtype=np.float64) / sr + g.uniform(0, 1)
    st = np.flatnonzero(np.diff(np.floor(cycles)) > 0) + 1  # one firing per cycle
    k = int(0.03 * sr)
    tk = np.arange(k) / sr
    kernel = np.exp(-tk / g.uniform(0.005, 0.015)) * np.sin(2 * np.pi * g.uniform(150, 400) * tk)
    amps = np.where(np.arange(st.size) % 2 == 0, 1.0, g.uniform(0.45, 0.85))
    pulses = _events(n, st, amps * (1 + 0.1 * g.standard_normal(st.size)), kernel)
    pulses /= pulses.std() + 1e-12
    hum = np.sin(((cycles - np.floor(cycles)) * (2 * np.pi)).astype(np.float32))
    return pulses + 0.5 * hum + 0.1 * _noise(g, n, sr, 20, 2000, 2.0)


def _audio_kettle(g: Rng, n: int, sr: float) -> np.ndarray:
    """Kettle: sustained whistle at 1.5-3 kHz, slowly rising with vibrato, over bubbling."""
    t = _time(n, sr)
    f = g.uniform(1500, 3000) * (1 + g.uniform(0.05, 0.3) * t * (sr / n)) * (
        1 + 0.01 * np.sin((2 * np.pi * g.uniform(4, 8)) * t))
    ramp = np.clip((t - g.uniform(0, 0.4) * n / sr) / g.uniform(0.2, 0.8), 0, 1)
    m = g.poisson(g.uniform(15, 40) * n / sr)
    k = int(g.uniform(0.01, 0.03) * sr)
    lumps = _events(n, g.integers(0, n, m), g.uniform(0.3, 1.0, m), np.hanning(k))
    whistle = _harmonics(_phase(f, sr), (1, 0.15))
    return 0.8 * ramp * whistle + 0.6 * lumps.astype(np.float32) * _noise(g, n, sr, 100, 1200)


def _drill_speed(g: Rng, t: np.ndarray) -> np.ndarray:
    """Trigger profile 0..1: spin-up after a random start, sometimes a release dip."""
    on = g.uniform(0, 0.2) * t[-1]
    speed = np.where(t > on, 1 - np.exp(-(t - on) / g.uniform(0.05, 0.2)), 0.0)
    if g.random() < 0.5:
        speed *= 1 - 0.6 * np.exp(-0.5 * ((t - g.uniform(0.4, 0.9) * t[-1]) / 0.08) ** 2)
    return speed


def _audio_drill(g: Rng, n: int, sr: float) -> np.ndarray:
    """Drill: high 600-1200 Hz motor whine with harmonics, gear rattle and grinding hiss."""
    speed = _drill_speed(g, _time(n, sr))
    f = g.uniform(600, 1200) * (0.3 + 0.7 * speed)
    whine = _harmonics(_phase(f, sr), (1, 0.5, 0.3)) * (1 + 0.3 * np.sin(_phase(f, sr, 8)))
    return speed * (whine + 0.5 * _noise(g, n, sr, 2000, 7000))


_AUDIO: dict[str, Callable[[Rng, int, float], np.ndarray]] = {
    "dog": _audio_dog, "car": _audio_car, "bird": _audio_bird, "fire": _audio_fire,
    "rain": _audio_rain, "engine": _audio_engine, "kettle": _audio_kettle, "drill": _audio_drill}

ImuParts = tuple[np.ndarray, np.ndarray]  # motion accel (n, 3) m/s^2, gyro (n, 3) rad/s


def _imu_dog(g: Rng, t: np.ndarray, rate: float) -> ImuParts:
    """Walking gait at 1.6-2.6 Hz: vertical bounce per footfall, lateral sway, roll."""
    n = t.size
    f = g.uniform(1.6, 2.6) * (1 + 0.05 * _noise(g, n, rate, 0.05, 0.5))
    ph = 2 * np.pi * np.cumsum(f) / rate + g.uniform(0, 2 * np.pi)
    a = g.uniform(1.5, 3.5)
    acc = np.stack([0.4 * a * np.cos(2 * ph), 0.3 * a * np.sin(ph),
                    2 * a * (np.abs(np.sin(ph)) - 2 / np.pi)], 1)
    gyro = np.stack([g.uniform(0.2, 0.5) * np.sin(ph), 0.2 * np.sin(2 * ph + 1),
                     0.2 * _noise(g, n, rate, 0.02, 0.3)], 1)
    return acc, gyro


def _imu_car(g: Rng, t: np.ndarray, rate: float) -> ImuParts:
    """Driving: slow accelerate/brake and turns (< 0.5 Hz), centripetal accel, road buzz."""
    n = t.size
    ax = g.uniform(0.0, 1.0) + g.uniform(0.5, 2.0) * _noise(g, n, rate, 0.02, 0.3)
    yaw = g.uniform(0.1, 0.4) * _noise(g, n, rate, 0.02, 0.2)
    road = g.uniform(0.1, 0.4) * _noise(g, n, rate, 8, 30, channels=3)
    acc = np.stack([ax, g.uniform(3, 12) * yaw, np.zeros(n)], 1) + road * (0.5, 0.5, 1.0)
    gyro = np.stack([0.1 * road[:, 0], 0.1 * road[:, 1], yaw], 1)
    return acc, gyro


def _imu_bird(g: Rng, t: np.ndarray, rate: float) -> ImuParts:
    """Flight: 8-15 Hz wing-beat bursts with large vertical accel, gliding between bursts."""
    n, flap, starts, x = t.size, g.random() < 0.5, [], 0.0
    while x <= t[-1]:
        starts.append(x)
        x += g.uniform(0.3, 1.2) if (len(starts) % 2 == 1) == flap else g.uniform(0.2, 1.0)
    on = (np.searchsorted(starts, t, "right") % 2 == 1) == flap
    env = np.convolve(on.astype(float), np.hanning(9) / np.hanning(9).sum(), "same")
    ph = 2 * np.pi * g.uniform(8, 15) * t + g.uniform(0, 2 * np.pi)
    a = g.uniform(3, 8)
    glide = _noise(g, n, rate, 0.05, 1.0, channels=3)
    acc = np.stack([0.3 * a * env * np.sin(2 * ph), 0.2 * glide[:, 1], a * env * np.sin(ph)], 1)
    gyro = np.stack([0.3 * glide[:, 0], g.uniform(0.5, 1.5) * env * np.cos(ph),
                     0.3 * glide[:, 2]], 1)
    return acc, gyro


def _imu_fire(g: Rng, t: np.ndarray, rate: float) -> ImuParts:
    """Near a fire: still, with slow low-amplitude sway from the updraft (0.1-1 Hz)."""
    sway = _noise(g, t.size, rate, 0.1, 1.0, channels=6)
    return g.uniform(0.03, 0.1) * sway[:, :3], g.uniform(0.02, 0.06) * sway[:, 3:]


def _imu_rain(g: Rng, t: np.ndarray, rate: float) -> ImuParts:
    """Out in the rain: still, with drop impacts (20-80/s) as short decaying vertical spikes."""
    n = t.size
    m = g.poisson(g.uniform(20, 80) * n / rate)
    kernel = np.array([1.0, -0.6, 0.3, -0.1])
    hits = _events(n, g.integers(0, n, m), g.exponential(g.uniform(0.15, 0.4), m), kernel)
    acc = np.stack([0.2 * hits * g.uniform(-1, 1), 0.2 * hits * g.uniform(-1, 1), hits], 1)
    return acc, 0.02 * np.stack([np.roll(hits, 1), np.roll(hits, 2), np.zeros(n)], 1)


def _imu_engine(g: Rng, t: np.ndarray, rate: float) -> ImuParts:
    """Engine mount: vibration at 20-40 Hz (+2nd harmonic) on every axis."""
    n = t.size
    f = g.uniform(20, 40) * (1 + 0.03 * _noise(g, n, rate, 0.05, 1.0))
    ph = 2 * np.pi * np.cumsum(f) / rate
    a = g.uniform(0.5, 2.0)
    phs = g.uniform(0, 2 * np.pi, 6)
    acc = a * np.stack([w * (np.sin(ph + p) + 0.4 * np.sin(2 * ph + 2 * p))
                        for w, p in zip((0.6, 0.4, 1.0), phs[:3])], 1)
    gyro = g.uniform(0.05, 0.1) * np.stack([np.sin(ph + p) for p in phs[3:]], 1)
    return acc, gyro


def _imu_kettle(g: Rng, t: np.ndarray, rate: float) -> ImuParts:
    """Kettle on a counter: bubbling as narrow-band 3-10 Hz vertical jitter, growing."""
    n = t.size
    grow = 0.3 + 0.7 * t / max(t[-1], 1e-9)
    bub = _noise(g, n, rate, 3, 10, channels=3) * grow[:, None]
    acc = g.uniform(0.05, 0.3) * bub * (0.3, 0.3, 1.0)
    return acc, 0.005 * _noise(g, n, rate, 3, 10, channels=3)


def _imu_drill(g: Rng, t: np.ndarray, rate: float) -> ImuParts:
    """Hand drill: 55-90 Hz rotating radial vibration while the trigger is held, torque kick."""
    speed = _drill_speed(g, t)
    ph = 2 * np.pi * np.cumsum(g.uniform(55, 90) * (0.5 + 0.5 * speed)) / rate
    a = g.uniform(2, 5) * speed
    acc = np.stack([a * np.cos(ph), a * np.sin(ph), 0.1 * a * np.sin(2 * ph)], 1)
    kick = g.uniform(0.01, 0.03) * np.gradient(speed, 1 / rate) + 0.05 * speed
    gyro = np.stack([0.02 * a * np.sin(ph), 0.02 * a * np.cos(ph), kick], 1)
    return acc, gyro


_IMU: dict[str, Callable[[Rng, np.ndarray, float], ImuParts]] = {
    "dog": _imu_dog, "car": _imu_car, "bird": _imu_bird, "fire": _imu_fire, "rain": _imu_rain,
    "engine": _imu_engine, "kettle": _imu_kettle, "drill": _imu_drill}


# ----------------------------------------------------------------------------- world


@dataclass
class _Obj:
    class_id: int
    labels: np.ndarray  # (h, w) uint8, 0 = background, p + 1 = part p
    core: np.ndarray  # (h, w) float32, 0 at the silhouette edge .. 1 at its deepest point
    x0: int
    y0: int
    distance: float

    @property
    def box(self) -> np.ndarray:
        h, w = self.labels.shape
        return np.array([self.x0, self.y0, self.x0 + w, self.y0 + h], dtype=np.int32)


@dataclass
class _Geometry:
    hw: tuple[int, int]
    horizon: int
    clutter: list[tuple]
    objects: list[_Obj]


def _draw_clutter(canvas: np.ndarray, item: tuple, value: float | tuple) -> None:
    kind, *p = item
    if kind == "rect":
        cv2.rectangle(canvas, p[0], p[1], value, -1)
    elif kind == "ellipse":
        cv2.ellipse(canvas, p[0], p[1], p[2], 0, 360, value, -1)
    else:
        cv2.line(canvas, p[0], p[1], value, p[2])


def _hsv_jitter(rgb: np.ndarray, g: Rng) -> np.ndarray:
    hsv = cv2.cvtColor(rgb.reshape(1, -1, 3).astype(np.uint8), cv2.COLOR_RGB2HSV)
    hsv = hsv.astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + g.uniform(-5, 5)) % 180
    hsv[..., 1] *= g.uniform(0.75, 1.15)
    hsv[..., 2] *= g.uniform(0.75, 1.2)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    return (out.reshape(-1, 3) + g.uniform(-8, 8, (rgb.shape[0], 3))).astype(np.float32)


class SyntheticWorld:
    """SYNTHETIC world of `num_classes` object classes seen by six sensors.

    Every generator takes a ``numpy.random.Generator`` and is deterministic given it; ``dataset``
    and ``stream`` derive their generators from ``seed`` so runs are reproducible.
    """

    _BANK = 512  # noise-bank period in pixels

    def __init__(self, num_classes: int = 8, seed: int = 0,
                 image_size: int | tuple[int, int] = 224, sample_rate: int = 16000,
                 audio_seconds: float = 2.0, imu_rate: float = 200.0,
                 imu_seconds: float = 10.0) -> None:
        if not 2 <= num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be in [2, {len(CLASSES)}], got {num_classes}")
        self.classes = CLASSES[:num_classes]
        self.seed = seed
        self.image_hw = (image_size, image_size) if isinstance(image_size, int) else tuple(
            image_size)
        self.sample_rate = sample_rate
        self.audio_seconds = audio_seconds
        self.imu_rate = imu_rate
        self.imu_seconds = imu_seconds
        base = np.random.default_rng([seed, 7]).standard_normal((self._BANK,) * 2,
                                                               dtype=np.float32)
        self._bank = np.tile(base, (2, 2))
        # Room tone shared by every class (so a repeating bank teaches nothing about classes):
        # 2**18 samples of pink noise, periodic by construction (inverse FFT).
        self._room = _noise(np.random.default_rng([seed, 8]), 1 << 18, sample_rate, 20,
                            sample_rate / 2, 1.0).astype(np.float32)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # -- noise bank: fresh-looking per-pixel noise at the cost of a slice

    def _pixel_noise(self, g: Rng, h: int, w: int) -> np.ndarray:
        """A (h, w) unit-normal noise view; a random crop of a periodic noise bank."""
        bh, bw = self._bank.shape
        if bh < self._BANK + h or bw < self._BANK + w:
            reps = (-(-(self._BANK + h) // self._BANK), -(-(self._BANK + w) // self._BANK))
            self._bank = np.tile(self._bank[:self._BANK, :self._BANK], reps)
        oy, ox = g.integers(0, self._BANK, 2)
        return self._bank[oy:oy + h, ox:ox + w]

    # -- text

    def caption(self, class_id: int, rng: Rng) -> str:
        """A templated sentence naming the class with a random adjective and context."""
        name = self.classes[class_id]
        adjs, ctxs = _CAPTION_WORDS[name]
        tpl = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        adj, ctx = adjs[rng.integers(len(adjs))], ctxs[rng.integers(len(ctxs))]
        return re.sub(r"\ba (?=[aeiou])", "an ", tpl.format(adj=adj, name=name, ctx=ctx))

    # -- geometry shared by image, depth and thermal

    def _object(self, g: Rng, class_id: int, hw: tuple[int, int], factor: float) -> _Obj:
        spec = _SPECS[self.classes[class_id]]
        prims = _SHAPES[self.classes[class_id]](g)
        s = g.uniform(*spec.scale) * factor * min(hw) / 2
        angle, flip = math.radians(g.uniform(-spec.tilt_deg, spec.tilt_deg)), g.random() < 0.5
        while True:
            half = int(1.7 * s) + 3
            patch = np.zeros((2 * half, 2 * half), np.uint8)
            _draw(patch, prims, half, half, s, angle, flip)
            x, y, w, h = cv2.boundingRect(patch)
            if (w <= hw[1] and h <= hw[0]) or s < 4:
                break
            s *= 0.85
        labels = patch[y:y + h, x:x + w]
        core = cv2.distanceTransform((labels > 0).astype(np.uint8), cv2.DIST_L2, 3)
        core /= max(float(core.max()), 1e-6)
        return _Obj(class_id, labels, core, 0, 0, g.uniform(*spec.distance_m))

    def _geometry(self, g: Rng, class_ids: Sequence[int], hw: tuple[int, int],
                  factor: float) -> _Geometry:
        h, w = hw
        clutter: list[tuple] = []
        for _ in range(g.integers(3, 9)):
            kind = ("rect", "ellipse", "line")[g.integers(3)]
            cx, cy = int(g.uniform(0, w)), int(g.uniform(0, h))
            rx, ry = int(g.uniform(0.03, 0.2) * w) + 1, int(g.uniform(0.03, 0.2) * h) + 1
            if kind == "rect":
                clutter.append((kind, (cx - rx, cy - ry), (cx + rx, cy + ry)))
            elif kind == "ellipse":
                clutter.append((kind, (cx, cy), (rx, ry), float(g.uniform(0, 180))))
            else:
                clutter.append((kind, (cx - rx, cy - ry), (cx + rx, cy + ry),
                                max(1, int(g.uniform(0.005, 0.02) * min(hw)))))
        objects: list[_Obj] = []
        gap = max(2, round(0.02 * min(hw)))  # keep scene objects visibly apart
        for cid in class_ids:
            obj, f = None, factor
            while obj is None:
                cand = self._object(g, cid, hw, f)
                oh, ow = cand.labels.shape
                for _ in range(40):
                    cand.x0 = int(g.integers(0, w - ow + 1))
                    cand.y0 = int(g.integers(0, h - oh + 1))
                    if all(_disjoint(cand.box, o.box, gap) for o in objects):
                        obj = cand
                        break
                f *= 0.8
            objects.append(obj)
        return _Geometry(hw, int(g.uniform(0.35, 0.65) * h), clutter, objects)

    # -- per-modality layers (clean = before sensor noise)

    def _clean_image(self, geo: _Geometry, g: Rng) -> np.ndarray:
        # cv2 calls throughout: numpy is slow on (h, w, 3) arrays with broadcast channels.
        h, w = geo.hw
        wall, floor = (g.uniform(30, 225, (2, 3)) * 0.5 + g.uniform(60, 200, (2, 1)) * 0.5)
        rows = np.where(np.arange(h)[:, None] < geo.horizon, wall, floor)
        rows *= np.linspace(g.uniform(0.8, 1.1), g.uniform(0.8, 1.1), h)[:, None]
        column = np.clip(rows, 0, 255).astype(np.uint8)[:, None, :]
        img = cv2.resize(column, (w, h), interpolation=cv2.INTER_NEAREST)
        for item in geo.clutter:
            _draw_clutter(img, item, tuple(float(v) for v in g.uniform(20, 235, 3)))
        for o in geo.objects:
            spec = _SPECS[self.classes[o.class_id]]
            lut = np.zeros((1, 256, 3), np.uint8)
            colours = _hsv_jitter(np.array([p.rgb for p in spec.parts]), g)
            lut[0, 1:len(spec.parts) + 1] = np.clip(colours, 0, 255)
            rgb = cv2.LUT(cv2.merge([o.labels] * 3), lut)
            for p, part in enumerate(spec.parts):
                if part.gradient:  # colour by depth into the silhouette (flame core)
                    stops = np.array(part.gradient, np.float32)
                    x = np.linspace(0, 1, len(stops))
                    table = np.stack([np.interp(np.linspace(0, 1, 256) ** 0.7, x, stops[:, c])
                                      for c in range(3)], 1).astype(np.uint8)[None]
                    level = cv2.merge([(o.core * 255).astype(np.uint8)] * 3)
                    cv2.copyTo(cv2.LUT(level, table), (o.labels == p + 1).view(np.uint8), rgb)
            oh, ow = o.labels.shape
            shade = 1 + 0.5 * spec.roundness * (np.sqrt(o.core) - 0.5)
            tex = spec.texture * self._pixel_noise(g, oh, ow)
            rgb = rgb * cv2.merge([shade] * 3) + cv2.merge([tex] * 3)
            cv2.copyTo(np.clip(rgb, 0, 255).astype(np.uint8), o.labels,
                       img[o.y0:o.y0 + oh, o.x0:o.x0 + ow])
        img = cv2.addWeighted(img, g.uniform(0.85, 1.15), img, 0.0, g.uniform(-15, 15))
        if g.random() < 0.5:
            img = cv2.GaussianBlur(img, (3, 3), g.uniform(0.5, 1.0))
        return img

    def _noisy_image(self, clean: np.ndarray, g: Rng) -> np.ndarray:
        h, w, _ = clean.shape
        noise = cv2.merge([self._pixel_noise(g, h, w) for _ in range(3)])
        return cv2.addWeighted(clean, 1.0, noise, g.uniform(2, 8), 0.0, dtype=cv2.CV_8U)

    def _clean_depth(self, geo: _Geometry, g: Rng) -> np.ndarray:
        h, w = geo.hw
        wall = g.uniform(9, 12)  # floor at >= 5.4 m: every object stands in front of it
        rows = np.ones(h, np.float32)
        below = np.arange(h) >= geo.horizon
        rows[below] = np.linspace(1.0, g.uniform(0.6, 0.75), int(below.sum()))
        cols = np.linspace(1 - (tilt := g.uniform(-0.05, 0.05)), 1 + tilt, w, dtype=np.float32)
        depth = (wall * rows[:, None] * cols[None, :]).astype(np.float32)
        for o in geo.objects:
            spec = _SPECS[self.classes[o.class_id]]
            oh, ow = o.labels.shape
            obj = o.distance - spec.roundness * spec.size_m * 0.5 * np.sqrt(o.core)
            if spec.speckle_m:
                obj = obj + spec.speckle_m * np.abs(self._pixel_noise(g, oh, ow))
            np.copyto(depth[o.y0:o.y0 + oh, o.x0:o.x0 + ow], obj, where=o.labels > 0)
        return depth

    def _noisy_depth(self, clean: np.ndarray, g: Rng) -> np.ndarray:
        sigma = g.uniform(0.7, 1.3) * (0.001 + 0.0015 * clean * clean)
        return np.maximum(clean + sigma * self._pixel_noise(g, *clean.shape), 0.05)

    def _clean_thermal(self, geo: _Geometry, g: Rng) -> np.ndarray:
        h, w = geo.hw
        amb = g.uniform(12, 28)
        rows = np.full(h, amb, np.float32)
        below = np.arange(h) >= geo.horizon
        rows[below] = amb + np.linspace(0, g.uniform(-3, 1), int(below.sum()))
        temp = np.ascontiguousarray(np.broadcast_to(rows[:, None], (h, w)))
        for item in geo.clutter:
            if g.random() < 0.2:  # a warm appliance or radiator in the background
                _draw_clutter(temp, item, amb + g.uniform(3, 15))
        for o in geo.objects:
            spec = _SPECS[self.classes[o.class_id]]
            lut = np.array([0.0] + [p.temp_c + (amb if p.relative else 0.0) for p in spec.parts],
                           np.float32)
            lut += g.normal(0, 1.5 + 0.03 * np.abs(lut))
            oh, ow = o.labels.shape
            obj = lut[o.labels] + spec.hot_core * o.core + 0.3 * self._pixel_noise(g, oh, ow)
            np.copyto(temp[o.y0:o.y0 + oh, o.x0:o.x0 + ow], obj, where=o.labels > 0)
        return cv2.GaussianBlur(temp, (0, 0), max(0.5, 0.006 * min(h, w)))

    def _noisy_thermal(self, clean: np.ndarray, g: Rng) -> np.ndarray:
        return clean + g.uniform(0.05, 0.15) * self._pixel_noise(g, *clean.shape)

    def _layers(self, geo: _Geometry, rngs: Sequence[Rng], modalities: Sequence[str],
                noise: Sequence[Rng] | None = None) -> Scene:
        """Render the requested visual modalities; one generator per modality keeps each
        modality's output independent of which others were requested."""
        noise = rngs if noise is None else noise
        out = {}
        for k, (m, clean, noisy) in enumerate(
                (("vision", self._clean_image, self._noisy_image),
                 ("depth", self._clean_depth, self._noisy_depth),
                 ("thermal", self._clean_thermal, self._noisy_thermal))):
            out[m] = noisy(clean(geo, rngs[k]), noise[k]) if m in modalities else None
        boxes = np.array([o.box for o in geo.objects], np.int32).reshape(-1, 4)
        ids = np.array([o.class_id for o in geo.objects], np.int64)
        return Scene(out["vision"], out["depth"], out["thermal"], boxes, ids)

    def render(self, class_id: int, rng: Rng, modalities: Sequence[str] = VISUAL,
               size: tuple[int, int] | None = None) -> Scene:
        """One object on a cluttered background: aligned image, depth and thermal (only the
        requested ones; the rest are None). Use this for (image, depth/thermal) pairs."""
        g_geo, *rngs = rng.spawn(4)
        geo = self._geometry(g_geo, [class_id], size or self.image_hw, 1.0)
        return self._layers(geo, rngs, modalities)

    def background(self, rng: Rng, modalities: Sequence[str] = VISUAL,
                   size: tuple[int, int] | None = None) -> Scene:
        """A frame with no object (walls, floor, clutter as in `render`; no boxes): the
        negative that tells a detector's windows of background from every class."""
        g_geo, *rngs = rng.spawn(4)
        return self._layers(self._geometry(g_geo, [], size or self.image_hw, 1.0), rngs,
                            modalities)

    def background_caption(self, rng: Rng) -> str:
        """A caption of an object-free frame (one of `BACKGROUND_CAPTIONS`)."""
        return BACKGROUND_CAPTIONS[rng.integers(len(BACKGROUND_CAPTIONS))]

    def image(self, class_id: int, rng: Rng) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 image, box) of one object of the class."""
        scene = self.render(class_id, rng, ("vision",))
        return scene.image, scene.boxes[0]

    def scene(self, class_ids: Sequence[int], rng: Rng,
              size: tuple[int, int] = (480, 640)) -> Scene:
        """Several objects at non-overlapping boxes (for audio-prompted detection)."""
        g_geo, *rngs = rng.spawn(4)
        factor = 0.6 * math.sqrt(2 / max(2, len(class_ids)))
        return self._layers(self._geometry(g_geo, class_ids, size, factor), rngs, VISUAL)

    # -- audio and IMU

    def _audio_n(self, class_id: int, rng: Rng, n: int) -> np.ndarray:
        sr = self.sample_rate
        sig = _AUDIO[self.classes[class_id]](rng, n, sr)
        sig = sig * (rng.uniform(0.3, 0.9) / (np.abs(sig).max() + 1e-12))
        level = np.sqrt(np.mean(sig * sig)) * 10 ** (-rng.uniform(10, 30) / 20)
        room = np.take(self._room, np.arange(n) + rng.integers(self._room.size), mode="wrap")
        return np.clip(sig + level * room, -1, 1).astype(np.float32)

    def audio(self, class_id: int, rng: Rng, seconds: float | None = None) -> np.ndarray:
        """Mono float32 waveform in [-1, 1] at `sample_rate`, `audio_seconds` long by default."""
        n = round((self.audio_seconds if seconds is None else seconds) * self.sample_rate)
        return self._audio_n(class_id, rng, n)

    def _imu_n(self, class_id: int, rng: Rng, n: int) -> np.ndarray:
        t = np.arange(n) / self.imu_rate
        acc, gyro = _IMU[self.classes[class_id]](rng, t, self.imu_rate)
        pitch, roll = rng.uniform(-0.15, 0.15, 2)
        grav = GRAVITY * np.array([-math.sin(pitch), math.cos(pitch) * math.sin(roll),
                                   math.cos(pitch) * math.cos(roll)])
        acc = acc + grav + rng.uniform(-0.05, 0.05, 3)
        acc += rng.uniform(0.01, 0.04) * rng.standard_normal((n, 3))
        gyro = gyro + rng.uniform(-0.01, 0.01, 3)
        gyro += rng.uniform(0.002, 0.006) * rng.standard_normal((n, 3))
        return np.concatenate([acc, gyro], 1).astype(np.float32)

    def imu(self, class_id: int, rng: Rng,
            seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, 6) float32 [ax, ay, az (m/s^2, with gravity), gx, gy, gz (rad/s)] and the
        float64 timestamps in seconds, at `imu_rate` for `imu_seconds` by default."""
        n = round((self.imu_seconds if seconds is None else seconds) * self.imu_rate)
        return self._imu_n(class_id, rng, n), np.arange(n) / self.imu_rate

    # -- samples

    def sample(self, class_id: int, rng: Rng, modalities: Sequence[str] = MODALITIES) -> Sample:
        """One observation of the class in the requested modalities (names as in
        ``imagebind_ros.MODALITIES``); each modality's output does not depend on the others."""
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}")
        g_text, g_vis, g_audio, g_imu = rng.spawn(4)
        out = Sample(int(class_id), self.classes[class_id])
        if "text" in modalities:
            out.caption = self.caption(class_id, g_text)
        if any(m in modalities for m in VISUAL):
            scene = self.render(class_id, g_vis, modalities)
            out.image, out.depth_m, out.thermal = scene.image, scene.depth_m, scene.thermal
            out.box = scene.boxes[0]
        if "audio" in modalities:
            out.audio = self.audio(class_id, g_audio)
        if "imu" in modalities:
            out.imu, out.imu_t = self.imu(class_id, g_imu)
        return out

    def dataset(self, n: int, split: str = "train", seed: int = 0,
                modalities: Sequence[str] = MODALITIES) -> list[Sample]:
        """`n` class-balanced samples in shuffled order. Splits (and seeds) draw from
        independent random streams, so train/val/test never share a sample."""
        rng = np.random.default_rng([self.seed, seed, SPLITS.index(split)])
        ids = rng.permutation(np.arange(n) % self.num_classes)
        return [self.sample(int(c), g, modalities) for c, g in zip(ids, rng.spawn(n))]

    def stream(self, seed: int = 0, switch_seconds: float = 4.0,
               size: tuple[int, int] = (480, 640), distractors: int = 2) -> SensorStream:
        """A time-consistent sensor feed for the simulated-sensors ROS node."""
        return SensorStream(self, seed, switch_seconds, size, distractors)


def _disjoint(a: np.ndarray, b: np.ndarray, gap: int) -> bool:
    return bool(a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1]
                or b[3] + gap <= a[1])


class SensorStream:
    """Camera, audio and IMU that stay consistent over time: one "current" class (the object
    making the sound and shaking the IMU) switches every `switch_seconds`; the camera shows it
    plus `distractors` other classes. Every method is a pure function of time / sample index,
    so chunks of any size join seamlessly; segment joins are cross-faded."""

    _AUDIO_FADE_S = 0.05
    _IMU_FADE_S = 0.25

    def __init__(self, world: SyntheticWorld, seed: int, switch_seconds: float,
                 size: tuple[int, int], distractors: int) -> None:
        if switch_seconds < 2 * self._IMU_FADE_S:
            raise ValueError(f"switch_seconds must be >= {2 * self._IMU_FADE_S}, "
                             f"got {switch_seconds}")
        self.world, self.seed, self.switch_seconds = world, seed, switch_seconds
        self.size = size
        self.distractors = min(distractors, world.num_classes - 1)
        self._schedule: list[int] = []
        self._audio_seg = lru_cache(maxsize=4)(self._make_audio)
        self._imu_seg = lru_cache(maxsize=4)(self._make_imu)
        self._camera_seg = lru_cache(maxsize=2)(self._make_camera)

    def _rng(self, kind: int, *key: int) -> Rng:
        return np.random.default_rng([self.world.seed, self.seed, kind, *key])

    def _segment_class(self, k: int) -> int:
        k_classes = self.world.num_classes
        while len(self._schedule) <= k:
            j = len(self._schedule)
            g = self._rng(0, j)
            self._schedule.append(int(g.integers(k_classes)) if j == 0 else
                                  (self._schedule[-1] + 1 + int(g.integers(k_classes - 1)))
                                  % k_classes)
        return self._schedule[k]

    def _segment(self, t: float) -> int:
        if t < 0:
            raise ValueError(f"stream time starts at 0, got {t}")
        return int(t // self.switch_seconds)

    def class_at(self, t: float) -> int:
        """The class that is sounding (and shaking the IMU) at time `t` seconds."""
        return self._segment_class(self._segment(t))

    def _make_camera(self, k: int) -> tuple[_Geometry, tuple[np.ndarray, ...]]:
        g = self._rng(1, k)
        cur = self._segment_class(k)
        others = [c for c in range(self.world.num_classes) if c != cur]
        ids = [cur] + [int(c) for c in g.choice(others, self.distractors, replace=False)]
        ids = [ids[i] for i in g.permutation(len(ids))]
        g_geo, *rngs = g.spawn(4)
        factor = 0.6 * math.sqrt(2 / max(2, len(ids)))
        geo = self.world._geometry(g_geo, ids, self.size, factor)
        w = self.world
        clean = (w._clean_image(geo, rngs[0]), w._clean_depth(geo, rngs[1]),
                 w._clean_thermal(geo, rngs[2]))
        return geo, clean

    def camera(self, t: float) -> Scene:
        """Aligned camera/depth/thermal frame at time `t`: the segment's static scene with fresh
        sensor noise per millisecond timestamp. `class_at(t)` tells which object sounds."""
        geo, (img, depth, temp) = self._camera_seg(self._segment(t))
        g = self._rng(2, int(round(t * 1000)))
        w = self.world
        boxes = np.array([o.box for o in geo.objects], np.int32)
        ids = np.array([o.class_id for o in geo.objects], np.int64)
        return Scene(w._noisy_image(img, g), w._noisy_depth(depth, g),
                     w._noisy_thermal(temp, g), boxes, ids)

    def _seg_len(self, rate: float) -> int:
        return round(self.switch_seconds * rate)

    def _fade(self, rate: float, imu: bool = False) -> int:
        return round((self._IMU_FADE_S if imu else self._AUDIO_FADE_S) * rate)

    def _make_audio(self, k: int) -> np.ndarray:
        n = self._seg_len(self.world.sample_rate) + self._fade(self.world.sample_rate)
        return self.world._audio_n(self._segment_class(k), self._rng(3, k), n)

    def _make_imu(self, k: int) -> np.ndarray:
        n = self._seg_len(self.world.imu_rate) + self._fade(self.world.imu_rate, imu=True)
        return self.world._imu_n(self._segment_class(k), self._rng(4, k), n)

    def audio(self, start: int, n: int) -> np.ndarray:
        """Audio samples [start, start + n) as float32 (e.g. 320-sample chunks = 20 ms)."""
        sr = self.world.sample_rate
        return _continuous(start, n, self._seg_len(sr), self._fade(sr), self._audio_seg, True)

    def imu(self, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """IMU rows [start, start + n) as (n, 6) float32 and their timestamps in seconds."""
        rate = self.world.imu_rate
        data = _continuous(start, n, self._seg_len(rate), self._fade(rate, imu=True),
                           self._imu_seg, False)
        return data, (start + np.arange(n)) / rate


def _continuous(start: int, n: int, seg_len: int, fade: int, segment: Callable[[int], np.ndarray],
                equal_power: bool) -> np.ndarray:
    """Samples [start, start + n) of a signal made of segments of `seg_len` (each generated
    `fade` samples longer) cross-faded over `fade` samples at every join. Equal-power fades
    suit uncorrelated audio; linear fades keep a shared offset (gravity) constant."""
    if start < 0:
        raise ValueError(f"stream sample index starts at 0, got {start}")
    out = np.empty((n,) + segment(start // seg_len).shape[1:], np.float32)
    i = start
    while i < start + n:
        k, j = divmod(i, seg_len)
        m = min(start + n - i, seg_len - j)
        chunk = segment(k)[j:j + m]
        if k > 0 and j < fade:
            f = min(m, fade - j)
            x = (j + np.arange(f) + 0.5) / fade
            if equal_power:
                a, b = np.sin(0.5 * np.pi * x), np.cos(0.5 * np.pi * x)
            else:
                a, b = x, 1 - x
            shape = (f,) + (1,) * (chunk.ndim - 1)
            chunk = chunk.copy()
            chunk[:f] = (a.reshape(shape) * chunk[:f]
                         + b.reshape(shape) * segment(k - 1)[seg_len + j:seg_len + j + f])
        out[i - start:i - start + m] = chunk
        i += m
    return out
