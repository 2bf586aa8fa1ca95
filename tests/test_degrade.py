"""Sensor degradations against hand-computed properties: severity 0 is the identity, each
knob does exactly what its definition says (gain, area, count, SNR, bounds), nothing
modifies its input, and every draw is deterministic given its seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imagebind_ros import MODALITIES
from imagebind_ros import degrade as dg


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    """One raw array per modality, in the synthetic world's units, with no zeros."""
    g = rng(1)
    t = np.arange(32000) / 16000
    return {"vision": g.integers(1, 256, (48, 64, 3)).astype(np.uint8),
            "audio": (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05).astype(np.float32),
            "depth": g.uniform(0.5, 8.0, (48, 64)).astype(np.float32),
            "thermal": g.uniform(15.0, 90.0, (48, 64)).astype(np.float32),
            "imu": g.normal(0, 1, (1000, 6)).astype(np.float32) + np.float32(9.8) * np.r_[
                0, 0, 1, 0, 0, 0].astype(np.float32)}


def test_registry_covers_the_issue() -> None:
    reg = dg.degradations()
    assert set(reg) == {"camera_dark", "camera_blur", "camera_occlusion", "camera_noise",
                        "camera_frozen", "mic_noise", "mic_clipping", "mic_silence",
                        "mic_dropouts", "audio_conflict", "depth_holes", "thermal_saturation",
                        "imu_stationary", "imu_noise", "imu_conflict"}
    assert all(d.modality in MODALITIES and d.name == n for n, d in reg.items())
    assert {n for n, d in reg.items() if d.needs_other} == {"camera_frozen", "audio_conflict",
                                                            "imu_conflict"}


@pytest.mark.parametrize("name", sorted(dg.degradations()))
def test_severity_zero_is_identity_and_input_untouched(name: str, arrays: dict) -> None:
    d = dg.degradations()[name]
    x = arrays[d.modality]
    other = (x[::-1].copy() if d.needs_other else None)
    before = x.copy()
    out = d.apply(x, 0.0, rng(), other)
    assert out is not x and out.dtype == x.dtype and out.shape == x.shape
    np.testing.assert_array_equal(out, before)
    hit = d.apply(x, 0.7, rng(3), other)
    np.testing.assert_array_equal(x, before)  # never modified in place
    assert hit.dtype == x.dtype and hit.shape == x.shape
    again = d.apply(x, 0.7, rng(3), other)
    np.testing.assert_array_equal(hit, again)  # deterministic given the seed


@pytest.mark.parametrize("severity", [-0.1, 1.5, float("nan")])
def test_severity_out_of_range(severity: float, arrays: dict) -> None:
    with pytest.raises(ValueError, match="severity"):
        dg.darken(arrays["vision"], severity)


def test_wrong_inputs_are_refused(arrays: dict) -> None:
    with pytest.raises(ValueError, match="uint8"):
        dg.darken(arrays["vision"].astype(np.float32), 0.5)
    with pytest.raises(ValueError, match="float"):
        dg.silence((arrays["audio"] * 1000).astype(np.int16), 0.5)
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        dg.imu_noise(arrays["imu"][:, :3], 0.5, rng())
    with pytest.raises(ValueError, match="other observation"):
        dg.degradations()["audio_conflict"].apply(arrays["audio"], 0.5, rng(), None)
    with pytest.raises(ValueError, match="differs"):
        dg.conflict(arrays["audio"], arrays["audio"][:100], 0.5)
    with pytest.raises(ValueError, match="differs"):
        dg.freeze(arrays["vision"], arrays["vision"][:10], 0.5, rng())


# ----------------------------------------------------------------------------- camera


def test_darken_scales_every_pixel_and_the_mean(arrays: dict) -> None:
    img = arrays["vision"]
    out = dg.darken(img, 0.3)
    assert np.abs(out - img * 0.7).max() <= 0.5 + 1e-4  # each pixel, rounded
    assert abs(out.mean() - 0.7 * img.mean()) <= 0.5
    assert not dg.darken(img, 1.0).any()


def test_blur_sigma_follows_a_step_edge() -> None:
    """A vertical step blurred with sigma s becomes 255 * Phi((x - edge) / s) per row."""
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 100:] = 255
    severity = 0.2
    sigma = severity * dg.BLUR_MAX_SIGMA * 100
    out = dg.blur(img, severity).astype(float)
    x = np.arange(80, 120)
    expected = 255 * np.array([0.5 * (1 + math.erf((xi - 99.5) / (sigma * math.sqrt(2))))
                               for xi in x])
    np.testing.assert_allclose(out[50, 80:120, 0], expected, atol=2.0)
    assert np.all(out[:, :, 0] == out[:, :, 2])  # channels alike


def test_occlusion_covers_the_severity_of_the_frame(arrays: dict) -> None:
    img = arrays["vision"]
    h, w = img.shape[:2]
    for s in (0.1, 0.25, 0.5, 1.0):
        y0, y1, x0, x1 = dg.occlusion_box(img.shape, s, rng(5))
        assert 0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w
        assert abs((y1 - y0) * (x1 - x0) - s * h * w) <= max(h, w)  # up to one row/column
        assert abs((x1 - x0) / (y1 - y0) - w / h) < 0.15  # the frame's aspect
        out = dg.occlude(img, s, rng(5))
        patch = out[y0:y1, x0:x1].reshape(-1, 3)
        assert (patch == patch[0]).all()  # one flat colour
        outside = np.ones((h, w), bool)
        outside[y0:y1, x0:x1] = False
        np.testing.assert_array_equal(out[outside], img[outside])


def test_camera_noise_std() -> None:
    grey = np.full((200, 200, 3), 128, np.uint8)
    out = dg.camera_noise(grey, 0.1, rng(2)).astype(float) - 128
    assert abs(out.std() - 0.1 * dg.CAMERA_NOISE_MAX) < 0.03 * 0.1 * dg.CAMERA_NOISE_MAX
    assert abs(out.mean()) < 0.2
    assert out.std() > dg.camera_noise(grey, 0.05, rng(2)).astype(float).std()


def test_freeze_delivers_the_stale_frame_with_probability_severity(arrays: dict) -> None:
    img, stale = arrays["vision"], arrays["vision"][::-1].copy()
    np.testing.assert_array_equal(dg.freeze(img, stale, 1.0, rng()), stale)
    np.testing.assert_array_equal(dg.freeze(img, stale, 0.0, rng()), img)
    g = rng(9)
    hits = sum(np.array_equal(dg.freeze(img, stale, 0.3, g), stale) for _ in range(2000))
    assert abs(hits / 2000 - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 2000)


# ----------------------------------------------------------------------------- microphone


def test_mic_noise_snr(arrays: dict) -> None:
    x = (0.1 * np.sin(np.arange(64000) * 0.05)).astype(np.float32)
    for s in (0.1, 0.5):
        noise = dg.mic_noise(x, s, rng(4)).astype(np.float64) - x
        snr = 10 * math.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise ** 2))
        assert abs(snr - (-20 * math.log10(s * dg.MIC_NOISE_MAX))) < 0.1
    loud = dg.mic_noise(arrays["audio"] * 3, 1.0, rng())
    assert np.abs(loud).max() <= 1.0


def test_clipping_drive_and_bounds() -> None:
    x = np.array([0.0, 0.01, -0.05, 0.2, -0.5, 0.099], np.float32)
    out = dg.clip_audio(x, 0.5)  # +20 dB: gain 10
    np.testing.assert_allclose(out, [0.0, 0.1, -0.5, 1.0, -1.0, 0.99], atol=1e-6)
    g = rng(1).uniform(-1, 1, 10000).astype(np.float32)
    assert np.abs(dg.clip_audio(g, 1.0)).max() <= 1.0
    assert np.mean(np.abs(dg.clip_audio(g, 1.0)) == 1.0) > 0.98  # +40 dB: nearly all clipped


def test_silence_attenuation(arrays: dict) -> None:
    x = arrays["audio"]
    for s, db in ((0.25, -20.0), (0.5, -40.0), (1.0, -80.0)):
        ratio = np.sqrt(np.mean(dg.silence(x, s).astype(float) ** 2) / np.mean(
            x.astype(float) ** 2))
        assert abs(20 * math.log10(ratio) - db) < 1e-3


def test_dropouts_zero_exactly_the_severity_of_the_chunks(arrays: dict) -> None:
    x = arrays["audio"]  # 2 s at 16 kHz, no zero sample: 100 chunks of 320
    for s in (0.05, 0.3, 1.0):
        out = dg.dropouts(x, 16000, s, rng(6))
        chunks = out.reshape(100, 320)
        dead = np.all(chunks == 0, axis=1)
        assert dead.sum() == round(s * 100)
        np.testing.assert_array_equal(chunks[~dead], x.reshape(100, 320)[~dead])


# ----------------------------------------------------------------------------- depth, thermal


def test_depth_holes_exact_fraction_in_blobs(arrays: dict) -> None:
    depth = arrays["depth"]
    for s in (0.02, 0.2, 0.5):
        out = dg.depth_holes(depth, s, rng(7))
        holes = out == 0
        assert holes.sum() == round(s * depth.size)
        np.testing.assert_array_equal(out[~holes], depth[~holes])
    holes = dg.depth_holes(depth, 0.2, rng(7)) == 0
    pairs = holes[:, 1:] & holes[:, :-1]
    assert pairs.sum() / holes[:, 1:].sum() > 0.6  # a random 20 % mask gives about 0.2
    mm = (depth * 1000).astype(np.uint16)
    assert (dg.depth_holes(mm, 0.1, rng()) == 0).sum() == round(0.1 * mm.size)


def test_thermal_saturation_ceiling(arrays: dict) -> None:
    t = arrays["thermal"]
    lo, hi = float(t.min()), float(t.max())
    out = dg.saturate_thermal(t, 0.25)
    ceiling = hi - 0.25 * (hi - lo)
    assert out.max() == pytest.approx(ceiling, abs=1e-4)
    below = t < ceiling
    np.testing.assert_array_equal(out[below], t[below])
    assert np.all(out[~below] == np.float32(ceiling))
    assert np.all(dg.saturate_thermal(t, 1.0) == t.min())
    counts = np.rint((t + 273.15) * 100).astype(np.uint16)  # mono16
    assert dg.saturate_thermal(counts, 0.5).max() == round(
        counts.max() - 0.5 * (int(counts.max()) - int(counts.min())))


# ----------------------------------------------------------------------------- IMU, conflict


def test_imu_stationary_shrinks_motion_keeps_gravity(arrays: dict) -> None:
    x = arrays["imu"].astype(np.float64)
    out = dg.imu_stationary(arrays["imu"], 0.75).astype(np.float64)
    np.testing.assert_allclose(out.mean(0), x.mean(0), atol=1e-5)
    np.testing.assert_allclose(out.std(0), 0.25 * x.std(0), rtol=1e-4)
    flat = dg.imu_stationary(arrays["imu"], 1.0)
    assert np.allclose(flat, flat[0], atol=1e-5)


def test_imu_noise_std(arrays: dict) -> None:
    x = np.zeros((20000, 6), np.float32)
    out = dg.imu_noise(x, 0.5, rng(8))
    expected = 0.5 * np.array([*[dg.IMU_NOISE_MAX[0]] * 3, *[dg.IMU_NOISE_MAX[1]] * 3])
    np.testing.assert_allclose(out.std(0), expected, rtol=0.03)


def test_conflict_mix(arrays: dict) -> None:
    a, b = arrays["audio"], arrays["audio"][::-1].copy()
    np.testing.assert_array_equal(dg.conflict(a, b, 1.0), b)
    np.testing.assert_allclose(dg.conflict(a, b, 0.25), 0.75 * a + 0.25 * b, atol=1e-7)
    img, other = arrays["vision"], arrays["vision"][::-1].copy()
    mixed = dg.conflict(img, other, 0.5).astype(float)
    assert np.abs(mixed - (0.5 * img + 0.5 * other.astype(float))).max() <= 0.5
