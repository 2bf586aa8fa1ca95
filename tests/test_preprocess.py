"""Unit tests of imagebind_ros.preprocess against analytic signals and hand-derived values.

Reference parity on the golden files lives in test_golden_preprocess.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from imagebind_ros import preprocess as P
from imagebind_ros.model.config import (AudioConfig, DepthConfig, ImuConfig, TextConfig,
                                        ThermalConfig, VisionConfig)

VISION, TEXT, AUDIO = VisionConfig(), TextConfig(), AudioConfig()
DEPTH, THERMAL, IMU = DepthConfig(), ThermalConfig(), ImuConfig()
RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- vision


def test_image_shape_dtype_and_batch() -> None:
    img = RNG.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    x = P.image_to_tensor(img, VISION)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert P.images_to_tensor([img, img[:100]], VISION).shape == (2, 3, 224, 224)


def test_constant_image_is_normalised_colour() -> None:
    img = np.empty((97, 301, 3), np.uint8)
    img[:] = (10, 128, 250)
    x = P.image_to_tensor(img, VISION)
    for c, v in enumerate((10, 128, 250)):
        expected = (v / 255 - VISION.mean[c]) / VISION.std[c]
        assert torch.allclose(x[c], torch.full((224, 224), expected), atol=1e-5)


def test_image_centre_crop_without_resize() -> None:
    # Short side already 224: no resampling, the crop is columns 112..335 exactly.
    cols = (np.arange(448) % 256).astype(np.uint8)
    img = np.repeat(np.repeat(cols[None, :, None], 224, axis=0), 3, axis=2)
    x = P.image_to_tensor(img, VISION)
    pixels = torch.round((x[0] * VISION.std[0] + VISION.mean[0]) * 255)
    assert torch.equal(pixels[0], torch.tensor(cols[112:336], dtype=torch.float32))


@pytest.mark.parametrize(("img", "match"), [
    (np.zeros((8, 8, 3), np.float32), "uint8"),
    (np.zeros((8, 8), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((8, 8, 4), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((0, 8, 3), np.uint8), "empty"),
])
def test_image_validation(img: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        P.image_to_tensor(img, VISION)


def test_images_to_tensor_rejects_empty_list() -> None:
    with pytest.raises(ValueError, match="at least one"):
        P.images_to_tensor([], VISION)


def test_load_image_converts_to_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.full((5, 7), 77, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.full((5, 7, 4), 9, np.uint8), "RGBA").save(tmp_path / "a.png")
    g, a = P.load_image(tmp_path / "g.png"), P.load_image(tmp_path / "a.png")
    assert g.shape == a.shape == (5, 7, 3) and g.dtype == np.uint8
    assert (g == 77).all() and (a == 9).all()


def test_image_loaders_never_reach_ghostscript(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An EPS (or PDF) file named by a query is refused before any interpreter runs; the
    raster formats still load."""
    from PIL import EpsImagePlugin

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("Ghostscript ran")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", boom)
    eps = tmp_path / "x.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\nshowpage\n")
    for load in (P.load_image, P.load_depth, P.load_thermal):
        with pytest.raises(OSError):
            load(eps)
    Image.fromarray(np.full((4, 6), 5, np.uint8)).save(tmp_path / "t.tif")
    assert (P.load_image(tmp_path / "t.tif") == 5).all()


# --------------------------------------------------------------------------- text

# Produced by running the reference ImageBind SimpleTokenizer (imagebind/bpe vocabulary,
# context 77) on these strings; the first has 82 BPE tokens, so it is truncated to 75 + eot.
LONG_TEXT = ("The quick brown fox jumps over the lazy dog while a TurtleBot4 robot, running ROS 2 "
             "Jazzy, maps the kitchen at 0.25 m/s; its depth camera reports 1,234 mm &amp; the "
             "microphone hears a café's espresso machine hiss. Then it drives back to the dock, "
             "plugs in, and reports: \"battery 97%, all systems nominal\" (ok).")
LONG_IDS = [
    49406, 518, 3712, 2866, 3240, 18911, 962, 518, 10753, 1929, 1519, 320, 35943, 6947, 275,
    8797, 267, 2761, 6930, 273, 28191, 267, 8765, 518, 4485, 536, 271, 269, 273, 276, 332,
    270, 338, 282, 902, 10350, 3934, 4908, 272, 267, 273, 274, 275, 2848, 261, 518, 24643,
    25395, 320, 15304, 568, 17098, 4169, 71, 4950, 269, 1594, 585, 11441, 893, 531, 518, 8997,
    267, 28083, 530, 267, 537, 4908, 281, 257, 7870, 280, 278, 14505, 615, 49407]
# The reference treats a literal <|endoftext|> in the text as the special token.
SPECIAL_TEXT = "a photo of <|endoftext|> a dog"
SPECIAL_IDS = [49406, 320, 1125, 539, 49407, 320, 1929, 49407]


def test_tokenize_matches_reference_ids() -> None:
    tokens = P.tokenize([LONG_TEXT, SPECIAL_TEXT, ""], TEXT)
    assert tokens.shape == (3, 77) and tokens.dtype == torch.int64
    for row, ids in zip(tokens, (LONG_IDS, SPECIAL_IDS, [49406, 49407])):
        assert row.tolist() == ids + [0] * (77 - len(ids))


def test_tokenize_single_string_and_errors() -> None:
    assert P.tokenize("a dog", TEXT).shape == (1, 77)
    with pytest.raises(ValueError, match="at least one"):
        P.tokenize([], TEXT)
    with pytest.raises(TypeError, match="strings"):
        P.tokenize([b"bytes"], TEXT)  # type: ignore[list-item]


# --------------------------------------------------------------------------- audio

SR = AUDIO.sample_rate
PAD_VALUE = (0.0 - AUDIO.mean) / AUDIO.std  # a padded (all-zero) fbank frame, normalised


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(
        np.float32)


def mel_bin_centre_hz(i: int, num_bins: int = 128, low: float = 20.0,
                      high: float = 8000.0) -> float:
    """Centre of Kaldi's HTK mel bin i: bins are equally spaced in mel = 1127 ln(1 + f/700)."""
    mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)  # noqa: E731
    centre = mel(low) + (i + 1) * (mel(high) - mel(low)) / (num_bins + 1)
    return 700.0 * (math.exp(centre / 1127.0) - 1.0)


@pytest.mark.parametrize("seconds", [0.3, 1.3, 2.0, 5.0, 9.0])
def test_audio_shape_for_short_and_long_audio(seconds: float) -> None:
    x = P.audio_to_tensor(RNG.normal(0, 0.1, int(seconds * SR)).astype(np.float32), SR, AUDIO)
    assert x.shape == (3, 1, 128, 204) and x.dtype == torch.float32
    assert torch.isfinite(x).all()


def test_short_audio_is_zero_padded_after_its_frames() -> None:
    # 0.3 s = 4800 samples -> 1 + (4800 - 400) // 160 = 28 Kaldi frames, then padding.
    x = P.audio_to_tensor(tone(440, 0.3, SR), SR, AUDIO)
    assert torch.allclose(x[..., 28:], torch.full_like(x[..., 28:], PAD_VALUE))
    assert (x[..., 27] - PAD_VALUE).abs().min() > 1e-3


def test_clip_bounds_match_pytorchvideo() -> None:
    # Produced with pytorchvideo 0.1.5 ConstantClipsPerVideoSampler(2, 3) at 16 kHz; the
    # 32015/32099-sample cases differ from naive float arithmetic.
    expected = {
        20800: [(0, 32000), (0, 32000), (0, 32000)],
        80000: [(0, 32000), (16000, 48000), (32000, 64000)],
        144000: [(0, 32000), (37333, 69333), (74666, 106666)],
        32015: [(0, 32000), (5, 32005), (10, 32010)],
        32099: [(0, 32000), (32, 32032), (65, 32065)],
    }
    for n, bounds in expected.items():
        assert P.clip_bounds(n, AUDIO) == bounds


def test_tone_peak_survives_resampling() -> None:
    # A tone at the centre of mel bin 40 peaks in bin 40 at 16 kHz and after resampling
    # from 44.1 kHz; both spectrograms agree in the steady-state frames.
    f = mel_bin_centre_hz(40)
    native = P.audio_to_tensor(tone(f, 2.0, SR), SR, AUDIO)[0, 0]
    resampled = P.audio_to_tensor(tone(f, 2.0, 44100), 44100, AUDIO)[0, 0]
    for spec in (native, resampled):
        assert int(spec[:, 10:190].mean(dim=1).argmax()) == 40
    assert (native[:, 10:190] - resampled[:, 10:190]).abs().max() < 0.05


def test_resampling_removes_tones_above_new_nyquist() -> None:
    # 12 kHz at 44.1 kHz would alias to 4 kHz without the low-pass; it must sit >= 40 dB
    # (ln(1e4) in log power) below an in-band tone of the same amplitude.
    in_band = P.audio_to_tensor(tone(4000, 2.0, 44100), 44100, AUDIO)[0, 0, :, 10:190]
    above = P.audio_to_tensor(tone(12000, 2.0, 44100), 44100, AUDIO)[0, 0, :, 10:190]
    log_power = lambda x: x * AUDIO.std + AUDIO.mean  # noqa: E731
    assert log_power(in_band).max() - log_power(above).max() > math.log(1e4)


def test_fbank_uses_channel_zero() -> None:
    # Only channel 0 is analysed. The other channels still enter the subtracted mean, but a
    # constant shift per clip is removed again by Kaldi's per-frame DC removal (8 s: clips
    # do not overlap, so the shift is constant within each clip).
    n = 8 * SR
    a = tone(300, 8.0, SR) + RNG.normal(0, 0.01, n).astype(np.float32)
    b = (RNG.normal(0, 0.3, n) + 0.2).astype(np.float32)
    mono = P.audio_to_tensor(a, SR, AUDIO)
    stereo = P.audio_to_tensor(np.stack([a, b], axis=1), SR, AUDIO)
    swapped = P.audio_to_tensor(np.stack([b, a], axis=1), SR, AUDIO)
    assert (mono - stereo).abs().max() < 1e-3
    assert (mono - swapped).abs().max() > 1.0


def test_int16_pcm_equals_float_samples() -> None:
    pcm = (tone(500, 3.0, SR) * 32767).astype(np.int16)
    as_int = P.audio_to_tensor(pcm, SR, AUDIO)
    as_float = P.audio_to_tensor(pcm.astype(np.float32) / 32768, SR, AUDIO)
    assert torch.equal(as_int, as_float)


def test_input_array_is_not_modified() -> None:
    wav = tone(500, 3.0, SR) + np.float32(0.1)
    before = wav.copy()
    P.audio_to_tensor(wav, SR, AUDIO)
    P.audio_window_to_tensor(wav, SR, AUDIO)
    assert np.array_equal(wav, before)


def test_audio_window_is_one_clip_of_the_last_seconds() -> None:
    wav = RNG.normal(0, 0.2, 5 * SR).astype(np.float32)
    window = P.audio_window_to_tensor(wav, SR, AUDIO)
    assert window.shape == (1, 1, 128, 204)
    last_two = P.audio_to_tensor(wav[-2 * SR:], SR, AUDIO)
    for clip in last_two:  # a 2-s recording gives three copies of the same clip
        assert (window[0] - clip).abs().max() < 1e-4


@pytest.mark.parametrize(("wav", "sr", "match"), [
    (np.zeros(0, np.float32), SR, "empty"),
    (np.array([0.0, np.nan] * 400, np.float32), SR, "NaN"),
    (np.array([0.0, np.inf] * 400, np.float32), SR, "NaN or Inf"),
    (np.zeros(16000, np.float32), 0, "positive"),
    (np.zeros(16000, np.float32), -8000, "positive"),
    (np.zeros(16000, np.float32), 16000.0, "int"),
    (np.zeros((2, 16000), np.float32), SR, "more channels than samples"),
    (np.zeros((10, 2, 2), np.float32), SR, "shape"),
    (np.zeros(100, np.float32), SR, "too short"),
    (np.zeros(16000, np.uint8), SR, "dtype"),
])
def test_audio_validation(wav: np.ndarray, sr: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        P.audio_to_tensor(wav, sr, AUDIO)


def test_load_audio_float_samples_by_channels(tmp_path: Path) -> None:
    pcm = (np.stack([tone(100, 0.5, 8000), -tone(100, 0.5, 8000)], 1) * 32767).astype(np.int16)
    soundfile.write(tmp_path / "a.wav", pcm, 8000, subtype="PCM_16")
    wav, sr = P.load_audio(tmp_path / "a.wav")
    assert sr == 8000 and wav.dtype == np.float32 and wav.shape == (4000, 2)
    assert np.array_equal(wav, pcm / np.float32(32768))


# --------------------------------------------------------------------------- depth

# Hand-derived from the documented recipe: focal * baseline = 518.857901 * 0.075
# = 38.9143 px m; a 2 m surface -> 38.9143 / (8 * 2) / 75 = 0.0324286, normalised
# (0.0324286 - 0.0418) / 0.0295 = -0.31767.
DEPTH_2M = -0.31767
# Beyond 50 / 8 = 6.25 m the depth is clamped: 38.9143 / 50 / 75 = 0.0103771 -> -1.06518.
DEPTH_FAR = -1.06518
NO_DISPARITY = (0.0 - DEPTH.mean) / DEPTH.std  # invalid pixels: disparity 0
MAX_DISPARITY = (1.0 - DEPTH.mean) / DEPTH.std  # closer than 38.9143 / 8 / 75 = 6.5 cm


def test_depth_constant_scene_hand_values() -> None:
    for z, expected in ((2.0, DEPTH_2M), (20.0, DEPTH_FAR), (100.0, DEPTH_FAR),
                        (0.03, MAX_DISPARITY)):
        x = P.depth_to_tensor(np.full((48, 64), z, np.float32), DEPTH)
        assert x.shape == (1, 224, 224) and x.dtype == torch.float32
        assert torch.allclose(x, torch.full_like(x, expected), atol=1e-4), z


def test_depth_mm_and_metres_give_the_same_tensor() -> None:
    yy, xx = np.mgrid[0:120, 0:160]
    mm = (800 + 20 * xx + 10 * yy + RNG.integers(0, 50, (120, 160))).astype(np.uint16)
    mm[10:30, 40:90] = 0  # a hole
    metres = mm.astype(np.float32) / 1000
    metres[mm == 0] = np.nan  # the same hole as 32FC1 marks it
    from_mm = P.depth_to_tensor(mm, DEPTH)
    assert torch.allclose(from_mm, P.depth_to_tensor(metres, DEPTH), atol=1e-5)
    assert torch.allclose(from_mm, P.depth_to_tensor(mm.astype(np.float64), DEPTH, units="mm"),
                          atol=1e-5)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf, -np.inf])
def test_depth_invalid_pixels_have_zero_disparity(bad: float) -> None:
    depth = np.full((100, 100), 2.0, np.float32)
    depth[:, :50] = bad
    x = P.depth_to_tensor(depth, DEPTH)[0]
    # Left ~half is invalid, right half is the 2 m surface (columns away from the seam).
    assert torch.allclose(x[:, :100], torch.full((224, 100), NO_DISPARITY), atol=1e-4)
    assert torch.allclose(x[:, 124:], torch.full((224, 100), DEPTH_2M), atol=1e-4)


def test_depth_all_invalid_uint16() -> None:
    x = P.depth_to_tensor(np.zeros((30, 40), np.uint16), DEPTH)
    assert torch.allclose(x, torch.full_like(x, NO_DISPARITY))


@pytest.mark.parametrize(("depth", "kw", "match"), [
    (np.zeros((4, 4, 1), np.float32), {}, r"2-D"),
    (np.zeros((0, 4), np.uint16), {}, "empty"),
    (np.zeros((4, 4), bool), {}, "dtype"),
    (np.zeros((4, 4), np.float32), {"units": "cm"}, "units"),
])
def test_depth_validation(depth: np.ndarray, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        P.depth_to_tensor(depth, DEPTH, **kw)


def test_load_depth_png_mm_and_npy_metres(tmp_path: Path) -> None:
    mm = np.array([[0, 1500], [65535, 300]], np.uint16)
    Image.fromarray(mm).save(tmp_path / "d.png")
    arr, units = P.load_depth(tmp_path / "d.png")
    assert units == "mm" and arr.dtype == np.uint16 and np.array_equal(arr, mm)
    np.save(tmp_path / "d.npy", np.array([[1.5, np.nan]], np.float64))
    arr, units = P.load_depth(tmp_path / "d.npy")
    assert units == "m" and arr.dtype == np.float32 and arr[0, 0] == 1.5
    np.save(tmp_path / "mm.npy", mm)
    arr, units = P.load_depth(tmp_path / "mm.npy")
    assert units == "mm" and np.array_equal(arr, mm)
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "d8.png")
    with pytest.raises(ValueError, match="16-bit"):
        P.load_depth(tmp_path / "d8.png")


# --------------------------------------------------------------------------- thermal


def test_thermal_mono8_is_scaled_not_normalised() -> None:
    x = P.thermal_to_tensor(np.full((512, 640), 128, np.uint8), THERMAL)
    assert x.shape == (1, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 128 / 255))


def test_thermal_agc_is_invariant_to_units() -> None:
    # The same scene in kelvin (float) and in centi-kelvin counts (mono16) must agree.
    yy, xx = np.mgrid[0:120, 0:160]
    kelvin = 290 + 0.05 * xx + 0.1 * yy + RNG.normal(0, 0.3, (120, 160))
    counts = np.round(kelvin * 100).astype(np.uint16)
    a = P.thermal_to_tensor(counts / 100.0, THERMAL)
    b = P.thermal_to_tensor(counts, THERMAL)
    assert torch.equal(a, b)
    # Percentile AGC: values span [0, 1] with the extremes saturated.
    assert a.min() == 0 and a.max() == 1


def test_thermal_agc_ignores_a_hot_pixel() -> None:
    yy, xx = np.mgrid[0:200, 0:200]
    img = (20000 + 10 * xx + 5 * yy).astype(np.uint16)
    hot = img.copy()
    hot[0, 0] = 65535
    # A plain min-max gain would squeeze the scene into a third of the range; the percentile
    # gain moves it by at most a few grey levels.
    assert (P.thermal_to_tensor(img, THERMAL)
            - P.thermal_to_tensor(hot, THERMAL))[:, 20:, 20:].abs().max() <= 3 / 255 + 1e-6


def test_thermal_constant_frame_and_validation() -> None:
    x = P.thermal_to_tensor(np.full((50, 60), 30000, np.uint16), THERMAL)
    assert torch.equal(x, torch.zeros_like(x))
    with pytest.raises(ValueError, match="NaN"):
        P.thermal_to_tensor(np.full((5, 5), np.nan), THERMAL)
    with pytest.raises(ValueError, match="2-D"):
        P.thermal_to_tensor(np.zeros((5, 5, 3), np.uint8), THERMAL)
    with pytest.raises(ValueError, match="empty"):
        P.thermal_to_tensor(np.zeros((0, 5), np.uint8), THERMAL)
    with pytest.raises(ValueError, match="dtype"):
        P.thermal_to_tensor(np.zeros((5, 5), bool), THERMAL)


def test_load_thermal(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 6, 3), 200, np.uint8)).save(tmp_path / "t.png")  # LLVIP-like
    Image.fromarray(np.full((4, 6), 31000, np.uint16)).save(tmp_path / "t16.png")
    t8, t16 = P.load_thermal(tmp_path / "t.png"), P.load_thermal(tmp_path / "t16.png")
    assert t8.dtype == np.uint8 and t8.shape == (4, 6) and (t8 == 200).all()
    assert t16.dtype == np.uint16 and (t16 == 31000).all()


# --------------------------------------------------------------------------- IMU

FREQS = np.array([0.7, 1.1, 1.5, 0.4, 2.0, 0.9])  # Hz per channel
PHASES = np.arange(6) * 0.5


def analytic(t: np.ndarray) -> np.ndarray:
    """(len(t), 6): a different sine per channel."""
    return np.sin(2 * np.pi * FREQS * t[:, None] + PHASES)


def grid(t_end: float) -> np.ndarray:
    """The documented output times: num_samples points spaced window/num_samples, last at t_end."""
    n = IMU.num_samples
    return t_end - IMU.window_seconds + np.arange(1, n + 1) * IMU.window_seconds / n


def irregular_stamps(t0: float = 0.0) -> np.ndarray:
    """~200 Hz for 7 s with +-1 ms jitter and a 0.3-s gap from 4.0 s."""
    t = np.arange(0, 7, 0.005) + RNG.uniform(-0.001, 0.001, 1400)
    return t0 + t[(t < 4.0) | (t > 4.3)]


def test_imu_irregular_sine_resampled_to_analytic() -> None:
    t = irregular_stamps()
    x = P.imu_to_tensor(analytic(t), t, IMU).numpy()
    assert x.shape == (6, 2000) and x.dtype == np.float32
    g = grid(t.max())
    lo, hi = t[t < 4.0].max(), t[t > 4.3].min()  # the samples either side of the gap
    in_gap = (g > lo) & (g < hi)
    # Linear interpolation of a sine sampled every <= 7 ms: error <= dt^2 / 8 * (2 pi f)^2.
    assert np.abs(x[:, ~in_gap] - analytic(g[~in_gap]).T).max() < 3e-3
    # Across the gap the result is the chord between those two samples.
    w = (g[in_gap] - lo) / (hi - lo)
    chord = (1 - w)[:, None] * analytic(np.array([lo])) + w[:, None] * analytic(np.array([hi]))
    assert np.abs(x[:, in_gap] - chord.T).max() < 1e-5


def test_imu_unsorted_and_epoch_stamps_give_the_same_result() -> None:
    t = irregular_stamps()
    samples = analytic(t)
    expected = P.imu_to_tensor(samples, t, IMU)
    order = RNG.permutation(len(t))
    assert torch.equal(P.imu_to_tensor(samples[order], t[order], IMU), expected)
    # ROS epoch stamps (~1.7e9 s) lose nothing that matters at this rate.
    assert torch.allclose(P.imu_to_tensor(samples, t + 1.7e9, IMU), expected, atol=1e-5)


def test_imu_duplicate_stamps_are_averaged() -> None:
    t = np.array([0.0, 1.0, 1.0, 2.0])
    samples = np.zeros((4, 6))
    samples[1], samples[2] = 2.0, 4.0  # two readings at t = 1 s
    x = P.imu_to_tensor(samples, t, IMU)
    t_one = np.argmin(np.abs(grid(2.0) - 1.0))
    assert torch.allclose(x[:, t_one], torch.full((6,), 3.0))


def test_imu_without_stamps_spans_the_window() -> None:
    samples = RNG.normal(size=(IMU.num_samples, 6))
    assert torch.equal(P.imu_to_tensor(samples, None, IMU),
                       torch.from_numpy(samples.T.astype(np.float32)))
    coarse_t = np.arange(1, 501) * IMU.window_seconds / 500  # 100 Hz over the window
    x = P.imu_to_tensor(analytic(coarse_t), None, IMU).numpy()
    g = grid(IMU.window_seconds)
    inside = g >= coarse_t[0]  # before the first sample the first value is held
    assert np.abs(x[:, inside] - analytic(g[inside]).T).max() < 3e-3


def test_imu_short_history_holds_first_value() -> None:
    t = np.linspace(10.0, 11.0, 201)  # 1 s of data for a 5-s window
    x = P.imu_to_tensor(analytic(t), t, IMU).numpy()
    before = grid(11.0) < 10.0
    assert np.allclose(x[:, before], analytic(t[:1]).T.astype(np.float32))


@pytest.mark.parametrize(("samples", "stamps", "match"), [
    (np.zeros((10, 5)), None, r"\(N, 6\)"),
    (np.zeros((0, 6)), None, "empty"),
    (np.full((10, 6), np.nan), None, "NaN"),
    (np.zeros((10, 6)), np.arange(9.0), "match"),
    (np.zeros((3, 6)), np.array([0.0, np.inf, 1.0]), "timestamps contain"),
])
def test_imu_validation(samples: np.ndarray, stamps: np.ndarray | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        P.imu_to_tensor(samples, stamps, IMU)


def test_load_imu_csv_and_npy(tmp_path: Path) -> None:
    rows = np.column_stack([np.arange(3) * 0.01, np.arange(18).reshape(3, 6)])
    (tmp_path / "i.csv").write_text(
        "# logged by a test\nt,ax,ay,az,gx,gy,gz\n"
        + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    samples, stamps = P.load_imu(tmp_path / "i.csv")
    assert np.array_equal(samples, rows[:, 1:]) and np.array_equal(stamps, rows[:, 0])
    np.save(tmp_path / "i.npy", rows[:, 1:])
    samples, stamps = P.load_imu(tmp_path / "i.npy")
    assert stamps is None and samples.shape == (3, 6)
    np.save(tmp_path / "bad.npy", np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        P.load_imu(tmp_path / "bad.npy")

