"""Turn query parts (texts, sounds, pictures, files) into embeddings with a shared model.

The detector's prompts and the memory's queries come from people and files, not from sensor
streams: this is the one place that preprocesses them (``imagebind_ros.preprocess``) and calls
any ``encode(modality, batch) -> unit-norm (B, D)`` function, such as
``SharedModel.encode``. Errors are ValueError / FileNotFoundError with a one-line reason,
fit for a service response. No rclpy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import preprocess as pp
from .model.config import ImageBindConfig

Encode = Callable[[str, np.ndarray], np.ndarray]


class Embedder:
    """Preprocess + encode one query part of any modality the model has."""

    def __init__(self, encode: Encode, config: ImageBindConfig) -> None:
        self._encode = encode
        self.config = config

    def _cfg(self, modality: str) -> Any:
        if modality not in self.config.modalities:
            raise ValueError(f"model {self.config.name!r} has no {modality} encoder "
                             f"(has: {', '.join(self.config.modalities)})")
        return self.config.modality(modality)

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm (N, D) embeddings of raw strings (no prompt template)."""
        cfg = self._cfg("text")
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"texts must be non-empty strings, got {list(texts)!r}")
        return self._encode("text", pp.tokenize(list(texts), cfg).numpy())

    def audio(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """A recording (samples[, channels]) at any rate -> (D,), preprocessed as a file."""
        cfg = self._cfg("audio")
        x = pp.audio_to_tensor(np.asarray(waveform), int(sample_rate), cfg)
        return self._encode("audio", x.unsqueeze(0).numpy())[0]

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """An RGB uint8 (H, W, 3) picture -> (D,)."""
        x = pp.image_to_tensor(rgb, self._cfg("vision"))
        return self._encode("vision", x.unsqueeze(0).numpy())[0]

    def audio_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        _exists(path, "audio")
        wave, rate = pp.load_audio(path)
        return self.audio(wave, rate)

    def image_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        _exists(path, "image")
        return self.image(pp.load_image(path))


def _exists(path: str | os.PathLike[str], what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {os.fspath(path)}")
