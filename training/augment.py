"""The paper's augmentations for (image, X) pairs, as pure functions of a seeded generator.

* spatially aligned crops: one crop box in *relative* coordinates cuts the image and the
  registered depth or thermal map at the same place, whatever their resolutions, so the pair
  still shows the same part of the scene (``random_crop_box`` + ``crop``);
* frequency masking (SpecAugment) of the audio log-mel spectrogram (``frequency_mask``).

Datasets draw the generator from ``view_rng(seed, index, view)``: the same (sample, view)
always gets the same augmentation, which the hub-feature cache and exact resumption need.
Crops are taken from the raw arrays, before ``imagebind_ros.preprocess`` resizes the short
side and centre-crops; image, depth and thermal preprocessing all do that, so a crop box
stays aligned through preprocessing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from .data import stable_seed


class CropBox(NamedTuple):
    """A crop in relative coordinates: fractions of the height / width, in [0, 1]."""

    top: float
    left: float
    height: float
    width: float


FULL = CropBox(0.0, 0.0, 1.0, 1.0)


def view_rng(seed: object, index: int, view: int) -> np.random.Generator:
    """The generator of one (sample, view) augmentation: same inputs, same augmentation."""
    return np.random.default_rng([stable_seed(seed), int(index), int(view)])


def random_crop_box(rng: np.random.Generator, scale: Sequence[float] = (0.35, 1.0),
                    ratio: Sequence[float] = (3 / 4, 4 / 3), aspect: float = 1.0,
                    contain: Sequence[float] | None = None, tries: int = 10) -> CropBox:
    """A random crop of ``scale`` of the area and ``ratio`` = crop width / height in pixels
    (torchvision's RandomResizedCrop), for a source of ``aspect`` = width / height.

    ``contain`` = relative (x0, y0, x1, y1) that the crop must cover (the object a caption
    or a sound names: a crop without it would pair the sound with the wrong picture). After
    ``tries`` failed draws the whole frame is returned, which covers everything.
    """
    lo, hi = float(scale[0]), float(scale[1])
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"crop scale must satisfy 0 < min <= max <= 1, got {scale}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"crop ratio must satisfy 0 < min <= max, got {ratio}")
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(tries):
        area = rng.uniform(lo, hi)
        r = math.exp(rng.uniform(*log_r)) / aspect  # relative width / relative height
        w, h = math.sqrt(area * r), math.sqrt(area / r)
        if w > 1 or h > 1:
            continue
        if contain is None:
            return CropBox(rng.uniform(0, 1 - h), rng.uniform(0, 1 - w), h, w)
        x0, y0, x1, y1 = (float(v) for v in contain)
        left_lo, left_hi = max(0.0, x1 - w), min(x0, 1 - w)
        top_lo, top_hi = max(0.0, y1 - h), min(y0, 1 - h)
        if left_lo <= left_hi and top_lo <= top_hi:
            return CropBox(rng.uniform(top_lo, top_hi), rng.uniform(left_lo, left_hi), h, w)
    return FULL


def partial_crop_box(rng: np.random.Generator, scale: Sequence[float],
                     obj: Sequence[float], cover: Sequence[float] = (0.02, 0.35),
                     aspect: float = 1.0, tries: int = 20) -> CropBox | None:
    """A random crop (``scale`` of the area, square in pixels) that shows only a part of the
    object at relative ``obj`` = (x0, y0, x1, y1): the share of the object's box inside the
    crop lies in ``cover``. A hard negative: a window that cuts an object is not the object.
    None when ``tries`` draws found none (the object fills too much of the frame)."""
    x0, y0, x1, y1 = (float(v) for v in obj)
    area = max((x1 - x0) * (y1 - y0), 1e-9)
    for _ in range(tries):
        box = random_crop_box(rng, scale, ratio=(1.0, 1.0), aspect=aspect)
        iw = min(x1, box.left + box.width) - max(x0, box.left)
        ih = min(y1, box.top + box.height) - max(y0, box.top)
        if iw > 0 and ih > 0 and cover[0] <= iw * ih / area <= cover[1]:
            return box
    return None


def crop(array: np.ndarray, box: CropBox) -> np.ndarray:
    """The part of an (H, W) or (H, W, C) array inside ``box`` (at least one pixel)."""
    h, w = array.shape[:2]
    y0 = min(h - 1, round(box.top * h))
    x0 = min(w - 1, round(box.left * w))
    y1 = max(y0 + 1, min(h, round((box.top + box.height) * h)))
    x1 = max(x0 + 1, min(w, round((box.left + box.width) * w)))
    return np.ascontiguousarray(array[y0:y1, x0:x1])


def aligned_crop(arrays: Sequence[np.ndarray], box: CropBox) -> list[np.ndarray]:
    """The same relative crop of registered maps (RGB, depth, thermal) of any resolutions."""
    return [crop(a, box) for a in arrays]


def hflip(array: np.ndarray) -> np.ndarray:
    """Mirror an (H, W) or (H, W, C) array left-right."""
    return np.ascontiguousarray(array[:, ::-1])


def frequency_mask(spec: torch.Tensor, rng: np.random.Generator, max_bins: int,
                   count: int = 1, value: float = 0.0) -> torch.Tensor:
    """SpecAugment frequency masking: ``count`` bands of up to ``max_bins`` mel bins set to
    ``value`` (0 = the data mean after ImageBind's fbank normalisation).

    ``spec`` is a preprocessed audio tensor (..., mel, frames), e.g. (clips, 1, mel, frames);
    every clip gets the same bands. Returns a new tensor.
    """
    if max_bins < 0 or count < 0:
        raise ValueError(f"frequency_mask needs max_bins >= 0 and count >= 0, got "
                         f"{max_bins}, {count}")
    mel = spec.shape[-2]
    if max_bins >= mel:
        raise ValueError(f"frequency_mask max_bins {max_bins} must be below the {mel} mel "
                         "bins, or the whole spectrogram could be masked")
    out = spec.clone()
    for _ in range(count):
        width = int(rng.integers(0, max_bins + 1))
        start = int(rng.integers(0, mel - width + 1))
        out[..., start:start + width, :] = value
    return out
