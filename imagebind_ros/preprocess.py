"""Turn raw sensor data into the tensors ImageBind's encoders expect.

Pure functions on in-memory arrays (what ROS messages carry) plus small file loaders. Each
``*_to_tensor`` takes its modality config, so the constants that travel with a checkpoint
decide how inputs are prepared. Vision, text and audio reproduce the reference ImageBind
pipeline; depth, thermal and IMU follow the recipes in docs/preprocessing.md. The loaders
read a path or an open binary file (a tar member, bytes in memory) with the same code, the
file type coming from ``name`` (default: the path). Callers pick the function for a modality
through ``imagebind_ros.modalities``, the one registry. No ROS imports here.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, BinaryIO, Literal

import numpy as np
import soundfile
import torch
import torchaudio.compliance.kaldi
import torchaudio.functional
from PIL import Image

from .model.config import (AudioConfig, DepthConfig, ImuConfig, TextConfig, ThermalConfig,
                           VisionConfig)

PathLike = str | os.PathLike[str]
# A file to read: a path, or an open binary file (its type then comes from a ``name``).
FileLike = PathLike | BinaryIO

# Kaldi fbank framing used by the reference audio pipeline (not part of AudioConfig).
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0


# --------------------------------------------------------------------------- images


def _check_2d(arr: np.ndarray, what: str) -> None:
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (H, W) array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what} is empty (shape {arr.shape})")


def _resize_center_crop(img: Image.Image, size: int, resample: Image.Resampling) -> np.ndarray:
    """torchvision ``Resize(size)`` + ``CenterCrop(size)`` on a PIL image, as a new array.

    The short side becomes ``size`` and the long side ``int(size * long / short)``; the crop
    offset is ``round((n - size) / 2)`` (Python's round, as torchvision does).
    """
    w, h = img.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return np.array(np.asarray(img)[top:top + size, left:left + size])


def image_to_tensor(rgb: np.ndarray, cfg: VisionConfig) -> torch.Tensor:
    """An RGB uint8 (H, W, 3) image -> normalised float32 (3, S, S), S = cfg.image_size.

    Same as the reference: PIL bicubic resize of the short side, centre crop, /255, then
    (x - mean) / std per channel.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image must be an (H, W, 3) RGB array, got shape {rgb.shape}; "
                         "convert grayscale/RGBA/BGR images to RGB first")
    if rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (rgb8), got dtype {rgb.dtype}")
    if rgb.size == 0:
        raise ValueError(f"image is empty (shape {rgb.shape})")
    crop = _resize_center_crop(Image.fromarray(rgb), cfg.image_size, Image.Resampling.BICUBIC)
    x = torch.from_numpy(crop).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)
    return x.sub(mean).div(std)


def images_to_tensor(images: Sequence[np.ndarray], cfg: VisionConfig) -> torch.Tensor:
    """A list of RGB uint8 images -> (N, 3, S, S)."""
    if len(images) == 0:
        raise ValueError("images_to_tensor needs at least one image")
    return torch.stack([image_to_tensor(im, cfg) for im in images])


def _label(source: FileLike, name: str | None) -> str:
    """The name that tells a file's type (and names it in errors)."""
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", "<file>"))


def _openable(source: FileLike) -> Any:
    """What soundfile / PIL / numpy open: a path as str, a file object as it is."""
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else source


# Raster formats PIL may open. Never every format: EPS/PS/PDF would run Ghostscript (an
# external interpreter) on a file a service request names.
IMAGE_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "GIF", "WEBP", "PPM")


def open_image(source: FileLike) -> Image.Image:
    """``PIL.Image.open`` limited to ``IMAGE_FORMATS``; OSError for anything else."""
    return Image.open(_openable(source), formats=IMAGE_FORMATS)


def load_image(source: FileLike) -> np.ndarray:
    """Read a raster image (``IMAGE_FORMATS``) as RGB uint8 (H, W, 3), like the reference
    loader."""
    with open_image(source) as im:
        return np.array(im.convert("RGB"))


# --------------------------------------------------------------------------- text

# The reference tokenizer's special tokens and split pattern. open_clip ships the same BPE
# vocabulary but names the special tokens <start_of_text>/<end_of_text>, so a literal
# "<|endoftext|>" in a prompt would tokenize differently; the pattern below restores the
# reference behaviour (ids 49406/49407 are unchanged).
_SOT, _EOT = "<|startoftext|>", "<|endoftext|>"
_TOKEN_PATTERN = (r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d"
                  r"|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")


@functools.lru_cache(maxsize=4)
def _tokenizer(context_length: int) -> Any:
    """open_clip's BPE tokenizer with the reference special tokens (loaded once; the import
    is deferred because open_clip takes seconds to import)."""
    import regex
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer(context_length=context_length)
    for new, old in ((_SOT, "<start_of_text>"), (_EOT, "<end_of_text>")):
        token_id = tok.encoder.pop(old)
        tok.encoder[new] = token_id
        tok.decoder[token_id] = new
        del tok.cache[old]
        tok.cache[new] = new
    tok.pat = regex.compile(_TOKEN_PATTERN, regex.IGNORECASE)
    return tok


def tokenize(texts: Sequence[str] | str, cfg: TextConfig) -> torch.Tensor:
    """Texts -> int64 (N, context_length) token ids: sot, BPE tokens, eot, zero padding.

    Text longer than the context keeps its first context_length - 2 BPE tokens and still
    ends with eot, as the reference tokenizer does. A single string is one text.
    """
    if isinstance(texts, str):
        texts = [texts]
    if len(texts) == 0:
        raise ValueError("tokenize needs at least one text")
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"texts must be strings, got {type(t).__name__}")
    tok = _tokenizer(cfg.context_length)
    if len(tok.encoder) != cfg.vocab_size:
        raise ValueError(f"tokenizer has {len(tok.encoder)} tokens but the text config "
                         f"expects vocab_size={cfg.vocab_size}")
    return tok(list(texts), context_length=cfg.context_length)


# --------------------------------------------------------------------------- audio


def _waveform(waveform: np.ndarray, sample_rate: int) -> torch.Tensor:
    """Validate a (samples,) or (samples, channels) waveform -> a new float32 (channels,
    samples) tensor (callers modify it in place). int16/int32 PCM is scaled to [-1, 1)
    exactly as soundfile reads it as float.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise ValueError(f"sample_rate must be an int, got {sample_rate!r}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    arr = np.asarray(waveform)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"waveform must be (samples,) or (samples, channels), "
                         f"got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"waveform is empty (shape {arr.shape})")
    if arr.shape[1] > arr.shape[0]:
        raise ValueError(f"waveform has more channels than samples (shape {arr.shape}); "
                         "pass it as (samples, channels)")
    if arr.dtype == np.int16:
        arr = arr.astype(np.float32) / 32768.0
    elif arr.dtype == np.int32:
        arr = (arr.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ValueError("waveform contains NaN or Inf")
    else:
        raise ValueError(f"waveform dtype must be float, int16 or int32, got {arr.dtype}")
    return torch.from_numpy(arr.T.copy())


def _resampled(waveform: np.ndarray, sample_rate: int, cfg: AudioConfig) -> torch.Tensor:
    """Validated waveform at cfg.sample_rate, (channels, samples), long enough for a frame.

    Always a new tensor; resample's output is used as it comes (a strided view), so means
    are reduced in the same order as in the reference.
    """
    wav = _waveform(waveform, sample_rate)
    if sample_rate != cfg.sample_rate:
        wav = torchaudio.functional.resample(wav, orig_freq=int(sample_rate),
                                             new_freq=cfg.sample_rate)
    frame = int(cfg.sample_rate * FRAME_LENGTH_MS / 1000)
    if wav.shape[1] < frame:
        raise ValueError(f"audio too short: {wav.shape[1]} samples at {cfg.sample_rate} Hz, "
                         f"need at least {frame} (one {FRAME_LENGTH_MS:g} ms frame)")
    return wav


def clip_bounds(num_samples: int, cfg: AudioConfig) -> list[tuple[int, int]]:
    """Sample ranges of the clips the reference takes from a recording.

    pytorchvideo's ConstantClipsPerVideoSampler semantics: the duration is the float
    num_samples / sample_rate; clip i starts at i * max(duration - clip, 0) / clips_per_video
    in exact Fraction arithmetic and lasts clip_duration; bounds are int(t * sample_rate)
    (truncation) and clips of short audio simply end at the last sample.
    """
    sr = cfg.sample_rate
    clip = Fraction(cfg.clip_duration)
    duration = num_samples / sr
    step = Fraction(max(duration - clip, 0)) / cfg.clips_per_video
    return [(int(step * i * sr), int((step * i + clip) * sr))
            for i in range(cfg.clips_per_video)]


def _melspec(clip: torch.Tensor, cfg: AudioConfig) -> torch.Tensor:
    """One (channels, samples) clip -> normalised (1, num_mel_bins, target_length).

    Subtracts the clip mean in place (over all channels), then takes Kaldi fbank of channel 0
    only, as torchaudio's kaldi.fbank does for multi-channel input; pads/crops frames.
    """
    clip -= clip.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        clip, htk_compat=True, sample_frequency=cfg.sample_rate, use_energy=False,
        window_type="hanning", num_mel_bins=cfg.num_mel_bins, dither=0.0,
        frame_length=FRAME_LENGTH_MS, frame_shift=FRAME_SHIFT_MS).T
    pad = cfg.target_length - fbank.shape[1]
    fbank = torch.nn.functional.pad(fbank, (0, pad)) if pad > 0 else fbank[:, :cfg.target_length]
    return fbank.unsqueeze(0).sub(cfg.mean).div(cfg.std)


def audio_to_tensor(waveform: np.ndarray, sample_rate: int, cfg: AudioConfig) -> torch.Tensor:
    """A recording -> (clips_per_video, 1, num_mel_bins, target_length), as the reference.

    ``waveform`` is (samples,) or (samples, channels), float in [-1, 1] or int16/int32 PCM.
    It is resampled to cfg.sample_rate with torchaudio's windowed-sinc resampler, cut into
    clips (see clip_bounds) and each clip becomes a normalised log-mel spectrogram.

    Parity detail: the reference subtracts each clip's mean in place on the shared waveform,
    so when clips overlap (recordings shorter than clips_per_video * clip_duration) a later
    clip sees the offset already removed from an earlier one. We do the same (on our copy).
    """
    return _reference_clips(_resampled(waveform, sample_rate, cfg), cfg)


def _reference_clips(wav: torch.Tensor, cfg: AudioConfig) -> torch.Tensor:
    return torch.stack([_melspec(wav[:, a:b], cfg) for a, b in clip_bounds(wav.shape[1], cfg)])


def _clip_samples(cfg: AudioConfig) -> int:
    return int(Fraction(cfg.clip_duration) * cfg.sample_rate)


def audio_to_clips(waveform: np.ndarray, sample_rate: int, cfg: AudioConfig) -> torch.Tensor:
    """What the encoder needs: one clip (1, 1, mel, T) for a recording no longer than
    cfg.clip_duration (a live window), audio_to_tensor's clips for a longer one.

    The reference cuts a short recording into clips_per_video copies of the same samples
    and averages their embeddings; one copy gives that embedding within float rounding at a
    third of the encoder's work.
    """
    wav = _resampled(waveform, sample_rate, cfg)
    if wav.shape[1] <= _clip_samples(cfg):
        return _melspec(wav, cfg).unsqueeze(0)
    return _reference_clips(wav, cfg)


def audio_window_to_tensor(waveform: np.ndarray, sample_rate: int,
                           cfg: AudioConfig) -> torch.Tensor:
    """A live buffer -> one clip (1, 1, num_mel_bins, target_length) of its last clip_duration.

    For streaming: the most recent cfg.clip_duration seconds (all of it if shorter) become
    one spectrogram. The model averages clip embeddings, so this equals audio_to_tensor on a
    recording exactly clip_duration long. The buffer is resampled before the window is cut,
    so give a little more than clip_duration when its rate differs from cfg.sample_rate.
    """
    wav = _resampled(waveform, sample_rate, cfg)
    return _melspec(wav[:, -_clip_samples(cfg):], cfg).unsqueeze(0)


def load_audio(source: FileLike) -> tuple[np.ndarray, int]:
    """Read an audio file -> (float32 (samples, channels) in [-1, 1], sample_rate)."""
    data, sr = soundfile.read(_openable(source), dtype="float32", always_2d=True)
    return data, int(sr)


# --------------------------------------------------------------------------- depth


def depth_to_tensor(depth: np.ndarray, cfg: DepthConfig,
                    units: Literal["mm", "m"] | None = None) -> torch.Tensor:
    """A depth image -> normalised disparity (1, S, S), S = cfg.image_size.

    ``units`` defaults from the dtype as in REP 118: integers are millimetres (16UC1),
    floats are metres (32FC1). Pixels that are 0, negative, NaN or +-Inf carry no
    measurement and get disparity 0. Valid depth z (metres) becomes
    d = focal_length_px * baseline_m / min(depth_scale * z, max_depth_m), clipped to
    max_disparity_px and divided by it; the map is resized (PIL bilinear, short side to S),
    centre-cropped and normalised with cfg.mean / cfg.std. See docs/preprocessing.md.
    """
    arr = np.asarray(depth)
    _check_2d(arr, "depth image")
    is_int = np.issubdtype(arr.dtype, np.integer)
    if not (is_int or np.issubdtype(arr.dtype, np.floating)) or arr.dtype == np.bool_:
        raise ValueError(f"depth dtype must be an integer (mm) or float type, got {arr.dtype}")
    if units is None:
        units = "mm" if is_int else "m"
    if units not in ("mm", "m"):
        raise ValueError(f"units must be 'mm' or 'm', got {units!r}")
    z = arr.astype(np.float32)
    if units == "mm":
        z /= np.float32(1000.0)
    valid = np.isfinite(z) & (z > 0)
    z_read = np.minimum(np.where(valid, z, 1.0) * np.float32(cfg.depth_scale),
                        np.float32(cfg.max_depth_m))
    disparity = np.float32(cfg.focal_length_px * cfg.baseline_m) / z_read
    disparity = np.minimum(disparity, np.float32(cfg.max_disparity_px))
    disparity /= np.float32(cfg.max_disparity_px)
    disparity[~valid] = 0.0
    crop = _resize_center_crop(Image.fromarray(disparity), cfg.image_size,
                               Image.Resampling.BILINEAR)
    return torch.from_numpy(crop).unsqueeze(0).sub(cfg.mean).div(cfg.std)


def load_depth(source: FileLike, name: str | None = None
               ) -> tuple[np.ndarray, Literal["mm", "m"]]:
    """Read a depth file -> (array, units): a 16-bit PNG/TIFF in millimetres, or .npy in
    metres if float and millimetres if integer (the REP 118 dtype convention)."""
    label = _label(source, name)
    if label.lower().endswith(".npy"):
        arr = np.load(_openable(source), allow_pickle=False)
        if np.issubdtype(arr.dtype, np.integer):
            return arr, "mm"
        return arr.astype(np.float32), "m"
    with open_image(source) as im:
        if not im.mode.startswith("I;16") and im.mode != "I":
            raise ValueError(f"{label}: expected a 16-bit single-channel depth "
                             f"image in millimetres, got PIL mode {im.mode!r}")
        arr = np.array(im)
    if arr.min() < 0 or arr.max() > 65535:
        raise ValueError(f"{label}: depth values outside 16-bit range")
    return arr.astype(np.uint16), "mm"


# --------------------------------------------------------------------------- thermal


def thermal_to_tensor(img: np.ndarray, cfg: ThermalConfig) -> torch.Tensor:
    """A thermal image -> (1, S, S), S = cfg.image_size.

    mono8 is used as is (like LLVIP's 8-bit camera output); mono16 raw counts and float
    temperatures get a linear gain from the cfg.agc_percentiles of the frame to 0..255, as a
    camera's automatic gain control would. The uint8 image is resized like vision (PIL
    bicubic, short side), centre-cropped, scaled to [0, 1] and normalised with cfg.mean/std.
    """
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    _check_2d(arr, "thermal image")
    if arr.dtype != np.uint8:
        if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer)
                                         or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f"thermal dtype must be uint8, uint16 or float, got {arr.dtype}")
        x = arr.astype(np.float64)
        if not np.isfinite(x).all():
            raise ValueError("thermal image contains NaN or Inf")
        lo, hi = np.percentile(x, cfg.agc_percentiles)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr = np.rint(np.clip((x - lo) * scale, 0, 255)).astype(np.uint8)
    crop = _resize_center_crop(Image.fromarray(arr), cfg.image_size, Image.Resampling.BICUBIC)
    x = torch.from_numpy(crop).float().div(255)
    return x.unsqueeze(0).sub(cfg.mean).div(cfg.std)


def load_thermal(source: FileLike, name: str | None = None) -> np.ndarray:
    """Read a thermal image: .npy as stored; 8-bit images as mono8 (colour -> luminance, as
    LLVIP's 3-channel JPEGs), 16-bit as uint16, 32-bit as float32."""
    if _label(source, name).lower().endswith(".npy"):
        return np.load(_openable(source), allow_pickle=False)
    with open_image(source) as im:
        if im.mode.startswith("I;16"):
            return np.array(im).astype(np.uint16)
        if im.mode in ("I", "F"):
            return np.array(im).astype(np.float32)
        return np.array(im.convert("L"))


# --------------------------------------------------------------------------- IMU


def imu_to_tensor(samples: np.ndarray, timestamps: np.ndarray | None,
                  cfg: ImuConfig) -> torch.Tensor:
    """IMU samples -> float32 (channels, num_samples) over the last window_seconds.

    ``samples`` is (N, 6): accelerometer x, y, z (m/s^2) then gyroscope x, y, z (rad/s), raw
    units as in the reference. ``timestamps`` (N,) seconds may be irregular, unsorted or
    duplicated: they are sorted, duplicates averaged, and each channel linearly interpolated
    at num_samples uniform times ending at the newest stamp (spacing window / num_samples).
    Before the first sample the first value is held. ``None`` means the samples are uniform
    and span exactly the window.
    """
    x = np.asarray(samples)
    if x.ndim != 2 or x.shape[1] != cfg.channels:
        raise ValueError(f"IMU samples must be (N, {cfg.channels}), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("IMU samples are empty")
    if not np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_:
        raise ValueError(f"IMU samples must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("IMU samples contain NaN or Inf")
    window, n_out = float(cfg.window_seconds), cfg.num_samples
    if timestamps is None:
        t = np.arange(1, x.shape[0] + 1) * (window / x.shape[0])
    else:
        t = np.asarray(timestamps, dtype=np.float64)
        if t.shape != (x.shape[0],):
            raise ValueError(f"timestamps must be ({x.shape[0]},) to match the samples, "
                             f"got shape {t.shape}")
        if not np.isfinite(t).all():
            raise ValueError("IMU timestamps contain NaN or Inf")
    t = t - t.max()  # relative to the newest sample: keeps float64 precision for epoch stamps
    t, inverse, counts = np.unique(t, return_inverse=True, return_counts=True)
    summed = np.zeros((len(t), x.shape[1]))
    np.add.at(summed, inverse, x)  # sorted by time; duplicate stamps averaged
    x = summed / counts[:, None]
    grid = (np.arange(1, n_out + 1) - n_out) * (window / n_out)
    out = np.stack([np.interp(grid, t, x[:, c]) for c in range(x.shape[1])])
    return torch.from_numpy(out.astype(np.float32))


def load_imu(source: FileLike, name: str | None = None
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """Read IMU data -> (samples (N, 6), timestamps (N,) or None).

    .npy or .csv (comma-separated, optional header line, '#' comments) with 6 columns
    (accel xyz, gyro xyz) or 7 columns (time in seconds first).
    """
    name = _label(source, name)
    if name.lower().endswith(".npy"):
        data = np.load(_openable(source), allow_pickle=False)
    else:
        with (open(source, encoding="utf-8") if isinstance(source, (str, os.PathLike))
              else io.TextIOWrapper(source, encoding="utf-8")) as fh:
            lines = [ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
        if lines:
            try:
                [float(v) for v in lines[0].split(",")]
            except ValueError:
                lines = lines[1:]  # a header line
        data = np.loadtxt(lines, delimiter=",", ndmin=2)
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] not in (6, 7):
        raise ValueError(f"{name}: expected (N, 6) or (N, 7) IMU data, got shape {data.shape}")
    if data.shape[1] == 7:
        return data[:, 1:], data[:, 0]
    return data, None
