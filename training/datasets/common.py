"""What every real-data adapter shares: the augmentation keys, the ``RawPairs`` base (read
raw inputs, augment, preprocess through the modality registry as the nodes do), evaluation
wrappers and small spec helpers."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imagebind_ros import modalities

from ..augment import CropBox, crop, frequency_mask, hflip, random_crop_box, view_rng
from ..data import EvalSet, PairDataset, Transforms

SPOKES = ("audio", "depth", "thermal", "imu")
IMAGE_EXTS = modalities.spec("vision").extensions
# member/file names tried for X, in order: webdataset members may be "KEY.depth.png", and a
# tagged name wins over a plain extension, then the registry's readable types
X_EXTS: dict[str, tuple[str, ...]] = {
    "audio": modalities.spec("audio").extensions,
    "depth": ("depth.png", "depth.npy", "depth.tif", *modalities.spec("depth").extensions),
    "thermal": ("thermal.png", "thermal.jpg", "ir.png", "ir.jpg",
                *modalities.spec("thermal").extensions),
    "imu": ("imu.npy", "imu.csv", *modalities.spec("imu").extensions),
}
AUG_KEYS = frozenset({"views", "crop", "freq_mask", "seed"})


@dataclass(frozen=True)
class Augment:
    """The augmentation keys of a pair spec (see the module docstring)."""

    views: int | None = 1
    crop: tuple[float, float] | None = None
    freq_mask: int = 0

    @classmethod
    def from_spec(cls, spec: dict[str, Any], modality: str) -> Augment:
        views = spec.get("views", 1)
        if views is not None and int(views) < 1:
            raise ValueError(f"views must be >= 1 or null (unbounded), got {views}")
        c = spec.get("crop")
        if c is not None:
            if not isinstance(c, (list, tuple)) or len(c) != 2:
                raise ValueError(f"crop must be [min, max] area fractions, got {c!r}")
            c = (float(c[0]), float(c[1]))
            random_crop_box(view_rng(0, 0, 0), c)  # validates the range
        fm = int(spec.get("freq_mask") or 0)
        if fm and modality != "audio":
            raise ValueError(f"freq_mask applies to audio, not {modality!r}")
        if views == 1 and (c or fm):
            raise ValueError("crop/freq_mask augment views >= 1: set views > 1 (or null)")
        return cls(None if views is None else int(views), c, fm)

    def draw(self, seed: object, index: int, view: int, aspect: float,
             ) -> tuple[CropBox | None, bool]:
        """(crop box or None, mirror?) of one view; ``aspect`` = width / height."""
        if view == 0 or self.views == 1:
            return None, False
        box = (random_crop_box(view_rng(seed, index, view), self.crop, aspect=aspect)
               if self.crop else None)
        return box, view % 2 == 1

    def mask(self, x: torch.Tensor, seed: object, index: int, view: int) -> torch.Tensor:
        """The view's frequency mask (its own generator: independent of the crop draws)."""
        if not self.freq_mask or view == 0 or self.views == 1:
            return x
        return frequency_mask(x, view_rng(f"{seed}/freq_mask", index, view), self.freq_mask)


class RawPairs(PairDataset):
    """Base of the adapters: subclasses read raw arrays; this class augments (aligned crops,
    mirroring, frequency masks) and preprocesses them exactly as the nodes do."""

    def __init__(self, spec: dict[str, Any], modality: str, transforms: Transforms,
                 known_keys: frozenset[str]) -> None:
        unknown = set(spec) - known_keys - AUG_KEYS - {"kind"}
        if unknown:
            raise KeyError(f"{spec.get('kind')} dataset: unknown keys {sorted(unknown)}; "
                           f"known: {sorted(known_keys | AUG_KEYS | {'kind'})}")
        if modality not in SPOKES:
            raise ValueError(f"{spec.get('kind')} pairs images with one of {SPOKES}, "
                             f"not {modality!r}")
        self.modality = modality
        self.transforms = transforms
        self.aug = Augment.from_spec(spec, modality)
        self.num_views = self.aug.views
        self.seed = spec.get("seed", 0)

    @abc.abstractmethod
    def read_image(self, index: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) of pair ``index``."""

    @abc.abstractmethod
    def read_x(self, index: int) -> Any:
        """The raw X of pair ``index``: the registry's raw input of the modality
        (``imagebind_ros.modalities``: ``Sound``, ``DepthImage``, a thermal array,
        ``ImuSamples``)."""

    def _aug_key(self) -> str:
        a = self.aug
        return f"|crop{list(a.crop) if a.crop else None}|fm{a.freq_mask}|seed{self.seed}"

    def fingerprint(self) -> str:
        """Adds the augmentation to the identity: other crops, other cached features."""
        import hashlib
        return hashlib.sha256((super().fingerprint() + self._aug_key()).encode()).hexdigest()[
            :16]

    def load(self, index: int, view: int, image: bool = True) -> dict[str, torch.Tensor]:
        try:
            raw = self.read_x(index)
            img = self.read_image(index) if image else None
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{self.key(index)}: {e}") from e
        except Exception as e:  # corrupt or unexpected data: name the sample
            raise ValueError(f"{self.key(index)}: {type(e).__name__}: {e}") from e
        mspec = modalities.spec(self.modality)
        arr = mspec.pixels(raw) if mspec.pixels is not None else None
        # the box must not depend on `image` (the cache reads images, training does not):
        # registered maps share the image's aspect, so take it from the map when there is one
        ref = arr if arr is not None else img
        aspect = ref.shape[1] / ref.shape[0] if ref is not None else 1.0
        box, flip = self.aug.draw(self.seed, index, view, aspect)
        if arr is not None and (box is not None or flip):
            arr = crop(arr, box) if box is not None else arr
            arr = hflip(arr) if flip else arr
            raw = mspec.with_pixels(raw, arr)  # type: ignore[misc]
        x = self.aug.mask(self.transforms.tensor(self.modality, raw), self.seed, index, view)
        out = {self.modality: x}
        if img is not None:
            img = crop(img, box) if box is not None else img
            out["vision"] = self.transforms.image(hflip(img) if flip else img)
        return out


class PairEval(EvalSet):
    """A held-out set from a pair dataset: its view 0 (no augmentation), labels optional."""

    def __init__(self, pairs: RawPairs, labels: Sequence[int] | None = None,
                 classnames: Sequence[str] | None = None) -> None:
        self.pairs = pairs
        self.modalities = ("vision", pairs.modality)
        self.classnames = list(classnames) if classnames else None
        self._labels = list(labels) if labels is not None else None

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> dict[str, torch.Tensor]:
        return self.pairs.load(index, 0)

    def label(self, index: int) -> int:
        if self._labels is None:
            raise NotImplementedError("this evaluation set has no labels")
        return self._labels[index]


def eval_modality(spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The spec without its ``modality`` key, and that key (eval specs must name it)."""
    spec = dict(spec)
    modality = spec.pop("modality", None)
    if modality is None:
        raise ValueError(f"eval dataset {spec.get('kind')!r} needs 'modality' (the X paired "
                         "with the images)")
    return spec, str(modality)


def existing_path(spec: dict[str, Any], key: str = "root") -> Path:
    """``spec[key]`` as a path that exists; ValueError / FileNotFoundError naming it."""
    if not spec.get(key):
        raise ValueError(f"{spec.get('kind')} dataset needs '{key}'")
    p = Path(spec[key]).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{spec.get('kind')} dataset: {key} {p} does not exist")
    return p


def limited(items: list[Any], spec: dict[str, Any]) -> list[Any]:
    """The first ``spec["limit"]`` items (all without a limit)."""
    n = spec.get("limit")
    return items[:int(n)] if n else items


def labelled(names: Sequence[str], classes: Sequence[str] | None,
              ) -> tuple[list[int], list[str], list[int]]:
    """(kept indices, class names, label per kept index); ``classes`` restricts and orders."""
    classnames = list(classes) if classes else sorted(set(names))
    lookup = {c: i for i, c in enumerate(classnames)}
    keep = [i for i, n in enumerate(names) if n in lookup]
    return keep, classnames, [lookup[names[i]] for i in keep]


class Subset(RawPairs):
    """Some pairs of another adapter (the samples of the evaluated classes)."""

    def __init__(self, base: RawPairs, keep: list[int]) -> None:
        self.base, self.keep = base, keep
        self.modality, self.transforms = base.modality, base.transforms
        self.aug, self.num_views, self.seed = base.aug, base.num_views, base.seed

    def __len__(self) -> int:
        return len(self.keep)

    def key(self, index: int) -> str:
        return self.base.key(self.keep[index])

    def read_image(self, index: int) -> np.ndarray:
        return self.base.read_image(self.keep[index])

    def read_x(self, index: int) -> Any:
        return self.base.read_x(self.keep[index])
