"""ROS message <-> numpy conversions for every sensor the nodes read, with clear errors.

One typed module (like ``sensor_msgs_py.point_cloud2``) so the encoder, detector and memory
nodes never parse bytes themselves: ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8,
mono16, 16UC1, 32FC1), ``sensor_msgs/CompressedImage`` (JPEG/PNG, and image_transport's
``compressedDepth``), our ``AudioChunk`` and ``sensor_msgs/Imu``. Works on message objects
only, no running node needed. Anything malformed raises ``ConversionError`` (a
``ValueError``) whose message says what is wrong, so a node can log it and drop the input.

Colour images come out as RGB ``(H, W, 3)`` uint8 whatever their wire order (alpha dropped);
single-channel images come out as ``(H, W)`` arrays of their wire type: mono8 uint8,
mono16/16UC1 uint16 (16UC1 = depth in millimetres, REP 118), 32FC1 float32 (depth in metres,
NaN = no measurement). Arrays returned never alias the message buffer.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image, Imu
from std_msgs.msg import Header

from imagebind_ros.msg import AudioChunk

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
DEPTH_ENCODINGS = ("16UC1", "32FC1")
# 32 MiB: a 4K RGBA frame (33.2 MB) fits; anything larger is refused before it is copied.
MAX_IMAGE_BYTES = 32 * 2 ** 20
AUDIO_FORMATS: dict[str, np.dtype] = {"S16LE": np.dtype("<i2"), "F32LE": np.dtype("<f4")}


class ConversionError(ValueError):
    """A message that cannot be turned into a valid array; the text says why."""


# --------------------------------------------------------------------------- stamps


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds (exact, unlike float seconds)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_to_sec(stamp: Any) -> float:
    """``builtin_interfaces/Time`` -> float seconds."""
    return stamp_to_ns(stamp) / 1e9


def make_header(stamp_ns: int, frame_id: str) -> Header:
    """A Header with the given stamp (integer nanoseconds, >= 0) and frame."""
    if stamp_ns < 0:
        raise ConversionError(f"stamp must be >= 0 ns, got {stamp_ns}")
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return h


# --------------------------------------------------------------------------- images


def _check_size(height: int, width: int, what: str) -> None:
    if height == 0 or width == 0:
        raise ConversionError(f"{what} has zero size ({width}x{height})")


def check_image(msg: Image, max_bytes: int = MAX_IMAGE_BYTES) -> tuple[np.dtype, int]:
    """Validate an Image's metadata without reading pixels -> (sample dtype, channels).

    Cheap enough for a subscription callback. Checks, in this order: known encoding, size
    limit, non-zero size, ``step`` at least one packed row and a whole number of samples,
    ``len(data) == step * height``.
    """
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ConversionError(f"unsupported image encoding {enc!r}; supported: "
                              f"{', '.join(ENCODINGS)}")
    dtype, channels = ENCODINGS[enc]
    h, w, step, n = int(msg.height), int(msg.width), int(msg.step), len(msg.data)
    if max(n, h * step) > max_bytes:
        raise ConversionError(f"image of {max(n, h * step) / 2 ** 20:.1f} MiB ({w}x{h} {enc}) "
                              f"exceeds the {max_bytes / 2 ** 20:.0f} MiB limit")
    _check_size(h, w, f"{enc} image")
    row = w * channels * dtype.itemsize
    if step < row:
        raise ConversionError(f"image step {step} is shorter than one row of {w} {enc} "
                              f"pixels ({row} bytes)")
    if n != step * h:
        raise ConversionError(f"image data has {n} bytes but step * height = {step} * {h} "
                              f"= {step * h} ({w}x{h} {enc})")
    if step % dtype.itemsize:
        raise ConversionError(f"image step {step} is not a multiple of the {enc} sample "
                              f"size ({dtype.itemsize} bytes)")
    return dtype, channels


def image_to_numpy(msg: Image, max_bytes: int = MAX_IMAGE_BYTES) -> tuple[np.ndarray, str]:
    """A ``sensor_msgs/Image`` -> (array, encoding); see the module docstring for shapes.

    ``check_image`` runs first, so nothing is read from a malformed message. Row padding and
    big-endian data are handled.
    """
    dtype, channels = check_image(msg, max_bytes)
    enc, h, w, step = msg.encoding, int(msg.height), int(msg.width), int(msg.step)
    row = w * channels * dtype.itemsize
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    buf = np.frombuffer(msg.data, np.uint8).reshape(h, step)[:, :row]
    arr = np.ascontiguousarray(buf).view(wire).reshape(h, w, channels)
    if enc.startswith("bgr"):
        arr = arr[:, :, 2::-1]
    elif channels == 4:
        arr = arr[:, :, :3]
    elif channels == 1:
        arr = arr[:, :, 0]
    return np.ascontiguousarray(arr, dtype=dtype), enc


def numpy_to_image(arr: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An array in ``image_to_numpy``'s convention -> a packed little-endian Image.

    Colour encodings take RGB ``(H, W, 3)`` (or RGBA ``(H, W, 4)`` for rgba8/bgra8; alpha
    255 when only RGB is given) and write the encoding's channel order, so
    ``image_to_numpy(numpy_to_image(x, e))[0]`` equals ``x`` for every encoding.
    """
    if encoding not in ENCODINGS:
        raise ConversionError(f"unsupported image encoding {encoding!r}; supported: "
                              f"{', '.join(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    a = np.asarray(arr)
    if a.dtype != dtype:
        raise ConversionError(f"{encoding} needs a {dtype} array, got {a.dtype}")
    if channels == 1:
        if a.ndim != 2:
            raise ConversionError(f"{encoding} needs an (H, W) array, got shape {a.shape}")
    elif a.ndim != 3 or a.shape[2] not in ((3, 4) if channels == 4 else (3,)):
        raise ConversionError(f"{encoding} needs an (H, W, 3) RGB array, got shape {a.shape}")
    _check_size(a.shape[0], a.shape[1], f"{encoding} image")
    if channels == 4 and a.shape[2] == 3:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
    if encoding.startswith("bgr"):
        a = a[:, :, [2, 1, 0, 3][:channels]]
    a = np.ascontiguousarray(a, dtype=dtype.newbyteorder("<"))
    return Image(header=header or Header(), height=a.shape[0], width=a.shape[1],
                 encoding=encoding, is_bigendian=0, step=a.shape[1] * channels * dtype.itemsize,
                 data=a.tobytes())


def to_rgb8(arr: np.ndarray, encoding: str) -> np.ndarray:
    """What the vision encoder needs: colour stays RGB; mono8 is repeated to 3 channels."""
    if encoding in COLOR_ENCODINGS or (arr.ndim == 3 and arr.dtype == np.uint8):
        return arr
    if encoding == "mono8" and arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    raise ConversionError(f"a {encoding} image cannot be a camera image (need rgb8, bgr8, "
                          "rgba8, bgra8 or mono8)")


# Header of image_transport's compressedDepth format: int32 format, float32 depthQuantA, B.
_COMPRESSED_DEPTH_HEADER = np.dtype([("fmt", "<i4"), ("quant_a", "<f4"), ("quant_b", "<f4")])


def compressed_to_numpy(msg: CompressedImage,
                        max_bytes: int = MAX_IMAGE_BYTES) -> tuple[np.ndarray, str]:
    """A ``sensor_msgs/CompressedImage`` -> (array, encoding) like ``image_to_numpy``.

    JPEG/PNG colour -> rgb8, 8-bit grey -> mono8, 16-bit PNG -> mono16 (16UC1 when the
    format string names it, as image_transport writes "16UC1; png compressed"). The
    ``compressedDepth`` format (a 12-byte header + PNG) gives 16UC1 millimetres, or 32FC1
    metres decoded from its inverse-depth quantisation. The decoded size is checked from the
    file header before decoding, so a small file cannot expand past ``max_bytes``.
    """
    fmt = msg.format.strip()
    data = bytes(msg.data)
    if not data:
        raise ConversionError(f"compressed image ({fmt!r}) has no data")
    if len(data) > max_bytes:
        raise ConversionError(f"compressed image of {len(data) / 2 ** 20:.1f} MiB exceeds the "
                              f"{max_bytes / 2 ** 20:.0f} MiB limit")
    depth_quant = None
    if "compresseddepth" in fmt.lower():
        hsize = _COMPRESSED_DEPTH_HEADER.itemsize
        if len(data) <= hsize:
            raise ConversionError(f"compressedDepth image has {len(data)} bytes, not even "
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
            raise ConversionError(f"compressed image decodes to {w}x{h} {im.mode}, over the "
                                  f"{max_bytes / 2 ** 20:.0f} MiB limit")
        im.load()
    except ConversionError:
        raise
    except Exception as e:  # PIL raises many types for corrupt or unknown files
        raise ConversionError(f"cannot decode compressed image ({fmt!r}): "
                              f"{type(e).__name__}: {e}") from None
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.array(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ConversionError("compressed 32-bit integer image is out of 16-bit range")
        arr = arr.astype(np.uint16)
        if depth_quant is not None:
            a, b = depth_quant
            with np.errstate(divide="ignore"):
                out = (a / (arr.astype(np.float32) - np.float32(b))).astype(np.float32)
            out[arr == 0] = np.nan
            return out, "32FC1"
        return arr, "16UC1" if "16UC1" in fmt or "compresseddepth" in fmt.lower() else "mono16"
    if im.mode == "L":
        return np.array(im), "mono8"
    if im.mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
        return np.array(im.convert("RGB")), "rgb8"
    raise ConversionError(f"compressed image mode {im.mode!r} ({fmt!r}) is not supported")


def numpy_to_compressed(arr: np.ndarray, encoding: str, fmt: str = "jpeg",
                        header: Header | None = None, quality: int = 90) -> CompressedImage:
    """An rgb8/mono8 (JPEG or PNG) or mono16/16UC1 (PNG) array -> CompressedImage, with the
    image_transport format string ("rgb8; jpeg compressed rgb8")."""
    if fmt not in ("jpeg", "png"):
        raise ConversionError(f"format must be 'jpeg' or 'png', got {fmt!r}")
    msg_dtype, _ = ENCODINGS.get(encoding, (None, 0))
    a = np.asarray(arr)
    if encoding not in ("rgb8", "mono8", "mono16", "16UC1") or a.dtype != msg_dtype:
        raise ConversionError(f"cannot compress a {a.dtype} {encoding} array (rgb8/mono8 "
                              "uint8, or mono16/16UC1 uint16 as PNG)")
    if a.dtype == np.uint16 and fmt != "png":
        raise ConversionError("16-bit images compress only as png")
    buf = io.BytesIO()
    PILImage.fromarray(a).save(buf, "JPEG" if fmt == "jpeg" else "PNG", quality=quality)
    return CompressedImage(header=header or Header(),
                           format=f"{encoding}; {fmt} compressed {encoding}", data=buf.getvalue())


def finite_fraction(depth: np.ndarray) -> float:
    """Fraction of depth pixels holding a measurement (finite and > 0, REP 118)."""
    d = np.asarray(depth)
    if d.size == 0:
        return 0.0
    if np.issubdtype(d.dtype, np.integer):
        return float(np.count_nonzero(d)) / d.size
    return float(np.count_nonzero(np.isfinite(d) & (d > 0))) / d.size


# --------------------------------------------------------------------------- audio


def audio_chunk_to_numpy(msg: AudioChunk, expect_rate: int | None = None,
                         expect_channels: int | None = None) -> tuple[np.ndarray, int]:
    """An ``AudioChunk`` -> (float32 (frames, channels) in [-1, 1], sample_rate).

    S16LE is scaled by 1/32768 (as soundfile reads PCM). ``expect_rate`` /
    ``expect_channels`` (None = accept any) reject chunks that differ from what the stream
    declared, instead of silently mixing rates in one window.
    """
    fmt, rate, ch = msg.sample_format, int(msg.sample_rate), int(msg.channels)
    if fmt not in AUDIO_FORMATS:
        raise ConversionError(f"unsupported audio sample_format {fmt!r}; supported: "
                              f"{', '.join(AUDIO_FORMATS)}")
    if rate <= 0 or ch <= 0:
        raise ConversionError(f"audio chunk declares sample_rate={rate}, channels={ch}; "
                              "both must be positive")
    if expect_rate is not None and rate != expect_rate:
        raise ConversionError(f"audio chunk at {rate} Hz, but this stream is {expect_rate} Hz")
    if expect_channels is not None and ch != expect_channels:
        raise ConversionError(f"audio chunk has {ch} channels, but this stream has "
                              f"{expect_channels}")
    dtype = AUDIO_FORMATS[fmt]
    n = len(msg.data)
    frame = dtype.itemsize * ch
    if n == 0 or n % frame:
        raise ConversionError(f"audio data has {n} bytes, not a positive multiple of one "
                              f"frame ({ch} channels x {dtype.itemsize} bytes, {fmt})")
    x = np.frombuffer(msg.data, dtype).reshape(-1, ch)
    if fmt == "S16LE":
        return x.astype(np.float32) / np.float32(32768.0), rate
    if not np.isfinite(x).all():
        raise ConversionError("audio chunk contains NaN or Inf samples")
    return x.astype(np.float32), rate


def numpy_to_audio_chunk(samples: np.ndarray, sample_rate: int, header: Header | None = None,
                         sample_format: str = "S16LE") -> AudioChunk:
    """(frames,) or (frames, channels) float in [-1, 1] -> AudioChunk (interleaved).

    S16LE rounds ``x * 32768`` and clips to int16, so ``audio_chunk_to_numpy`` returns the
    input within half a quantisation step (exactly for values on the int16 grid).
    """
    if sample_format not in AUDIO_FORMATS:
        raise ConversionError(f"unsupported sample_format {sample_format!r}")
    if int(sample_rate) <= 0:
        raise ConversionError(f"sample_rate must be positive, got {sample_rate}")
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0:
        raise ConversionError(f"samples must be a non-empty (frames[, channels]) array, "
                              f"got shape {np.shape(samples)}")
    if not np.isfinite(x).all():
        raise ConversionError("samples contain NaN or Inf")
    if sample_format == "S16LE":
        wire = np.clip(np.rint(x.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2")
    else:
        wire = x.astype("<f4")
    return AudioChunk(header=header or Header(), sample_rate=int(sample_rate),
                      channels=x.shape[1], sample_format=sample_format, data=wire.tobytes())


# --------------------------------------------------------------------------- IMU


def imu_to_numpy(msg: Imu) -> tuple[np.ndarray, int]:
    """A ``sensor_msgs/Imu`` -> (float64 (6,) [ax, ay, az, gx, gy, gz], stamp ns).

    Units as REP 145: m/s^2 (with gravity) and rad/s, the order ImageBind's IMU encoder
    takes. A field whose covariance[0] is -1 is "not provided" (REP 145) and is an error,
    as is any NaN/Inf value.
    """
    for name in ("linear_acceleration", "angular_velocity"):
        if float(getattr(msg, f"{name}_covariance")[0]) == -1.0:
            raise ConversionError(f"IMU message has no {name} (covariance[0] == -1)")
    a, g = msg.linear_acceleration, msg.angular_velocity
    v = np.array([a.x, a.y, a.z, g.x, g.y, g.z], np.float64)
    if not np.isfinite(v).all():
        raise ConversionError(f"IMU message contains NaN or Inf: {v.tolist()}")
    return v, stamp_to_ns(msg.header.stamp)


def numpy_to_imu(sample: np.ndarray, header: Header | None = None) -> Imu:
    """(6,) [ax, ay, az, gx, gy, gz] -> Imu with orientation marked "not provided"."""
    v = np.asarray(sample, np.float64).reshape(-1)
    if v.shape != (6,):
        raise ConversionError(f"IMU sample must have 6 values, got shape {np.shape(sample)}")
    msg = Imu(header=header or Header())
    (msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z,
     msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z) = map(float, v)
    msg.orientation_covariance[0] = -1.0
    return msg

