"""Sensor messages -> numpy arrays plus what their values mean: the ONE decoder.

The nodes (rclpy messages), the bag datasets (rosbags messages) and the file playback all
decode here. Functions read message fields only (duck typing), so any object with the fields
of ``sensor_msgs/Image``, ``sensor_msgs/CompressedImage``, ``sensor_msgs/Imu``, our
``AudioChunk`` or either package named ``audio_common_msgs`` works; nothing here imports
rclpy. Limits are checked from the metadata (and, for compressed images, from the file header)
before any pixel is decoded, and anything malformed raises ``DecodeError``: a ``ValueError``
whose text is fit for a log line and whose ``kind`` is a short fixed string (one of
``ERROR_KINDS``) to key a rate limiter on, whatever the text.

A decoded image is a ``Picture`` whose ``encoding`` is one of six layouts with a meaning:
``rgb8``/``rgb16`` colour, always RGB in the array whatever the wire order (Bayer demosaiced,
YUV converted, alpha dropped); ``mono8``/``mono16`` intensity (a monochrome or IR camera);
``16UC1``/``32FC1`` measurements (REP 118 depth or thermal). What a picture may be depends on
the topic it came from, so the role views (``as_rgb8``, ``as_depth``, ``as_thermal``) say
which pictures a camera, depth or thermal input accepts and convert them.

Conventions followed (so a frame decodes here as rqt, rviz and image_transport show it):
OpenCV's ``cvtColor`` for Bayer (bilinear) and YUV (BT.601 limited range, OpenCV's fixed
point); cv_bridge's 16 -> 8 bit scaling (x * 255 / 65535, rounded); cv_bridge's passthrough
meaning of ``8UC3``/``8UC4`` (an OpenCV Mat: BGR/BGRA); compressed_image_transport's format
strings ("rgb8; jpeg compressed bgr8") and compressed_depth_image_transport's 12-byte header,
inverse-depth quantisation and RVL framing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image as PILImage

from imagebind_ros import rvl

# --------------------------------------------------------------------------- errors

UNSUPPORTED_ENCODING = "unsupported encoding"  # an Image encoding we do not decode
UNSUPPORTED_FORMAT = "unsupported format"  # compressed payload / transport / audio coding
TOO_LARGE = "too large"  # over the byte limit, judged before decoding
MALFORMED = "malformed"  # sizes that disagree, truncated or corrupt data
WRONG_ROLE = "wrong role"  # decodes, but cannot be this topic's modality
NOT_FINITE = "not finite"  # NaN or Inf where values must be numbers
MISSING_FIELD = "missing field"  # REP 145 "not provided", or no stream info yet
STREAM_MISMATCH = "stream mismatch"  # rate/channels differ from what the stream declared
BAD_STAMP = "bad stamp"  # unset, far ahead of the clock, or off the stream's timeline
OUT_OF_RANGE = "out of range"  # finite, but beyond any physical sensor's range
OTHER = "other"  # anything else (a bug, an unknown error)
ERROR_KINDS = (UNSUPPORTED_ENCODING, UNSUPPORTED_FORMAT, TOO_LARGE, MALFORMED, WRONG_ROLE,
               NOT_FINITE, MISSING_FIELD, STREAM_MISMATCH, BAD_STAMP, OUT_OF_RANGE, OTHER)


class DecodeError(ValueError):
    """A message that cannot be turned into a valid array; the text says why, ``kind``
    (one of ``ERROR_KINDS``) says which kind of fault it is, for rate limiting."""

    def __init__(self, message: str, kind: str = MALFORMED) -> None:
        super().__init__(message)
        self.kind = kind


# 32 MiB: a 4K RGBA frame (33.2 MB) fits; anything larger is refused before it is copied.
MAX_IMAGE_BYTES = 32 * 2 ** 20

# --------------------------------------------------------------------------- stamps


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds (exact, unlike float seconds)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header_stamp_ns(msg: Any) -> int | None:
    """The stamp of a message with a ``header``; None for one without (audio_common's
    unstamped ``AudioData``: use the receive time)."""
    header = getattr(msg, "header", None)
    return None if header is None else stamp_to_ns(header.stamp)


def _buffer(data: Any) -> np.ndarray:
    """A message's byte field (bytes, rclpy's array.array, rosbags' ndarray, a list) as a
    flat uint8 array, without a copy where the buffer allows it."""
    try:
        return np.frombuffer(memoryview(data).cast("B"), np.uint8)
    except (TypeError, ValueError):
        try:
            return np.ascontiguousarray(np.asarray(data, dtype=np.uint8).reshape(-1))
        except (TypeError, ValueError, OverflowError) as e:
            raise DecodeError(f"data field is not bytes: {type(e).__name__}") from None


def _cvt(arr: np.ndarray, code: int) -> np.ndarray:
    """``cv2.cvtColor``, whose rare refusals become a DecodeError like every other fault."""
    try:
        return cv2.cvtColor(arr, code)
    except cv2.error as e:
        raise DecodeError(f"OpenCV cannot convert a {arr.dtype} {arr.shape} image: "
                          f"{str(e).strip().splitlines()[-1][:120]}") from None


def _own(arr: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """``arr`` as a contiguous array that does not alias the message buffer ``buf``."""
    if np.may_share_memory(arr, buf):
        return np.array(arr, order="C", copy=True)
    return np.ascontiguousarray(arr)


# --------------------------------------------------------------------------- pictures

PictureEncoding = Literal["rgb8", "rgb16", "mono8", "mono16", "16UC1", "32FC1"]
# Picture encoding -> (dtype, channels, kind)
PICTURE_ENCODINGS: dict[str, tuple[np.dtype, int, str]] = {
    "rgb8": (np.dtype(np.uint8), 3, "color"),
    "rgb16": (np.dtype(np.uint16), 3, "color"),
    "mono8": (np.dtype(np.uint8), 1, "intensity"),
    "mono16": (np.dtype(np.uint16), 1, "intensity"),
    "16UC1": (np.dtype(np.uint16), 1, "measurement"),
    "32FC1": (np.dtype(np.float32), 1, "measurement"),
}


@dataclass(frozen=True)
class Picture:
    """A decoded image and what its values are.

    ``array``: rgb8/rgb16 (H, W, 3) uint8/uint16 in RGB order; mono8/mono16 (H, W) intensity;
    16UC1 (H, W) uint16 and 32FC1 (H, W) float32 measurements (REP 118 depth: millimetres
    with 0 = no measurement, or metres with NaN/Inf/0 = no measurement; or thermal raw
    counts / temperatures). ``encoding``: one of ``PICTURE_ENCODINGS`` (layout and meaning;
    the bit depth follows). ``source``: what the message said (its encoding, or a
    CompressedImage's format string). ``lossy``: decoded from JPEG, so values are
    approximate (never depth).
    """

    array: np.ndarray
    encoding: str
    source: str
    lossy: bool = False

    @property
    def kind(self) -> str:
        """"color", "intensity" (mono8/mono16) or "measurement" (16UC1/32FC1)."""
        return PICTURE_ENCODINGS[self.encoding][2]

    @property
    def bit_depth(self) -> int:
        """Bits per sample: 8, 16 or 32."""
        return PICTURE_ENCODINGS[self.encoding][0].itemsize * 8

    @property
    def invalid(self) -> str | None:
        """Which values mean "no measurement" when the picture is depth (REP 118): "0" for
        16-bit, "NaN, Inf, <= 0" for 32FC1; None for colour and 8-bit."""
        return {"16UC1": "0", "mono16": "0", "32FC1": "NaN, Inf, <= 0"}.get(self.encoding)


@dataclass(frozen=True)
class ImageLayout:
    """How an Image encoding lies in ``data`` and what it decodes to.

    ``samples``: samples per pixel in a row (2 for packed YUV 4:2:2, 1 for Bayer and for the
    Y plane of NV12/NV21/NV24); ``rows``: rows of ``step`` bytes per image row (1; 1.5 for
    NV12/NV21, whose chroma plane follows the Y plane; 3 for NV24); ``convert``: "none",
    "bgr", "rgba", "bgra", "bayer", "yuv422", "nv" or "nv24"; ``code``: the OpenCV code.
    """

    dtype: np.dtype
    samples: int
    out: str
    convert: str = "none"
    code: int | None = None
    rows: float = 1.0
    even: bool = False  # width (and height for 4:2:0) must be even

    @property
    def row_bytes(self) -> int:
        return self.samples * self.dtype.itemsize


_U8, _U16, _F32 = np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)
_BGR, _RGBA, _BGRA = cv2.COLOR_BGR2RGB, cv2.COLOR_RGBA2RGB, cv2.COLOR_BGRA2RGB


def _bayer(code: int, dtype: np.dtype) -> ImageLayout:
    return ImageLayout(dtype, 1, "rgb8" if dtype == _U8 else "rgb16", "bayer", code)


# Every sensor_msgs/image_encodings name a driver sends for a camera, depth or thermal image.
# OpenCV 5 names Bayer patterns as ROS does (the 2x2 cell read from the top-left pixel);
# the two-letter names of OpenCV 4 (BayerBG for rggb) are the same codes, checked in the
# tests by mosaicing a known image.
ENCODINGS: dict[str, ImageLayout] = {
    "rgb8": ImageLayout(_U8, 3, "rgb8"),
    "bgr8": ImageLayout(_U8, 3, "rgb8", "bgr", _BGR),
    "rgba8": ImageLayout(_U8, 4, "rgb8", "rgba", _RGBA),
    "bgra8": ImageLayout(_U8, 4, "rgb8", "bgra", _BGRA),
    "8UC3": ImageLayout(_U8, 3, "rgb8", "bgr", _BGR),  # cv_bridge passthrough of a BGR Mat
    "8UC4": ImageLayout(_U8, 4, "rgb8", "bgra", _BGRA),
    "rgb16": ImageLayout(_U16, 3, "rgb16"),
    "bgr16": ImageLayout(_U16, 3, "rgb16", "bgr", _BGR),
    "rgba16": ImageLayout(_U16, 4, "rgb16", "rgba", _RGBA),
    "bgra16": ImageLayout(_U16, 4, "rgb16", "bgra", _BGRA),
    "16UC3": ImageLayout(_U16, 3, "rgb16", "bgr", _BGR),
    "16UC4": ImageLayout(_U16, 4, "rgb16", "bgra", _BGRA),
    "mono8": ImageLayout(_U8, 1, "mono8"),
    "8UC1": ImageLayout(_U8, 1, "mono8"),  # Orbbec IR, RealSense RAW8
    "mono16": ImageLayout(_U16, 1, "mono16"),
    "16UC1": ImageLayout(_U16, 1, "16UC1"),
    "32FC1": ImageLayout(_F32, 1, "32FC1"),
    "bayer_rggb8": _bayer(cv2.COLOR_BayerRGGB2RGB, _U8),
    "bayer_bggr8": _bayer(cv2.COLOR_BayerBGGR2RGB, _U8),
    "bayer_gbrg8": _bayer(cv2.COLOR_BayerGBRG2RGB, _U8),
    "bayer_grbg8": _bayer(cv2.COLOR_BayerGRBG2RGB, _U8),
    "bayer_rggb16": _bayer(cv2.COLOR_BayerRGGB2RGB, _U16),
    "bayer_bggr16": _bayer(cv2.COLOR_BayerBGGR2RGB, _U16),
    "bayer_gbrg16": _bayer(cv2.COLOR_BayerGBRG2RGB, _U16),
    "bayer_grbg16": _bayer(cv2.COLOR_BayerGRBG2RGB, _U16),
    # YUV 4:2:2 packed: yuyv (Y0 U Y1 V; fourcc YUYV/YUY2) and uyvy (U Y0 V Y1).
    "yuyv": ImageLayout(_U8, 2, "rgb8", "yuv422", cv2.COLOR_YUV2RGB_YUYV, even=True),
    "yuv422_yuy2": ImageLayout(_U8, 2, "rgb8", "yuv422", cv2.COLOR_YUV2RGB_YUYV, even=True),
    "uyvy": ImageLayout(_U8, 2, "rgb8", "yuv422", cv2.COLOR_YUV2RGB_UYVY, even=True),
    "yuv422": ImageLayout(_U8, 2, "rgb8", "yuv422", cv2.COLOR_YUV2RGB_UYVY, even=True),
    # YUV 4:2:0 semi-planar: H rows of Y, then H/2 rows of interleaved UV (nv12) or VU (nv21),
    # all ``step`` bytes apart (as rviz reads them). NV24: 4:4:4, H rows of UV pairs.
    "nv12": ImageLayout(_U8, 1, "rgb8", "nv", cv2.COLOR_YUV2RGB_NV12, 1.5, True),
    "nv21": ImageLayout(_U8, 1, "rgb8", "nv", cv2.COLOR_YUV2RGB_NV21, 1.5, True),
    "nv24": ImageLayout(_U8, 1, "rgb8", "nv24", cv2.COLOR_YUV2RGB_NV12, 3.0),
}

# What stays refused, and why (the text of the error).
_SIGNED = ("signed integer data has no camera, depth or thermal convention (REP 118 depth "
           "is 16UC1 or 32FC1)")
_MULTI = "multi-channel data without a defined channel order or meaning"
UNSUPPORTED_ENCODINGS: dict[str, str] = {
    **{f"{b}SC{c}": _SIGNED for b in (8, 16, 32) for c in ("", 1, 2, 3, 4)},
    **{f"64FC{c}": "64-bit float images: REP 118 depth is 32FC1 (convert at the source)"
       for c in ("", 1, 2, 3, 4)},
    **{e: _MULTI for e in ("8UC2", "16UC2", "32FC2", "32FC3", "32FC4")},
}


def _unsupported(enc: str) -> DecodeError:
    why = UNSUPPORTED_ENCODINGS.get(enc)
    if why is not None:
        return DecodeError(f"image encoding {enc!r} is not supported: {why}",
                           UNSUPPORTED_ENCODING)
    return DecodeError(f"unsupported image encoding {enc[:40]!r}; supported: "
                       f"{', '.join(ENCODINGS)}", UNSUPPORTED_ENCODING)


def _check_limit(nbytes: int, max_bytes: int, what: str) -> None:
    if nbytes > max_bytes:
        raise DecodeError(f"{what} of {nbytes / 2 ** 20:.1f} MiB exceeds the "
                          f"{max_bytes / 2 ** 20:.0f} MiB limit", TOO_LARGE)


def _check_size(height: int, width: int, what: str) -> None:
    if height <= 0 or width <= 0:
        raise DecodeError(f"{what} has zero size ({width}x{height})")


def check_image(msg: Any, max_bytes: int = MAX_IMAGE_BYTES) -> ImageLayout:
    """Validate an Image's metadata without reading pixels -> its ``ImageLayout``.

    Cheap enough for a subscription callback. Checks, in this order: known encoding; the
    byte limit (declared size, data size and decoded size); non-zero size; ``step`` at least
    one packed row and a whole number of samples; ``len(data)`` equal to the rows of
    ``step`` the encoding needs; even sizes where the chroma is subsampled.
    """
    enc = str(msg.encoding)
    lay = ENCODINGS.get(enc)
    if lay is None:
        raise _unsupported(enc)
    h, w, step, n = int(msg.height), int(msg.width), int(msg.step), len(msg.data)
    out_dtype, out_ch, _ = PICTURE_ENCODINGS[lay.out]
    declared = int(step * h * lay.rows)
    decoded = h * w * out_ch * out_dtype.itemsize
    _check_limit(max(n, declared, decoded), max_bytes, f"{w}x{h} {enc} image")
    _check_size(h, w, f"{enc} image")
    row = w * lay.row_bytes
    if step < row:
        raise DecodeError(f"image step {step} is shorter than one row of {w} {enc} "
                          f"pixels ({row} bytes)")
    if step % lay.dtype.itemsize:
        raise DecodeError(f"image step {step} is not a multiple of the {enc} sample "
                          f"size ({lay.dtype.itemsize} bytes)")
    if lay.even and (w % 2 or (lay.rows != 1 and h % 2)):
        need = "width and height" if lay.rows != 1 else "width"
        raise DecodeError(f"{enc} needs an even {need}, got {w}x{h}")
    if n != declared:
        rows = f"{lay.rows:g} * " if lay.rows != 1 else ""
        raise DecodeError(f"image data has {n} bytes but {rows}step * height = {rows}{step} "
                          f"* {h} = {declared} ({w}x{h} {enc})")
    return lay


def decode_image(msg: Any, max_bytes: int = MAX_IMAGE_BYTES) -> Picture:
    """A ``sensor_msgs/Image`` -> Picture. ``check_image`` runs first, so nothing is read
    from a malformed message; row padding (``step``) and ``is_bigendian`` are handled."""
    lay = check_image(msg, max_bytes)
    enc, h, w, step = str(msg.encoding), int(msg.height), int(msg.width), int(msg.step)
    buf = _buffer(msg.data)
    rows = buf.reshape(-1, step)
    if lay.convert == "nv":
        planes = np.ascontiguousarray(rows[:, :w])  # (1.5 h, w): Y, then interleaved chroma
        return Picture(_cvt(planes, lay.code), lay.out, enc)
    if lay.convert == "nv24":
        y = rows[:h, :w]
        uv = rows[h:].reshape(h, 2 * step)[:, : 2 * w]
        # OpenCV has no 4:4:4 semi-planar code: as NV12 of twice the size, every 2x2 block
        # sharing one Y and one chroma pair is exactly the NV24 pixel.
        y2 = cv2.resize(np.ascontiguousarray(y), (2 * w, 2 * h),
                        interpolation=cv2.INTER_NEAREST)
        rgb = _cvt(np.concatenate([y2, uv]), lay.code)[::2, ::2]
        return Picture(np.ascontiguousarray(rgb), lay.out, enc)
    px = np.ascontiguousarray(rows[:, : w * lay.row_bytes])
    if lay.dtype.itemsize > 1:
        wire = lay.dtype.newbyteorder(">" if msg.is_bigendian else "<")
        px = px.view(wire).astype(lay.dtype, copy=False)
    else:
        px = px.view(lay.dtype)
    px = px.reshape(h, w, lay.samples)
    if lay.convert == "bayer":
        arr = _cvt(px[:, :, 0], lay.code)
    elif lay.code is not None:  # YUV 4:2:2 and channel reordering
        arr = _cvt(px, lay.code)
    else:
        arr = px[:, :, 0] if lay.samples == 1 else px
    return Picture(_own(arr, buf), lay.out, enc)


# --------------------------------------------------------------------------- compressed

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Formats recognised only to name them in the refusal.
_OTHER_MAGIC = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"GIF8", "GIF"), (b"BM", "BMP"),
                (b"%!PS", "PostScript/EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"%PDF", "PDF"),
                (b"RIFF", "RIFF (WebP)"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
                (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"v/1\x01", "OpenEXR"),
                (b"#?RADIANCE", "Radiance HDR"), (b"\x28\xb5\x2f\xfd", "zstd"))
# SOFn markers that carry the frame size (not DHT C4, JPG C8, DAC CC).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                          0xCE, 0xCF})


@dataclass(frozen=True)
class FileHeader:
    """What a JPEG or PNG will decode to, read from its header before decoding it."""

    codec: Literal["jpeg", "png"]
    width: int
    height: int
    channels: int  # as OpenCV's IMREAD_UNCHANGED returns them
    bit_depth: int  # 8 or 16 per sample

    @property
    def decoded_bytes(self) -> int:
        return self.width * self.height * max(self.channels, 3) * (self.bit_depth // 8)


def _png_header(data: bytes) -> FileHeader:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise DecodeError("PNG has no IHDR chunk where the format puts it")
    w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}.get(colour)
    allowed = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
    if channels is None or depth not in allowed[colour]:
        raise DecodeError(f"PNG has an invalid colour type {colour} / bit depth {depth}")
    return FileHeader("png", w, h, channels, 16 if depth == 16 else 8)


def _jpeg_header(data: bytes) -> FileHeader:
    """Walk the JPEG segments to the first SOFn (frame size, precision, components)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise DecodeError(f"JPEG segment does not start with a marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        if marker in (0xD9, 0xDA):
            break  # end of image / start of scan before any frame header
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in _SOF_MARKERS:
            if length < 8 or i + 10 > n:
                raise DecodeError("JPEG frame header is truncated")
            precision, h, w, comps = struct.unpack(">BHHB", data[i + 4:i + 10])
            if precision != 8:
                raise DecodeError(f"{precision}-bit JPEG is not supported (8-bit only, as "
                                  "compressed_image_transport writes)", UNSUPPORTED_FORMAT)
            if comps not in (1, 3):
                raise DecodeError(f"JPEG with {comps} components is not supported (1 grey "
                                  "or 3 colour)", UNSUPPORTED_FORMAT)
            if h == 0:
                raise DecodeError("JPEG with its height in a DNL marker is not supported",
                                  UNSUPPORTED_FORMAT)
            return FileHeader("jpeg", w, h, comps, 8)
        i += 2 + length
    raise DecodeError("JPEG has no frame header (SOFn) before its scan data")


def read_file_header(data: bytes) -> FileHeader:
    """Whitelist by magic number (JPEG, PNG only) and read the decoded size, so nothing else
    ever reaches a decoder (no TIFF, GIF, BMP, WebP or EPS from the network)."""
    if data.startswith(PNG_MAGIC):
        return _png_header(data)
    if data.startswith(JPEG_MAGIC):
        return _jpeg_header(data)
    name = next((n for magic, n in _OTHER_MAGIC if data.startswith(magic)), None)
    what = f"a {name} file" if name else f"not JPEG or PNG (starts {data[:8].hex()})"
    raise DecodeError(f"compressed payload is {what}; only JPEG and PNG are accepted",
                      UNSUPPORTED_FORMAT)


@dataclass(frozen=True)
class TransportFormat:
    """A CompressedImage ``format`` string as image_transport writes it.

    compressed_image_transport: "<raw encoding>; <jpeg|png> compressed <target>", where the
    target is "bgr8", "bgr16" or "mono8" (the data's channel order) or empty (png of a
    non-colour image, kept as is). compressed_depth_image_transport: "<raw encoding>;
    compressedDepth <png|rvl>" ("compressedDepth" alone is png). Older or other publishers
    write just "jpeg" or "png": ``encoding`` is then None.
    """

    encoding: str | None
    depth: bool  # compressedDepth
    codec: str | None  # what the string names: jpeg, png, rvl, or None
    target: str | None  # compressed transport's data order ("bgr8", "rgb8", "mono8", "")


def parse_format(fmt: str) -> TransportFormat:
    """Split a CompressedImage format string (see ``TransportFormat``)."""
    fmt = str(fmt).strip()
    if ";" not in fmt:
        low = fmt.lower()
        if "compresseddepth" in low:
            return TransportFormat(None, True, "png", None)
        return TransportFormat(None, False, low or None, None)
    enc, rest = (s.strip() for s in fmt.split(";", 1))
    words = rest.split()
    if words and words[0].lower() == "compresseddepth":
        codec = words[1].lower() if len(words) > 1 else "png"
        return TransportFormat(enc or None, True, codec, None)
    if len(words) >= 2 and words[1] == "compressed":
        return TransportFormat(enc or None, False, words[0].lower(),
                               words[2] if len(words) > 2 else "")
    return TransportFormat(enc or None, False, words[0].lower() if words else None, None)


def check_compressed(msg: Any, max_bytes: int = MAX_IMAGE_BYTES) -> None:
    """Cheap checks of a CompressedImage for a subscription callback: data present and
    within ``max_bytes``, a whitelisted payload whose header says it decodes within
    ``max_bytes`` (compressedDepth: a known codec and header). Decodes nothing."""
    _check_compressed(msg, max_bytes)


def _check_compressed(msg: Any, max_bytes: int
                      ) -> tuple[TransportFormat, bytes, FileHeader | None]:
    tf = parse_format(msg.format)
    data = _buffer(msg.data)
    if data.size == 0:
        raise DecodeError(f"compressed image ({str(msg.format)[:60]!r}) has no data")
    _check_limit(data.size, max_bytes, "compressed image")
    raw = data.tobytes()
    if tf.depth:
        _depth_payload(tf, raw, max_bytes)
        return tf, raw, None
    head = read_file_header(raw)
    _check_size(head.height, head.width, f"compressed {head.codec}")
    _check_limit(head.decoded_bytes, max_bytes, f"{head.width}x{head.height} {head.codec} "
                 "decoded")
    return tf, raw, head


def decode_compressed(msg: Any, max_bytes: int = MAX_IMAGE_BYTES) -> Picture:
    """A ``sensor_msgs/CompressedImage`` -> Picture.

    ``compressed`` transport (JPEG/PNG only, checked from the bytes): colour comes out RGB
    (the format's "compressed bgr8"/"bgr16" means OpenCV's order, as the plugin writes it;
    "compressed rgb8" means the channels are stored swapped), 16-bit PNG colour as rgb16,
    grey as mono8/mono16, or as the raw encoding the format names (16UC1, or a Bayer mosaic
    stored as a PNG, which is demosaiced). ``compressedDepth`` (png or rvl): 16UC1
    millimetres, or 32FC1 metres from its inverse-depth quantisation (0 = no measurement,
    decoded as NaN). Sizes are checked from the headers before decoding.
    """
    tf, raw, head = _check_compressed(msg, max_bytes)
    fmt = str(msg.format)
    if head is None:
        return _decode_compressed_depth(tf, raw, fmt, max_bytes)
    arr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.shape[:2] != (head.height, head.width):
        got = "nothing" if arr is None else f"{arr.shape[1]}x{arr.shape[0]}"
        raise DecodeError(f"cannot decode compressed {head.codec} ({fmt[:60]!r}): got {got} "
                          f"for a {head.width}x{head.height} header")
    lossy = head.codec == "jpeg"
    wide = arr.dtype == np.uint16
    if arr.ndim == 2:
        lay = ENCODINGS.get(tf.encoding or "")
        if lay is not None and lay.convert == "bayer" and not tf.target and not lossy:
            if arr.dtype != lay.dtype:
                raise DecodeError(f"{tf.encoding} stored as a {arr.dtype} PNG")
            return Picture(_cvt(arr, lay.code), lay.out, fmt)
        # A grey file keeps the meaning of the raw encoding it was made from (a PNG of
        # 16UC1 is depth, of mono16 intensity) when the sample type survived; else intensity.
        out = "mono16" if wide else "mono8"
        if (lay is not None and lay.samples == 1 and lay.convert == "none"
                and lay.dtype == arr.dtype):
            out = lay.out
        return Picture(arr, out, fmt, lossy)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype not in (np.uint8, np.uint16):
        raise DecodeError(f"compressed image decodes to {arr.dtype} {arr.shape}: not a "
                          "grey or colour image", UNSUPPORTED_FORMAT)
    stored_rgb = (tf.target or "").startswith("rgb")
    if stored_rgb:
        rgb = arr if arr.shape[2] == 3 else _cvt(arr, cv2.COLOR_RGBA2RGB)
    else:
        rgb = _cvt(arr, cv2.COLOR_BGR2RGB if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGB)
    return Picture(rgb, "rgb16" if wide else "rgb8", fmt, lossy)


# compressed_depth_image_transport's ConfigHeader: enum compressionFormat (int32, INV_DEPTH =
# 0), float depthParam[2] (quantisation A, B); native byte order, little-endian in practice.
_DEPTH_HEADER = struct.Struct("<iff")
_DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


def _depth_payload(tf: TransportFormat, raw: bytes, max_bytes: int
                   ) -> tuple[float, float, int, int]:
    """Validate a compressedDepth message -> (quant A, quant B, width, height)."""
    if tf.encoding not in _DEPTH_ENCODINGS:
        raise DecodeError(f"compressedDepth of {str(tf.encoding)[:20]!r} is not supported "
                          "(the plugin writes 16UC1 or 32FC1)", UNSUPPORTED_ENCODING)
    if tf.codec not in ("png", "rvl"):
        raise DecodeError(f"compressedDepth format {str(tf.codec)[:20]!r} is not supported "
                          "(png or rvl)", UNSUPPORTED_FORMAT)
    hsize = _DEPTH_HEADER.size
    if len(raw) <= hsize + 8:
        raise DecodeError(f"compressedDepth image has {len(raw)} bytes: not even its "
                          f"{hsize}-byte header and a payload")
    _, quant_a, quant_b = _DEPTH_HEADER.unpack_from(raw)
    out_bytes = 4 if tf.encoding == "32FC1" else 2
    if tf.encoding == "32FC1" and not (np.isfinite(quant_a) and np.isfinite(quant_b)
                                       and quant_a != 0):
        raise DecodeError(f"compressedDepth 32FC1 has unusable quantisation parameters "
                          f"A={quant_a}, B={quant_b}")
    body = raw[hsize:]
    if tf.codec == "png":
        head = read_file_header(body)
        if head.codec != "png" or head.channels != 1 or head.bit_depth != 16:
            raise DecodeError(f"compressedDepth png must hold a 16-bit grey PNG, got "
                              f"{head.codec} with {head.channels} channels of "
                              f"{head.bit_depth} bits", UNSUPPORTED_FORMAT)
        w, h = head.width, head.height
    else:
        w, h = struct.unpack_from("<II", body)
    _check_size(h, w, f"compressedDepth {tf.codec}")
    _check_limit(w * h * out_bytes, max_bytes, f"{w}x{h} compressedDepth decoded")
    return quant_a, quant_b, w, h


def _decode_compressed_depth(tf: TransportFormat, raw: bytes, fmt: str, max_bytes: int
                             ) -> Picture:
    quant_a, quant_b, w, h = _depth_payload(tf, raw, max_bytes)
    body = raw[_DEPTH_HEADER.size:]
    if tf.codec == "png":
        q = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
        if q is None or q.shape != (h, w) or q.dtype != np.uint16:
            raise DecodeError(f"cannot decode the compressedDepth PNG ({fmt[:60]!r})")
    else:
        try:
            q = rvl.decode(memoryview(body)[8:], w * h).reshape(h, w)
        except rvl.RvlError as e:
            raise DecodeError(f"compressedDepth rvl: {e}") from None
    if tf.encoding != "32FC1":
        return Picture(q, "16UC1", fmt)
    # The plugin stores q = A / z + B (truncated to uint16) and 0 for no measurement.
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.float32(quant_a) / (q.astype(np.float32) - np.float32(quant_b))
    z[q == 0] = np.nan
    return Picture(z, "32FC1", fmt)


def decode_picture(msg: Any, max_bytes: int = MAX_IMAGE_BYTES) -> Picture:
    """An Image or a CompressedImage (told apart by their fields) -> Picture."""
    if is_compressed(msg):
        return decode_compressed(msg, max_bytes)
    return decode_image(msg, max_bytes)


def check_picture(msg: Any, max_bytes: int = MAX_IMAGE_BYTES) -> None:
    """``check_image`` or ``check_compressed``, whichever the message is: for callbacks."""
    if is_compressed(msg):
        check_compressed(msg, max_bytes)
    else:
        check_image(msg, max_bytes)


def is_compressed(msg: Any) -> bool:
    """A CompressedImage (``format`` and no ``encoding``) rather than an Image."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


# --------------------------------------------------------------------------- role views



def _to_8bit(x: np.ndarray) -> np.ndarray:
    """cv_bridge's 16 -> 8 bit conversion: round(x * 255 / 65535) (its convertTo)."""
    return cv2.convertScaleAbs(x, alpha=255.0 / 65535.0)



def as_rgb8(p: Picture) -> np.ndarray:
    """A camera image as (H, W, 3) RGB uint8: colour as is, 16-bit colour and mono16 scaled
    like cv_bridge (x * 255 / 65535), mono8/mono16 repeated to 3 channels. Measurements
    (16UC1, 32FC1: depth or thermal) are refused."""
    if p.encoding == "rgb8":
        return p.array
    if p.encoding == "rgb16":
        return _to_8bit(p.array)
    if p.encoding in ("mono8", "mono16"):
        g = p.array if p.encoding == "mono8" else _to_8bit(p.array)
        return cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)
    raise DecodeError(f"a {p.source[:60]} image ({p.encoding}: depth or thermal data) cannot "
                      "be a camera image; a camera takes colour, Bayer, YUV, mono8 or mono16",
                      WRONG_ROLE)


DepthUnits = Literal["mm", "m"]


@dataclass(frozen=True)
class DepthImage:
    """Depth as REP 118 defines it: uint16 millimetres (0 = no measurement) or float32
    metres (NaN, Inf and 0 = no measurement)."""

    array: np.ndarray
    units: DepthUnits


def as_depth(p: Picture) -> DepthImage:
    """A depth image: 16UC1 or mono16 (Orbbec labels depth so) millimetres, 32FC1 metres.
    Refused: colour, 8-bit, and anything decoded from JPEG (its values are not distances)."""
    if p.lossy:
        raise DecodeError(f"depth sent as JPEG ({p.source[:60]}) has lost its values; use "
                          "compressedDepth (png or rvl) or png", WRONG_ROLE)
    if p.encoding in ("16UC1", "mono16"):
        return DepthImage(p.array, "mm")
    if p.encoding == "32FC1":
        return DepthImage(p.array, "m")
    raise DecodeError(f"depth must be 16UC1/mono16 (mm) or 32FC1 (m), got {p.source[:60]}",
                      WRONG_ROLE)


def as_thermal(p: Picture) -> np.ndarray:
    """A thermal image: mono8 as is, 16-bit raw counts (mono16/16UC1), 32FC1 temperatures,
    or 8-bit colour (a palette or grey rendered as RGB) as luminance, as thermal files are
    read (PIL's "L"). Refused: 16-bit colour, and a JPEG made from 16-bit or float data (it
    keeps 1/257 of the range)."""
    if p.lossy and p.source.split(";")[0].strip() in ("mono16", "16UC1", "32FC1"):
        raise DecodeError(f"thermal {p.source[:60]} is 16-bit data squeezed into 8-bit JPEG; "
                          "publish it as png", WRONG_ROLE)
    if p.encoding in ("mono8", "mono16", "16UC1", "32FC1"):
        return p.array
    if p.encoding == "rgb8":
        return np.array(PILImage.fromarray(p.array).convert("L"))
    raise DecodeError(f"thermal must be mono8, mono16, 16UC1, 32FC1 or 8-bit colour, got "
                      f"{p.source[:60]}", WRONG_ROLE)


def finite_fraction(depth: np.ndarray) -> float:
    """Fraction of depth pixels holding a measurement (finite and > 0, REP 118)."""
    d = np.asarray(depth)
    if d.size == 0:
        return 0.0
    if np.issubdtype(d.dtype, np.integer):
        return float(np.count_nonzero(d)) / d.size
    return float(np.count_nonzero(np.isfinite(d) & (d > 0))) / d.size


# --------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class Sound:
    """Audio samples, float32 (frames, channels) in [-1, 1], at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int


# GStreamer raw sample formats (the names our AudioChunk and audio_common's AudioInfo use)
# -> (wire dtype, zero offset, full scale). Integers scale by 1/2^(bits-1) as soundfile reads
# PCM; S24 is packed 3 bytes.
PCM_FORMATS: dict[str, tuple[str, float, float]] = {
    "U8": ("u1", 128.0, 128.0), "S8": ("i1", 0.0, 128.0),
    "S16LE": ("<i2", 0.0, 32768.0), "S16BE": (">i2", 0.0, 32768.0),
    "S24LE": ("<i3", 0.0, 8388608.0), "S24BE": (">i3", 0.0, 8388608.0),
    "S32LE": ("<i4", 0.0, 2147483648.0), "S32BE": (">i4", 0.0, 2147483648.0),
    "F32LE": ("<f4", 0.0, 1.0), "F32BE": (">f4", 0.0, 1.0),
    "F64LE": ("<f8", 0.0, 1.0), "F64BE": (">f8", 0.0, 1.0),
}
# The formats our AudioChunk publishers write (the microphone node offers these).
AUDIO_FORMATS: dict[str, np.dtype] = {"S16LE": np.dtype("<i2"), "F32LE": np.dtype("<f4")}


def _check_stream(rate: int, channels: int, expect_rate: int | None,
                  expect_channels: int | None, what: str) -> None:
    if rate <= 0 or channels <= 0:
        raise DecodeError(f"{what} declares sample_rate={rate}, channels={channels}; both "
                          "must be positive")
    if expect_rate is not None and rate != expect_rate:
        raise DecodeError(f"{what} at {rate} Hz, but this stream is {expect_rate} Hz",
                          STREAM_MISMATCH)
    if expect_channels is not None and channels != expect_channels:
        raise DecodeError(f"{what} has {channels} channels, but this stream has "
                          f"{expect_channels}", STREAM_MISMATCH)


def _scaled(x: np.ndarray, offset: float, scale: float, channels: int) -> np.ndarray:
    """Integer or float samples -> float32 (frames, channels); non-finite is an error."""
    if x.dtype.kind == "f":
        y = x.astype(np.float32)
        if not np.isfinite(y).all():
            raise DecodeError("audio contains NaN or Inf samples (or beyond float32)",
                              NOT_FINITE)
    else:
        y = ((x.astype(np.float64) - offset) / scale).astype(np.float32)
    return y.reshape(-1, channels)


def decode_pcm(data: Any, sample_format: str, channels: int, sample_rate: int,
               expect_rate: int | None = None, expect_channels: int | None = None,
               what: str = "audio chunk") -> Sound:
    """Interleaved raw PCM bytes in a GStreamer ``sample_format`` -> Sound."""
    fmt = str(sample_format).upper()
    if fmt not in PCM_FORMATS:
        raise DecodeError(f"unsupported audio sample_format {str(sample_format)[:20]!r}; "
                          f"supported: {', '.join(PCM_FORMATS)}", UNSUPPORTED_FORMAT)
    rate, ch = int(sample_rate), int(channels)
    _check_stream(rate, ch, expect_rate, expect_channels, what)
    code, offset, scale = PCM_FORMATS[fmt]
    buf = _buffer(data)
    size = int(code[-1])
    frame = size * ch
    if buf.size == 0 or buf.size % frame:
        raise DecodeError(f"audio data has {buf.size} bytes, not a positive multiple of one "
                          f"frame ({ch} channels x {size} bytes, {fmt})")
    if size == 3:  # packed 24-bit: sign-extend into int32
        b = buf.reshape(-1, 3).astype(np.int32)
        lo, hi = (b[:, 0], b[:, 2]) if code[0] == "<" else (b[:, 2], b[:, 0])
        x = ((hi << 24) | (b[:, 1] << 16) | (lo << 8)) >> 8
    else:
        x = buf.view(np.dtype(code))
    return Sound(_scaled(x, offset, scale, ch), rate)


def decode_audio_chunk(msg: Any, expect_rate: int | None = None,
                       expect_channels: int | None = None) -> Sound:
    """Our ``AudioChunk`` -> Sound (integers scaled by 1/2^(bits-1), as soundfile reads PCM).

    ``expect_rate`` / ``expect_channels`` (None = accept any) reject chunks that differ from
    what the stream declared, instead of silently mixing rates in one window.
    """
    return decode_pcm(msg.data, msg.sample_format, msg.channels, msg.sample_rate,
                      expect_rate, expect_channels)


@dataclass(frozen=True)
class AudioInfo:
    """The stream description ros-drivers/audio_common publishes on ``audio_info`` (its
    AudioData messages carry bytes only)."""

    sample_rate: int
    channels: int
    sample_format: str  # GStreamer name, e.g. S16LE
    coding_format: str  # "wave" (raw PCM) or "mp3"


def read_audio_info(msg: Any) -> AudioInfo:
    """An ``audio_common_msgs/AudioInfo`` of ros-drivers/audio_common -> AudioInfo."""
    return AudioInfo(int(msg.sample_rate), int(msg.channels), str(msg.sample_format),
                     str(msg.coding_format))


def decode_audio_data(msg: Any, info: AudioInfo | None, expect_rate: int | None = None,
                      expect_channels: int | None = None) -> Sound:
    """ros-drivers/audio_common ``AudioData`` (``data``) or ``AudioDataStamped`` (``header``,
    ``audio.data``) -> Sound, read as the ``info`` received on the ``audio_info`` topic says.

    Only the "wave" coding (raw PCM from audio_capture's appsink) decodes; "mp3" (its
    default) is refused: a lossy stream of frames that do not align with messages.
    """
    data = msg.audio.data if hasattr(msg, "audio") else msg.data
    if info is None:
        raise DecodeError("audio_common AudioData carries no format: no AudioInfo received "
                          "on audio_info yet", MISSING_FIELD)
    coding = info.coding_format.strip().lower()
    if coding not in ("wave", "wav", "raw", "pcm"):
        raise DecodeError(f"audio_common coding_format {info.coding_format[:20]!r} is not "
                          "supported: set audio_capture's format:=wave (raw PCM)",
                          UNSUPPORTED_FORMAT)
    return decode_pcm(data, info.sample_format, info.channels, info.sample_rate,
                      expect_rate, expect_channels, "audio_common chunk")


# PortAudio sample formats (mgonzs13/audio_common's AudioInfo.format) -> the AudioData field
# that holds them, with zero offset and full scale. paInt24 (4) and paCustomFormat are not
# published by its capturer.
PA_FORMATS: dict[int, tuple[str, str, float, float]] = {
    0x01: ("paFloat32", "float32_data", 0.0, 1.0),
    0x02: ("paInt32", "int32_data", 0.0, 2147483648.0),
    0x08: ("paInt16", "int16_data", 0.0, 32768.0),
    0x10: ("paInt8", "int8_data", 0.0, 128.0),
    0x20: ("paUInt8", "uint8_data", 128.0, 128.0),
}
_PA_DTYPES = {"float32_data": np.float32, "int32_data": np.int32, "int16_data": np.int16,
              "int8_data": np.int8, "uint8_data": np.uint8}


def decode_audio_stamped(msg: Any, expect_rate: int | None = None,
                         expect_channels: int | None = None) -> Sound:
    """mgonzs13/audio_common ``AudioStamped`` (``header``, ``audio``) or ``Audio`` (``info``
    with a PortAudio ``format``, ``channels``, ``rate``, ``chunk``; ``audio_data`` with one
    typed array per format) -> Sound."""
    audio = msg.audio if hasattr(msg, "audio") else msg
    info, fields = audio.info, audio.audio_data
    fmt = int(info.format)
    if fmt not in PA_FORMATS:
        raise DecodeError(f"audio_common format {fmt} is not a supported PortAudio format "
                          f"({', '.join(f'{v[0]}={k}' for k, v in PA_FORMATS.items())}; "
                          "interleaved)", UNSUPPORTED_FORMAT)
    name, field, offset, scale = PA_FORMATS[fmt]
    rate, ch = int(info.rate), int(info.channels)
    _check_stream(rate, ch, expect_rate, expect_channels, "audio_common chunk")
    try:
        x = np.asarray(getattr(fields, field), dtype=_PA_DTYPES[field]).reshape(-1)
    except (TypeError, ValueError, OverflowError) as e:
        raise DecodeError(f"audio_common {field} is not an array of its type: {e}") from None
    if x.size == 0 or x.size % ch:
        others = [f for f in _PA_DTYPES if f != field and len(getattr(fields, f, ())) > 0]
        hint = f" (but {', '.join(others)} has data)" if others else ""
        raise DecodeError(f"audio_common chunk has {x.size} {field} samples for format "
                          f"{name}, not a positive multiple of {ch} channels{hint}")
    return Sound(_scaled(x, offset, scale, ch), rate)


# The audio message types ``decode_audio`` reads, by ROS type name (a node's
# ``audio.msg_type``, the bag dataset's audio topic); ros-drivers' AudioData and
# AudioDataStamped carry bytes only and are read as its AUDIO_INFO messages say.
AUDIO_CHUNK = "imagebind_ros/msg/AudioChunk"
AUDIO_INFO = "audio_common_msgs/msg/AudioInfo"
NEEDS_AUDIO_INFO = ("audio_common_msgs/msg/AudioDataStamped", "audio_common_msgs/msg/AudioData")
AUDIO_MSG_TYPES = (AUDIO_CHUNK, "audio_common_msgs/msg/AudioStamped",  # mgonzs13
                   *NEEDS_AUDIO_INFO)  # ros-drivers (AudioData: unstamped)


def decode_audio(msg: Any, info: AudioInfo | None = None, expect_rate: int | None = None,
                 expect_channels: int | None = None) -> Sound:
    """Any audio message we take, told apart by its fields: our ``AudioChunk``,
    mgonzs13's ``AudioStamped``/``Audio``, ros-drivers' ``AudioDataStamped``/``AudioData``
    (which need the stream's ``info``)."""
    audio = getattr(msg, "audio", None)
    if hasattr(msg, "sample_format"):
        return decode_audio_chunk(msg, expect_rate, expect_channels)
    if hasattr(msg, "audio_data") or (audio is not None and hasattr(audio, "audio_data")):
        return decode_audio_stamped(msg, expect_rate, expect_channels)
    if hasattr(msg, "data") or (audio is not None and hasattr(audio, "data")):
        return decode_audio_data(msg, info, expect_rate, expect_channels)
    raise DecodeError(f"{type(msg).__name__} is not an audio message we know",
                      UNSUPPORTED_FORMAT)


# --------------------------------------------------------------------------- IMU


@dataclass(frozen=True)
class ImuSample:
    """One ``sensor_msgs/Imu``: acceleration (m/s^2, with gravity) and angular velocity
    (rad/s) as float64 (3,), each None where the message marks it "not provided" (REP 145:
    covariance[0] == -1). Orientation is never used."""

    stamp_ns: int
    accel: np.ndarray | None
    gyro: np.ndarray | None


def _vector3(v: Any, name: str) -> np.ndarray:
    x = np.array([v.x, v.y, v.z], np.float64)
    if not np.isfinite(x).all():
        raise DecodeError(f"IMU {name} contains NaN or Inf: {x.tolist()}", NOT_FINITE)
    return x


def read_imu(msg: Any) -> ImuSample:
    """A ``sensor_msgs/Imu`` -> ImuSample, each field judged on its own covariance."""
    fields = []
    for name in ("linear_acceleration", "angular_velocity"):
        provided = float(getattr(msg, f"{name}_covariance")[0]) != -1.0
        fields.append(_vector3(getattr(msg, name), name) if provided else None)
    return ImuSample(stamp_to_ns(msg.header.stamp), fields[0], fields[1])


def imu_vector(sample: ImuSample) -> np.ndarray:
    """ImuSample -> float64 (6,) [ax, ay, az, gx, gy, gz] (the order ImageBind's IMU encoder
    takes); a missing field is an error, never zeros."""
    for value, name in ((sample.accel, "linear_acceleration"),
                        (sample.gyro, "angular_velocity")):
        if value is None:
            raise DecodeError(f"IMU message has no {name} (covariance[0] == -1, REP 145: "
                              "not provided); if the driver publishes gyro and accel on "
                              "separate topics, combine them (imagebind_ros.imu_combine)",
                              MISSING_FIELD)
    return np.concatenate([sample.accel, sample.gyro])  # type: ignore[list-item]


def decode_imu(msg: Any) -> tuple[np.ndarray, int]:
    """A ``sensor_msgs/Imu`` with both fields -> (float64 (6,) [ax, ay, az, gx, gy, gz],
    stamp ns). Units as REP 145: m/s^2 (with gravity) and rad/s."""
    sample = read_imu(msg)
    return imu_vector(sample), sample.stamp_ns


def check_imu_window(samples: np.ndarray) -> None:
    """Refuse a window (N, 6) whose acceleration or angular velocity is exactly zero in
    every sample: a field the driver does not fill (RealSense's separate ``gyro/sample`` and
    ``accel/sample`` topics leave the other one at 0 with a valid covariance), which no real
    sensor reads for a whole window."""
    x = np.asarray(samples)
    for cols, name, topic in ((slice(0, 3), "linear acceleration", "accel/sample"),
                              (slice(3, 6), "angular velocity", "gyro/sample")):
        if x.shape[0] > 1 and not np.any(x[:, cols]):
            raise DecodeError(f"IMU {name} is exactly 0 in all {x.shape[0]} samples of the "
                              "window: the topic does not carry it (RealSense publishes it "
                              f"on {topic} unless unite_imu_method is set; combine the two "
                              "topics)", MISSING_FIELD)
