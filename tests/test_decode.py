"""The one decoder against messages built as the drivers build them, and independent decodes.

Messages are plain objects with the fields of the ROS types (the decoder is duck-typed), and
for the core cases also real rclpy messages and rosbags-deserialised ones (the live and the
bag path). Pixels are packed with ``struct`` in the byte layout each encoding's definition
gives (row padding in ``step``, ``is_bigendian``); references are OpenCV/PIL decodes, BT.601
formulas, a mosaiced known image, and the per-pixel codecs of ``reference_codecs``.
"""

from __future__ import annotations

import io
import struct
from types import SimpleNamespace as NS

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

import reference_codecs as ref
from imagebind_ros import decode as dec
from imagebind_ros import rvl
from imagebind_ros.decode import DecodeError

RNG = np.random.default_rng(0)


def image(enc: str, h: int, w: int, data: bytes, step: int, big: bool = False) -> NS:
    return NS(header=NS(stamp=NS(sec=1, nanosec=2)), height=h, width=w, encoding=enc,
              is_bigendian=int(big), step=step, data=data)


def compressed(fmt: str, data: bytes) -> NS:
    return NS(header=NS(stamp=NS(sec=1, nanosec=2)), format=fmt, data=data)


def pack_rows(rows: np.ndarray, fmt: str, pad: int = 0) -> tuple[bytes, int]:
    """Rows of samples (H, N) -> struct-packed bytes with ``pad`` bytes after each row."""
    order, code = (fmt[0], fmt[1:]) if fmt[0] in "<>" else ("<", fmt)
    out = [struct.pack(order + code * rows.shape[1], *row) + b"\xab" * pad
           for row in rows.tolist()]
    return b"".join(out), len(out[0])


def check_kind(excinfo: pytest.ExceptionInfo, kind: str) -> None:
    assert excinfo.value.kind == kind, (excinfo.value.kind, str(excinfo.value))
    assert isinstance(excinfo.value, ValueError)


# --------------------------------------------------------------------------- Bayer


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits,big", [(8, False), (16, False), (16, True)])
def test_bayer_demosaics_a_mosaiced_image(pattern: str, bits: int, big: bool) -> None:
    """FLIR Spinnaker / Basler pylon: the sensor's mosaic as is, 16-bit ones in either
    byte order; the demosaiced frame must match the image the mosaic was sampled from."""
    dtype = np.uint8 if bits == 8 else np.uint16
    rgb = ref.smooth_rgb(32, 40, dtype)
    mos = ref.mosaic(rgb, pattern)
    fmt = "B" if bits == 8 else (">H" if big else "<H")
    data, step = pack_rows(mos, fmt, pad=6)
    pic = dec.decode_image(image(f"bayer_{pattern}{bits}", 32, 40, data, step, big))
    assert pic.encoding == ("rgb8" if bits == 8 else "rgb16") and pic.array.dtype == dtype
    inner = (slice(2, -2), slice(2, -2))
    err = np.abs(pic.array[inner].astype(float) - rgb[inner]) / (255 if bits == 8 else 65535)
    assert err.mean() < 0.01 and err.max() < 0.06, (err.mean(), err.max())
    # a mosaic read with the wrong pattern is far off: the codes are not interchangeable
    for other in {"rggb", "bggr", "gbrg", "grbg"} - {pattern}:
        wrong = dec.decode_image(image(f"bayer_{other}{bits}", 32, 40, data, step, big))
        wrong_err = np.abs(wrong.array[inner].astype(float) - rgb[inner]).mean()
        assert wrong_err / (255 if bits == 8 else 65535) > 0.05


# --------------------------------------------------------------------------- YUV


def _yuv_planes(h: int, w: int, sub_y: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random Y (h, w) and chroma subsampled 2x horizontally (and ``sub_y`` vertically)."""
    y = RNG.integers(16, 236, (h, w))
    u = RNG.integers(16, 241, (h // sub_y, w // 2))
    v = RNG.integers(16, 241, (h // sub_y, w // 2))
    return y, u, v


@pytest.mark.parametrize("enc,order", [("yuyv", "YUYV"), ("yuv422_yuy2", "YUYV"),
                                       ("uyvy", "UYVY"), ("yuv422", "UYVY")])
def test_yuv422_matches_bt601(enc: str, order: str) -> None:
    """usb_cam yuyv/uyvy, RealSense YUYV, depthai: packed 4:2:2, one chroma pair per two
    pixels; OpenCV's conversion is BT.601 limited range (within its fixed-point rounding)."""
    h, w = 6, 10
    y, u, v = _yuv_planes(h, w, 1)
    rows = []
    for r in range(h):
        row = []
        for k in range(w // 2):
            s = {"Y0": y[r, 2 * k], "Y1": y[r, 2 * k + 1], "U": u[r, k], "V": v[r, k]}
            names = ("Y0", "U", "Y1", "V") if order == "YUYV" else ("U", "Y0", "V", "Y1")
            row += [s[n] for n in names]
        rows.append(row)
    data, step = pack_rows(np.array(rows), "B", pad=4)
    pic = dec.decode_image(image(enc, h, w, data, step))
    want = ref.bt601_limited_to_rgb(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))
    assert pic.encoding == "rgb8" and pic.array.shape == (h, w, 3)
    assert np.abs(pic.array.astype(int) - want).max() <= 1


@pytest.mark.parametrize("enc", ["nv12", "nv21", "nv24"])
def test_semi_planar_yuv_matches_bt601(enc: str) -> None:
    """NV12/NV21 (4:2:0: Y plane, then rows of interleaved UV / VU pairs for 2x2 blocks) and
    NV24 (4:4:4: a UV pair per pixel), rows ``step`` bytes apart."""
    h, w, pad = 6, 8, 8
    full = enc == "nv24"
    y = RNG.integers(16, 236, (h, w))
    cu = RNG.integers(16, 241, (h, w) if full else (h // 2, w // 2))
    cv_ = RNG.integers(16, 241, cu.shape)
    step = w + pad
    y_rows = [bytes(r) + b"\x00" * pad for r in y.astype(np.uint8).tolist()]
    pairs = np.stack([cv_, cu] if enc == "nv21" else [cu, cv_], axis=2).reshape(cu.shape[0], -1)
    chroma_pad = 2 * step - pairs.shape[1] if full else step - pairs.shape[1]
    c_rows = [bytes(r) + b"\x00" * chroma_pad for r in pairs.astype(np.uint8).tolist()]
    data = b"".join(y_rows + c_rows)
    pic = dec.decode_image(image(enc, h, w, data, step))
    up = (lambda c: c) if full else (lambda c: np.repeat(np.repeat(c, 2, 0), 2, 1))
    want = ref.bt601_limited_to_rgb(y, up(cu), up(cv_))
    assert pic.encoding == "rgb8" and pic.array.shape == (h, w, 3)
    assert np.abs(pic.array.astype(int) - want).max() <= 1


def test_yuv_size_rules() -> None:
    with pytest.raises(DecodeError, match="even width") as e:
        dec.decode_image(image("yuyv", 2, 3, bytes(12), 6))
    check_kind(e, dec.MALFORMED)
    with pytest.raises(DecodeError, match="even width and height"):
        dec.decode_image(image("nv12", 3, 4, bytes(18), 4))
    with pytest.raises(DecodeError, match=r"1.5 \* step \* height"):
        dec.decode_image(image("nv21", 4, 4, bytes(16), 4))  # only the Y plane


# --------------------------------------------------------------------------- packed encodings


@pytest.mark.parametrize("enc,order,bits", [
    ("8UC3", (2, 1, 0), 8), ("8UC4", (2, 1, 0, None), 8), ("rgb16", (0, 1, 2), 16),
    ("bgr16", (2, 1, 0), 16), ("rgba16", (0, 1, 2, None), 16), ("bgra16", (2, 1, 0, None), 16),
    ("16UC3", (2, 1, 0), 16)])
@pytest.mark.parametrize("big", [False, True])
def test_packed_colour_is_rgb(enc: str, order: tuple, bits: int, big: bool) -> None:
    """cv_bridge passthrough of an OpenCV Mat (8UC3 = BGR, 8UC4 = BGRA) and 16-bit colour
    in either byte order come out RGB of their bit depth, alpha dropped."""
    dtype = np.uint8 if bits == 8 else np.uint16
    rgb = RNG.integers(0, 256 if bits == 8 else 65536, (3, 5, 3)).astype(dtype)
    rows = np.array([[7 if c is None else int(rgb[y, x, c]) for x in range(5) for c in order]
                     for y in range(3)])
    data, step = pack_rows(rows, "B" if bits == 8 else (">H" if big else "<H"), pad=2)
    pic = dec.decode_image(image(enc, 3, 5, data, step, big))
    assert pic.encoding == ("rgb8" if bits == 8 else "rgb16") and pic.array.dtype == dtype
    np.testing.assert_array_equal(pic.array, rgb)


def test_8uc1_is_mono_and_16bit_views() -> None:
    """8UC1 (Orbbec IR, RealSense RAW8) is mono8; a camera takes 16-bit colour and mono16
    scaled as cv_bridge does (round(x * 255 / 65535)), mono repeated to RGB."""
    g = RNG.integers(0, 256, (2, 3)).astype(np.uint8)
    pic = dec.decode_image(image("8UC1", 2, 3, g.tobytes(), 3))
    assert pic.encoding == "mono8" and pic.kind == "intensity"
    np.testing.assert_array_equal(dec.as_rgb8(pic), np.stack([g] * 3, axis=2))
    x = np.array([[0, 128, 129, 385, 65535, 32767]], np.uint16)
    want = (x.astype(np.int64) * 255 + 32767) // 65535  # integer round(x * 255 / 65535)
    m16 = dec.decode_image(image("mono16", 1, 6, struct.pack(">6H", *x[0]), 12, big=True))
    np.testing.assert_array_equal(dec.as_rgb8(m16)[:, :, 1], want)
    c16 = dec.Picture(np.stack([x, x, x], axis=2), "rgb16", "rgb16")
    np.testing.assert_array_equal(dec.as_rgb8(c16)[:, :, 0], want)
    assert c16.bit_depth == 16 and c16.kind == "color"


@pytest.mark.parametrize("enc,fmt", [("mono8", "B"), ("mono16", "H"), ("16UC1", "H"),
                                     ("32FC1", "f")])
@pytest.mark.parametrize("big", [False, True])
def test_single_channel_kept_with_meaning(enc: str, fmt: str, big: bool) -> None:
    vals = (np.arange(12).reshape(3, 4) * 37).astype({"B": np.uint8, "H": np.uint16,
                                                      "f": np.float32}[fmt])
    data, step = pack_rows(vals, ("B" if fmt == "B" else (">" if big else "<") + fmt), pad=4)
    pic = dec.decode_image(image(enc, 3, 4, data, step, big))
    assert pic.encoding == enc and pic.array.dtype == vals.dtype
    np.testing.assert_array_equal(pic.array, vals)
    assert pic.kind == ("intensity" if enc.startswith("mono") else "measurement")
    assert pic.invalid == {"mono8": None, "32FC1": "NaN, Inf, <= 0"}.get(enc, "0")


@pytest.mark.parametrize("enc,why", [
    ("64FC1", "REP 118 depth is 32FC1"), ("8SC1", "signed"), ("16SC1", "signed"),
    ("32SC1", "signed"), ("8UC2", "channel order"), ("32FC3", "channel order"),
    ("bgrx8", "supported: rgb8"), ("jpeg", "supported: rgb8")])
def test_unsupported_encodings_say_why(enc: str, why: str) -> None:
    with pytest.raises(DecodeError, match=why) as e:
        dec.decode_image(image(enc, 2, 2, bytes(64), 32))
    check_kind(e, dec.UNSUPPORTED_ENCODING)
    assert enc in str(e.value)


def test_measurements_are_not_camera_frames() -> None:
    for enc in ("16UC1", "32FC1"):
        pic = dec.Picture(np.zeros((2, 2), np.float32), enc, enc)
        with pytest.raises(DecodeError, match="cannot be a camera image") as e:
            dec.as_rgb8(pic)
        check_kind(e, dec.WRONG_ROLE)


def test_limits_are_checked_before_reading() -> None:
    # a small Bayer mosaic whose RGB output would exceed the limit: judged on decoded size
    with pytest.raises(DecodeError, match="exceeds") as e:
        dec.check_image(image("bayer_rggb8", 1000, 1000, bytes(10 ** 6), 1000), 2 * 10 ** 6)
    check_kind(e, dec.TOO_LARGE)
    # the declared size alone is enough (data short)
    with pytest.raises(DecodeError, match="exceeds"):
        dec.decode_image(image("rgb8", 5000, 5000, b"x", 15000))
    with pytest.raises(DecodeError, match="zero size"):
        dec.decode_image(image("mono8", 0, 5, b"", 5))


def test_arrays_never_alias_the_message() -> None:
    data = bytearray(RNG.integers(0, 256, 12, dtype=np.uint8).tobytes())
    for enc, step in (("mono8", 4), ("rgb8", 12), ("16UC1", 8)):
        h = 3 if enc == "mono8" else 1 if enc == "rgb8" else 1
        msg = image(enc, h, 4, data[: h * step], step)
        pic = dec.decode_image(msg)
        before = bytes(msg.data)
        pic.array.flat[0] ^= 1 if pic.array.dtype != np.float32 else 0
        assert bytes(msg.data) == before


# --------------------------------------------------------------------------- the bag path


def test_rclpy_and_rosbags_messages_decode_the_same() -> None:
    """The same Image as an rclpy message (array.array data) and deserialised by rosbags
    from a CDR blob (numpy data) decodes to the same Picture as the plain object."""
    pytest.importorskip("rosbags")
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    rgb = ref.smooth_rgb(6, 8)
    mos = ref.mosaic(rgb, "grbg")
    data, step = pack_rows(mos, "B", pad=4)
    T = ts.types
    bag_msg = T["sensor_msgs/msg/Image"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=3,
                                                                                 nanosec=4),
                                        frame_id="cam"),
        height=6, width=8, encoding="bayer_grbg8", is_bigendian=0, step=step,
        data=np.frombuffer(data, np.uint8))
    blob = ts.serialize_cdr(bag_msg, "sensor_msgs/msg/Image")
    from_bag = ts.deserialize_cdr(blob, "sensor_msgs/msg/Image")
    assert isinstance(from_bag.data, np.ndarray)
    want = dec.decode_image(image("bayer_grbg8", 6, 8, data, step)).array
    np.testing.assert_array_equal(dec.decode_image(from_bag).array, want)
    assert dec.header_stamp_ns(from_bag) == 3_000_000_004
    try:
        from sensor_msgs.msg import Image
    except ImportError:
        return
    live = Image(height=6, width=8, encoding="bayer_grbg8", is_bigendian=0, step=step,
                 data=data)
    np.testing.assert_array_equal(dec.decode_image(live).array, want)


# --------------------------------------------------------------------------- compressed


def _bgr_file(rgb: np.ndarray, ext: str) -> bytes:
    """What compressed_image_transport does: cv_bridge to bgr8/bgr16, cv::imencode."""
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def _pil(data: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as im:
        return np.array(im.convert("RGB"))


@pytest.mark.parametrize("fmt", ["rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8",
                                 "yuv422; jpeg compressed bgr8", "jpeg"])
def test_colour_jpeg_is_rgb(fmt: str) -> None:
    rgb = ref.smooth_rgb(24, 32)
    data = _bgr_file(rgb, ".jpg")
    pic = dec.decode_compressed(compressed(fmt, data))
    assert pic.encoding == "rgb8" and pic.lossy
    assert np.abs(pic.array.astype(int) - _pil(data)).max() <= 2  # PIL: another libjpeg use


@pytest.mark.parametrize("fmt", ["rgb8; png compressed bgr8", "bgra8; png compressed bgr8",
                                 "8UC3; png compressed ", "png"])
def test_colour_png_is_rgb_exactly(fmt: str) -> None:
    rgb = RNG.integers(0, 256, (9, 11, 3)).astype(np.uint8)
    data = _bgr_file(rgb, ".png")
    pic = dec.decode_compressed(compressed(fmt, data))
    np.testing.assert_array_equal(pic.array, rgb)
    np.testing.assert_array_equal(pic.array, _pil(data))
    assert pic.encoding == "rgb8" and not pic.lossy


def test_compressed_rgb8_means_stored_swapped() -> None:
    """"compressed rgb8" (as compressed_image_transport's subscriber reads it): the file's
    channels are R, G, B in OpenCV's B, G, R places, i.e. a true-colour viewer shows them
    swapped; decoding gives the RGB that was encoded."""
    rgb = RNG.integers(0, 256, (5, 6, 3)).astype(np.uint8)
    ok, buf = cv2.imencode(".png", rgb)  # an RGB array handed to OpenCV as if BGR
    pic = dec.decode_compressed(compressed("rgb8; png compressed rgb8", buf.tobytes()))
    np.testing.assert_array_equal(pic.array, rgb)


def test_16bit_colour_png_is_rgb16_and_scales_for_the_camera() -> None:
    """"rgb16; png compressed bgr16": 16-bit BGR in the file, correct 16-bit RGB out."""
    rgb = RNG.integers(0, 65536, (4, 7, 3)).astype(np.uint16)
    data = _bgr_file(rgb, ".png")
    pic = dec.decode_compressed(compressed("rgb16; png compressed bgr16", data))
    assert pic.encoding == "rgb16" and pic.array.dtype == np.uint16
    np.testing.assert_array_equal(pic.array, rgb)
    np.testing.assert_array_equal(dec.as_rgb8(pic),
                                  (rgb.astype(np.int64) * 255 + 32767) // 65535)


@pytest.mark.parametrize("fmt,want", [("mono8; jpeg compressed mono8", "mono8"),
                                      ("mono16; png compressed ", "mono16"),
                                      ("16UC1; png compressed ", "16UC1"),
                                      ("8UC1; png compressed ", "mono8"),
                                      ("png", "mono16")])
def test_grey_files_keep_the_raw_meaning(fmt: str, want: str) -> None:
    wide = want != "mono8"
    g = RNG.integers(0, 65536 if wide else 256, (6, 5)).astype(np.uint16 if wide else np.uint8)
    ok, buf = cv2.imencode(".jpg" if "jpeg" in fmt else ".png", g)
    pic = dec.decode_compressed(compressed(fmt, buf.tobytes()))
    assert pic.encoding == want
    if "png" in fmt:
        np.testing.assert_array_equal(pic.array, g)


def test_png_of_a_bayer_mosaic_is_demosaiced() -> None:
    """compressed_image_transport keeps a Bayer image as is in PNG ("bayer_rggb8; png
    compressed "): the decoder demosaics it like the raw Image."""
    rgb = ref.smooth_rgb(16, 20)
    mos = ref.mosaic(rgb, "rggb")
    ok, buf = cv2.imencode(".png", mos)
    pic = dec.decode_compressed(compressed("bayer_rggb8; png compressed ", buf.tobytes()))
    raw = dec.decode_image(image("bayer_rggb8", 16, 20, mos.tobytes(), 20))
    np.testing.assert_array_equal(pic.array, raw.array)


def _payloads() -> dict[str, bytes]:
    out = {}
    for name, fmt in (("tiff", "TIFF"), ("gif", "GIF"), ("bmp", "BMP"), ("webp", "WEBP"),
                      ("pdf", "PDF")):
        buf = io.BytesIO()
        try:
            PILImage.new("RGB", (4, 4)).save(buf, fmt)
        except (KeyError, OSError):
            continue
        out[name] = buf.getvalue()
    out["eps"] = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\nshowpage\n"
    out["eps-binary"] = b"\xc5\xd0\xd3\xc6" + bytes(40)
    out["jpeg2000"] = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(40)
    out["text"] = b"hello, not an image at all"
    return out


@pytest.mark.parametrize("name", sorted(_payloads()))
def test_other_formats_are_refused_before_any_decoder(name: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("a decoder ran on a non-whitelisted payload")

    monkeypatch.setattr(cv2, "imdecode", boom)
    monkeypatch.setattr(PILImage, "open", boom)
    data = _payloads()[name]
    for fmt in ("rgb8; jpeg compressed bgr8", "png", "16UC1; compressedDepth png"):
        payload = data if "Depth" not in fmt else struct.pack("<iff", 0, 0, 0) + data
        for call in (dec.decode_compressed, dec.check_compressed, dec.decode_picture):
            with pytest.raises(DecodeError, match="only JPEG and PNG") as e:
                call(compressed(fmt, payload))
            check_kind(e, dec.UNSUPPORTED_FORMAT)


def _patch_sof(jpeg: bytes, h: int, w: int, precision: int = 8, comps: int | None = None
               ) -> bytes:
    i = jpeg.index(b"\xff\xc0")
    head = bytearray(jpeg)
    struct.pack_into(">BHH", head, i + 4, precision, h, w)
    if comps is not None:
        head[i + 9] = comps
    return bytes(head)


def test_decoded_size_is_judged_from_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("decoded an over-limit image")

    ok, png = cv2.imencode(".png", np.zeros((3000, 3000, 3), np.uint8))
    ok, jpg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    big_jpeg = _patch_sof(jpg.tobytes(), 30000, 30000)  # 2.7 GB if decoded
    monkeypatch.setattr(cv2, "imdecode", boom)
    for data in (png.tobytes(), big_jpeg):
        with pytest.raises(DecodeError, match="limit") as e:
            dec.decode_compressed(compressed("rgb8; jpeg compressed bgr8", data), 2 ** 24)
        check_kind(e, dec.TOO_LARGE)


def test_bad_jpeg_headers_and_corrupt_data() -> None:
    ok, jpg = cv2.imencode(".jpg", ref.smooth_rgb(16, 16))
    j = jpg.tobytes()
    with pytest.raises(DecodeError, match="12-bit JPEG") as e:
        dec.decode_compressed(compressed("jpeg", _patch_sof(j, 16, 16, precision=12)))
    check_kind(e, dec.UNSUPPORTED_FORMAT)
    with pytest.raises(DecodeError, match="4 components"):
        dec.decode_compressed(compressed("jpeg", _patch_sof(j, 16, 16, comps=4)))
    with pytest.raises(DecodeError, match="no frame header"):
        dec.decode_compressed(compressed("jpeg", b"\xff\xd8\xff\xd9"))
    cut = j[: len(j) // 3] + bytes(64)  # valid header, then garbage
    try:
        pic = dec.decode_compressed(compressed("jpeg", cut))  # libjpeg may pad a cut scan
        assert pic.array.shape == (16, 16, 3)
    except DecodeError as e:
        assert e.kind == dec.MALFORMED
    with pytest.raises(DecodeError, match="no data") as e:
        dec.decode_compressed(compressed("jpeg", b""))
    check_kind(e, dec.MALFORMED)


def test_depth_from_jpeg_is_refused_thermal_from_16bit_jpeg_too() -> None:
    ok, jpg = cv2.imencode(".jpg", RNG.integers(0, 256, (8, 8)).astype(np.uint8))
    pic = dec.decode_compressed(compressed("16UC1; jpeg compressed mono8", jpg.tobytes()))
    assert pic.lossy and pic.encoding == "mono8"
    with pytest.raises(DecodeError, match="compressedDepth") as e:
        dec.as_depth(pic)
    check_kind(e, dec.WRONG_ROLE)
    pic = dec.decode_compressed(compressed("mono16; jpeg compressed mono8", jpg.tobytes()))
    with pytest.raises(DecodeError, match="png"):
        dec.as_thermal(pic)
    pic = dec.decode_compressed(compressed("mono8; jpeg compressed mono8", jpg.tobytes()))
    np.testing.assert_array_equal(dec.as_thermal(pic), pic.array)


def test_thermal_colour_becomes_luminance_like_thermal_files() -> None:
    rgb = RNG.integers(0, 256, (5, 6, 3)).astype(np.uint8)
    got = dec.as_thermal(dec.Picture(rgb, "rgb8", "rgb8"))
    want = np.array(PILImage.fromarray(rgb).convert("L"))  # preprocess.load_thermal's way
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- compressedDepth


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_compressed_depth_16uc1_is_exact_millimetres(codec: str) -> None:
    depth = RNG.integers(0, 9000, (12, 17)).astype(np.uint16)
    depth[2:5, 3:9] = 0
    msg = compressed(f"16UC1; compressedDepth {codec}", ref.compressed_depth_data(depth, codec))
    got = dec.as_depth(dec.decode_compressed(msg))
    assert got.units == "mm" and got.array.dtype == np.uint16
    np.testing.assert_array_equal(got.array, depth)


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_compressed_depth_32fc1_is_metres_not_millimetres(codec: str) -> None:
    """The issue's silent wrong value: "32FC1; compressedDepth png" holding 4.61 m came out
    as uint16 labelled millimetres. It is the plugin's inverse-depth code: z = A / (q - B)."""
    z = np.full((4, 5), 4.61, np.float32)
    z[0, :] = [0.5, 1.0, 2.5, 7.0, 9.99]
    z[1, 1] = np.nan  # no measurement -> q = 0
    z[1, 2] = 12.0  # beyond depth_max (10 m) -> q = 0
    q, a, b = ref.plugin_quantize(z)
    msg = compressed(f"32FC1; compressedDepth {codec}", ref.compressed_depth_data(q, codec, a, b))
    got = dec.as_depth(dec.decode_compressed(msg))
    assert got.units == "m" and got.array.dtype == np.float32
    valid = q > 0
    assert not valid[1, 1] and not valid[1, 2]
    assert np.isnan(got.array[~valid]).all()
    # truncating q loses at most one step: dz = z^2 / A
    err = np.abs(got.array[valid] - z[valid])
    assert (err <= z[valid] ** 2 / a * 1.01 + 1e-6).all(), err.max()
    assert abs(float(got.array[3, 0]) - 4.61) < 0.003  # 4.61 m, not 1184 "mm"
    assert dec.finite_fraction(got.array) == pytest.approx(18 / 20)


def test_compressed_depth_plain_format_is_png() -> None:
    depth = RNG.integers(1, 5000, (3, 4)).astype(np.uint16)
    data = ref.compressed_depth_data(depth, "png")
    for fmt in ("16UC1; compressedDepth", "compressedDepth"):
        if fmt == "compressedDepth":
            with pytest.raises(DecodeError, match="16UC1 or 32FC1") as e:
                dec.decode_compressed(compressed(fmt, data))
            check_kind(e, dec.UNSUPPORTED_ENCODING)
            continue
        np.testing.assert_array_equal(dec.decode_compressed(compressed(fmt, data)).array, depth)


@pytest.mark.parametrize("fmt,data,match,kind", [
    ("16UC1; compressedDepth zstd", bytes(40), "png or rvl", dec.UNSUPPORTED_FORMAT),
    ("8UC1; compressedDepth png", bytes(40), "16UC1 or 32FC1", dec.UNSUPPORTED_ENCODING),
    ("16UC1; compressedDepth png", bytes(10), "header", dec.MALFORMED),
    ("16UC1; compressedDepth rvl", struct.pack("<iffII", 0, 0, 0, 100000, 100000) + bytes(8),
     "limit", dec.TOO_LARGE),
    ("16UC1; compressedDepth rvl", struct.pack("<iffII", 0, 0, 0, 0, 5) + bytes(8),
     "zero size", dec.MALFORMED),
    ("16UC1; compressedDepth rvl", struct.pack("<iffII", 0, 0, 0, 4, 4) + bytes(4),
     "cover", dec.MALFORMED),
    ("32FC1; compressedDepth rvl", struct.pack("<iffII", 0, 0, float("nan"), 2, 2) + bytes(8),
     "quantisation", dec.MALFORMED),
])
def test_bad_compressed_depth(fmt: str, data: bytes, match: str, kind: str) -> None:
    with pytest.raises(DecodeError, match=match) as e:
        dec.decode_compressed(compressed(fmt, data))
    check_kind(e, kind)


def test_compressed_depth_png_must_be_16bit_grey() -> None:
    ok, png8 = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    data = struct.pack("<iff", 0, 0, 0) + png8.tobytes()
    with pytest.raises(DecodeError, match="16-bit grey") as e:
        dec.decode_compressed(compressed("16UC1; compressedDepth png", data))
    check_kind(e, dec.UNSUPPORTED_FORMAT)


# --------------------------------------------------------------------------- RVL


@pytest.mark.parametrize("seed", range(6))
def test_rvl_codec_matches_the_per_pixel_reference(seed: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 24, 2)
    img = rng.integers(0, 65536, (h, w)).astype(np.uint16)
    img[rng.random((h, w)) < rng.uniform(0, 1)] = 0
    if seed == 0:
        img[:] = 0
    if seed == 1:
        img[:, :] = 1 + np.arange(img.size).reshape(h, w) % 3  # no zeros
    code = ref.rvl_encode([int(v) for v in img.reshape(-1)])
    assert rvl.encode(img) == code
    np.testing.assert_array_equal(rvl.decode(code, img.size), img.reshape(-1))
    assert ref.rvl_decode(rvl.encode(img), img.size) == img.reshape(-1).tolist()
    monkeypatch.setattr(rvl, "_LOOP_RUNS", 2)  # the pointer-doubling path on the same data
    np.testing.assert_array_equal(rvl.decode(code, img.size), img.reshape(-1))


def test_rvl_refuses_malformed_codes() -> None:
    img = np.array([0, 0, 5, 6, 0, 7], np.uint16)
    code = ref.rvl_encode(img.tolist())
    with pytest.raises(rvl.RvlError, match="cover"):
        rvl.decode(code, 5)  # the code holds more pixels
    with pytest.raises(rvl.RvlError, match="cover"):
        rvl.decode(code, 9)  # and fewer
    with pytest.raises(rvl.RvlError, match="nibbles"):
        rvl.decode(b"\xff\xff\xff\xff" * 2 + b"\x00" * 4, 6)  # a never-ending value
    with pytest.raises(rvl.RvlError, match="more than"):
        rvl.decode(bytes(100), 6)


# --------------------------------------------------------------------------- audio


def test_pcm_formats_scale_like_soundfile() -> None:
    cases = {"S16LE": (struct.pack("<3h", -32768, 0, 16384), [-1.0, 0.0, 0.5]),
             "S16BE": (struct.pack(">3h", -32768, 0, 16384), [-1.0, 0.0, 0.5]),
             "S32LE": (struct.pack("<2i", -2 ** 31, 2 ** 30), [-1.0, 0.5]),
             "S24LE": (b"\x00\x00\x80" + b"\x00\x00\x40" + b"\xff\xff\xff",
                       [-1.0, 0.5, -1 / 2 ** 23]),
             "S24BE": (b"\x80\x00\x00" + b"\x40\x00\x00", [-1.0, 0.5]),
             "U8": (bytes([0, 128, 192]), [-1.0, 0.0, 0.5]),
             "S8": (struct.pack("3b", -128, 0, 64), [-1.0, 0.0, 0.5]),
             "F32BE": (struct.pack(">2f", 0.25, -0.75), [0.25, -0.75]),
             "F64LE": (struct.pack("<2d", 0.25, -0.75), [0.25, -0.75])}
    for fmt, (data, want) in cases.items():
        s = dec.decode_pcm(data, fmt, 1, 8000)
        assert s.samples.dtype == np.float32 and s.samples.shape == (len(want), 1), fmt
        np.testing.assert_allclose(s.samples[:, 0], want, rtol=0, atol=1e-9, err_msg=fmt)


def _info(**kw: object) -> dec.AudioInfo:
    base = dict(sample_rate=16000, channels=2, sample_format="S16LE", coding_format="wave")
    return dec.AudioInfo(**{**base, **kw})  # type: ignore[arg-type]


def test_ros_drivers_audio_data_with_its_info() -> None:
    """ros-drivers/audio_common (ROS 2): AudioData(uint8[] data) on ``audio`` and
    AudioDataStamped(header, audio) on ``audio_stamped``; format from ``audio_info``."""
    frames = [(1000, -1000), (32767, -32768)]
    data = b"".join(struct.pack("<2h", *f) for f in frames)
    want = np.array(frames, np.float64) / 32768
    info = dec.read_audio_info(NS(channels=2, sample_rate=16000, sample_format="S16LE",
                                  bitrate=192, coding_format="wave"))
    for msg in (NS(data=data), NS(header=NS(stamp=NS(sec=5, nanosec=0)), audio=NS(data=data))):
        s = dec.decode_audio(msg, info)
        assert s.sample_rate == 16000
        np.testing.assert_array_equal(s.samples, want)
    assert dec.header_stamp_ns(NS(data=data)) is None
    with pytest.raises(DecodeError, match="format:=wave") as e:
        dec.decode_audio(NS(data=data), _info(coding_format="mp3"))
    check_kind(e, dec.UNSUPPORTED_FORMAT)
    with pytest.raises(DecodeError, match="no AudioInfo") as e:
        dec.decode_audio(NS(data=data), None)
    check_kind(e, dec.MISSING_FIELD)
    with pytest.raises(DecodeError, match="44100 Hz") as e:
        dec.decode_audio(NS(data=data), _info(sample_rate=44100), expect_rate=16000)
    check_kind(e, dec.STREAM_MISMATCH)


@pytest.mark.parametrize("pa,field,values,want", [
    (0x01, "float32_data", [0.5, -0.25], [0.5, -0.25]),
    (0x02, "int32_data", [2 ** 30, -2 ** 31], [0.5, -1.0]),
    (0x08, "int16_data", [16384, -32768], [0.5, -1.0]),
    (0x10, "int8_data", [64, -128], [0.5, -1.0]),
    (0x20, "uint8_data", [192, 0], [0.5, -1.0])])
def test_mgonzs13_audio_stamped(pa: int, field: str, values: list, want: list) -> None:
    """mgonzs13/audio_common: AudioStamped(header, Audio(AudioData typed arrays, AudioInfo
    with a PortAudio format, channels, rate, chunk)) on ``audio``."""
    arrays = {f: [] for f in ("float32_data", "int32_data", "int16_data", "int8_data",
                              "uint8_data")}
    arrays[field] = values
    msg = NS(header=NS(stamp=NS(sec=1, nanosec=0)),
             audio=NS(audio_data=NS(**arrays), info=NS(format=pa, channels=1, rate=16000,
                                                       chunk=len(values))))
    s = dec.decode_audio(msg)
    assert s.sample_rate == 16000
    np.testing.assert_allclose(s.samples[:, 0], want, atol=1e-9)


def test_mgonzs13_audio_errors() -> None:
    arrays = dict(float32_data=[0.1, 0.2], int32_data=[], int16_data=[], int8_data=[],
                  uint8_data=[])
    audio = NS(audio_data=NS(**arrays), info=NS(format=0x08, channels=1, rate=16000, chunk=2))
    with pytest.raises(DecodeError, match="float32_data has data"):
        dec.decode_audio_stamped(audio)  # format says int16, the data is float
    audio.info.format = 0x04
    with pytest.raises(DecodeError, match="paInt16=8") as e:
        dec.decode_audio_stamped(audio)
    check_kind(e, dec.UNSUPPORTED_FORMAT)
    audio.info.format, arrays["float32_data"] = 0x01, [0.1, float("inf")]
    audio.audio_data = NS(**arrays)
    with pytest.raises(DecodeError, match="NaN or Inf") as e:
        dec.decode_audio_stamped(audio)
    check_kind(e, dec.NOT_FINITE)


def test_audio_chunk_and_unknown_messages() -> None:
    s = dec.decode_audio(NS(sample_rate=8000, channels=1, sample_format="S16LE",
                            data=struct.pack("<2h", 16384, -16384)))
    np.testing.assert_array_equal(s.samples[:, 0], [0.5, -0.5])
    with pytest.raises(DecodeError, match="not an audio message") as e:
        dec.decode_audio(NS(foo=1))
    check_kind(e, dec.UNSUPPORTED_FORMAT)


# --------------------------------------------------------------------------- IMU


def imu_msg(acc: tuple, gyro: tuple, acc_cov: float = 0.01, gyro_cov: float = 0.01) -> NS:
    return NS(header=NS(stamp=NS(sec=2, nanosec=5)),
              linear_acceleration=NS(x=acc[0], y=acc[1], z=acc[2]),
              angular_velocity=NS(x=gyro[0], y=gyro[1], z=gyro[2]),
              linear_acceleration_covariance=[acc_cov] + [0.0] * 8,
              angular_velocity_covariance=[gyro_cov] + [0.0] * 8,
              orientation_covariance=[-1.0] + [0.0] * 8)


def test_imu_fields_follow_rep145_per_field() -> None:
    s = dec.read_imu(imu_msg((1, 2, 9.8), (0.1, 0.2, 0.3), gyro_cov=-1.0))
    assert s.stamp_ns == 2_000_000_005 and s.gyro is None
    np.testing.assert_array_equal(s.accel, [1, 2, 9.8])
    with pytest.raises(DecodeError, match="no angular_velocity") as e:
        dec.decode_imu(imu_msg((1, 2, 9.8), (0.1, 0.2, 0.3), gyro_cov=-1.0))
    check_kind(e, dec.MISSING_FIELD)
    with pytest.raises(DecodeError, match="no linear_acceleration"):
        dec.imu_vector(dec.read_imu(imu_msg((0, 0, 0), (1, 2, 3), acc_cov=-1.0)))
    v, t = dec.decode_imu(imu_msg((1, 2, 9.8), (0.1, 0.2, 0.3)))
    np.testing.assert_array_equal(v, [1, 2, 9.8, 0.1, 0.2, 0.3])
    with pytest.raises(DecodeError, match="NaN") as e:
        dec.read_imu(imu_msg((1, float("nan"), 9.8), (0, 0, 0)))
    check_kind(e, dec.NOT_FINITE)


def test_imu_window_with_a_silent_field_is_refused() -> None:
    """RealSense's gyro/sample topic: angular velocity filled, acceleration 0 with a valid
    covariance in every message."""
    gyro_only = np.zeros((50, 6))
    gyro_only[:, 3:] = RNG.normal(0, 0.01, (50, 3))
    with pytest.raises(DecodeError, match="accel/sample") as e:
        dec.check_imu_window(gyro_only)
    check_kind(e, dec.MISSING_FIELD)
    accel_only = np.zeros((50, 6))
    accel_only[:, :3] = [0.1, -9.8, 0.2]
    with pytest.raises(DecodeError, match="gyro/sample"):
        dec.check_imu_window(accel_only)
    both = np.concatenate([accel_only[:, :3], gyro_only[:, 3:]], axis=1)
    dec.check_imu_window(both)  # a real window: no error
    dec.check_imu_window(both[:1] * 0)  # a single sample proves nothing


# --------------------------------------------------------------------------- errors


def test_every_error_kind_is_stable_and_a_value_error() -> None:
    assert len(set(dec.ERROR_KINDS)) == len(dec.ERROR_KINDS)
    e = DecodeError("x")
    assert isinstance(e, ValueError) and e.kind == dec.MALFORMED
    # same kind whatever the text (a random encoding string, numbers)
    kinds = set()
    for junk in ("abc", "x" * 300, "\u00e9\u00e8", "yuv9000"):
        with pytest.raises(DecodeError) as ei:
            dec.decode_image(image(junk, 2, 2, bytes(8), 4))
        kinds.add(ei.value.kind)
        assert len(str(ei.value)) < 700
    assert kinds == {dec.UNSUPPORTED_ENCODING}
