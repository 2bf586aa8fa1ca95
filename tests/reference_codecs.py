"""Independent references for the decoder tests, written from the formats' specifications
(not from imagebind_ros): a per-pixel RVL codec, BT.601 YUV -> RGB, Bayer mosaicing and
compressed_depth_image_transport's message layout. Slow and obvious on purpose.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

# --------------------------------------------------------------------------- RVL


def rvl_encode(pixels: list[int]) -> bytes:
    """Wilson's RVL: (zeros, non-zeros, zigzag deltas) runs, 3-bit groups least significant
    first with bit 3 = "more", 8 nibbles per 32-bit word from the top, words little-endian,
    the last word padded with zero nibbles."""
    words: list[int] = []
    word, count = 0, 0

    def vle(value: int) -> None:
        nonlocal word, count
        while True:
            nibble = value & 7
            value >>= 3
            if value:
                nibble |= 8
            word = ((word << 4) | nibble) & 0xFFFFFFFF
            count += 1
            if count == 8:
                words.append(word)
                word, count = 0, 0
            if not value:
                return

    i, previous, n = 0, 0, len(pixels)
    while i < n:
        zeros = 0
        while i < n and pixels[i] == 0:
            zeros, i = zeros + 1, i + 1
        vle(zeros)
        j = i
        while j < n and pixels[j] != 0:
            j += 1
        vle(j - i)
        for k in range(i, j):
            delta = pixels[k] - previous
            vle(2 * delta if delta >= 0 else -2 * delta - 1)
            previous = pixels[k]
        i = j
    if count:
        words.append((word << (4 * (8 - count))) & 0xFFFFFFFF)
    return struct.pack(f"<{len(words)}I", *words)


def rvl_decode(data: bytes, num_pixels: int) -> list[int]:
    """The inverse of ``rvl_encode``, one nibble at a time."""
    words = struct.unpack(f"<{len(data) // 4}I", data[: len(data) // 4 * 4])
    nibbles = [(w >> s) & 0xF for w in words for s in range(28, -4, -4)]
    pos = 0

    def vle() -> int:
        nonlocal pos
        value, shift = 0, 0
        while True:
            nibble = nibbles[pos]
            pos += 1
            value |= (nibble & 7) << shift
            shift += 3
            if not nibble & 8:
                return value

    out: list[int] = []
    previous = 0
    while len(out) < num_pixels:
        out += [0] * vle()
        for _ in range(vle()):
            z = vle()
            previous = (previous + ((z >> 1) ^ -(z & 1))) & 0xFFFF
            out.append(previous)
    return out


# --------------------------------------------------------------------------- depth transport


def plugin_quantize(z: np.ndarray, depth_max: float = 10.0, dq: float = 100.0
                    ) -> tuple[np.ndarray, float, float]:
    """compressed_depth_image_transport's 32FC1 coding: A = dq (dq + 1), B = 1 - A/max,
    q = (unsigned short)(A / z + B) for z < max, else 0 (NaN compares false: 0)."""
    a = np.float32(dq * (dq + 1.0))
    b = np.float32(1.0 - a / np.float32(depth_max))
    q = np.zeros(z.shape, np.uint16)
    for idx, v in np.ndenumerate(z.astype(np.float32)):
        if v < depth_max:
            q[idx] = int(a / v + b)
    return q, float(a), float(b)


def compressed_depth_data(q: np.ndarray, codec: str, a: float = 0.0, b: float = 0.0) -> bytes:
    """ConfigHeader (int32 INV_DEPTH = 0, float A, float B), then the 16-bit PNG, or cols,
    rows (uint32) and the RVL code, as the plugin's encodeCompressedDepthImage."""
    if codec == "png":
        ok, png = cv2.imencode(".png", q)
        assert ok
        body = png.tobytes()
    else:
        body = struct.pack("<II", q.shape[1], q.shape[0]) + rvl_encode(
            [int(v) for v in q.reshape(-1)])
    return struct.pack("<iff", 0, a, b) + body


# --------------------------------------------------------------------------- colour


def bt601_limited_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """YCbCr (BT.601, 8-bit limited range 16-235 / 16-240) -> RGB uint8, per pixel."""
    yf = 1.164 * (np.asarray(y, np.float64) - 16.0)
    uf, vf = np.asarray(u, np.float64) - 128.0, np.asarray(v, np.float64) - 128.0
    rgb = np.stack([yf + 1.596 * vf, yf - 0.391 * uf - 0.813 * vf, yf + 2.018 * uf], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a Bayer mosaic from an RGB image: ``pattern`` names the colours of the 2x2 cell
    read row by row from the top-left pixel (sensor_msgs: "rggb" = R G / G B)."""
    index = {"r": 0, "g": 1, "b": 2}
    out = np.empty(rgb.shape[:2], rgb.dtype)
    for y in range(rgb.shape[0]):
        for x in range(rgb.shape[1]):
            out[y, x] = rgb[y, x, index[pattern[2 * (y % 2) + x % 2]]]
    return out


def smooth_rgb(h: int, w: int, dtype: type = np.uint8, seed: int = 0, scale: float = 1.0
               ) -> np.ndarray:
    """A smooth colour image (demosaicing and chroma subsampling are near exact on it);
    ``scale`` > 1 makes it smoother still."""
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = [0.5 + 0.45 * np.sin((xx / (9 + 3 * c) + yy / (13 + 2 * c)) / scale
                                 + rng.uniform(0, 6))
             for c in range(3)]
    return np.rint(np.stack(chans, axis=-1) * top).astype(dtype)
