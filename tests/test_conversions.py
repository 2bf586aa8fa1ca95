"""Message <-> numpy conversions, checked against hand-packed bytes (no running node).

References are built independently of the code under test: pixels packed with ``struct`` in
the wire layout the encoding names, OpenCV's decoders for compressed images, and analytic
values for audio scaling and IMU fields.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from ros_required import require_ros

require_ros()
from sensor_msgs.msg import CompressedImage, Image, Imu  # noqa: E402

from imagebind_ros import decode as dec  # noqa: E402
from imagebind_ros.decode import DecodeError  # noqa: E402
from imagebind_ros.msg import AudioChunk  # noqa: E402
from imagebind_ros.ros import conversions as cv  # noqa: E402

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)


def image_to_numpy(msg: Image, max_bytes: int = dec.MAX_IMAGE_BYTES) -> tuple:
    p = dec.decode_image(msg, max_bytes)
    return p.array, p.source


def compressed_to_numpy(msg: CompressedImage, max_bytes: int = dec.MAX_IMAGE_BYTES) -> tuple:
    p = dec.decode_compressed(msg, max_bytes)
    return p.array, p.encoding


def audio_chunk_to_numpy(msg: AudioChunk, **expect: int) -> tuple:
    s = dec.decode_audio_chunk(msg, **expect)
    return s.samples, s.sample_rate


def packed(rows: list[list[tuple]], fmt: str, pad: int = 0) -> tuple[bytes, int]:
    """Pack pixel tuples row by row with struct (``fmt`` per sample) plus ``pad`` bytes."""
    out, step = b"", 0
    for row in rows:
        r = b"".join(struct.pack(fmt * len(px), *px) for px in row) + b"\xee" * pad
        step = len(r)
        out += r
    return out, step


def image(enc: str, h: int, w: int, data: bytes, step: int, big: bool = False) -> Image:
    return Image(height=h, width=w, encoding=enc, step=step, data=data, is_bigendian=int(big))


@pytest.mark.parametrize("enc,order", [("rgb8", (0, 1, 2)), ("bgr8", (2, 1, 0)),
                                       ("rgba8", (0, 1, 2, None)), ("bgra8", (2, 1, 0, None))])
def test_colour_encodings_decode_to_rgb(enc: str, order: tuple) -> None:
    rows = [[tuple(77 if c is None else int(RGB[y, x, c]) for c in order) for x in range(5)]
            for y in range(4)]
    data, step = packed(rows, "B", pad=3)  # padded rows: step > width * channels
    arr, got_enc = image_to_numpy(image(enc, 4, 5, data, step))
    assert got_enc == enc and arr.dtype == np.uint8 and arr.shape == (4, 5, 3)
    np.testing.assert_array_equal(arr, RGB)
    arr[0, 0, 0] ^= 1  # returned arrays never alias the message buffer
    assert image_to_numpy(image(enc, 4, 5, data, step))[0][0, 0, 0] == RGB[0, 0, 0]


@pytest.mark.parametrize("enc,fmt,dtype", [("mono8", "B", np.uint8), ("mono16", "H", np.uint16),
                                           ("16UC1", "H", np.uint16),
                                           ("32FC1", "f", np.float32)])
@pytest.mark.parametrize("big", [False, True])
def test_single_channel_encodings(enc: str, fmt: str, dtype: type, big: bool) -> None:
    vals = (np.arange(12).reshape(3, 4) * (0.5 if dtype is np.float32 else 21)).astype(dtype)
    vals[1, 1] = np.nan if dtype is np.float32 else vals[1, 1]  # NaN = no depth (REP 118)
    rows = [[(v,) for v in row] for row in vals.tolist()]
    data, step = packed(rows, (">" if big else "<") + fmt) if fmt != "B" else packed(rows, "B")
    arr, _ = image_to_numpy(image(enc, 3, 4, data, step, big))
    assert arr.dtype == dtype and arr.shape == (3, 4)
    np.testing.assert_array_equal(arr, vals)


@pytest.mark.parametrize("enc", list(dec.ENCODINGS))
def test_numpy_to_image_round_trip(enc: str) -> None:
    dtype, ch = dec.ENCODINGS[enc]
    if ch > 1:
        x = RGB
    else:
        x = (RNG.standard_normal((6, 9)) * 100).astype(dtype)
    msg = cv.numpy_to_image(x, enc, cv.make_header(1_500_000_123, "cam"))
    assert msg.step * msg.height == len(msg.data) and msg.header.stamp.sec == 1
    assert msg.header.stamp.nanosec == 500_000_123 and msg.header.frame_id == "cam"
    arr, got = image_to_numpy(msg)
    assert got == enc
    np.testing.assert_array_equal(arr, x)


def test_bgr_wire_bytes_are_blue_first() -> None:
    msg = cv.numpy_to_image(np.array([[[10, 20, 30]]], np.uint8), "bgra8")
    assert bytes(msg.data) == bytes([30, 20, 10, 255])


def test_mono8_to_rgb8_repeats_the_channel() -> None:
    g = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(dec.as_rgb8(dec.Picture(g, "mono8", "mono8")),
                                  np.stack([g, g, g], axis=2))
    with pytest.raises(DecodeError, match="cannot be a camera image"):
        dec.as_rgb8(dec.Picture(np.zeros((2, 2), np.uint16), "16UC1", "16UC1"))


@pytest.mark.parametrize("msg,match", [
    (Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8)), "unsupported"),
    (Image(height=0, width=5, encoding="rgb8", step=15, data=b""), "zero size"),
    (Image(height=2, width=0, encoding="mono8", step=0, data=b""), "zero size"),
    (Image(height=2, width=4, encoding="rgb8", step=10, data=bytes(20)), "shorter than"),
    (Image(height=2, width=4, encoding="rgb8", step=12, data=bytes(23)), "24"),
    (Image(height=2, width=4, encoding="rgb8", step=12, data=bytes(25)), "24"),
    (Image(height=2, width=3, encoding="16UC1", step=7, data=bytes(14)), "multiple"),
])
def test_bad_images_raise_clear_errors(msg: Image, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        image_to_numpy(msg)


def test_oversized_image_is_refused_before_reading() -> None:
    h, w = 4000, 4400  # 52.8 MB of rgb8
    msg = Image(height=h, width=w, encoding="rgb8", step=3 * w, data=bytes(3 * w * h))
    with pytest.raises(DecodeError, match="exceeds"):
        image_to_numpy(msg)
    # the declared size alone is enough to refuse (the data might be short)
    with pytest.raises(DecodeError, match="exceeds"):
        image_to_numpy(Image(height=h, width=w, encoding="rgb8", step=3 * w, data=b"x"))


def test_compressed_jpeg_and_png_match_opencv() -> None:
    img = cv2.GaussianBlur(RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 2)
    ok, jpg = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    arr, enc = compressed_to_numpy(CompressedImage(format="jpeg", data=jpg.tobytes()))
    ref = cv2.imdecode(jpg, cv2.IMREAD_COLOR)[:, :, ::-1]
    assert enc == "rgb8" and arr.shape == ref.shape
    assert np.abs(arr.astype(int) - ref).max() <= 2  # libjpeg builds may differ by rounding
    ok, png = cv2.imencode(".png", img[:, :, ::-1])
    arr, enc = compressed_to_numpy(CompressedImage(format="png", data=png.tobytes()))
    np.testing.assert_array_equal(arr, img)
    depth = RNG.integers(0, 9000, (10, 12)).astype(np.uint16)
    ok, png16 = cv2.imencode(".png", depth)
    arr, enc = compressed_to_numpy(
        CompressedImage(format="16UC1; png compressed 16UC1", data=png16.tobytes()))
    assert enc == "16UC1" and arr.dtype == np.uint16
    np.testing.assert_array_equal(arr, depth)


def test_compressed_depth_formats() -> None:
    depth = RNG.integers(1, 9000, (6, 7)).astype(np.uint16)
    ok, png16 = cv2.imencode(".png", depth)
    hdr = struct.pack("<iff", 0, 0.0, 0.0)
    arr, enc = compressed_to_numpy(CompressedImage(
        format="16UC1; compressedDepth png", data=hdr + png16.tobytes()))
    assert enc == "16UC1"
    np.testing.assert_array_equal(arr, depth)
    # 32FC1: image_transport stores q = quant_a / z + quant_b as uint16, 0 = invalid
    quant_a, quant_b = 100.0, 10.0
    z = np.array([[0.5, 1.0, 2.0], [4.0, np.nan, 5.0]], np.float32)  # q integral
    q = np.where(np.isfinite(z), quant_a / np.nan_to_num(z, nan=1.0) + quant_b, 0)
    ok, qpng = cv2.imencode(".png", q.astype(np.uint16))
    arr, enc = compressed_to_numpy(CompressedImage(
        format="32FC1; compressedDepth png",
        data=struct.pack("<iff", 0, quant_a, quant_b) + qpng.tobytes()))
    assert enc == "32FC1" and np.isnan(arr[1, 1])
    np.testing.assert_allclose(arr[np.isfinite(z)], z[np.isfinite(z)], rtol=1e-6)


def test_bad_compressed_images() -> None:
    with pytest.raises(DecodeError, match="no data"):
        compressed_to_numpy(CompressedImage(format="jpeg", data=b""))
    with pytest.raises(DecodeError, match="cannot decode"):
        compressed_to_numpy(CompressedImage(format="jpeg", data=b"not a jpeg at all"))
    # a tiny PNG that would decode to 8000x8000 RGB (192 MB): refused from its header
    ok, png = cv2.imencode(".png", np.zeros((8000, 8000, 3), np.uint8))
    assert len(png) < 2 ** 20
    with pytest.raises(DecodeError, match="limit"):
        compressed_to_numpy(CompressedImage(format="png", data=png.tobytes()))


def test_audio_s16_and_f32() -> None:
    frames = [(-32768, 32767), (0, 1), (16384, -16384)]
    data = b"".join(struct.pack("<hh", *f) for f in frames)
    msg = AudioChunk(sample_rate=16000, channels=2, sample_format="S16LE", data=data)
    x, sr = audio_chunk_to_numpy(msg)
    assert sr == 16000 and x.dtype == np.float32 and x.shape == (3, 2)
    np.testing.assert_array_equal(x, np.array(frames, np.float64) / 32768.0)
    vals = [0.25, -1.0, 0.5]
    msg = AudioChunk(sample_rate=8000, channels=1, sample_format="F32LE",
                     data=struct.pack("<3f", *vals))
    x, sr = audio_chunk_to_numpy(msg, expect_rate=8000, expect_channels=1)
    np.testing.assert_array_equal(x[:, 0], vals)


def test_audio_round_trip_within_half_a_step() -> None:
    x = RNG.uniform(-1, 1, (321, 1)).astype(np.float32)
    msg = cv.numpy_to_audio_chunk(x, 16000, cv.make_header(5, "mic"))
    assert msg.channels == 1 and len(msg.data) == 2 * 321
    y, _ = audio_chunk_to_numpy(msg)
    assert np.abs(y - x).max() <= 0.5 / 32768 + 1e-7
    y, _ = audio_chunk_to_numpy(cv.numpy_to_audio_chunk(x, 16000, sample_format="F32LE"))
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("kw,expect,match", [
    (dict(sample_format="U8"), {}, "unsupported"),
    (dict(sample_rate=0), {}, "positive"),
    (dict(channels=0), {}, "positive"),
    (dict(data=bytes(3)), {}, "multiple"),
    (dict(channels=2, data=bytes(6)), {}, "multiple"),
    (dict(data=b""), {}, "multiple"),
    (dict(sample_rate=44100), dict(expect_rate=16000), "44100 Hz"),
    (dict(channels=2), dict(expect_channels=1), "2 channels"),
    (dict(sample_format="F32LE", data=struct.pack("<2f", 0.1, float("nan"))), {}, "NaN"),
])
def test_bad_audio_chunks(kw: dict, expect: dict, match: str) -> None:
    base = dict(sample_rate=16000, channels=1, sample_format="S16LE", data=bytes(8))
    with pytest.raises(DecodeError, match=match):
        audio_chunk_to_numpy(AudioChunk(**{**base, **kw}), **expect)


def test_imu_fields_and_stamp() -> None:
    msg = Imu()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
    msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = 1, 2, 9.8
    msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = -0.1, 0.2, 0.3
    v, t = dec.decode_imu(msg)
    np.testing.assert_array_equal(v, [1, 2, 9.8, -0.1, 0.2, 0.3])
    assert t == 12_000_000_345
    back = cv.numpy_to_imu(v, msg.header)
    assert dec.decode_imu(back)[0].tolist() == v.tolist()
    assert back.orientation_covariance[0] == -1.0


@pytest.mark.parametrize("field,value,match", [
    ("linear_acceleration", float("nan"), "NaN"), ("angular_velocity", float("inf"), "NaN"),
    ("linear_acceleration_covariance", -1.0, "no linear_acceleration"),
    ("angular_velocity_covariance", -1.0, "no angular_velocity")])
def test_bad_imu(field: str, value: float, match: str) -> None:
    msg = Imu()
    if field.endswith("covariance"):
        getattr(msg, field)[0] = value
    else:
        getattr(msg, field).y = value
    with pytest.raises(DecodeError, match=match):
        dec.decode_imu(msg)


def test_finite_fraction_follows_rep118() -> None:
    assert dec.finite_fraction(np.array([[0, 5], [7, 0]], np.uint16)) == 0.5
    z = np.array([np.nan, np.inf, -1.0, 2.0], np.float32)
    assert dec.finite_fraction(z) == 0.25
    assert dec.finite_fraction(np.full((3, 3), np.nan, np.float32)) == 0.0
