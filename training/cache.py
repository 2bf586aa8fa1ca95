"""Hub-feature cache: the frozen hub's image embedding of every (sample, view), computed once.

The hub never changes while spokes train, so running it (and loading and preprocessing the
images) every step is wasted work; with the cache a training step reads one row per sample.
The file name holds the hub's and the dataset's fingerprints, so a different hub, dataset or
view count never reuses stale features. The work is sharded over ranks and merged by rank 0.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .data import PairDataset, pair_loader
from .hub import Hub

log = logging.getLogger(__name__)
DTYPES = {"float16": np.float16, "float32": np.float32}


def cache_path(cache_dir: str | os.PathLike[str], hub: Hub, ds: PairDataset) -> Path:
    """Where the features of ``ds`` under ``hub`` live."""
    return Path(cache_dir) / f"{ds.modality}-{hub.fingerprint}-{ds.fingerprint()}.npy"


def _save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@torch.no_grad()
def encode_views(hub: Hub, ds: PairDataset, items: list[tuple[int, int]], device: torch.device,
                 batch_size: int, autocast: torch.autocast, num_workers: int = 0,
                 desc: str = "hub cache") -> np.ndarray:
    """Hub image embeddings (len(items), D) float32 for the given (index, view) pairs."""
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    out = np.zeros((len(items), hub.out_dim), np.float32)
    row = 0
    it = pair_loader(ds, batches, image=True, num_workers=num_workers, seed=0)
    for batch in tqdm(it, total=len(batches), desc=desc, unit="batch", leave=False,
                      disable=None):
        with autocast:
            feats = hub.encode_image(batch["vision"].to(device, non_blocking=True))
        out[row:row + len(feats)] = feats.float().cpu().numpy()
        row += len(feats)
    return out


def load_or_build(hub: Hub, ds: PairDataset, cache_dir: str | os.PathLike[str],
                  device: torch.device, batch_size: int = 64, dtype: str = "float16",
                  autocast: torch.autocast | None = None, num_workers: int = 0,
                  rank: int = 0, world: int = 1) -> np.ndarray:
    """(len(ds), num_views, D) cached unit-norm hub features, built on first use.

    The array is memory-mapped: a cache larger than RAM is read a batch at a time.
    """
    if not ds.num_views:
        raise ValueError(f"{ds.modality} dataset has unbounded augmentation views: "
                         "its hub features cannot be cached (set cache.enabled false)")
    if dtype not in DTYPES:
        raise ValueError(f"cache.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    path = cache_path(cache_dir, hub, ds)
    n, views = len(ds), int(ds.num_views)
    meta = {"hub": hub.reference, "dataset": ds.fingerprint(), "modality": ds.modality,
            "samples": n, "views": views, "dim": hub.out_dim, "dtype": dtype}
    autocast = autocast or torch.autocast("cpu", enabled=False)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        items = [(i, v) for i in range(n) for v in range(views)]
        mine = items[rank::world]
        part = path.with_suffix(f".part{rank}of{world}.npy")
        feats = encode_views(hub, ds, mine, device, batch_size, autocast, num_workers,
                             desc=f"hub cache {ds.modality}")
        _save_npy(part, feats.astype(DTYPES[dtype]))
        _barrier()
        if rank == 0:
            full = np.zeros((n * views, hub.out_dim), DTYPES[dtype])
            for r in range(world):
                p = path.with_suffix(f".part{r}of{world}.npy")
                full[r::world] = np.load(p)
                p.unlink()
            _save_npy(path, full.reshape(n, views, hub.out_dim))
            path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
            log.info("hub-feature cache written: %s (%d samples x %d views)", path, n, views)
        _barrier()
    arr = np.load(path, mmap_mode="r")
    if arr.shape != (n, views, hub.out_dim):
        raise ValueError(f"hub-feature cache {path} has shape {arr.shape}, expected "
                         f"{(n, views, hub.out_dim)}: delete it to rebuild")
    return arr


def lookup(cache: np.ndarray, index: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """Cached features (B, D) float32 of a batch's (index, view) pairs."""
    return torch.from_numpy(np.asarray(cache[index.numpy(), view.numpy()], np.float32))
