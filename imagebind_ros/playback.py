"""Sensor files played back as a live sensor stream (pure numpy; the sim-sensors node's
``source: files`` mode).

A *scene* is the i-th entry of each modality's file list: an RGB image, a depth map, a
thermal image, a sound, an IMU recording. Scene ``k % n`` of each list plays for
``switch_seconds`` from ``k * switch_seconds`` on; lists of different lengths cycle
independently. Within its segment a sound or IMU recording loops from its start, so a short
clip fills the segment and a long one is cut. Audio is down-mixed to mono and resampled to
the stream's rate once at load; an IMU recording with timestamps is resampled onto the
stream's uniform grid, one without is taken as recorded at that rate.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchaudio

from imagebind_ros import modalities
from imagebind_ros.decode import Picture

# What a sensor can stream from files, in the canonical order.
MODALITIES = ("vision", "depth", "thermal", "audio", "imu")


class PlaybackError(ValueError):
    """A file list that cannot be played; the message names the file."""


def expand(items: Sequence[str], modality: str) -> list[Path]:
    """Files, directories (their files of this modality's extensions, sorted) and glob
    patterns -> a list of files, in order."""
    out: list[Path] = []
    for item in items:
        path = Path(os.path.expanduser(item))
        exts = modalities.spec(modality).extensions
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower()[1:] in exts)
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(item)))
        else:
            found = [path] if path.is_file() else []
        if not found:
            raise PlaybackError(f"{modality}: no {'/'.join('.' + e for e in exts)} file at "
                                f"{item!r}")
        out.extend(found)
    return out


def read_picture(modality: str, path: Path) -> Picture:
    """An image file as a sensor publishes it (the registry's file -> raw input -> picture):
    RGB as rgb8; depth in millimetres (16-bit PNG, integer .npy) as 16UC1 and in metres
    (float .npy) as 32FC1; thermal mono8/mono16 by its dtype, anything else as 32FC1."""
    spec = modalities.spec(modality)
    try:
        return spec.raw_to_picture(spec.load_file(path))
    except (OSError, ValueError) as e:
        raise PlaybackError(f"{modality} file {path}: {e}") from None


class FilePlayback:
    """Scenes from files; query by stream time (s) or sample index like ``SyntheticStream``."""

    def __init__(self, files: dict[str, Sequence[str]], switch_seconds: float = 4.0,
                 sample_rate: int = 16000, imu_rate: float = 200.0) -> None:
        if switch_seconds <= 0:
            raise PlaybackError(f"switch_seconds must be > 0, got {switch_seconds}")
        unknown = set(files) - set(MODALITIES)
        if unknown:
            raise PlaybackError(f"unknown modalities {sorted(unknown)}; known: {MODALITIES}")
        self.switch_seconds = float(switch_seconds)
        self.sample_rate, self.imu_rate = int(sample_rate), float(imu_rate)
        self.pictures: dict[str, list[Picture]] = {}
        self.sounds: list[np.ndarray] = []
        self.motions: list[np.ndarray] = []
        for modality, items in files.items():
            for path in expand(items, modality) if items else []:
                try:
                    self._load(modality, path)
                except PlaybackError:
                    raise
                except (OSError, ValueError, RuntimeError) as e:
                    raise PlaybackError(f"{modality} file {path}: {e}") from None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities that have files, in the canonical order."""
        have = {**self.pictures, "audio": self.sounds, "imu": self.motions}
        return tuple(m for m in MODALITIES if have.get(m))

    def _load(self, modality: str, path: Path) -> None:
        if modalities.spec(modality).to_picture is not None:
            self.pictures.setdefault(modality, []).append(read_picture(modality, path))
        elif modality == "audio":
            sound = modalities.load_file("audio", path)
            wave, rate = sound.samples, sound.sample_rate
            if wave.shape[0] == 0:
                raise PlaybackError(f"audio file {path} is empty")
            mono = torch.from_numpy(np.ascontiguousarray(wave.mean(axis=1)))
            if rate != self.sample_rate:
                mono = torchaudio.functional.resample(mono, rate, self.sample_rate)
            self.sounds.append(mono.numpy().astype(np.float32))
        else:
            motion = modalities.load_file("imu", path)
            samples, stamps = motion.samples, motion.times
            if len(samples) < 2 or not np.isfinite(samples).all():
                raise PlaybackError(f"IMU file {path}: needs >= 2 finite samples")
            if stamps is not None:
                if not (np.diff(stamps) > 0).all():
                    raise PlaybackError(f"IMU file {path}: timestamps must increase")
                grid = np.arange(stamps[0], stamps[-1], 1.0 / self.imu_rate)
                samples = np.stack([np.interp(grid, stamps, c) for c in samples.T], axis=1)
            self.motions.append(samples.astype(np.float64))

    def scene_index(self, t: float) -> int:
        """Index k of the segment playing at stream time t (s)."""
        return int(max(0.0, t) // self.switch_seconds)

    def picture(self, modality: str, t: float) -> Picture:
        """The vision/depth/thermal image shown at stream time t."""
        items = self.pictures[modality]
        return items[self.scene_index(t) % len(items)]

    def _looped(self, clips: list[np.ndarray], start: int, count: int, rate: float
                ) -> np.ndarray:
        """Samples [start, start + count) of the stream that loops clip k % n in segment k."""
        seg = max(1, round(self.switch_seconds * rate))
        idx = np.arange(start, start + count)
        k, offset = idx // seg, idx % seg
        out = np.empty((count,) + clips[0].shape[1:], clips[0].dtype)
        for ki in np.unique(k):
            clip = clips[int(ki) % len(clips)]
            sel = k == ki
            out[sel] = clip[offset[sel] % len(clip)]
        return out

    def audio(self, start: int, count: int) -> np.ndarray:
        """Mono float32 samples [start, start + count) at ``sample_rate``."""
        return self._looped(self.sounds, start, count, self.sample_rate)

    def imu(self, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """IMU samples first..first+count-1 (N, 6) and their stream times (s)."""
        times = np.arange(first, first + count) / self.imu_rate
        return self._looped(self.motions, first, count, self.imu_rate), times
