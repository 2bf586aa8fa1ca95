"""Kind ``webdataset``: tar shards of ``KEY.jpg`` + ``KEY.<x ext>`` members, read with
:mod:`tarfile` (no webdataset dependency): one index pass, then one seek per member."""

from __future__ import annotations

import glob
import logging
import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from imagebind_ros import modalities

from ..data import Transforms, register_eval_dataset, register_pair_dataset
from .common import IMAGE_EXTS, X_EXTS, PairEval, RawPairs, eval_modality, limited

log = logging.getLogger(__name__)


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
        self.items = limited(self.items, spec)
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
    spec, m = eval_modality(spec)
    return PairEval(WebDatasetPairs(spec, m, transforms))
