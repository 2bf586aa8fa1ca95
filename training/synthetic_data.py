"""Dataset kind ``synthetic``: (image, X) pairs and held-out sets from the SYNTHETIC world.

Each spoke gets its own draw of the world (seed derived from the modality), so, as in the
paper, no two spokes share a training sample: audio and depth never meet. Sensor data are
rendered and preprocessed once per run (the modality registry via :class:`Transforms`, as
the nodes do); images are kept as uint8 renders and preprocessed when loaded, so the
uncached path pays for image preprocessing as a real data set would.

Spec keys: ``n`` samples, ``seed``, ``split`` (train | val | test), ``classes`` (2-8),
``world_seed``, ``image_size`` (render size), ``modalities`` (eval sets only) and the
augmentation (pair datasets):

* ``views``: augmented views per sample (default 1: none; ``null``: unbounded, which rules
  out the hub-feature cache). View 0 is always the plain pair; odd views are mirrored (image
  and a paired depth/thermal map together);
* ``crop``: ``[min, max]`` area fraction of a random crop of views >= 1 that keeps the
  object whole (so the caption or sound still matches), cut at the same place from a paired
  depth/thermal map (``training/augment.py``);
* ``freq_mask``: audio views >= 1 get one frequency mask of up to this many mel bins;
* ``background``: (text pairs only) add this fraction of ``n`` object-free frames, each
  captioned as background (``SyntheticWorld.background_caption``). Without them every
  training image holds an object, and a detector's windows of plain background end up
  closest to some class (the smallest one); with them background has its own embedding.
  The first ``n`` samples are the same with or without them;
* ``parts``: (text pairs only, with ``crop``) this share of the views >= 1 of object
  samples becomes a hard negative instead: a square crop showing only a part of the object
  (``training/augment.partial_crop_box``, area ``part_crop`` of the frame, holding a share
  ``part_cover`` of the object's box) captioned as background, so that windows that cut an
  object score below windows that hold it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from imagebind_ros.decode import DepthImage, Sound
from imagebind_ros import modalities
from imagebind_ros.modalities import ImuSamples
from imagebind_ros.synthetic import BACKGROUND_CAPTIONS, SyntheticWorld, thermal_to_mono16

from .augment import (CropBox, crop, frequency_mask, hflip, partial_crop_box, random_crop_box,
                      view_rng)
from .data import (
    EvalSet,
    PairDataset,
    Transforms,
    register_eval_dataset,
    register_pair_dataset,
    stable_seed,
)
from .dense_objective import view_box

SPEC_KEYS = {"kind", "n", "seed", "split", "classes", "world_seed", "image_size", "views",
             "modalities", "crop", "freq_mask", "background", "parts", "part_crop",
             "part_cover"}


def world_from(spec: dict[str, Any]) -> SyntheticWorld:
    """The world a spec describes (same world_seed + classes = same class signatures)."""
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise KeyError(f"synthetic dataset: unknown keys {sorted(unknown)}; "
                       f"known: {sorted(SPEC_KEYS)}")
    return SyntheticWorld(num_classes=int(spec.get("classes", 8)),
                          seed=int(spec.get("world_seed", 0)),
                          image_size=int(spec.get("image_size", 112)))


def raw_input(modality: str, sample: Any, world: SyntheticWorld) -> Any:
    """One sample's ``modality`` as its sensor publishes it, as the registry's raw input:
    depth in metres (32FC1), thermal as mono16 counts, sound at the world's rate."""
    if modality == "audio":
        return Sound(sample.audio, world.sample_rate)
    if modality == "depth":
        return DepthImage(sample.depth_m, "m")
    if modality == "thermal":
        return thermal_to_mono16(sample.thermal)
    if modality == "imu":
        return ImuSamples(sample.imu, sample.imu_t)
    if modality == "text":
        return sample.caption
    raise ValueError(f"the synthetic world has no modality {modality!r}")


def _flip(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, dims=[-1])


class SyntheticPairs(PairDataset):
    """(image, ``modality``) pairs of one draw of the synthetic world."""

    def __init__(self, spec: dict[str, Any], modality: str, transforms: Transforms) -> None:
        self.world = world_from(spec)
        self.modality = modality
        views = spec.get("views", 1)
        self.num_views = None if views is None else int(views)
        if self.num_views is not None and self.num_views < 1:
            raise ValueError(f"synthetic views must be >= 1 or null (unbounded), got {views}")
        self.crop = spec.get("crop")
        if self.crop is not None and (not isinstance(self.crop, (list, tuple))
                                      or len(self.crop) != 2):
            raise ValueError(f"synthetic crop must be [min, max] area fractions, got "
                             f"{self.crop!r}")
        self.freq_mask = int(spec.get("freq_mask") or 0)
        if self.freq_mask and modality != "audio":
            raise ValueError(f"freq_mask applies to audio, not {modality!r}")
        if self.num_views == 1 and (self.crop or self.freq_mask):
            raise ValueError("crop/freq_mask augment views >= 1: set views > 1 (or null)")
        self.transforms = transforms
        self.split = str(spec.get("split", "train"))
        self.seed = stable_seed(spec.get("seed", 0), modality)
        n = int(spec["n"])
        samples = self.world.dataset(n, self.split, self.seed, ("vision", modality))
        self.images = [s.image for s in samples]
        self.classnames = list(self.world.classes)
        self.class_ids = [s.class_id for s in samples]
        h, w = self.world.image_hw
        self.boxes: list[np.ndarray | None] = [
            s.box / np.array([w, h, w, h], np.float64) for s in samples]
        n_bg = round(n * float(spec.get("background") or 0.0))
        if n_bg and modality != "text":
            raise ValueError(f"background frames are captioned: text pairs only, not "
                             f"{modality!r}")
        if n_bg < 0:
            raise ValueError(f"synthetic background must be a fraction >= 0, got "
                             f"{spec.get('background')!r}")
        self.parts = float(spec.get("parts") or 0.0)
        self.part_crop = tuple(spec.get("part_crop") or (0.05, 0.5))
        self.part_cover = tuple(spec.get("part_cover") or (0.02, 0.35))
        if self.parts and (modality != "text" or not self.crop):
            raise ValueError("parts (partial-object negatives) need text pairs with crop")
        if not 0 <= self.parts <= 1:
            raise ValueError(f"synthetic parts must be a share in [0, 1], got {self.parts}")
        captions: list[str] = []
        for g in np.random.default_rng([self.world.seed, self.seed, 0xB6]).spawn(n_bg):
            g_img, g_cap = g.spawn(2)
            self.images.append(self.world.background(g_img, ("vision",)).image)
            captions.append(self.world.background_caption(g_cap))
            self.boxes.append(None)  # no object to keep whole: any crop is background
            self.class_ids.append(-1)
        self.spatial = modalities.spec(modality).pixels is not None
        # raw maps are kept only where crops must cut them before preprocessing
        self.raw = ([raw_input(modality, s, self.world) for s in samples]
                    if self.crop and self.spatial else None)
        self.x = [transforms.tensor(modality, raw_input(modality, s, self.world))
                  for s in tqdm(samples, desc=f"preprocess {modality}", leave=False,
                                disable=None)]
        self.x += [transforms.text([c])[0] for c in captions]
        self.background_x = transforms.text(list(BACKGROUND_CAPTIONS)) if self.parts else None
        aug = "" if self.crop is None else f"/crop{list(self.crop)}"
        aug += f"/fm{self.freq_mask}" if self.freq_mask else ""
        aug += f"/bg{n_bg}" if n_bg else ""
        aug += (f"/parts{self.parts}{list(self.part_crop)}{list(self.part_cover)}"
                if self.parts else "")
        self._id = (f"synthetic/{self.world.seed}/{self.world.num_classes}/"
                    f"{self.world.image_hw[0]}/{self.split}/{self.seed}{aug}")

    def __len__(self) -> int:
        return len(self.x)

    def key(self, index: int) -> str:
        return f"{self._id}/{index}"

    def load(self, index: int, view: int, image: bool = True) -> dict[str, torch.Tensor]:
        x, img = self.x[index], self.images[index]
        if view == 0 or self.num_views == 1:
            out = {self.modality: x}
            if image:
                out["vision"] = self.transforms.image(img)
            return self._with_object(out, index, None, False)
        flip = view % 2 == 1
        rng = view_rng(self.seed, index, view)
        h, w = self.world.image_hw
        obj = self.boxes[index]
        box = None
        if self.background_x is not None and obj is not None and rng.random() < self.parts:
            box = partial_crop_box(rng, self.part_crop, obj, self.part_cover, aspect=w / h)
            if box is not None:
                x = self.background_x[int(rng.integers(len(self.background_x)))]
        if box is None and self.crop:
            box = random_crop_box(rng, self.crop, aspect=w / h, contain=obj)
        if self.spatial and self.raw is not None and box is not None:
            s = modalities.spec(self.modality)
            raw = self.raw[index]
            pixels = crop(s.pixels(raw), box)  # type: ignore[misc]
            raw = s.with_pixels(raw, hflip(pixels) if flip else pixels)  # type: ignore[misc]
            x = self.transforms.tensor(self.modality, raw)
        elif self.spatial and flip:
            x = _flip(x)
        if self.freq_mask:
            x = frequency_mask(x, rng, self.freq_mask)
        out = {self.modality: x}
        if image:
            img = crop(img, box) if box is not None else img
            out["vision"] = self.transforms.image(hflip(img) if flip else img)
        return self._with_object(out, index, box, flip)

    def _with_object(self, out: dict[str, torch.Tensor], index: int, box: CropBox | None,
                     flip: bool) -> dict[str, torch.Tensor]:
        """Text pairs also carry where their object lies in the model input (the hub's
        dense objective, ``training/dense_objective.py``)."""
        if self.modality == "text" and "vision" in out:
            out["object_box"] = torch.tensor(view_box(self.boxes[index], box,
                                                      self.world.image_hw, flip))
            out["class_id"] = torch.tensor(self.class_ids[index])
        return out


class SyntheticEval(EvalSet):
    """Held-out samples with every requested modality and the class labels."""

    def __init__(self, spec: dict[str, Any], transforms: Transforms,
                 default_modalities: Sequence[str]) -> None:
        self.world = world_from(spec)
        self.modalities = tuple(spec.get("modalities") or default_modalities)
        self.classnames = list(self.world.classes)
        samples = self.world.dataset(int(spec["n"]), str(spec.get("split", "test")),
                                     int(spec.get("seed", 0)), self.modalities)
        self._labels = [s.class_id for s in samples]
        self.items = []
        for s in tqdm(samples, desc="preprocess eval", leave=False, disable=None):
            item = {m: transforms.tensor(m, raw_input(m, s, self.world))
                    for m in self.modalities if m != "vision"}
            if "vision" in self.modalities:
                item["vision"] = transforms.image(s.image)
            self.items.append(item)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]

    def label(self, index: int) -> int:
        return self._labels[index]


@register_pair_dataset("synthetic")
def _pairs(spec: dict[str, Any], modality: str, transforms: Transforms) -> SyntheticPairs:
    return SyntheticPairs(spec, modality, transforms)


@register_eval_dataset("synthetic")
def _eval(spec: dict[str, Any], transforms: Transforms) -> SyntheticEval:
    cfg = transforms.config
    mods = ["vision"] + [m for m in ("audio", "depth", "thermal", "imu")
                         if getattr(cfg, m, None) is not None]
    return SyntheticEval(spec, transforms, mods)
