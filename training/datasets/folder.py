"""Kinds ``folder`` and ``llvip``: files of the same relative name in two folders."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagebind_ros import modalities

from ..data import Transforms, register_eval_dataset, register_pair_dataset
from .common import IMAGE_EXTS, X_EXTS, PairEval, RawPairs, eval_modality, existing_path, limited

log = logging.getLogger(__name__)


def _stems(folder: Path, exts: Sequence[str]) -> dict[str, Path]:
    """Relative path without extension -> file, for files with one of ``exts``."""
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        name = p.relative_to(folder).as_posix()
        ext = next((e for e in exts if name.lower().endswith("." + e)), None)
        if ext is not None:
            out.setdefault(name[:-len(ext) - 1], p)
    return out


class FolderPairs(RawPairs):
    """Pairs of files with the same relative name in two folders (LLVIP-style)."""

    KEYS = frozenset({"root", "image_dir", "x_dir", "split", "limit"})

    def __init__(self, spec: dict[str, Any], modality: str, transforms: Transforms) -> None:
        super().__init__(spec, modality, transforms, self.KEYS)
        root = existing_path(spec)
        if not spec.get("image_dir") or not spec.get("x_dir"):
            raise ValueError("folder dataset needs image_dir and x_dir (under root)")
        split = spec.get("split") or ""
        img_dir = root / spec["image_dir"] / split
        x_dir = root / spec["x_dir"] / split
        for d in (img_dir, x_dir):
            if not d.is_dir():
                raise FileNotFoundError(f"folder dataset: {d} is not a directory")
        images, xs = _stems(img_dir, IMAGE_EXTS), _stems(x_dir, X_EXTS[modality])
        both = sorted(set(images) & set(xs))
        lone = len(images) + len(xs) - 2 * len(both)
        if lone:
            log.warning("%s: %d files without a partner in %s / %s are skipped", root, lone,
                        img_dir.name, x_dir.name)
        both = limited(both, spec)
        self.items = [(images[k], xs[k]) for k in both]
        self.names = both
        self._id = f"folder:{img_dir.resolve()}|{x_dir.resolve()}"

    def __len__(self) -> int:
        return len(self.items)

    def key(self, index: int) -> str:
        return f"{self._id}/{self.names[index]}"

    def read_image(self, index: int) -> np.ndarray:
        return modalities.load_file("vision", self.items[index][0])

    def read_x(self, index: int) -> Any:
        return modalities.load_file(self.modality, self.items[index][1])


def _llvip_spec(spec: dict[str, Any], modality: str) -> dict[str, Any]:
    if modality != "thermal":
        raise ValueError(f"LLVIP pairs visible images with infrared (thermal), not {modality}")
    out = {k: v for k, v in spec.items() if k != "kind"}
    out.setdefault("split", "train")
    return {"kind": "llvip", "image_dir": "visible", "x_dir": "infrared", **out}


@register_pair_dataset("folder")
def _folder(spec: dict[str, Any], modality: str, transforms: Transforms) -> FolderPairs:
    return FolderPairs(spec, modality, transforms)


@register_pair_dataset("llvip")
def _llvip(spec: dict[str, Any], modality: str, transforms: Transforms) -> FolderPairs:
    return FolderPairs(_llvip_spec(spec, modality), modality, transforms)


@register_eval_dataset("folder")
def _folder_eval(spec: dict[str, Any], transforms: Transforms) -> PairEval:
    spec, m = eval_modality(spec)
    return PairEval(FolderPairs(spec, m, transforms))


@register_eval_dataset("llvip")
def _llvip_eval(spec: dict[str, Any], transforms: Transforms) -> PairEval:
    spec = {"split": "test", **spec}
    m = spec.pop("modality", "thermal")
    return PairEval(FolderPairs(_llvip_spec(spec, m), m, transforms))
