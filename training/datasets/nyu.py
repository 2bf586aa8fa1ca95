"""Kind ``nyu_depth_v2``: the labelled NYU Depth v2 ``.mat`` file (HDF5), official split."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from imagebind_ros.decode import DepthImage

from ..data import Transforms, register_eval_dataset, register_pair_dataset
from .common import PairEval, RawPairs, Subset, existing_path, labelled, limited


class NyuDepthV2(RawPairs):
    """``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5): ``images`` (N, 3, W, H) uint8,
    ``depths`` (N, W, H) float32 metres, ``sceneTypes`` (1, N) strings; the official split
    from ``splits.mat`` (``trainNdxs`` / ``testNdxs``, 1-based) when ``splits`` is given."""

    KEYS = frozenset({"path", "splits", "split", "limit", "classes"})

    def __init__(self, spec: dict[str, Any], modality: str, transforms: Transforms) -> None:
        super().__init__(spec, modality, transforms, self.KEYS)
        if modality != "depth":
            raise ValueError(f"NYU Depth v2 pairs images with depth, not {modality!r}")
        import h5py
        self.path = existing_path(spec, "path")
        try:
            with h5py.File(self.path, "r") as f:
                for k in ("images", "depths"):
                    if k not in f:
                        raise ValueError(f"{self.path}: no '{k}' array (not the labelled "
                                         "NYU Depth v2 .mat file?)")
                n = f["images"].shape[0]
                if f["images"].shape[1] != 3 or f["depths"].shape[0] != n:
                    raise ValueError(f"{self.path}: images {f['images'].shape} / depths "
                                     f"{f['depths'].shape} are not (N, 3, W, H) / (N, W, H)")
                self.scenes = ([_h5_string(f, ref) for ref in f["sceneTypes"][0]]
                               if "sceneTypes" in f else None)
        except OSError as e:
            raise ValueError(f"{self.path}: not an HDF5 (MATLAB v7.3) file: {e}") from e
        split = spec.get("split", "train")
        if spec.get("splits"):
            from scipy.io import loadmat
            key = {"train": "trainNdxs", "test": "testNdxs"}.get(split)
            if key is None:
                raise ValueError(f"NYU split must be train or test, got {split!r}")
            idx = np.asarray(loadmat(spec["splits"])[key]).ravel().astype(int) - 1
            if idx.min() < 0 or idx.max() >= n:
                raise ValueError(f"{spec['splits']}: indices outside 1..{n}")
        elif split in ("all", None):
            idx = np.arange(n)
        else:
            raise ValueError("NYU Depth v2: give 'splits' (splits.mat) for train/test, or "
                             "split: all")
        self.index = limited(idx.tolist(), spec)
        self._h5: Any = None
        self._pid = os.getpid()

    def _file(self) -> Any:
        if self._h5 is None or os.getpid() != self._pid:
            import h5py
            self._h5, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._h5

    def __len__(self) -> int:
        return len(self.index)

    def key(self, index: int) -> str:
        return f"nyu:{self.path.resolve()}/{self.index[index]}"

    def read_image(self, index: int) -> np.ndarray:
        return np.ascontiguousarray(self._file()["images"][self.index[index]].transpose(2, 1, 0))

    def read_x(self, index: int) -> Any:
        depths = self._file()["depths"][self.index[index]]
        return DepthImage(np.ascontiguousarray(depths.T), "m")

    def scene(self, index: int) -> str | None:
        return self.scenes[self.index[index]] if self.scenes else None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_h5": None}


def _h5_string(f: Any, ref: Any) -> str:
    """A MATLAB char array stored in HDF5 (uint16 codes) -> str."""
    return "".join(map(chr, np.asarray(f[ref]).ravel()))


@register_pair_dataset("nyu_depth_v2")
def _nyu(spec: dict[str, Any], modality: str, transforms: Transforms) -> NyuDepthV2:
    return NyuDepthV2(spec, modality, transforms)


@register_eval_dataset("nyu_depth_v2")
def _nyu_eval(spec: dict[str, Any], transforms: Transforms) -> PairEval:
    spec = {"split": "test", **spec}
    spec.pop("modality", None)
    pairs = NyuDepthV2(spec, "depth", transforms)
    if not pairs.scenes:
        return PairEval(pairs)
    keep, classnames, labels = labelled([pairs.scene(i) for i in range(len(pairs))],
                                         spec.get("classes"))
    return PairEval(Subset(pairs, keep), labels, [c.replace("_", " ") for c in classnames])
