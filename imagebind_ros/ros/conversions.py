"""numpy -> ROS messages for every sensor the nodes publish (the simulated sensors, the
microphone, the detector's annotated image), with clear errors.

Decoding the other way (message -> numpy and what it means) is ``imagebind_ros.decode``, the
one decoder that the nodes, the bag datasets and file playback share; the builders here
write exactly what it reads (``decode_image(numpy_to_image(x, e)).array == x``). Works on
message objects only, no running node needed. Bad arrays raise ``ConversionError`` (a
``ValueError``).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image, Imu
from std_msgs.msg import Header

from imagebind_ros.decode import AUDIO_FORMATS, ENCODINGS
from imagebind_ros.msg import AudioChunk


class ConversionError(ValueError):
    """An array that cannot be written as the requested message; the text says why."""


# --------------------------------------------------------------------------- stamps


def make_header(stamp_ns: int, frame_id: str) -> Header:
    """A Header with the given stamp (integer nanoseconds, >= 0) and frame."""
    if stamp_ns < 0:
        raise ConversionError(f"stamp must be >= 0 ns, got {stamp_ns}")
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return h


# --------------------------------------------------------------------------- images


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
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ConversionError(f"{encoding} image has zero size ({a.shape[1]}x{a.shape[0]})")
    if channels == 4 and a.shape[2] == 3:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
    if encoding.startswith("bgr"):
        a = a[:, :, [2, 1, 0, 3][:channels]]
    a = np.ascontiguousarray(a, dtype=dtype.newbyteorder("<"))
    return Image(header=header or Header(), height=a.shape[0], width=a.shape[1],
                 encoding=encoding, is_bigendian=0, step=a.shape[1] * channels * dtype.itemsize,
                 data=a.tobytes())


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

