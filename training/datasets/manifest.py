"""Kind ``manifest``: a CSV/TSV file listing image and X paths (and labels)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from imagebind_ros import modalities

from ..data import Transforms, register_eval_dataset, register_pair_dataset
from .common import PairEval, RawPairs, Subset, eval_modality, existing_path, labelled, limited


class ManifestPairs(RawPairs):
    """Rows of a CSV/TSV file: an image path column and an X path column (relative paths
    are relative to ``root``, default the manifest's folder); optional label column."""

    KEYS = frozenset({"path", "root", "image_column", "x_column", "label_column", "delimiter",
                      "limit", "classes"})

    def __init__(self, spec: dict[str, Any], modality: str, transforms: Transforms) -> None:
        super().__init__(spec, modality, transforms, self.KEYS)
        path = existing_path(spec, "path")
        root = Path(spec["root"]) if spec.get("root") else path.parent
        icol, xcol = spec.get("image_column", "image"), spec.get("x_column", modality)
        lcol = spec.get("label_column")
        delim = spec.get("delimiter") or ("\t" if path.suffix.lower() in (".tsv", ".tab")
                                          else ",")
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter=delim)
            cols = reader.fieldnames or []
            missing = [c for c in (icol, xcol, lcol) if c and c not in cols]
            if missing:
                raise ValueError(f"{path}: no column(s) {missing}; columns are {cols}")
            rows = list(reader)
        rows = limited(rows, spec)
        self.items: list[tuple[Path, Path]] = []
        absent = []
        for r in rows:
            pair = (root / r[icol], root / r[xcol])
            absent += [str(p) for p in pair if not p.is_file()]
            self.items.append(pair)
        if absent:
            raise FileNotFoundError(f"{path}: {len(absent)} listed files do not exist, e.g. "
                                    f"{absent[:3]}")
        self.label_names = [r[lcol] for r in rows] if lcol else None
        self._id = f"manifest:{path.resolve()}"

    def __len__(self) -> int:
        return len(self.items)

    def key(self, index: int) -> str:
        return f"{self._id}/{index}:{self.items[index][0]}|{self.items[index][1]}"

    def read_image(self, index: int) -> np.ndarray:
        return modalities.load_file("vision", self.items[index][0])

    def read_x(self, index: int) -> Any:
        return modalities.load_file(self.modality, self.items[index][1])


@register_pair_dataset("manifest")
def _manifest(spec: dict[str, Any], modality: str, transforms: Transforms) -> ManifestPairs:
    return ManifestPairs(spec, modality, transforms)


@register_eval_dataset("manifest")
def _manifest_eval(spec: dict[str, Any], transforms: Transforms) -> PairEval:
    spec, m = eval_modality(spec)
    pairs = ManifestPairs(spec, m, transforms)
    if pairs.label_names is None:
        return PairEval(pairs)
    keep, classnames, labels = labelled(pairs.label_names, spec.get("classes"))
    return PairEval(Subset(pairs, keep), labels, classnames)
