"""Kind ``sunrgbd``: SUN RGB-D folders (image, bit-rotated depth PNG, scene class)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from imagebind_ros import modalities
from imagebind_ros.decode import DepthImage

from ..data import Transforms, register_eval_dataset, register_pair_dataset
from .common import PairEval, RawPairs, Subset, existing_path, labelled, limited

log = logging.getLogger(__name__)


def sunrgbd_depth_mm(raw: np.ndarray) -> np.ndarray:
    """SUN RGB-D's stored depth PNG -> millimetres: the 16 bits are rotated right by 3
    (the toolbox's ``bitor(bitshift(d, -3), bitshift(d, 16 - 3))``)."""
    v = np.asarray(raw).astype(np.uint16)
    return (v >> np.uint16(3)) | (v << np.uint16(13))


class SunRgbd(RawPairs):
    """SUN RGB-D: every folder holding ``image/*.jpg`` and ``depth_bfx/*.png`` (or
    ``depth/``) is one sample; depth PNGs are bit-rotated millimetres (see
    :func:`sunrgbd_depth_mm`); ``scene.txt`` holds the scene class."""

    KEYS = frozenset({"root", "depth_dir", "list", "limit", "classes"})

    def __init__(self, spec: dict[str, Any], modality: str, transforms: Transforms) -> None:
        super().__init__(spec, modality, transforms, self.KEYS)
        if modality != "depth":
            raise ValueError(f"SUN RGB-D pairs images with depth, not {modality!r}")
        root = existing_path(spec)
        depth_dir = spec.get("depth_dir", "depth_bfx")
        if spec.get("list"):
            rel = [ln.strip().strip("/") for ln in Path(spec["list"]).read_text().splitlines()
                   if ln.strip() and not ln.startswith("#")]
            dirs = [root / r for r in rel]
        else:
            dirs = sorted(p.parent for p in root.rglob("image") if p.is_dir())
        self.items: list[tuple[Path, Path, str | None]] = []
        bad = []
        for d in dirs:
            imgs = sorted((d / "image").glob("*.jpg")) + sorted((d / "image").glob("*.png"))
            deps = sorted((d / depth_dir).glob("*.png"))
            if len(imgs) != 1 or len(deps) != 1:
                bad.append(d)
                continue
            scene = d / "scene.txt"
            self.items.append((imgs[0], deps[0], scene.read_text().strip()
                               if scene.is_file() else None))
        if bad:
            log.warning("SUN RGB-D: %d folders without exactly one image/ and one %s/ file "
                        "are skipped, e.g. %s", len(bad), depth_dir, bad[0])
        self.items = limited(self.items, spec)
        self._id = f"sunrgbd:{root.resolve()}|{depth_dir}"
        self.root = root

    def __len__(self) -> int:
        return len(self.items)

    def key(self, index: int) -> str:
        return f"{self._id}/{self.items[index][0].relative_to(self.root)}"

    def read_image(self, index: int) -> np.ndarray:
        return modalities.load_file("vision", self.items[index][0])

    def read_x(self, index: int) -> Any:
        stored = modalities.load_file("depth", self.items[index][1])
        return DepthImage(sunrgbd_depth_mm(stored.array), "mm")


@register_pair_dataset("sunrgbd")
def _sun(spec: dict[str, Any], modality: str, transforms: Transforms) -> SunRgbd:
    return SunRgbd(spec, modality, transforms)


@register_eval_dataset("sunrgbd")
def _sun_eval(spec: dict[str, Any], transforms: Transforms) -> PairEval:
    spec = dict(spec)
    spec.pop("modality", None)
    pairs = SunRgbd(spec, "depth", transforms)
    names = [s or "" for _, _, s in pairs.items]
    keep, classnames, labels = labelled(names, spec.get("classes"))
    if not spec.get("classes") and "" in classnames:
        raise ValueError("SUN RGB-D evaluation: some folders lack scene.txt; list the "
                         "classes to evaluate with 'classes'")
    return PairEval(Subset(pairs, keep), labels, [c.replace("_", " ") for c in classnames])
