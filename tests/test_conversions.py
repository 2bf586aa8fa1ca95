"""Message <-> numpy on real rclpy messages: the builders of ``ros.conversions`` and the
decoder on rclpy's types (no running node).

References are built independently of the code under test: pixels packed with ``struct`` in
the wire layout the encoding names, PIL and OpenCV decodes of compressed files, the formats
of compressed_image_transport / compressed_depth_image_transport as their sources define
them (``reference_codecs``), and analytic values for audio scaling and IMU fields.
"""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

import reference_codecs as ref
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


LOSSLESS = [e for e, lay in dec.ENCODINGS.items() if lay.convert in ("none", "bgr", "rgba",
                                                                     "bgra")]


@pytest.mark.parametrize("enc", LOSSLESS)
@pytest.mark.parametrize("pad,big", [(0, False), (8, False), (4, True)])
def test_numpy_to_image_round_trip(enc: str, pad: int, big: bool) -> None:
    lay = dec.ENCODINGS[enc]
    if lay.out == "rgb8":
        x = RGB
    elif lay.out == "rgb16":
        x = RGB.astype(np.uint16) * 257 + 3
    else:
        x = (RNG.standard_normal((6, 9)) * 100).astype(lay.dtype)
    step = x.shape[1] * lay.row_bytes + pad
    msg = cv.numpy_to_image(x, enc, cv.make_header(1_500_000_123, "cam"), step=step,
                            big_endian=big)
    assert msg.step == step and msg.step * msg.height == len(msg.data)
    assert msg.header.stamp.sec == 1 and msg.is_bigendian == int(big)
    assert msg.header.stamp.nanosec == 500_000_123 and msg.header.frame_id == "cam"
    arr, got = image_to_numpy(msg)
    assert got == enc
    np.testing.assert_array_equal(arr, x)


def test_built_16bit_samples_have_the_declared_byte_order() -> None:
    x = np.array([[0x0102, 0xA0B0]], np.uint16)
    assert bytes(cv.numpy_to_image(x, "16UC1").data) == struct.pack("<2H", *x[0])
    assert bytes(cv.numpy_to_image(x, "mono16", big_endian=True).data) == struct.pack(
        ">2H", *x[0])


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_builder_writes_the_mosaic(pattern: str) -> None:
    rgb = ref.smooth_rgb(6, 8)
    msg = cv.numpy_to_image(rgb, f"bayer_{pattern}8", step=10)
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(6, 10)[:, :8]
    np.testing.assert_array_equal(rows, ref.mosaic(rgb, pattern))
    wide = cv.numpy_to_image(rgb.astype(np.uint16) * 257, f"bayer_{pattern}16",
                             big_endian=True)
    vals = np.array(struct.unpack(">48H", bytes(wide.data))).reshape(6, 8)
    np.testing.assert_array_equal(vals, ref.mosaic(rgb.astype(np.uint16) * 257, pattern))


@pytest.mark.parametrize("enc", ["yuyv", "uyvy", "nv12", "nv21", "nv24"])
def test_yuv_builders_read_back_with_bt601(enc: str) -> None:
    """The YUV the builder writes, read with the BT.601 formulas by the layout's definition,
    is the image (within chroma subsampling and rounding on a smooth image)."""
    h, w = 8, 10
    rgb = ref.smooth_rgb(h, w, scale=3)
    msg = cv.numpy_to_image(rgb, enc, step=w * (2 if enc in ("yuyv", "uyvy") else 1) + 2)
    raw = np.frombuffer(bytes(msg.data), np.uint8)
    if enc in ("yuyv", "uyvy"):
        px = raw.reshape(h, msg.step)[:, : 2 * w].reshape(h, w // 2, 4).astype(int)
        y0, u, y1, v = (px[..., i] for i in ((0, 1, 2, 3) if enc == "yuyv" else (1, 0, 3, 2)))
        y = np.stack([y0, y1], axis=2).reshape(h, w)
        u, v = np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1)
    else:
        rows = raw.reshape(-1, msg.step)
        y = rows[:h, :w]
        if enc == "nv24":
            uv = rows[h:].reshape(h, 2 * msg.step)[:, : 2 * w].reshape(h, w, 2)
        else:
            uv = rows[h:, :w].reshape(h // 2, w // 2, 2)
            uv = np.repeat(np.repeat(uv, 2, axis=0), 2, axis=1)
        u, v = (uv[..., 1], uv[..., 0]) if enc == "nv21" else (uv[..., 0], uv[..., 1])
    back = ref.bt601_limited_to_rgb(y, u, v)
    assert np.abs(back.astype(int) - rgb).mean() < 4  # swapped U/V would be off by tens
    assert np.abs(dec.decode_image(msg).array.astype(int) - rgb).mean() < 4


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
    (Image(height=2, width=2, encoding="yuv411", step=4, data=bytes(8)), "unsupported"),
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


def _transport_subscriber(msg: CompressedImage) -> np.ndarray:
    """compressed_image_transport's CompressedSubscriber, as its source reads: imdecode
    (unchanged), then BGR -> RGB for an rgb* encoding when the format says "compressed
    bgr"; the result in the raw encoding's channel order."""
    img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
    enc, rest = msg.format.split(";", 1)
    if img.ndim == 3 and enc.startswith("rgb") and "compressed bgr" in rest:
        img = img[:, :, ::-1]
    return img


@pytest.mark.parametrize("enc,fmt,want_format", [
    ("rgb8", "jpeg", "rgb8; jpeg compressed bgr8"),
    ("rgb8", "png", "rgb8; png compressed bgr8"),
    ("bgr8", "jpeg", "bgr8; jpeg compressed bgr8"),
    ("rgb16", "png", "rgb16; png compressed bgr16"),
    ("rgb16", "jpeg", "rgb16; jpeg compressed bgr8"),
    ("mono8", "jpeg", "mono8; jpeg compressed mono8"),
    ("mono8", "png", "mono8; png compressed "),
    ("mono16", "png", "mono16; png compressed "),
    ("16UC1", "png", "16UC1; png compressed ")])
def test_compressed_output_is_what_the_plugin_writes(enc: str, fmt: str,
                                                     want_format: str) -> None:
    """The fixed mislabelling: the file holds true colours in OpenCV's order and the label
    says so, so PIL (a true-colour viewer) and compressed_image_transport's subscriber
    (rqt, rviz, republish) both get the image back."""
    img = ref.smooth_rgb(24, 32, scale=3)
    x = {"rgb8": img, "bgr8": img, "rgb16": img.astype(np.uint16) * 257 + 5,
         "mono8": img[:, :, 1], "mono16": img[:, :, 1].astype(np.uint16) * 250,
         "16UC1": img[:, :, 1].astype(np.uint16) * 30}[enc]
    msg = cv.numpy_to_compressed(x, enc, fmt, cv.make_header(3, "cam"))
    assert msg.format == want_format and msg.header.frame_id == "cam"
    lossy = fmt == "jpeg"
    eight = np.rint(x / 257).astype(int) if x.dtype == np.uint16 and lossy else x.astype(int)

    def close(got: np.ndarray, want: np.ndarray) -> bool:
        d = np.abs(got.astype(int) - want)
        return bool(d.max() == 0) if not lossy else bool(d.mean() < 2 and d.max() < 16)

    with PILImage.open(io.BytesIO(bytes(msg.data))) as im:  # a true-colour reader
        assert im.format == fmt.upper()
        if x.ndim == 3 and x.dtype == np.uint8:
            seen = np.array(im.convert("RGB"))
            assert close(seen, eight) and not close(seen[:, :, ::-1], eight)
    sub = _transport_subscriber(msg)
    assert close(sub, eight if enc != "bgr8" else eight[:, :, ::-1])  # bgr8 stays BGR there
    assert close(dec.decode_compressed(msg).array, eight)  # and ours: RGB in every case


def test_compressed_builder_refuses_what_the_plugin_cannot() -> None:
    with pytest.raises(cv.ConversionError, match="png"):
        cv.numpy_to_compressed(np.zeros((4, 4), np.uint16), "16UC1", "jpeg")
    with pytest.raises(cv.ConversionError, match="cannot compress"):
        cv.numpy_to_compressed(np.zeros((4, 4), np.float32), "32FC1", "png")
    with pytest.raises(cv.ConversionError, match="format"):
        cv.numpy_to_compressed(RGB, "rgb8", "tiff")


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_compressed_depth_builder(codec: str) -> None:
    """compressedDepth as the plugin writes it, read back by hand: the 12-byte ConfigHeader,
    then OpenCV's PNG decode or the reference RVL decoder; 32FC1 quantised as the plugin's
    source does (reference_codecs.plugin_quantize)."""
    z = RNG.uniform(0.3, 12.0, (10, 13)).astype(np.float32)
    z[2, 3:7] = np.nan
    msg = cv.numpy_to_compressed_depth(z, "32FC1", codec, cv.make_header(9, "d"))
    assert msg.format == f"32FC1; compressedDepth {codec}"
    fmt_id, a, b = struct.unpack_from("<iff", bytes(msg.data))
    want_q, want_a, want_b = ref.plugin_quantize(z)
    assert fmt_id == 0 and (a, b) == pytest.approx((want_a, want_b))
    body = bytes(msg.data)[12:]
    if codec == "png":
        q = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    else:
        cols, rows = struct.unpack_from("<II", body)
        assert (cols, rows) == (13, 10)
        q = np.array(ref.rvl_decode(body[8:], rows * cols), np.uint16).reshape(rows, cols)
    np.testing.assert_array_equal(q, want_q)
    depth = dec.as_depth(dec.decode_compressed(msg))
    ok = want_q > 0
    assert depth.units == "m" and np.isnan(depth.array[~ok]).all()
    assert (np.abs(depth.array[ok] - z[ok]) <= z[ok] ** 2 / want_a * 1.01 + 1e-6).all()

    mm = RNG.integers(0, 12000, (10, 13)).astype(np.uint16)
    msg = cv.numpy_to_compressed_depth(mm, "16UC1", codec)
    body = bytes(msg.data)[12:]
    if codec == "png":
        q = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    else:
        q = np.array(ref.rvl_decode(body[8:], mm.size), np.uint16).reshape(mm.shape)
    np.testing.assert_array_equal(q, np.where(mm > 10000, 0, mm))  # the plugin's depth_max
    np.testing.assert_array_equal(dec.decode_compressed(msg).array, q)


def test_too_close_depth_is_no_measurement_not_garbage() -> None:
    q, a, b = cv.quantize_inverse_depth(np.array([0.1, 0.2, 0.0, -1.0, np.inf], np.float32))
    assert q.tolist()[0] == 0 and q[1] == int(np.float32(a) / np.float32(0.2) + np.float32(b))
    assert q.tolist()[2:] == [0, 0, 0]


def test_bad_compressed_images() -> None:
    with pytest.raises(DecodeError, match="no data"):
        compressed_to_numpy(CompressedImage(format="jpeg", data=b""))
    with pytest.raises(DecodeError, match="only JPEG and PNG"):
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
    (dict(sample_format="MP3"), {}, "unsupported"),
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
