"""Sensor degradations with a severity knob, applied to raw sensor arrays.

A robot carries several sensors so that one of them may fail: a camera in the dark, blurred,
covered or frozen; a microphone drowned in noise, clipping, muted or losing packets; depth
with holes; a saturated thermal camera; an IMU that stops moving or turns noisy; and one
sensor observing another thing than the rest (an engine heard off-screen). These functions
make such failures on the arrays the synthetic world produces (and any real sensor array in
the same units, see ``imagebind_ros.synthetic``), so the fusion benchmark and the
simulated-sensor node can show what fusion does about them.

Every function takes ``severity`` in [0, 1] (0 returns the input unchanged, as a copy; 1 is
the worst case the knob describes), never modifies its input, keeps dtype and shape, and is
deterministic given its ``numpy.random.Generator``. numpy + OpenCV only (no torch, no rclpy).
The exact definition of each knob is in its docstring and in docs/fusion.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

Rng = np.random.Generator

BLUR_MAX_SIGMA = 0.15  # Gaussian blur sigma at severity 1, as a fraction of the short side
CAMERA_NOISE_MAX = 128.0  # noise std at severity 1, grey levels (of 255)
MIC_NOISE_MAX = 10 ** (10 / 20)  # noise rms / signal rms at severity 1 (SNR -10 dB)
CLIP_DRIVE_DB = 40.0  # pre-amplifier gain at severity 1 before the [-1, 1] clip
SILENCE_DB = 80.0  # attenuation at severity 1 (below a 16-bit ADC's resolution)
DROPOUT_CHUNK_S = 0.02  # one lost packet (an AudioChunk of the microphone node)
HOLE_BLOB = 0.04  # smoothing of the hole pattern, as a fraction of the short side
IMU_NOISE_MAX = (2.0, 0.5)  # white noise std at severity 1: accel m/s^2, gyro rad/s


def _check(severity: float) -> float:
    s = float(severity)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    return s


def _image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise ValueError(f"camera image must be uint8 (H, W[, C]), got {arr.dtype} "
                         f"{arr.shape}")
    return arr


def _audio(audio: np.ndarray) -> np.ndarray:
    arr = np.asarray(audio)
    if not np.issubdtype(arr.dtype, np.floating) or arr.ndim not in (1, 2):
        raise ValueError(f"audio must be float samples (N[, C]) in [-1, 1], got {arr.dtype} "
                         f"{arr.shape}")
    return arr


def _imu(imu: np.ndarray) -> np.ndarray:
    arr = np.asarray(imu)
    if arr.ndim != 2 or arr.shape[1] != 6 or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"IMU samples must be float (N, 6), got {arr.dtype} {arr.shape}")
    return arr


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# ----------------------------------------------------------------------------- camera


def darken(image: np.ndarray, severity: float) -> np.ndarray:
    """Low light: every pixel times ``1 - severity`` (rounded); 1 is a black frame."""
    img, s = _image(image), _check(severity)
    if s == 0:
        return img.copy()
    return np.rint(img.astype(np.float32) * np.float32(1 - s)).astype(np.uint8)


def blur(image: np.ndarray, severity: float) -> np.ndarray:
    """Defocus or motion: Gaussian blur of sigma ``severity * BLUR_MAX_SIGMA * short side``."""
    img, s = _image(image), _check(severity)
    sigma = s * BLUR_MAX_SIGMA * min(img.shape[:2])
    if sigma < 1e-3:
        return img.copy()
    return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def occlusion_box(shape: tuple[int, ...], severity: float, rng: Rng) -> tuple[int, ...]:
    """(y0, y1, x0, x1) of the occluder `occlude` draws: an axis-aligned rectangle of aspect
    about that of the frame whose area is ``severity`` of the frame (as near as whole pixels
    allow), at a uniformly random position inside the frame."""
    s = _check(severity)
    h, w = shape[:2]
    oh = min(h, max(0, round(np.sqrt(s) * h)))
    ow = min(w, round(s * h * w / oh)) if oh else 0
    y0 = int(rng.integers(0, h - oh + 1))
    x0 = int(rng.integers(0, w - ow + 1))
    return y0, y0 + oh, x0, x0 + ow


def occlude(image: np.ndarray, severity: float, rng: Rng) -> np.ndarray:
    """Something in front of the lens: a flat rectangle of a random colour covering
    ``severity`` of the frame (`occlusion_box`)."""
    img = _image(image)
    y0, y1, x0, x1 = occlusion_box(img.shape, severity, rng)
    colour = rng.integers(0, 256, img.shape[2:] or ())
    out = img.copy()
    out[y0:y1, x0:x1] = colour
    return out


def camera_noise(image: np.ndarray, severity: float, rng: Rng) -> np.ndarray:
    """Sensor noise (high gain): additive Gaussian noise of std ``severity *
    CAMERA_NOISE_MAX`` grey levels per pixel and channel, rounded and clipped to 0..255."""
    img, s = _image(image), _check(severity)
    if s == 0:
        return img.copy()
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(s * CAMERA_NOISE_MAX)
    return np.clip(np.rint(img + noise), 0, 255).astype(np.uint8)


def freeze(frame: np.ndarray, stale: np.ndarray, severity: float, rng: Rng) -> np.ndarray:
    """A frozen camera: with probability ``severity`` the driver delivers ``stale`` (an earlier
    frame, e.g. of the previous scene) instead of ``frame``; so over a stream, ``severity``
    is the share of frames that are stale."""
    img, old, s = _image(frame), _image(stale), _check(severity)
    if old.shape != img.shape:
        raise ValueError(f"stale frame {old.shape} differs from the frame {img.shape}")
    return (old if rng.random() < s else img).copy()


# ----------------------------------------------------------------------------- microphone


def mic_noise(audio: np.ndarray, severity: float, rng: Rng) -> np.ndarray:
    """Background noise: white Gaussian noise of rms ``severity * MIC_NOISE_MAX`` times the
    signal's rms (SNR = -20 log10(severity * MIC_NOISE_MAX) dB: +10 dB at 0.1, -10 dB at
    1), then clipped to [-1, 1] as an ADC would."""
    x, s = _audio(audio), _check(severity)
    if s == 0:
        return x.copy()
    sigma = s * MIC_NOISE_MAX * _rms(x)
    noisy = x + (sigma * rng.standard_normal(x.shape)).astype(x.dtype)
    return np.clip(noisy, -1, 1).astype(x.dtype)


def clip_audio(audio: np.ndarray, severity: float) -> np.ndarray:
    """An overdriven input: gain ``10 ** (severity * CLIP_DRIVE_DB / 20)`` (up to +40 dB),
    then hard clipping at full scale [-1, 1]."""
    x, s = _audio(audio), _check(severity)
    gain = 10 ** (s * CLIP_DRIVE_DB / 20)
    return np.clip(x * np.float32(gain), -1, 1).astype(x.dtype)


def silence(audio: np.ndarray, severity: float) -> np.ndarray:
    """A muted or failing microphone: attenuation by ``severity * SILENCE_DB`` dB (-80 dB
    at 1, below what a 16-bit converter resolves)."""
    x, s = _audio(audio), _check(severity)
    return (x * np.float32(10 ** (-s * SILENCE_DB / 20))).astype(x.dtype)


def dropout_chunks(num_samples: int, sample_rate: float, severity: float, rng: Rng,
                   chunk_s: float = DROPOUT_CHUNK_S) -> tuple[np.ndarray, int]:
    """(indices, chunk length in samples) of the chunks `dropouts` zeroes: ``round(severity
    * n_chunks)`` distinct ones, chosen uniformly (n_chunks = ceil(num_samples / chunk))."""
    s = _check(severity)
    chunk = max(1, round(chunk_s * sample_rate))
    n = -(-num_samples // chunk)
    return np.sort(rng.choice(n, round(s * n), replace=False)), chunk


def dropouts(audio: np.ndarray, sample_rate: float, severity: float, rng: Rng,
             chunk_s: float = DROPOUT_CHUNK_S) -> np.ndarray:
    """Lost packets: ``severity`` of the ``chunk_s`` chunks become silence (zeros), as the
    encoder node's audio windower fills gaps in a stream."""
    x = _audio(audio)
    lost, chunk = dropout_chunks(x.shape[0], sample_rate, severity, rng, chunk_s)
    out = x.copy()
    for k in lost:
        out[k * chunk:(k + 1) * chunk] = 0
    return out


# ----------------------------------------------------------------------------- depth, thermal


def depth_holes(depth: np.ndarray, severity: float, rng: Rng) -> np.ndarray:
    """Missing returns (dark, shiny or far surfaces): exactly ``round(severity * pixels)``
    pixels set to 0, the REP 118 "no measurement", in blobs (the lowest values of a
    smoothed random field). Works on metres (float) and millimetres (uint16)."""
    d, s = np.asarray(depth), _check(severity)
    if d.ndim != 2:
        raise ValueError(f"depth image must be (H, W), got shape {d.shape}")
    k = round(s * d.size)
    out = d.copy()
    if k == 0:
        return out
    field = rng.standard_normal(d.shape, dtype=np.float32)
    field = cv2.GaussianBlur(field, (0, 0), max(0.5, HOLE_BLOB * min(d.shape)))
    out.reshape(-1)[np.argsort(field, axis=None, kind="stable")[:k]] = 0
    return out


def saturate_thermal(thermal: np.ndarray, severity: float) -> np.ndarray:
    """A microbolometer past its range: readings above a ceiling read the ceiling. The
    ceiling falls from the frame's maximum (severity 0) to its minimum (1, a flat frame):
    ``hi - severity * (hi - lo)``. Works on degrees C (float) and mono16 counts."""
    t, s = np.asarray(thermal), _check(severity)
    if t.ndim != 2:
        raise ValueError(f"thermal image must be (H, W), got shape {t.shape}")
    lo, hi = float(t.min()), float(t.max())
    ceiling = hi - s * (hi - lo)
    if np.issubdtype(t.dtype, np.integer):
        ceiling = round(ceiling)
    return np.minimum(t, np.asarray(ceiling).astype(t.dtype))


# ----------------------------------------------------------------------------- IMU


def imu_stationary(imu: np.ndarray, severity: float) -> np.ndarray:
    """The platform stops moving: each channel's deviation from its window mean (gravity and
    biases) shrinks by ``1 - severity``; 1 is a flat, constant signal."""
    x, s = _imu(imu), _check(severity)
    if s == 0:
        return x.copy()
    mean = x.mean(axis=0, keepdims=True)
    return (mean + (1 - s) * (x - mean)).astype(x.dtype)


def imu_noise(imu: np.ndarray, severity: float, rng: Rng) -> np.ndarray:
    """A noisy or badly mounted IMU: white Gaussian noise of std ``severity *
    IMU_NOISE_MAX`` (accelerometer m/s^2, gyroscope rad/s)."""
    x, s = _imu(imu), _check(severity)
    std = s * np.repeat(np.asarray(IMU_NOISE_MAX), 3)
    return (x + rng.standard_normal(x.shape) * std).astype(x.dtype)


# ----------------------------------------------------------------------------- conflict


def conflict(own: np.ndarray, other: np.ndarray, severity: float) -> np.ndarray:
    """One sensor observing another thing than the rest: ``(1 - severity) * own + severity *
    other``, where ``other`` is that sensor's observation of another class (an engine heard
    off-screen drowning the scene's sound; another machine shaking the IMU). Sounds and
    vibrations superpose, so the mix is physical for audio and IMU; 1 is the other class
    alone. Integer arrays are rounded."""
    a, b, s = np.asarray(own), np.asarray(other), _check(severity)
    if a.shape != b.shape:
        raise ValueError(f"conflicting observation {b.shape} differs from {a.shape}")
    mix = (1 - s) * a.astype(np.float64) + s * b.astype(np.float64)
    if np.issubdtype(a.dtype, np.integer):
        mix = np.rint(mix)
    return mix.astype(a.dtype)


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Degradation:
    """One failure mode of one sensor: ``apply(data, severity, rng, other)``; ``other`` is
    the stale frame (frozen) or the other class's observation (conflict), else unused."""

    name: str
    modality: str  # the modality whose raw array it changes (imagebind_ros.MODALITIES)
    apply: Callable[[np.ndarray, float, Rng, np.ndarray | None], np.ndarray]
    needs_other: bool
    description: str


def _need(other: np.ndarray | None, name: str) -> np.ndarray:
    if other is None:
        raise ValueError(f"degradation {name!r} needs the other observation (other=...)")
    return other


def _registry(sample_rate: float) -> dict[str, Degradation]:
    def d(name: str, modality: str, fn: Callable, needs_other: bool, text: str) -> Degradation:
        return Degradation(name, modality, fn, needs_other, text)

    return {x.name: x for x in (
        d("camera_dark", "vision", lambda x, s, g, o: darken(x, s), False, "low light"),
        d("camera_blur", "vision", lambda x, s, g, o: blur(x, s), False, "defocus"),
        d("camera_occlusion", "vision", lambda x, s, g, o: occlude(x, s, g), False,
          "lens covered"),
        d("camera_noise", "vision", lambda x, s, g, o: camera_noise(x, s, g), False,
          "sensor noise"),
        d("camera_frozen", "vision",
          lambda x, s, g, o: freeze(x, _need(o, "camera_frozen"), s, g), True,
          "stale frames of the previous scene"),
        d("mic_noise", "audio", lambda x, s, g, o: mic_noise(x, s, g), False,
          "background noise"),
        d("mic_clipping", "audio", lambda x, s, g, o: clip_audio(x, s), False, "overdrive"),
        d("mic_silence", "audio", lambda x, s, g, o: silence(x, s), False, "muted"),
        d("mic_dropouts", "audio", lambda x, s, g, o: dropouts(x, sample_rate, s, g), False,
          "lost packets"),
        d("audio_conflict", "audio",
          lambda x, s, g, o: conflict(x, _need(o, "audio_conflict"), s), True,
          "another class heard off-screen"),
        d("depth_holes", "depth", lambda x, s, g, o: depth_holes(x, s, g), False,
          "missing returns"),
        d("thermal_saturation", "thermal", lambda x, s, g, o: saturate_thermal(x, s), False,
          "over range"),
        d("imu_stationary", "imu", lambda x, s, g, o: imu_stationary(x, s), False,
          "not moving"),
        d("imu_noise", "imu", lambda x, s, g, o: imu_noise(x, s, g), False, "noisy"),
        d("imu_conflict", "imu",
          lambda x, s, g, o: conflict(x, _need(o, "imu_conflict"), s), True,
          "another class's vibration"),
    )}


def degradations(sample_rate: float = 16000.0) -> dict[str, Degradation]:
    """Every degradation by name; audio ones that need the rate use ``sample_rate`` Hz."""
    return _registry(sample_rate)
