"""Real-data adapters: (image, X) pair datasets and evaluation sets from files, tar shards
and ROS 2 bags. Layouts are documented in docs/training.md; every kind is tested on a small
fake copy of its layout (tests/test_datasets.py).

Pair kinds (``data.train.<modality>: {kind: ..., ...}``):

* ``folder``: ``<root>/<image_dir>/**/NAME.ext`` + ``<root>/<x_dir>/**/NAME.ext``, matched by
  relative path without extension (LLVIP's ``visible/`` + ``infrared/``);
* ``manifest``: a CSV/TSV file with an image path column and an X path column;
* ``webdataset``: tar shards of ``KEY.jpg`` + ``KEY.wav|.flac|.depth.png|.npy ...`` members,
  read with :mod:`tarfile` (no webdataset dependency), one index pass, then random access;
* ``rosbag``: a ROS 2 bag (``rosbags``, no ROS install): camera frames paired with another
  topic by timestamp, nearest message within ``tolerance`` for frames (depth, thermal), the
  ``window`` of messages ending at the frame for streams (audio chunks, IMU);
* ``llvip``, ``nyu_depth_v2``, ``sunrgbd``: those data sets' own layouts.

Evaluation kinds (``data.eval``): the same kinds with a ``modality`` key (labelled where the
layout has labels: ``manifest`` with ``label_column``, ``nyu_depth_v2`` and ``sunrgbd`` scene
types; retrieval only otherwise) and ``esc50`` (audio -> text zero-shot, ESC-50's 50 classes).

Every pair kind takes the augmentation keys ``views`` (default 1; ``null`` = unbounded, no
hub-feature cache), ``crop: [min, max]`` (area fraction; views >= 1; one box cuts the image
and a depth/thermal map together), and ``freq_mask`` (audio: mel bins); odd views are
mirrored. A file that cannot be read raises an error naming it.
"""

from __future__ import annotations

import abc
import csv
import functools
import logging
import os
import tarfile
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imagebind_ros import modalities
from imagebind_ros.decode import DepthImage, Sound
from imagebind_ros.modalities import ImuSamples

from .augment import CropBox, crop, frequency_mask, hflip, random_crop_box, view_rng
from .data import EvalSet, PairDataset, Transforms, register_eval_dataset, register_pair_dataset

log = logging.getLogger(__name__)

SPOKES = ("audio", "depth", "thermal", "imu")
SPATIAL = ("depth", "thermal")
IMAGE_EXTS = ("jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff")
# file extensions tried for X, in order (webdataset members may be "depth.png" and the like)
X_EXTS: dict[str, tuple[str, ...]] = {
    "audio": ("wav", "flac", "ogg", "mp3"),
    "depth": ("depth.png", "depth.npy", "depth.tif", "png", "npy", "tif", "tiff"),
    "thermal": ("thermal.png", "thermal.jpg", "ir.png", "ir.jpg", "png", "jpg", "jpeg", "npy",
                "tif", "tiff"),
    "imu": ("imu.npy", "imu.csv", "npy", "csv"),
}
AUG_KEYS = frozenset({"views", "crop", "freq_mask", "seed"})

# --------------------------------------------------------------------------- raw readers


def sunrgbd_depth_mm(raw: np.ndarray) -> np.ndarray:
    """SUN RGB-D's stored depth PNG -> millimetres: the 16 bits are rotated right by 3
    (the toolbox's ``bitor(bitshift(d, -3), bitshift(d, 16 - 3))``)."""
    v = np.asarray(raw).astype(np.uint16)
    return (v >> np.uint16(3)) | (v << np.uint16(13))


# --------------------------------------------------------------------------- base classes


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


def _eval_modality(spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
    spec = dict(spec)
    modality = spec.pop("modality", None)
    if modality is None:
        raise ValueError(f"eval dataset {spec.get('kind')!r} needs 'modality' (the X paired "
                         "with the images)")
    return spec, str(modality)


def _root(spec: dict[str, Any], key: str = "root") -> Path:
    if not spec.get(key):
        raise ValueError(f"{spec.get('kind')} dataset needs '{key}'")
    p = Path(spec[key]).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{spec.get('kind')} dataset: {key} {p} does not exist")
    return p


def _limit(items: list[Any], spec: dict[str, Any]) -> list[Any]:
    n = spec.get("limit")
    return items[:int(n)] if n else items


# --------------------------------------------------------------------------- folder / LLVIP


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
        root = _root(spec)
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
        both = _limit(both, spec)
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
    spec, m = _eval_modality(spec)
    return PairEval(FolderPairs(spec, m, transforms))


@register_eval_dataset("llvip")
def _llvip_eval(spec: dict[str, Any], transforms: Transforms) -> PairEval:
    spec = {"split": "test", **spec}
    m = spec.pop("modality", "thermal")
    return PairEval(FolderPairs(_llvip_spec(spec, m), m, transforms))


# --------------------------------------------------------------------------- manifest


class ManifestPairs(RawPairs):
    """Rows of a CSV/TSV file: an image path column and an X path column (relative paths
    are relative to ``root``, default the manifest's folder); optional label column."""

    KEYS = frozenset({"path", "root", "image_column", "x_column", "label_column", "delimiter",
                      "limit", "classes"})

    def __init__(self, spec: dict[str, Any], modality: str, transforms: Transforms) -> None:
        super().__init__(spec, modality, transforms, self.KEYS)
        path = _root(spec, "path")
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
        rows = _limit(rows, spec)
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


def _labelled(names: Sequence[str], classes: Sequence[str] | None,
              ) -> tuple[list[int], list[str], list[int]]:
    """(kept indices, class names, label per kept index); ``classes`` restricts and orders."""
    classnames = list(classes) if classes else sorted(set(names))
    lookup = {c: i for i, c in enumerate(classnames)}
    keep = [i for i, n in enumerate(names) if n in lookup]
    return keep, classnames, [lookup[names[i]] for i in keep]


class _Subset(RawPairs):
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


@register_pair_dataset("manifest")
def _manifest(spec: dict[str, Any], modality: str, transforms: Transforms) -> ManifestPairs:
    return ManifestPairs(spec, modality, transforms)


@register_eval_dataset("manifest")
def _manifest_eval(spec: dict[str, Any], transforms: Transforms) -> PairEval:
    spec, m = _eval_modality(spec)
    pairs = ManifestPairs(spec, m, transforms)
    if pairs.label_names is None:
        return PairEval(pairs)
    keep, classnames, labels = _labelled(pairs.label_names, spec.get("classes"))
    return PairEval(_Subset(pairs, keep), labels, classnames)


# --------------------------------------------------------------------------- webdataset


class WebDatasetPairs(RawPairs):
    """Tar shards in the webdataset convention: members ``KEY.EXT`` with KEY = the path up
    to the first dot of the file name. One pass indexes (offset, size) of every member; a
    sample is then read with one seek per member."""

    KEYS = frozenset({"shards", "image_ext", "x_ext", "limit"})

    def __init__(self, spec: dict[str, Any], modality: str, transforms: Transforms) -> None:
        super().__init__(spec, modality, transforms, self.KEYS)
        shards = spec.get("shards")
        if not shards:
            raise ValueError("webdataset needs 'shards': a glob pattern or a list of .tar files")
        if isinstance(shards, str):
            import glob
            found = sorted(glob.glob(os.path.expanduser(shards)))
            if not found:
                raise FileNotFoundError(f"webdataset: no shard matches {shards}")
            shards = found
        self.shards = [str(Path(s)) for s in shards]
        img_exts = [spec["image_ext"]] if spec.get("image_ext") else list(IMAGE_EXTS)
        x_exts = [spec["x_ext"]] if spec.get("x_ext") else list(X_EXTS[modality])
        self.items: list[tuple[str, tuple[int, int, int, str], tuple[int, int, int, str]]] = []
        incomplete = 0
        for si, shard in enumerate(self.shards):
            groups: dict[str, dict[str, tuple[int, int, int, str]]] = {}
            try:
                with tarfile.open(shard) as tf:
                    for mem in tf:
                        if not mem.isfile():
                            continue
                        d, _, base = mem.name.rpartition("/")
                        stem, dot, ext = base.partition(".")
                        if not dot:
                            continue
                        key = f"{d}/{stem}" if d else stem
                        groups.setdefault(key, {})[ext.lower()] = (si, mem.offset_data,
                                                                   mem.size, mem.name)
            except (tarfile.TarError, OSError) as e:
                raise ValueError(f"webdataset shard {shard} cannot be read: {e}") from e
            for key, members in groups.items():
                im = next((members[e] for e in img_exts if e in members), None)
                x = next((members[e] for e in x_exts if e in members and members[e] != im),
                         None)
                if im is None or x is None:
                    incomplete += 1
                    continue
                self.items.append((key, im, x))
        if incomplete:
            log.warning("webdataset: %d samples lack an image (%s) or a %s member (%s) and are "
                        "skipped", incomplete, "|".join(img_exts), modality, "|".join(x_exts))
        self.items = _limit(self.items, spec)
        self._files: dict[int, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.items)

    def key(self, index: int) -> str:
        key, im, x = self.items[index]
        return f"wds:{self.shards[im[0]]}/{key}|{im[3]}|{x[3]}"

    def _read(self, member: tuple[int, int, int, str]) -> bytes:
        if os.getpid() != self._pid:  # a DataLoader worker: never share a parent's handles
            self._files, self._pid = {}, os.getpid()
        si, offset, size, _ = member
        f = self._files.get(si)
        if f is None:
            # kept open for the next reads of this shard (closed with the process)
            f = self._files[si] = open(self.shards[si], "rb")  # noqa: SIM115
        f.seek(offset)
        return f.read(size)

    def read_image(self, index: int) -> np.ndarray:
        im = self.items[index][1]
        return modalities.decode_bytes("vision", im[3], self._read(im))

    def read_x(self, index: int) -> Any:
        x = self.items[index][2]
        return modalities.decode_bytes(self.modality, x[3], self._read(x))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": {}}


@register_pair_dataset("webdataset")
def _wds(spec: dict[str, Any], modality: str, transforms: Transforms) -> WebDatasetPairs:
    return WebDatasetPairs(spec, modality, transforms)


@register_eval_dataset("webdataset")
def _wds_eval(spec: dict[str, Any], transforms: Transforms) -> PairEval:
    spec, m = _eval_modality(spec)
    return PairEval(WebDatasetPairs(spec, m, transforms))


# --------------------------------------------------------------------------- NYU Depth v2


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
        self.path = _root(spec, "path")
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
        self.index = _limit(idx.tolist(), spec)
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
    keep, classnames, labels = _labelled([pairs.scene(i) for i in range(len(pairs))],
                                         spec.get("classes"))
    return PairEval(_Subset(pairs, keep), labels, [c.replace("_", " ") for c in classnames])


# --------------------------------------------------------------------------- SUN RGB-D


class SunRgbd(RawPairs):
    """SUN RGB-D: every folder holding ``image/*.jpg`` and ``depth_bfx/*.png`` (or
    ``depth/``) is one sample; depth PNGs are bit-rotated millimetres (see
    :func:`sunrgbd_depth_mm`); ``scene.txt`` holds the scene class."""

    KEYS = frozenset({"root", "depth_dir", "list", "limit", "classes"})

    def __init__(self, spec: dict[str, Any], modality: str, transforms: Transforms) -> None:
        super().__init__(spec, modality, transforms, self.KEYS)
        if modality != "depth":
            raise ValueError(f"SUN RGB-D pairs images with depth, not {modality!r}")
        root = _root(spec)
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
        self.items = _limit(self.items, spec)
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
    keep, classnames, labels = _labelled(names, spec.get("classes"))
    if not spec.get("classes") and "" in classnames:
        raise ValueError("SUN RGB-D evaluation: some folders lack scene.txt; list the "
                         "classes to evaluate with 'classes'")
    return PairEval(_Subset(pairs, keep), labels, [c.replace("_", " ") for c in classnames])


# --------------------------------------------------------------------------- ESC-50


class Esc50(EvalSet):
    """ESC-50 (``meta/esc50.csv`` + ``audio/*.wav``, 5-s clips, 50 classes): audio -> text
    zero-shot; ``folds`` picks the folds (default all five)."""

    def __init__(self, spec: dict[str, Any], transforms: Transforms) -> None:
        unknown = set(spec) - {"kind", "root", "folds", "limit"}
        if unknown:
            raise KeyError(f"esc50: unknown keys {sorted(unknown)}")
        root = _root(spec)
        meta = root / "meta" / "esc50.csv"
        if not meta.is_file():
            raise FileNotFoundError(f"esc50: {meta} not found (root is the ESC-50-master "
                                    "folder)")
        with open(meta, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        folds = {int(x) for x in (spec.get("folds") or [1, 2, 3, 4, 5])}
        rows = _limit([r for r in rows if int(r["fold"]) in folds], spec)
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


# --------------------------------------------------------------------------- ROS 2 bags

AUDIO_CHUNK = "imagebind_ros/msg/AudioChunk"
MSG_DIR = Path(__file__).resolve().parents[1] / "msg"


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """rosbags' ROS 2 message types plus ours (AudioChunk, from msg/AudioChunk.msg)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(getattr(Stores, "ROS2_KILTED", Stores.LATEST))
    msg = MSG_DIR / "AudioChunk.msg"
    if msg.is_file():
        store.register(get_types_from_msg(msg.read_text(encoding="utf-8"), AUDIO_CHUNK))
    return store


def _stamp(msg: Any, bag_ns: int) -> float:
    """Header stamp in seconds; the bag's receive time when the header is unset."""
    h = getattr(msg, "header", None)
    if h is not None and (h.stamp.sec or h.stamp.nanosec):
        return h.stamp.sec + h.stamp.nanosec * 1e-9
    return bag_ns * 1e-9


_CV_CODES = {"rgb8": None, "bgr8": "bgr", "rgba8": "rgba", "bgra8": "bgra", "mono8": "mono"}


def image_msg_array(msg: Any) -> np.ndarray:
    """sensor_msgs Image or CompressedImage -> numpy (H, W[, C]) in its own units/dtype."""
    if hasattr(msg, "format"):  # CompressedImage
        import cv2
        data = bytes(msg.data)
        if "compresseddepth" in msg.format.lower():
            data = data[12:]  # compressed_depth_image_transport's config header
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ValueError(f"cannot decode a {msg.format!r} CompressedImage")
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB if arr.shape[2] == 4
                               else cv2.COLOR_BGR2RGB)
        return arr
    enc = msg.encoding.lower()
    dtypes = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4),
              "bgra8": (np.uint8, 4), "mono8": (np.uint8, 1), "8uc1": (np.uint8, 1),
              "mono16": (np.uint16, 1), "16uc1": (np.uint16, 1), "32fc1": (np.float32, 1)}
    if enc not in dtypes:
        raise ValueError(f"unsupported Image encoding {msg.encoding!r}; supported: "
                         f"{', '.join(dtypes)}")
    dt, ch = dtypes[enc]
    dt = np.dtype(dt).newbyteorder(">" if msg.is_bigendian else "<")
    row = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    arr = row[:, :msg.width * ch * dt.itemsize].copy().view(dt).reshape(
        msg.height, msg.width, ch).astype(dt.newbyteorder("="))
    if ch == 1:
        return arr[:, :, 0]
    if enc.startswith("bgr"):
        arr = arr[:, :, [2, 1, 0]]
    return np.ascontiguousarray(arr[:, :, :3])


def _rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        if arr.dtype != np.uint8:
            raise ValueError(f"camera frames must be 8-bit, got {arr.dtype}")
        return np.repeat(arr[:, :, None], 3, axis=2)
    return arr


def audio_chunk_samples(msg: Any) -> np.ndarray:
    """AudioChunk -> float32 (frames, channels) in [-1, 1]."""
    fmt = msg.sample_format.upper()
    if fmt == "S16LE":
        x = np.frombuffer(bytes(msg.data), "<i2").astype(np.float32) / 32768.0
    elif fmt == "F32LE":
        x = np.frombuffer(bytes(msg.data), "<f4").astype(np.float32)
    else:
        raise ValueError(f"unsupported AudioChunk sample_format {msg.sample_format!r}")
    ch = max(1, int(msg.channels))
    if x.size % ch:
        raise ValueError(f"AudioChunk has {x.size} samples, not a multiple of {ch} channels")
    return x.reshape(-1, ch)


class RosbagPairs(RawPairs):
    """Camera frames of ``image_topic`` paired with ``x_topic`` of the same bag by time.

    Frames (depth, thermal: sensor_msgs Image/CompressedImage): the nearest message within
    ``tolerance`` seconds. Streams (audio: imagebind_ros AudioChunk; IMU: sensor_msgs Imu):
    the ``window`` seconds ending at the frame (default: the model's audio clips / IMU window),
    kept only when the stream covers the window (no gap longer than ``tolerance`` at either
    end). ``stride`` keeps every k-th frame. The paired messages are held in memory as
    serialized bytes; for bags larger than RAM, export them to webdataset shards.
    """

    KEYS = frozenset({"path", "image_topic", "x_topic", "tolerance", "window", "stride",
                      "limit"})

    def __init__(self, spec: dict[str, Any], modality: str, transforms: Transforms) -> None:
        super().__init__(spec, modality, transforms, self.KEYS)
        from rosbags.highlevel import AnyReader
        path = _root(spec, "path")
        itopic, xtopic = spec.get("image_topic"), spec.get("x_topic")
        if not itopic or not xtopic:
            raise ValueError("rosbag dataset needs image_topic and x_topic")
        self.tol = float(spec.get("tolerance", 0.05))
        self.window = float(spec.get("window") or self._default_window(modality))
        frames: list[tuple[float, bytes, str]] = []
        xs: list[tuple[float, Any]] = []
        with AnyReader([path], default_typestore=typestore()) as reader:
            topics = {c.topic: c for c in reader.connections}
            for t in (itopic, xtopic):
                if t not in topics:
                    raise ValueError(f"{path}: no topic {t}; topics: {sorted(topics)}")
            self._check_type(topics[xtopic].msgtype, modality)
            conns = [c for c in reader.connections if c.topic in (itopic, xtopic)]
            for conn, ns, raw in reader.messages(connections=conns):
                msg = reader.deserialize(raw, conn.msgtype)
                t = _stamp(msg, ns)
                if conn.topic == itopic:
                    frames.append((t, bytes(raw), conn.msgtype))
                elif modality in SPATIAL:
                    xs.append((t, (bytes(raw), conn.msgtype)))
                elif modality == "imu":
                    a, w = msg.linear_acceleration, msg.angular_velocity
                    xs.append((t, (a.x, a.y, a.z, w.x, w.y, w.z)))
                else:
                    xs.append((t, (audio_chunk_samples(msg), int(msg.sample_rate))))
        frames.sort(key=lambda f: f[0])
        xs.sort(key=lambda x: x[0])
        frames = frames[::max(1, int(spec.get("stride", 1)))]
        self.xt = np.array([t for t, _ in xs])
        self.xv = [v for _, v in xs]
        self.items: list[tuple[float, bytes, str, Any]] = []
        for t, raw, mtype in frames:
            sel = self._pair(t)
            if sel is not None:
                self.items.append((t, raw, mtype, sel))
        skipped = len(frames) - len(self.items)
        if skipped:
            log.warning("%s: %d of %d frames have no %s data within the tolerance/window and "
                        "are skipped", path, skipped, len(frames), modality)
        self.items = _limit(self.items, spec)
        self._id = f"rosbag:{path.resolve()}|{itopic}|{xtopic}|{self.tol}|{self.window}"

    def _default_window(self, modality: str) -> float:
        if modality == "audio":
            a = self.transforms.config.modality("audio")
            return float(a.clip_duration) * int(a.clips_per_video)
        if modality == "imu":
            return float(self.transforms.config.modality("imu").window_seconds)
        return 0.0

    @staticmethod
    def _check_type(msgtype: str, modality: str) -> None:
        ok = {"depth": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
              "thermal": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
              "imu": ("sensor_msgs/msg/Imu",), "audio": (AUDIO_CHUNK,)}[modality]
        if msgtype not in ok:
            raise ValueError(f"x_topic has type {msgtype}; {modality} needs {' or '.join(ok)}")

    def _pair(self, t: float) -> Any:
        """The X data of the frame at ``t``, or None if there is none close enough."""
        xt = self.xt
        if not len(xt):
            return None
        if self.modality in SPATIAL:
            i = int(np.argmin(np.abs(xt - t)))
            return self.xv[i] if abs(xt[i] - t) <= self.tol else None
        lo = t - self.window
        if self.modality == "imu":
            # from the last sample at or before the window start (interpolation needs it)
            i0, i1 = max(0, bisect_right(xt, lo) - 1), bisect_right(xt, t + 1e-9)
            if i1 - i0 < 2 or xt[i0] > lo + self.tol or xt[i1 - 1] < t - self.tol:
                return None
            if np.diff(xt[i0:i1]).max() > self.tol:
                return None  # dropped samples inside the window
            return ImuSamples(np.array(self.xv[i0:i1]), xt[i0:i1].copy())
        # audio chunks (stamp = time of the chunk's first sample): the round(window * rate)
        # samples ending at the one nearest the frame time
        parts, rate = [], None
        for i in range(max(0, bisect_left(xt, lo) - 1), bisect_right(xt, t)):
            samples, sr = self.xv[i]
            if rate is not None and sr != rate:
                raise ValueError(f"audio sample rate changes within a window ({rate} -> {sr})")
            rate = sr
            parts.append((xt[i] + np.arange(len(samples)) / sr, samples))
        if not parts or rate is None:
            return None
        times = np.concatenate([p[0] for p in parts])
        end = int(np.searchsorted(times, t + 0.5 / rate))
        start = end - round(self.window * rate)
        if start < 0 or times[end - 1] < t - self.tol:
            return None  # the stream starts after the window does, or stops before the frame
        if np.diff(times[start:end]).max(initial=0) > self.tol:
            return None  # a dropped chunk inside the window
        return Sound(np.concatenate([p[1] for p in parts])[start:end], rate)

    def __len__(self) -> int:
        return len(self.items)

    def key(self, index: int) -> str:
        return f"{self._id}/{self.items[index][0]:.9f}"

    def read_image(self, index: int) -> np.ndarray:
        _, raw, mtype, _ = self.items[index]
        return _rgb(image_msg_array(typestore().deserialize_cdr(raw, mtype)))

    def read_x(self, index: int) -> Any:
        sel = self.items[index][3]
        if self.modality in SPATIAL:
            raw, mtype = sel
            arr = image_msg_array(typestore().deserialize_cdr(raw, mtype))
            if self.modality == "depth":
                return DepthImage(arr, "m" if np.issubdtype(arr.dtype, np.floating) else "mm")
            return arr
        return sel


@register_pair_dataset("rosbag")
def _bag(spec: dict[str, Any], modality: str, transforms: Transforms) -> RosbagPairs:
    return RosbagPairs(spec, modality, transforms)


@register_eval_dataset("rosbag")
def _bag_eval(spec: dict[str, Any], transforms: Transforms) -> PairEval:
    spec, m = _eval_modality(spec)
    return PairEval(RosbagPairs(spec, m, transforms))
