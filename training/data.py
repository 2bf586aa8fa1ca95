"""The data contract of training: pair datasets, evaluation sets and a resumable epoch plan.

Every adapter (``training/datasets/``, the synthetic world) turns raw sensor data into model
inputs only through :class:`Transforms`, which asks the modality registry
(``imagebind_ros.modalities``, the same path the nodes take) with the constants stored in the
model config: what is trained is exactly what the nodes run.

A :class:`PairDataset` holds (image, X) pairs for one spoke modality X, the only supervision
ImageBind uses. Its augmentations must be a pure function of ``(index, view)`` so the frozen
hub's image embedding of each view can be cached once (``num_views`` of them per sample) and a
resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imagebind_ros import modalities
from imagebind_ros.model import ImageBindConfig


@dataclass(frozen=True)
class Transforms:
    """Raw inputs -> model tensors: the hub's image preprocessing (``image``: the hub may be
    another model than ImageBind's vision encoder) and, for every other modality, the
    registry's with the spokes' constants."""

    config: ImageBindConfig
    image: Callable[[np.ndarray], torch.Tensor]

    def tensor(self, modality: str, raw: Any) -> torch.Tensor:
        """One raw input (``imagebind_ros.modalities`` defines its type) -> one sample."""
        return modalities.to_tensor(modality, raw, self.config)

    def text(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> (N, context_length) token ids."""
        return modalities.to_batch("text", list(texts), self.config)


class PairDataset(abc.ABC):
    """(image, X) pairs for one modality X; see the module docstring for the rules."""

    #: the paired modality X (``"audio"``, ``"depth"`` ..., ``"text"`` to train a hub)
    modality: str
    #: distinct deterministic augmentation views per sample; ``None`` = unbounded (no cache)
    num_views: int | None = 1

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of distinct samples (before replication)."""

    @abc.abstractmethod
    def key(self, index: int) -> str:
        """A stable identity of sample ``index`` (file path, bag + stamp ...)."""

    @abc.abstractmethod
    def load(self, index: int, view: int, image: bool = True) -> dict[str, torch.Tensor]:
        """``{"vision": (image tensor, only if image), modality: tensor}`` for one view.

        The same ``(index, view)`` must always give the same tensors (seed any random
        augmentation from them), and the paired X must be augmented consistently with the
        image of the same view (an aligned crop, say).
        """

    def fingerprint(self) -> str:
        """Identity of the data for the hub-feature cache: changes when samples change."""
        h = hashlib.sha256(f"{type(self).__qualname__}|{self.modality}|{len(self)}|"
                           f"{self.num_views}".encode())
        for i in range(len(self)):
            h.update(self.key(i).encode() + b"\0")
        return h.hexdigest()[:16]


class EvalSet(abc.ABC):
    """Held-out samples with several modalities and (optionally) class labels."""

    #: modalities every sample holds (``"vision"`` included when there are images)
    modalities: tuple[str, ...]
    #: class names for zero-shot classification, ``None`` when unlabelled
    classnames: Sequence[str] | None = None

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of samples."""

    @abc.abstractmethod
    def load(self, index: int) -> dict[str, torch.Tensor]:
        """Every modality of sample ``index``, un-augmented."""

    def label(self, index: int) -> int:
        """Class index of sample ``index`` (only called when ``classnames`` is set)."""
        raise NotImplementedError(f"{type(self).__name__} has no labels")


PairFactory = Callable[[dict[str, Any], str, Transforms], PairDataset]
EvalFactory = Callable[[dict[str, Any], Transforms], EvalSet]
PAIR_DATASETS: dict[str, PairFactory] = {}
EVAL_DATASETS: dict[str, EvalFactory] = {}
# Modules that register dataset kinds when imported (the real-data adapters, the synthetic
# world); imported lazily so a missing optional dependency only matters when it is used.
_PROVIDERS = ("training.synthetic_data", "training.datasets")


def register_pair_dataset(kind: str) -> Callable[[PairFactory], PairFactory]:
    """Decorator: ``build_pair_dataset({"kind": kind, ...})`` calls the decorated factory."""
    def deco(fn: PairFactory) -> PairFactory:
        PAIR_DATASETS[kind] = fn
        return fn
    return deco


def register_eval_dataset(kind: str) -> Callable[[EvalFactory], EvalFactory]:
    """Decorator: ``build_eval_dataset({"kind": kind, ...})`` calls the decorated factory."""
    def deco(fn: EvalFactory) -> EvalFactory:
        EVAL_DATASETS[kind] = fn
        return fn
    return deco


def _lookup(registry: dict[str, Any], spec: dict[str, Any], what: str) -> Any:
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"{what} spec must be a mapping with a 'kind', got {spec!r}")
    for mod in _PROVIDERS:
        if spec["kind"] in registry:
            break
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    if spec["kind"] not in registry:
        raise ValueError(f"unknown {what} kind {spec['kind']!r}; known: {sorted(registry)}")
    return registry[spec["kind"]]


def build_pair_dataset(spec: dict[str, Any], modality: str,
                       transforms: Transforms) -> PairDataset:
    """Build the (image, ``modality``) dataset described by ``spec`` (``kind`` + options)."""
    ds = _lookup(PAIR_DATASETS, spec, "pair dataset")(spec, modality, transforms)
    if ds.modality != modality:
        raise ValueError(f"dataset {spec['kind']!r} gives {ds.modality!r} pairs, "
                         f"not {modality!r}")
    if len(ds) == 0:
        raise ValueError(f"dataset {spec!r} for {modality!r} is empty")
    return ds


def build_eval_dataset(spec: dict[str, Any], transforms: Transforms) -> EvalSet:
    """Build the evaluation set described by ``spec``."""
    return _lookup(EVAL_DATASETS, spec, "eval dataset")(spec, transforms)


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process and Python run (unlike ``hash``)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


@dataclass(frozen=True)
class EpochPlan:
    """Which (sample, view) every rank sees at every step: a pure function of the seed.

    Each modality's samples are replicated ``replicate[m]`` times, shuffled per epoch and
    cycled to fill ``steps`` global batches, so every step has a full batch of every modality
    (contrastive losses need equal, full batches on every rank) and a run resumed at step
    ``s`` continues with exactly the batches the uninterrupted run would have seen.
    """

    sizes: dict[str, int]
    views: dict[str, int]  # per modality: the dataset's num_views, 0 when unbounded
    replicate: dict[str, int]
    global_batch: int
    seed: int
    steps_override: int | None = None

    @property
    def steps(self) -> int:
        if self.steps_override:
            return int(self.steps_override)
        return max(-(-self.sizes[m] * self.replicate.get(m, 1) // self.global_batch)
                   for m in self.sizes)

    def order(self, modality: str, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample indices and views of the whole epoch, ``steps * global_batch`` each."""
        g = torch.Generator().manual_seed(stable_seed(self.seed, epoch, modality))
        n = self.sizes[modality] * self.replicate.get(modality, 1)
        total = self.steps * self.global_batch
        perm = torch.randperm(n, generator=g)
        idx = perm.repeat(-(-total // n))[:total] % self.sizes[modality]
        nv = self.views.get(modality, 1)  # 0: unbounded augmentation, any view id is new
        views = torch.randint(nv if nv > 0 else 2 ** 31 - 1, (total,), generator=g)
        return idx, views

    def batches(self, modality: str, epoch: int, start_step: int, rank: int,
                world: int) -> list[list[tuple[int, int]]]:
        """This rank's slice of every global batch from ``start_step`` to the epoch's end."""
        if self.global_batch % world:
            raise ValueError(f"batch_size {self.global_batch} is not divisible by the "
                             f"{world} processes")
        local = self.global_batch // world
        idx, views = self.order(modality, epoch)
        out = []
        for s in range(start_step, self.steps):
            lo = s * self.global_batch + rank * local
            out.append(list(zip(idx[lo:lo + local].tolist(), views[lo:lo + local].tolist())))
        return out


class _PairItems(Dataset):
    """Map-style view of a pair dataset indexed by ``(index, view)``."""

    def __init__(self, ds: PairDataset, image: bool) -> None:
        self.ds = ds
        self.image = image

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, iv: tuple[int, int]) -> dict[str, Any]:
        i, v = iv
        item = self.ds.load(i, v, image=self.image)
        return {**item, "index": i, "view": v}


def pair_loader(ds: PairDataset, batches: list[list[tuple[int, int]]], image: bool,
                num_workers: int, seed: int, pin_memory: bool = False) -> Iterator[dict]:
    """Iterate the given batches; its own generator keeps the global RNG untouched, which
    exact resumption needs (a DataLoader otherwise draws its worker seed from it)."""
    loader = DataLoader(_PairItems(ds, image), batch_sampler=batches, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(seed), pin_memory=pin_memory,
                        persistent_workers=False)
    return iter(loader)
