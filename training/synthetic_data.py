"""Dataset kind ``synthetic``: (image, X) pairs and held-out sets from the SYNTHETIC world.

Each spoke gets its own draw of the world (seed derived from the modality), so, as in the
paper, no two spokes share a training sample: audio and depth never meet. Sensor data are
rendered and preprocessed once per run (``imagebind_ros.preprocess`` via :class:`Transforms`,
as the nodes do); images are kept as uint8 renders and preprocessed when loaded, so the
uncached path pays for image preprocessing as a real data set would.

Spec keys: ``n`` samples, ``seed``, ``split`` (train | val | test), ``classes`` (2-8),
``world_seed``, ``image_size`` (render size), ``views`` (1, or 2 = also a horizontal flip of
the image and of a paired depth/thermal map), ``modalities`` (eval sets only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from imagebind_ros.synthetic import SyntheticWorld, thermal_to_mono16

from .data import (EvalSet, PairDataset, Transforms, register_eval_dataset,
                   register_pair_dataset, stable_seed)

SPEC_KEYS = {"kind", "n", "seed", "split", "classes", "world_seed", "image_size", "views",
             "modalities"}
SPATIAL = ("depth", "thermal")


def world_from(spec: dict[str, Any]) -> SyntheticWorld:
    """The world a spec describes (same world_seed + classes = same class signatures)."""
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise KeyError(f"synthetic dataset: unknown keys {sorted(unknown)}; "
                       f"known: {sorted(SPEC_KEYS)}")
    return SyntheticWorld(num_classes=int(spec.get("classes", 8)),
                          seed=int(spec.get("world_seed", 0)),
                          image_size=int(spec.get("image_size", 112)))


def sensor_tensor(modality: str, sample: Any, world: SyntheticWorld,
                  transforms: Transforms) -> torch.Tensor:
    """One sample's ``modality`` as the node would preprocess what the sensor publishes."""
    if modality == "audio":
        return transforms.audio(sample.audio, world.sample_rate)
    if modality == "depth":
        return transforms.depth(sample.depth_m, units="m")
    if modality == "thermal":
        return transforms.thermal(thermal_to_mono16(sample.thermal))
    if modality == "imu":
        return transforms.imu(sample.imu, sample.imu_t)
    if modality == "text":
        return transforms.text([sample.caption])[0]
    raise ValueError(f"the synthetic world has no modality {modality!r}")


def _flip(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, dims=[-1])


class SyntheticPairs(PairDataset):
    """(image, ``modality``) pairs of one draw of the synthetic world."""

    def __init__(self, spec: dict[str, Any], modality: str, transforms: Transforms) -> None:
        self.world = world_from(spec)
        self.modality = modality
        self.num_views = int(spec.get("views", 1))
        if self.num_views not in (1, 2):
            raise ValueError(f"synthetic views must be 1 or 2, got {self.num_views}")
        self.transforms = transforms
        self.split = str(spec.get("split", "train"))
        self.seed = stable_seed(spec.get("seed", 0), modality)
        n = int(spec["n"])
        samples = self.world.dataset(n, self.split, self.seed, ("vision", modality))
        self.images = [s.image for s in samples]
        self.labels = [s.class_id for s in samples]
        self.x = [sensor_tensor(modality, s, self.world, transforms)
                  for s in tqdm(samples, desc=f"preprocess {modality}", leave=False,
                                disable=None)]
        self._id = (f"synthetic/{self.world.seed}/{self.world.num_classes}/"
                    f"{self.world.image_hw[0]}/{self.split}/{self.seed}")

    def __len__(self) -> int:
        return len(self.x)

    def key(self, index: int) -> str:
        return f"{self._id}/{index}"

    def load(self, index: int, view: int, image: bool = True) -> dict[str, torch.Tensor]:
        flip = view % 2 == 1 and self.num_views == 2
        x = self.x[index]
        out = {self.modality: _flip(x) if flip and self.modality in SPATIAL else x}
        if image:
            img = self.images[index][:, ::-1] if flip else self.images[index]
            out["vision"] = self.transforms.image(np.ascontiguousarray(img))
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
            item = {m: sensor_tensor(m, s, self.world, transforms)
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
