"""Turn query parts (texts, sounds, pictures, files) into embeddings with a shared model.

The detector's prompts and the memory's queries come from people and files, not from sensor
streams: this is the one place that turns them into batches (through the modality registry,
``imagebind_ros.modalities``) and calls any ``encode(modality, batch) -> unit-norm (B, D)``
function, such as ``SharedModel.encode``. Errors are ValueError / FileNotFoundError with a
one-line reason, fit for a service response. No rclpy.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import modalities
from .decode import Sound
from .model.config import ImageBindConfig

Encode = Callable[[str, np.ndarray], np.ndarray]


class Embedder:
    """Preprocess + encode one query part of any modality the model has."""

    def __init__(self, encode: Encode, config: ImageBindConfig) -> None:
        self._encode = encode
        self.config = config

    def _batch(self, modality: str, raws: Sequence[Any]) -> np.ndarray:
        if modality not in self.config.modalities:
            raise ValueError(f"model {self.config.name!r} has no {modality} encoder "
                             f"(has: {', '.join(self.config.modalities)})")
        return modalities.to_batch(modality, raws, self.config).numpy()

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm (N, D) embeddings of raw strings (no prompt template)."""
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"texts must be non-empty strings, got {list(texts)!r}")
        return self._encode("text", self._batch("text", list(texts)))

    def audio(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """A recording (samples[, channels]) at any rate -> (D,), preprocessed as a file."""
        sound = Sound(np.asarray(waveform), int(sample_rate))
        return self._encode("audio", self._batch("audio", [sound]))[0]

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """An RGB uint8 (H, W, 3) picture -> (D,)."""
        return self._encode("vision", self._batch("vision", [rgb]))[0]

    def audio_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        sound = modalities.load_file("audio", path)
        return self.audio(sound.samples, sound.sample_rate)

    def image_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        return self.image(modalities.load_file("vision", path))


class RecentAudio:
    """The last ``seconds`` of a live audio stream, for "what I just heard" prompts.

    The stream's rate and channel count are fixed by its first chunk; chunks that differ
    raise ValueError (mixing them would garble the sound). Thread-safe: callbacks push,
    services read.
    """

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError(f"audio buffer must be > 0 s, got {seconds}")
        self.seconds = float(seconds)
        self.sample_rate: int | None = None
        self.channels: int | None = None
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._frames = 0
        self._lock = threading.Lock()

    def push(self, samples: np.ndarray, sample_rate: int) -> None:
        """Add float32 (frames, channels) samples; the oldest beyond ``seconds`` go."""
        x = np.asarray(samples, np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"audio chunk must be (frames, channels), got shape {x.shape}")
        with self._lock:
            if self.sample_rate is None:
                self.sample_rate, self.channels = int(sample_rate), x.shape[1]
            if (int(sample_rate), x.shape[1]) != (self.sample_rate, self.channels):
                raise ValueError(f"audio chunk is {sample_rate} Hz x {x.shape[1]} ch, the "
                                 f"stream is {self.sample_rate} Hz x {self.channels} ch")
            self._chunks.append(x)
            self._frames += x.shape[0]
            cap = int(round(self.seconds * self.sample_rate))
            while self._frames - self._chunks[0].shape[0] >= cap:
                self._frames -= self._chunks.popleft().shape[0]

    def last(self, seconds: float) -> tuple[np.ndarray, int]:
        """(float32 (frames, channels) of the last ``seconds``, sample rate); ValueError if
        less than that has been heard (a prompt from half a sound would mislead)."""
        with self._lock:
            if self.sample_rate is None:
                raise ValueError("no audio received yet on the audio topic")
            if not 0 < seconds <= self.seconds:
                raise ValueError(f"audio_seconds must be in (0, {self.seconds:g}] (the "
                                 f"buffer), got {seconds:g}")
            need = int(round(seconds * self.sample_rate))
            if self._frames < need:
                raise ValueError(f"only {self._frames / self.sample_rate:.2f} s of audio "
                                 f"heard so far, {seconds:g} s asked")
            return np.concatenate(list(self._chunks))[-need:], self.sample_rate

