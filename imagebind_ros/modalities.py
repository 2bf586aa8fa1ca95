"""The one registry of modalities: what each input is, how it is read and how it becomes the
tensor its encoder takes.

Every layer that handles "a modality" asks here instead of branching on its name: the nodes
(a decoded ``Picture`` -> raw input -> tensor), the CLI and file playback (file -> raw input),
the training datasets (file or tar-member bytes -> raw input -> tensor), export (sample shape,
dtype, an example input) and the backends (batch validation). A spec's functions call the
pure functions of ``imagebind_ros.preprocess`` (reference-exact for vision, text and audio)
and ``imagebind_ros.decode``; nothing here knows ROS.

Raw inputs, one type per modality (duck-typed: anything with these fields works, such as the
stream windows of ``imagebind_ros.streams``):

========  ==================================================================================
vision    RGB uint8 ``(H, W, 3)`` array
text      ``str``
audio     ``decode.Sound``: float32 / int16 / int32 ``samples`` (frames[, channels]) and
          ``sample_rate``
depth     ``decode.DepthImage``: ``array`` (H, W) and ``units`` ("mm" integer, "m" float)
thermal   ``(H, W)`` array: mono8, 16-bit raw counts or float temperatures
imu       ``ImuSamples``: ``samples`` (N, 6) accel xyz (m/s^2) + gyro xyz (rad/s) and
          ``times`` (N,) seconds, or None for uniform samples spanning the window
========  ==================================================================================
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import MODALITIES
from . import decode as dec
from . import preprocess as pp
from .model.config import ImageBindConfig

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ImuSamples:
    """IMU samples (N, 6) [ax, ay, az, gx, gy, gz] and their times (N,) in seconds (any
    origin), or ``times=None`` for samples uniform over the model's window."""

    samples: np.ndarray
    times: np.ndarray | None = None


@dataclass(frozen=True)
class ModalitySpec:
    """Everything the package knows about one modality's input, as functions.

    ``shape`` and ``prepare`` take the modality's own config (``config.modality(name)``);
    the methods below take the whole ``ImageBindConfig``, which is what callers hold.
    """

    name: str
    #: dtype of the encoder's input tensor
    dtype: np.dtype
    #: modality config -> shape of one preprocessed sample (no batch axis)
    shape: Callable[[Any], tuple[int, ...]]
    #: (raw input, modality config) -> one preprocessed sample
    prepare: Callable[[Any, Any], torch.Tensor]
    #: (file or open binary file, name giving its type) -> raw input; None: not read from
    #: files (text: the string is the input)
    read: Callable[[Any, str], Any] | None = None
    #: file types ``read`` takes (lower case, no dot), in the order datasets prefer them
    extensions: tuple[str, ...] = ()
    #: decoded sensor image -> raw input (image modalities only)
    from_picture: Callable[[dec.Picture], Any] | None = None
    #: raw input -> the picture a sensor would publish (image modalities only)
    to_picture: Callable[[Any], dec.Picture] | None = None
    #: the raw input's pixel array (what aligned crops and flips cut), and its inverse
    pixels: Callable[[Any], np.ndarray] | None = None
    with_pixels: Callable[[Any, np.ndarray], Any] | None = None
    #: fraction of a raw input holding measurements (depth: finite and > 0)
    valid_fraction: Callable[[Any], float] | None = None
    #: (batch as numpy, modality config) -> the batch the encoder takes, or ValueError
    check_values: Callable[[np.ndarray, Any], np.ndarray] | None = None
    #: (raw inputs, modality config) -> a model-ready batch, where one call for the lot beats
    #: ``prepare`` one by one (text: one tokenizer call; audio: one clip for short sounds)
    prepare_batch: Callable[[Sequence[Any], Any], torch.Tensor] | None = None
    #: a sample is a stack of clips (axis 0 of ``shape``) that the encoder embeds one by
    #: one and averages; a batch may hold 1 .. shape[0] clips per sample
    clips: bool = False

    def sample_shape(self, config: ImageBindConfig) -> tuple[int, ...]:
        """Shape of one preprocessed sample (no batch axis), as the encoders and the exported
        graphs take it."""
        return tuple(int(d) for d in self.shape(config.modality(self.name)))

    def encoder_shape(self, config: ImageBindConfig) -> tuple[int, ...]:
        """Shape of what one encoder call takes per batch row: one clip for clip
        modalities (the exported graphs' input), the sample otherwise."""
        shape = self.sample_shape(config)
        return shape[1:] if self.clips else shape

    def to_tensor(self, raw: Any, config: ImageBindConfig) -> torch.Tensor:
        """One raw input -> one preprocessed sample (no batch axis)."""
        return self.prepare(raw, config.modality(self.name))

    def to_batch(self, raws: Sequence[Any], config: ImageBindConfig) -> torch.Tensor:
        """Raw inputs -> a model-ready batch (N, *sample_shape)."""
        if len(raws) == 0:
            raise ValueError(f"{self.name}: a batch needs at least one input")
        if self.prepare_batch is not None:
            return self.prepare_batch(raws, config.modality(self.name))
        return torch.stack([self.to_tensor(r, config) for r in raws])

    def load_file(self, path: PathLike) -> Any:
        """A file -> raw input; FileNotFoundError naming it when it does not exist."""
        if self.read is None:
            raise ValueError(f"{self.name} inputs are not read from files")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{self.name} file not found: {os.fspath(path)}")
        return self.read(path, os.fspath(path))

    def decode_bytes(self, name: str, data: bytes) -> Any:
        """A file's bytes (a tar member, a download) -> raw input; ``name`` gives the type."""
        if self.read is None:
            raise ValueError(f"{self.name} inputs are not read from files")
        return self.read(io.BytesIO(data), name)

    def picture_to_raw(self, picture: dec.Picture) -> Any:
        """A decoded sensor image -> raw input; ``DecodeError`` if this modality cannot use
        its encoding (a depth map on the camera topic, say)."""
        if self.from_picture is None:
            raise dec.DecodeError(f"{self.name} does not come from images")
        return self.from_picture(picture)

    def raw_to_picture(self, raw: Any) -> dec.Picture:
        """Raw input -> the picture a sensor would publish (for playback)."""
        if self.to_picture is None:
            raise ValueError(f"{self.name} is not an image")
        return self.to_picture(raw)

    def example(self, config: ImageBindConfig, batch: int = 2,
                generator: torch.Generator | None = None,
                clips: int | None = None) -> torch.Tensor:
        """A valid random batch: normal noise, or token ids with one end-of-text id per row.
        ``clips``: clips per sample of a clip modality (default: the reference's)."""
        shape = (batch, *self.sample_shape(config))
        if self.clips and clips is not None:
            shape = (batch, clips, *shape[2:])
        if self.name != "text":
            return torch.randn(shape, generator=generator)
        vocab = config.modality("text").vocab_size  # type: ignore[attr-defined]
        ids = torch.randint(1, vocab - 1, shape, generator=generator)
        eot = torch.randint(1, shape[1], (batch,), generator=generator)
        ids[torch.arange(batch), eot] = vocab - 1  # the head pools the largest id (CLIP's EOT)
        ids[torch.arange(shape[1])[None] > eot[:, None]] = 0  # padding after EOT
        return ids

    def validate(self, batch: np.ndarray | torch.Tensor, config: ImageBindConfig) -> np.ndarray:
        """A batch (B, *sample_shape) or one sample -> contiguous numpy of ``dtype``;
        ValueError / TypeError naming what is wrong (shape, type, range, NaN)."""
        x = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
        shape = self.sample_shape(config)
        if x.ndim == len(shape):
            x = x[None]
        clips_ok = x.ndim == len(shape) + 1 and 1 <= x.shape[1] <= shape[0]
        if tuple(x.shape[1:]) != shape and not (self.clips and clips_ok
                                                and x.shape[2:] == shape[1:]):
            dims = [f"1..{shape[0]}" if self.clips else str(shape[0]), *map(str, shape[1:])]
            want = ", ".join(dims)
            raise ValueError(f"{self.name} input must be (B, {want}) "
                             f"(see imagebind_ros.modalities), got {tuple(x.shape)}")
        assert self.check_values is not None
        return self.check_values(x, config.modality(self.name))


# --------------------------------------------------------------------------- per modality


def _check_tokens(x: np.ndarray, cfg: Any) -> np.ndarray:
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"text input must be integer token ids from tokenize(), got {x.dtype}")
    if x.size and (x.min() < 0 or x.max() >= cfg.vocab_size):
        raise ValueError(f"text token ids must lie in [0, {cfg.vocab_size}), got "
                         f"[{x.min()}, {x.max()}]")
    return np.ascontiguousarray(x, np.int64)


def _check_float(name: str) -> Callable[[np.ndarray, Any], np.ndarray]:
    def check(x: np.ndarray, cfg: Any) -> np.ndarray:
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"{name} input must be numeric, got {x.dtype}")
        x = np.ascontiguousarray(x, np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} input contains NaN or inf")
        return x
    return check


def _read_audio(source: Any, name: str) -> dec.Sound:
    samples, rate = pp.load_audio(source)
    return dec.Sound(samples, rate)


def _audio_batch(sounds: Sequence[Any], cfg: Any) -> torch.Tensor:
    """One clip per sound when every sound is no longer than a clip (live windows), else
    the reference's clips (a short sound among long ones repeats its one clip: the same
    embedding as the reference's identical clips)."""
    xs = [pp.audio_to_clips(s.samples, s.sample_rate, cfg) for s in sounds]
    n = max(x.shape[0] for x in xs)
    return torch.stack([x.expand(n, *x.shape[1:]) for x in xs])


def _read_depth(source: Any, name: str) -> dec.DepthImage:
    arr, units = pp.load_depth(source, name)
    return dec.DepthImage(arr, units)


def _read_imu(source: Any, name: str) -> ImuSamples:
    samples, times = pp.load_imu(source, name)
    return ImuSamples(samples, times)


def _single_channel(arr: np.ndarray, what: str) -> None:
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{what}: expected a non-empty single-channel image, got shape "
                         f"{arr.shape}")


def _depth_picture(d: dec.DepthImage) -> dec.Picture:
    """REP 118: millimetres as 16UC1, metres as 32FC1."""
    arr = np.asarray(d.array)
    _single_channel(arr, "depth")
    if d.units == "mm":
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError("depth millimetres outside 0..65535")
        return dec.Picture(arr.astype(np.uint16), "16UC1", "16UC1")
    return dec.Picture(arr.astype(np.float32), "32FC1", "32FC1")


def _thermal_picture(arr: np.ndarray) -> dec.Picture:
    """mono8 and mono16 by dtype, anything else as 32FC1 temperatures."""
    arr = np.asarray(arr)
    _single_channel(arr, "thermal")
    enc = {np.dtype(np.uint8): "mono8", np.dtype(np.uint16): "mono16"}.get(arr.dtype, "32FC1")
    return dec.Picture(arr if enc != "32FC1" else arr.astype(np.float32), enc, enc)


def _vision_picture(rgb: np.ndarray) -> dec.Picture:
    return dec.Picture(np.asarray(rgb), "rgb8", "rgb8")


def _same(raw: Any) -> Any:
    return raw


def _replaced(raw: Any, arr: np.ndarray) -> Any:
    return arr


def _specs() -> dict[str, ModalitySpec]:
    f32, i64 = np.dtype(np.float32), np.dtype(np.int64)
    specs = [
        ModalitySpec(
            "vision", f32, lambda c: (3, c.image_size, c.image_size), pp.image_to_tensor,
            read=lambda src, name: pp.load_image(src),
            extensions=("jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff"),
            from_picture=dec.as_rgb8, to_picture=_vision_picture, pixels=_same,
            with_pixels=_replaced, check_values=_check_float("vision")),
        ModalitySpec(
            "text", i64, lambda c: (c.context_length,),
            lambda text, c: pp.tokenize([text], c)[0], check_values=_check_tokens,
            prepare_batch=lambda texts, c: pp.tokenize(list(texts), c)),
        ModalitySpec(
            "audio", f32,
            lambda c: (c.clips_per_video, 1, c.num_mel_bins, c.target_length),
            lambda s, c: pp.audio_to_tensor(s.samples, s.sample_rate, c), read=_read_audio,
            extensions=("wav", "flac", "ogg", "mp3"), check_values=_check_float("audio"),
            prepare_batch=_audio_batch, clips=True),
        ModalitySpec(
            "depth", f32, lambda c: (1, c.image_size, c.image_size),
            lambda d, c: pp.depth_to_tensor(d.array, c, d.units), read=_read_depth,
            extensions=("png", "npy", "tif", "tiff"), from_picture=dec.as_depth,
            to_picture=_depth_picture, pixels=lambda d: d.array,
            with_pixels=lambda d, arr: dataclasses.replace(d, array=arr),
            valid_fraction=lambda d: dec.finite_fraction(d.array),
            check_values=_check_float("depth")),
        ModalitySpec(
            "thermal", f32, lambda c: (1, c.image_size, c.image_size), pp.thermal_to_tensor,
            read=pp.load_thermal, extensions=("png", "jpg", "jpeg", "npy", "tif", "tiff"),
            from_picture=dec.as_thermal, to_picture=_thermal_picture, pixels=_same,
            with_pixels=_replaced, check_values=_check_float("thermal")),
        ModalitySpec(
            "imu", f32, lambda c: (c.channels, c.num_samples),
            lambda m, c: pp.imu_to_tensor(m.samples, m.times, c), read=_read_imu,
            extensions=("npy", "csv"), check_values=_check_float("imu")),
    ]
    return {s.name: s for s in specs}


SPECS: Mapping[str, ModalitySpec] = _specs()
if tuple(SPECS) != MODALITIES:  # pragma: no cover - a registry edit that forgot a modality
    raise ImportError(f"modality registry {tuple(SPECS)} != imagebind_ros.MODALITIES")


# --------------------------------------------------------------------------- lookups


def spec(modality: str) -> ModalitySpec:
    """The spec of ``modality``; KeyError listing the known ones otherwise."""
    try:
        return SPECS[modality]
    except KeyError:
        raise KeyError(f"unknown modality {modality!r}; known: {', '.join(SPECS)}") from None


def image_modalities() -> tuple[str, ...]:
    """The modalities whose sensors publish images (vision, depth, thermal)."""
    return tuple(m for m, s in SPECS.items() if s.from_picture is not None)


def sample_shape(config: ImageBindConfig, modality: str) -> tuple[int, ...]:
    """Shape of one preprocessed ``modality`` sample (no batch axis)."""
    return spec(modality).sample_shape(config)


def encoder_shape(config: ImageBindConfig, modality: str) -> tuple[int, ...]:
    """Shape of one row of an encoder call (one clip for audio; see ``ModalitySpec``)."""
    return spec(modality).encoder_shape(config)


def input_dtype(modality: str) -> np.dtype:
    """Token ids (int64) for text, float32 for everything else."""
    return spec(modality).dtype


def example_input(config: ImageBindConfig, modality: str, batch: int = 2,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """A valid random input batch of ``modality`` (export, warm-up, tests, benchmarks)."""
    return spec(modality).example(config, batch, generator)


def to_tensor(modality: str, raw: Any, config: ImageBindConfig) -> torch.Tensor:
    """One raw input -> one preprocessed sample (no batch axis)."""
    return spec(modality).to_tensor(raw, config)


def to_batch(modality: str, raws: Sequence[Any], config: ImageBindConfig) -> torch.Tensor:
    """Raw inputs -> a model-ready batch (N, *sample_shape)."""
    return spec(modality).to_batch(raws, config)


def load_file(modality: str, path: PathLike) -> Any:
    """A file -> the raw input of ``modality``."""
    return spec(modality).load_file(path)


def decode_bytes(modality: str, name: str, data: bytes) -> Any:
    """A file's bytes -> the raw input of ``modality`` (``name`` gives the file type)."""
    return spec(modality).decode_bytes(name, data)

