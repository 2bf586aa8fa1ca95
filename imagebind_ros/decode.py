"""Sensor messages -> numpy arrays plus what their values mean: the ONE decoder.

The nodes (rclpy messages), the bag datasets (rosbags messages) and the file playback all
decode here. Functions read message fields only (duck typing), so any object with the fields
of ``sensor_msgs/Image``, ``sensor_msgs/CompressedImage``, ``sensor_msgs/Imu`` or our
``AudioChunk`` works; nothing here imports rclpy. Limits are checked from the metadata before
any pixel is read, and anything malformed raises ``DecodeError`` (a ``ValueError``) whose
text is fit for a log line, so a caller can drop the input and carry on.

A decoded image is a ``Picture``: colour comes out as RGB ``(H, W, 3)`` whatever its wire
order (alpha dropped); single-channel images as ``(H, W)`` arrays of their wire type. What a
picture means depends on the topic it came from, so the modality views (``as_rgb8``,
``as_depth``, ``as_thermal``) say which encodings a camera, depth or thermal input accepts
and convert them (REP 118 for depth: 16-bit = millimetres with 0 = no measurement, 32FC1 =
metres with NaN/Inf/0 = no measurement).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image as PILImage

# encoding -> (numpy dtype, channels). Colour encodings name their wire channel order.
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")
# 32 MiB: a 4K RGBA frame (33.2 MB) fits; anything larger is refused before it is copied.
MAX_IMAGE_BYTES = 32 * 2 ** 20
AUDIO_FORMATS: dict[str, np.dtype] = {"S16LE": np.dtype("<i2"), "F32LE": np.dtype("<f4")}

DepthUnits = Literal["mm", "m"]


class DecodeError(ValueError):
    """A message that cannot be turned into a valid array; the text says why."""


@dataclass(frozen=True)
class Picture:
    """A decoded image: ``array`` in the layout of ``encoding`` (rgb8: (H, W, 3) RGB uint8;
    mono8/mono16/16UC1/32FC1: (H, W) of that type); ``source`` is what the message said (its
    encoding, or a CompressedImage's format string)."""

    array: np.ndarray
    encoding: str
    source: str


@dataclass(frozen=True)
class DepthImage:
    """Depth as REP 118 defines it: uint16 millimetres (0 = no measurement) or float32
    metres (NaN, Inf and 0 = no measurement)."""

    array: np.ndarray
    units: DepthUnits


@dataclass(frozen=True)
class Sound:
    """Audio samples, float32 (frames, channels) in [-1, 1], at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int


# --------------------------------------------------------------------------- stamps


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds (exact, unlike float seconds)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# --------------------------------------------------------------------------- images


def _check_size(height: int, width: int, what: str) -> None:
    if height == 0 or width == 0:
        raise DecodeError(f"{what} has zero size ({width}x{height})")


def check_image(msg: Any, max_bytes: int = MAX_IMAGE_BYTES) -> tuple[np.dtype, int]:
    """Validate an Image's metadata without reading pixels -> (sample dtype, channels).

    Cheap enough for a subscription callback. Checks, in this order: known encoding, size
    limit, non-zero size, ``step`` at least one packed row and a whole number of samples,
    ``len(data) == step * height``.
    """
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise DecodeError(f"unsupported image encoding {enc!r}; supported: "
                          f"{', '.join(ENCODINGS)}")
    dtype, channels = ENCODINGS[enc]
    h, w, step, n = int(msg.height), int(msg.width), int(msg.step), len(msg.data)
    if max(n, h * step) > max_bytes:
        raise DecodeError(f"image of {max(n, h * step) / 2 ** 20:.1f} MiB ({w}x{h} {enc}) "
                          f"exceeds the {max_bytes / 2 ** 20:.0f} MiB limit")
    _check_size(h, w, f"{enc} image")
    row = w * channels * dtype.itemsize
    if step < row:
        raise DecodeError(f"image step {step} is shorter than one row of {w} {enc} "
                          f"pixels ({row} bytes)")
    if n != step * h:
        raise DecodeError(f"image data has {n} bytes but step * height = {step} * {h} "
                          f"= {step * h} ({w}x{h} {enc})")
    if step % dtype.itemsize:
        raise DecodeError(f"image step {step} is not a multiple of the {enc} sample "
                          f"size ({dtype.itemsize} bytes)")
    return dtype, channels


def decode_image(msg: Any, max_bytes: int = MAX_IMAGE_BYTES) -> Picture:
    """A ``sensor_msgs/Image`` -> Picture. ``check_image`` runs first, so nothing is read
    from a malformed message; row padding and big-endian data are handled."""
    dtype, channels = check_image(msg, max_bytes)
    enc, h, w, step = msg.encoding, int(msg.height), int(msg.width), int(msg.step)
    row = w * channels * dtype.itemsize
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    buf = np.frombuffer(bytes(msg.data), np.uint8).reshape(h, step)[:, :row]
    arr = np.ascontiguousarray(buf).view(wire).reshape(h, w, channels)
    if enc.startswith("bgr"):
        arr = arr[:, :, 2::-1]
    elif channels == 4:
        arr = arr[:, :, :3]
    elif channels == 1:
        arr = arr[:, :, 0]
    out = "rgb8" if enc in COLOR_ENCODINGS else enc
    return Picture(np.ascontiguousarray(arr, dtype=dtype), out, enc)


# Header of image_transport's compressedDepth format: int32 format, float32 depthQuantA, B.
_COMPRESSED_DEPTH_HEADER = np.dtype([("fmt", "<i4"), ("quant_a", "<f4"), ("quant_b", "<f4")])


def decode_compressed(msg: Any, max_bytes: int = MAX_IMAGE_BYTES) -> Picture:
    """A ``sensor_msgs/CompressedImage`` -> Picture.

    JPEG/PNG colour -> rgb8, 8-bit grey -> mono8, 16-bit PNG -> mono16 (16UC1 when the
    format string names it, as image_transport writes "16UC1; png compressed"). The
    ``compressedDepth`` format (a 12-byte header + PNG) gives 16UC1 millimetres, or 32FC1
    metres decoded from its inverse-depth quantisation. The decoded size is checked from the
    file header before decoding, so a small file cannot expand past ``max_bytes``.
    """
    fmt = msg.format.strip()
    data = bytes(msg.data)
    if not data:
        raise DecodeError(f"compressed image ({fmt!r}) has no data")
    if len(data) > max_bytes:
        raise DecodeError(f"compressed image of {len(data) / 2 ** 20:.1f} MiB exceeds the "
                          f"{max_bytes / 2 ** 20:.0f} MiB limit")
    depth_quant = None
    if "compresseddepth" in fmt.lower():
        hsize = _COMPRESSED_DEPTH_HEADER.itemsize
        if len(data) <= hsize:
            raise DecodeError(f"compressedDepth image has {len(data)} bytes, not even "
                              f"its {hsize}-byte header and a PNG")
        hdr = np.frombuffer(data[:hsize], _COMPRESSED_DEPTH_HEADER)[0]
        data = data[hsize:]
        if fmt.startswith("32FC1"):
            depth_quant = (float(hdr["quant_a"]), float(hdr["quant_b"]))
    try:
        im = PILImage.open(io.BytesIO(data))
        w, h = im.size
        bands = len(im.getbands())
        bytes_per = 2 if im.mode.startswith("I;16") or im.mode in ("I", "F") else 1
        _check_size(h, w, f"compressed image ({fmt!r})")
        if w * h * max(bands, 3) * bytes_per > max_bytes:
            raise DecodeError(f"compressed image decodes to {w}x{h} {im.mode}, over the "
                              f"{max_bytes / 2 ** 20:.0f} MiB limit")
        im.load()
    except DecodeError:
        raise
    except Exception as e:  # PIL raises many types for corrupt or unknown files
        raise DecodeError(f"cannot decode compressed image ({fmt!r}): "
                          f"{type(e).__name__}: {e}") from None
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.array(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise DecodeError("compressed 32-bit integer image is out of 16-bit range")
        arr = arr.astype(np.uint16)
        if depth_quant is not None:
            a, b = depth_quant
            with np.errstate(divide="ignore"):
                out = (a / (arr.astype(np.float32) - np.float32(b))).astype(np.float32)
            out[arr == 0] = np.nan
            return Picture(out, "32FC1", fmt)
        depth = "16UC1" in fmt or "compresseddepth" in fmt.lower()
        return Picture(arr, "16UC1" if depth else "mono16", fmt)
    if im.mode == "L":
        return Picture(np.array(im), "mono8", fmt)
    if im.mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
        return Picture(np.array(im.convert("RGB")), "rgb8", fmt)
    raise DecodeError(f"compressed image mode {im.mode!r} ({fmt!r}) is not supported")


def decode_picture(msg: Any, max_bytes: int = MAX_IMAGE_BYTES) -> Picture:
    """An Image or a CompressedImage (told apart by their fields) -> Picture."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return decode_compressed(msg, max_bytes)
    return decode_image(msg, max_bytes)


# --------------------------------------------------------------------------- modality views


def as_rgb8(p: Picture) -> np.ndarray:
    """A camera image: colour stays RGB; mono8 is repeated to 3 channels."""
    if p.encoding == "rgb8":
        return p.array
    if p.encoding == "mono8":
        return np.repeat(p.array[:, :, None], 3, axis=2)
    raise DecodeError(f"a {p.source} image cannot be a camera image (need rgb8, bgr8, "
                      "rgba8, bgra8 or mono8)")


def as_depth(p: Picture) -> DepthImage:
    """A depth image: 16UC1 (or mono16, as some drivers label it) millimetres, 32FC1 metres."""
    if p.encoding in ("16UC1", "mono16"):
        return DepthImage(p.array, "mm")
    if p.encoding == "32FC1":
        return DepthImage(p.array, "m")
    raise DecodeError(f"depth must be 16UC1/mono16 (mm) or 32FC1 (m), got {p.source}")


def as_thermal(p: Picture) -> np.ndarray:
    """A thermal image: mono8 as is, 16-bit raw counts, or 32FC1 temperatures."""
    if p.encoding in ("mono8", "mono16", "16UC1", "32FC1"):
        return p.array
    raise DecodeError(f"thermal must be mono8, mono16 or 32FC1, got {p.source}")


def finite_fraction(depth: np.ndarray) -> float:
    """Fraction of depth pixels holding a measurement (finite and > 0, REP 118)."""
    d = np.asarray(depth)
    if d.size == 0:
        return 0.0
    if np.issubdtype(d.dtype, np.integer):
        return float(np.count_nonzero(d)) / d.size
    return float(np.count_nonzero(np.isfinite(d) & (d > 0))) / d.size


# --------------------------------------------------------------------------- audio


def decode_audio_chunk(msg: Any, expect_rate: int | None = None,
                       expect_channels: int | None = None) -> Sound:
    """An ``AudioChunk`` -> Sound (S16LE scaled by 1/32768, as soundfile reads PCM).

    ``expect_rate`` / ``expect_channels`` (None = accept any) reject chunks that differ from
    what the stream declared, instead of silently mixing rates in one window.
    """
    fmt, rate, ch = msg.sample_format, int(msg.sample_rate), int(msg.channels)
    if fmt not in AUDIO_FORMATS:
        raise DecodeError(f"unsupported audio sample_format {fmt!r}; supported: "
                          f"{', '.join(AUDIO_FORMATS)}")
    if rate <= 0 or ch <= 0:
        raise DecodeError(f"audio chunk declares sample_rate={rate}, channels={ch}; "
                          "both must be positive")
    if expect_rate is not None and rate != expect_rate:
        raise DecodeError(f"audio chunk at {rate} Hz, but this stream is {expect_rate} Hz")
    if expect_channels is not None and ch != expect_channels:
        raise DecodeError(f"audio chunk has {ch} channels, but this stream has "
                          f"{expect_channels}")
    dtype = AUDIO_FORMATS[fmt]
    data = bytes(msg.data)
    n = len(data)
    frame = dtype.itemsize * ch
    if n == 0 or n % frame:
        raise DecodeError(f"audio data has {n} bytes, not a positive multiple of one "
                          f"frame ({ch} channels x {dtype.itemsize} bytes, {fmt})")
    x = np.frombuffer(data, dtype).reshape(-1, ch)
    if fmt == "S16LE":
        return Sound(x.astype(np.float32) / np.float32(32768.0), rate)
    if not np.isfinite(x).all():
        raise DecodeError("audio chunk contains NaN or Inf samples")
    return Sound(x.astype(np.float32), rate)


# --------------------------------------------------------------------------- IMU


def decode_imu(msg: Any) -> tuple[np.ndarray, int]:
    """A ``sensor_msgs/Imu`` -> (float64 (6,) [ax, ay, az, gx, gy, gz], stamp ns).

    Units as REP 145: m/s^2 (with gravity) and rad/s, the order ImageBind's IMU encoder
    takes. A field whose covariance[0] is -1 is "not provided" (REP 145) and is an error,
    as is any NaN/Inf value.
    """
    for name in ("linear_acceleration", "angular_velocity"):
        if float(getattr(msg, f"{name}_covariance")[0]) == -1.0:
            raise DecodeError(f"IMU message has no {name} (covariance[0] == -1)")
    a, g = msg.linear_acceleration, msg.angular_velocity
    v = np.array([a.x, a.y, a.z, g.x, g.y, g.z], np.float64)
    if not np.isfinite(v).all():
        raise DecodeError(f"IMU message contains NaN or Inf: {v.tolist()}")
    return v, stamp_to_ns(msg.header.stamp)
