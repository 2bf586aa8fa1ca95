"""Eval kind ``esc50``: ESC-50 clips, audio -> text zero-shot over its 50 classes."""

from __future__ import annotations

import csv
from typing import Any

import torch

from imagebind_ros import modalities

from ..data import EvalSet, Transforms, register_eval_dataset
from .common import existing_path, limited


class Esc50(EvalSet):
    """ESC-50 (``meta/esc50.csv`` + ``audio/*.wav``, 5-s clips, 50 classes): audio -> text
    zero-shot; ``folds`` picks the folds (default all five)."""

    def __init__(self, spec: dict[str, Any], transforms: Transforms) -> None:
        unknown = set(spec) - {"kind", "root", "folds", "limit"}
        if unknown:
            raise KeyError(f"esc50: unknown keys {sorted(unknown)}")
        root = existing_path(spec)
        meta = root / "meta" / "esc50.csv"
        if not meta.is_file():
            raise FileNotFoundError(f"esc50: {meta} not found (root is the ESC-50-master "
                                    "folder)")
        with open(meta, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        folds = {int(x) for x in (spec.get("folds") or [1, 2, 3, 4, 5])}
        rows = limited([r for r in rows if int(r["fold"]) in folds], spec)
        if not rows:
            raise ValueError(f"esc50: no clips in folds {sorted(folds)}")
        names = {int(r["target"]): r["category"].replace("_", " ") for r in rows}
        targets = sorted(names)  # a subset may lack classes: labels are re-numbered 0..K-1
        remap = {t: i for i, t in enumerate(targets)}
        self.classnames = [names[t] for t in targets]
        self.files = [root / "audio" / r["filename"] for r in rows]
        self._labels = [remap[int(r["target"])] for r in rows]
        self.modalities = ("audio",)
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> dict[str, torch.Tensor]:
        return {"audio": self.transforms.tensor("audio",
                                                modalities.load_file("audio", self.files[index]))}

    def label(self, index: int) -> int:
        return self._labels[index]


@register_eval_dataset("esc50")
def _esc50(spec: dict[str, Any], transforms: Transforms) -> Esc50:
    return Esc50(spec, transforms)
