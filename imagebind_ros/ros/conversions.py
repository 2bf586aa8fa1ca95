"""numpy -> ROS messages for every sensor the nodes publish (the simulated sensors, the
microphone, the detector's annotated image), with clear errors.

Decoding the other way (message -> numpy and what it means) is ``imagebind_ros.decode``, the
one decoder that the nodes, the bag datasets and file playback share; the builders here
write what real drivers and image_transport plugins write, so a simulated sensor can stand
in for any of them: every camera encoding (Bayer mosaics, YUV, 16-bit colour), the
``compressed`` transport's JPEG/PNG with its exact format strings, and ``compressedDepth``
png and rvl. Works on message objects only, no running node needed. Bad arrays raise
``ConversionError`` (a ``ValueError``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image, Imu
from std_msgs.msg import Header

from imagebind_ros import rvl
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

# Bayer pattern -> which of R, G, B each pixel of the 2x2 cell samples (row-major).
BAYER_CELLS = {"rggb": (0, 1, 1, 2), "bggr": (2, 1, 1, 0), "gbrg": (1, 2, 0, 1),
               "grbg": (1, 0, 2, 1)}
_TO_YUV422 = {"yuv422": cv2.COLOR_RGB2YUV_UYVY, "uyvy": cv2.COLOR_RGB2YUV_UYVY,
              "yuyv": cv2.COLOR_RGB2YUV_YUYV, "yuv422_yuy2": cv2.COLOR_RGB2YUV_YUYV}


def _checked(arr: np.ndarray, encoding: str) -> np.ndarray:
    """``arr`` checked against what ``encoding`` is built from."""
    lay = ENCODINGS[encoding]
    a = np.asarray(arr)
    colour = lay.out in ("rgb8", "rgb16")
    want = np.dtype(np.uint16) if lay.out == "rgb16" else lay.dtype
    if a.dtype != want:
        raise ConversionError(f"{encoding} needs a {want} array, got {a.dtype}")
    if not colour and a.ndim != 2:
        raise ConversionError(f"{encoding} needs an (H, W) array, got shape {a.shape}")
    if colour and (a.ndim != 3 or a.shape[2] not in ((3, 4) if lay.samples == 4 else (3,))):
        raise ConversionError(f"{encoding} needs an (H, W, 3) RGB array, got shape {a.shape}")
    h, w = a.shape[:2]
    if h == 0 or w == 0:
        raise ConversionError(f"{encoding} image has zero size ({w}x{h})")
    if lay.even and (w % 2 or (lay.rows != 1 and h % 2)):
        raise ConversionError(f"{encoding} needs an even width (and height for 4:2:0), "
                              f"got {w}x{h}")
    return a


def _samples(a: np.ndarray, encoding: str) -> np.ndarray:
    """Checked array -> (H, W, samples) in the wire layout of a row-interleaved encoding."""
    lay = ENCODINGS[encoding]
    if lay.convert == "bayer":
        mosaic = np.empty(a.shape[:2], a.dtype)
        for k, c in enumerate(BAYER_CELLS[encoding[6:10]]):
            dy, dx = divmod(k, 2)
            mosaic[dy::2, dx::2] = a[dy::2, dx::2, c]
        return mosaic[:, :, None]
    if lay.convert == "yuv422":
        return cv2.cvtColor(np.ascontiguousarray(a), _TO_YUV422[encoding])
    if a.ndim == 2:
        return a[:, :, None]
    if lay.samples == 4 and a.shape[2] == 3:
        full = np.iinfo(a.dtype).max
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), full, a.dtype)], axis=2)
    order = {"none": [0, 1, 2, 3], "rgba": [0, 1, 2, 3], "bgr": [2, 1, 0],
             "bgra": [2, 1, 0, 3]}[lay.convert][:lay.samples]
    return a[:, :, order]


def _semi_planar(a: np.ndarray, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """RGB -> (Y plane, interleaved chroma plane) of NV12/NV21 (4:2:0) or NV24 (4:4:4).

    From OpenCV's planar I420 (BT.601 limited range, the inverse of the decoder's); NV24 as
    the I420 of the twice-sized image, whose chroma planes have the original size.
    """
    src = np.repeat(np.repeat(a, 2, axis=0), 2, axis=1) if encoding == "nv24" else a
    sh, sw = src.shape[:2]
    i420 = cv2.cvtColor(np.ascontiguousarray(src), cv2.COLOR_RGB2YUV_I420)
    y = i420[:sh][::2, ::2] if encoding == "nv24" else i420[:sh]
    u = i420[sh:sh + sh // 4].reshape(sh // 2, sw // 2)
    v = i420[sh + sh // 4:].reshape(sh // 2, sw // 2)
    chroma = np.stack([v, u] if encoding == "nv21" else [u, v], axis=2)
    return np.ascontiguousarray(y), chroma.reshape(sh // 2, sw)


def _padded(rows: np.ndarray, step: int) -> np.ndarray:
    out = np.zeros((rows.shape[0], step), np.uint8)
    out[:, : rows.shape[1]] = rows
    return out


def numpy_to_image(arr: np.ndarray, encoding: str, header: Header | None = None, *,
                   step: int | None = None, big_endian: bool = False) -> Image:
    """An array in the decoder's convention -> an Image as a driver would send it.

    Colour encodings (and Bayer, YUV, NV) take RGB ``(H, W, 3)`` (RGBA ``(H, W, 4)`` for the
    4-channel ones; alpha is full when only RGB is given) of uint8, or uint16 for the 16-bit
    ones; single-channel encodings take ``(H, W)`` of their type. ``step`` pads each row to
    that many bytes (NV chroma rows of NV24, twice as long, to twice that); ``big_endian``
    writes 16/32-bit samples big-endian. For every lossless encoding
    ``decode_image(numpy_to_image(x, e)).array`` equals ``x``.
    """
    if encoding not in ENCODINGS:
        raise ConversionError(f"unsupported image encoding {encoding!r}; supported: "
                              f"{', '.join(ENCODINGS)}")
    lay = ENCODINGS[encoding]
    a = _checked(arr, encoding)
    h, w = a.shape[:2]
    packed = w * lay.row_bytes
    step = packed if step is None else int(step)
    if step < packed or step % lay.dtype.itemsize:
        raise ConversionError(f"step {step} must be at least one packed row ({packed} "
                              f"bytes) and a multiple of {lay.dtype.itemsize}")
    if lay.convert in ("nv", "nv24"):
        y, chroma = _semi_planar(a, encoding)
        cstep = step if encoding != "nv24" else 2 * step
        data = _padded(y, step).tobytes() + _padded(chroma, cstep).tobytes()
    else:
        px = _samples(a, encoding)
        wire = np.ascontiguousarray(px, px.dtype.newbyteorder(">" if big_endian else "<"))
        data = _padded(wire.reshape(h, -1).view(np.uint8), step).tobytes()
    return Image(header=header or Header(), height=h, width=w, encoding=encoding,
                 is_bigendian=int(big_endian), step=step, data=data)


# compressed_image_transport's isColor(): the encodings it converts to bgr8/bgr16.
_TRANSPORT_COLOUR = ("rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16")
_COMPRESSIBLE = _TRANSPORT_COLOUR + ("mono8", "mono16", "8UC1", "16UC1")


def numpy_to_compressed(arr: np.ndarray, encoding: str, fmt: str = "jpeg",
                        header: Header | None = None, quality: int = 90,
                        png_level: int = 3) -> CompressedImage:
    """An array in ``numpy_to_image``'s convention -> the CompressedImage that
    compressed_image_transport publishes for that Image, byte for byte in meaning.

    Format strings as the plugin writes them: colour "rgb8; jpeg compressed bgr8" (JPEG is
    always 8-bit: 16-bit colour is scaled like cv_bridge), "rgb16; png compressed bgr16";
    grey "mono8; jpeg compressed mono8", and PNG of a non-colour image kept as is with an
    empty target ("16UC1; png compressed "). The file holds OpenCV's BGR order, so rqt, rviz
    and ``republish`` show it with the right colours.
    """
    if fmt not in ("jpeg", "png"):
        raise ConversionError(f"format must be 'jpeg' or 'png', got {fmt!r}")
    if encoding not in _COMPRESSIBLE:
        raise ConversionError(f"cannot compress {encoding!r} (supported: "
                              f"{', '.join(_COMPRESSIBLE)})")
    if fmt == "jpeg" and encoding in ("8UC1", "16UC1"):
        raise ConversionError(f"compressed_image_transport cannot JPEG {encoding} (cv_bridge "
                              "refuses to turn it into mono8); use png")
    a = _checked(arr, encoding)
    colour = encoding in _TRANSPORT_COLOUR
    bits = a.dtype.itemsize * 8
    if colour:
        bgr = a[:, :, 2::-1]
        target = "bgr8" if fmt == "jpeg" else f"bgr{bits}"
    else:
        bgr, target = a, ("mono8" if fmt == "jpeg" else "")
    if fmt == "jpeg" and bits == 16:
        bgr = np.rint(bgr * (255.0 / 65535.0)).astype(np.uint8)  # cv_bridge's 16 -> 8
    params = ([cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg"
              else [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(bgr),
                           params)
    if not ok:
        raise ConversionError(f"OpenCV could not encode a {a.dtype} {a.shape} {fmt}")
    return CompressedImage(header=header or Header(),
                           format=f"{encoding}; {fmt} compressed {target}",
                           data=buf.tobytes())


def quantize_inverse_depth(depth_m: np.ndarray, depth_max: float = 10.0,
                           depth_quantization: float = 100.0
                           ) -> tuple[np.ndarray, float, float]:
    """32FC1 metres -> (uint16 q, A, B) as compressed_depth_image_transport quantises:
    A = dq (dq + 1), B = 1 - A / depth_max, q = trunc(A / z + B) in float32, 0 for no
    measurement and for z >= depth_max. Depths too close to code (q > 65535, z below
    A / (65535 - B): 0.15 m with the defaults) are written as 0, where the plugin's
    overflowing cast would write garbage."""
    z = np.asarray(depth_m, np.float32)
    a = np.float32(depth_quantization * (depth_quantization + 1.0))
    b = np.float32(1.0 - a / np.float32(depth_max))
    valid = np.isfinite(z) & (z > 0) & (z < np.float32(depth_max))
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(valid, a / np.where(valid, z, np.float32(1)) + b, np.float32(0))
    q = np.where((q >= 1) & (q < 65536), q, 0).astype(np.uint16)
    return q, float(a), float(b)


def numpy_to_compressed_depth(depth: np.ndarray, encoding: str, fmt: str = "png",
                              header: Header | None = None, depth_max: float = 10.0,
                              depth_quantization: float = 100.0,
                              png_level: int = 3) -> CompressedImage:
    """A depth image -> the CompressedImage compressed_depth_image_transport publishes.

    16UC1 (uint16 mm, values above ``depth_max`` metres set to 0) or 32FC1 (float32 m,
    inverse-depth quantised, see ``quantize_inverse_depth``); ``fmt`` "png" (16-bit PNG) or
    "rvl". Data: the 12-byte ConfigHeader (int32 0, float32 A, float32 B), then the PNG, or
    uint32 cols and rows and the RVL code. Format string "16UC1; compressedDepth rvl".
    """
    if fmt not in ("png", "rvl"):
        raise ConversionError(f"compressedDepth format must be 'png' or 'rvl', got {fmt!r}")
    if encoding not in ("16UC1", "32FC1"):
        raise ConversionError(f"compressedDepth takes 16UC1 or 32FC1, got {encoding!r}")
    z = _checked(depth, encoding)
    if encoding == "32FC1":
        q, a, b = quantize_inverse_depth(z, depth_max, depth_quantization)
    else:
        limit = min(int(depth_max * 1000.0), 65535)  # the plugin's depth_max filter
        q, a, b = np.where(z > limit, 0, z).astype(np.uint16), 0.0, 0.0
    if fmt == "png":
        ok, buf = cv2.imencode(".png", q, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
        if not ok:
            raise ConversionError("OpenCV could not encode the depth PNG")
        body = buf.tobytes()
    else:
        body = struct.pack("<II", q.shape[1], q.shape[0]) + rvl.encode(q)
    return CompressedImage(header=header or Header(),
                           format=f"{encoding}; compressedDepth {fmt}",
                           data=struct.pack("<iff", 0, a, b) + body)


# --------------------------------------------------------------------------- audio


def numpy_to_audio_chunk(samples: np.ndarray, sample_rate: int, header: Header | None = None,
                         sample_format: str = "S16LE") -> AudioChunk:
    """(frames,) or (frames, channels) float in [-1, 1] -> AudioChunk (interleaved).

    S16LE rounds ``x * 32768`` and clips to int16, so ``decode_audio_chunk`` returns the
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


# --------------------------------------------------------------------------- detections


def detections_to_vision_msgs(vm: Any, header: Header, detections: Sequence[Any]) -> Any:
    """``vision_msgs/Detection2DArray`` (4.x, Humble and later) of the detector's detections
    (``imagebind_ros.detection.Detection``: box x0, y0, x1, y1 in pixels, score, label).

    ``vm`` is the imported ``vision_msgs.msg`` of a full ROS install (passed in: pip installs
    have no vision_msgs). Per detection one hypothesis, ``class_id`` = the prompt's label and
    ``score`` clipped to [0, 1] as in our own message; the box centre and size in pixels with
    ``theta`` 0; ``id`` empty; the image's header on the array and on every detection.
    """
    out = vm.Detection2DArray(header=header)
    for d in detections:
        x0, y0, x1, y1 = (float(v) for v in d.box)
        hyp = vm.ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = d.label
        hyp.hypothesis.score = float(np.clip(d.score, 0.0, 1.0))
        box = vm.BoundingBox2D(size_x=x1 - x0, size_y=y1 - y0)
        box.center.position.x, box.center.position.y = (x0 + x1) / 2, (y0 + y1) / 2
        out.detections.append(vm.Detection2D(header=header, results=[hyp], bbox=box, id=""))
    return out
