"""Checkpoint reading, strict validation and atomic writing.

Two formats are accepted: the official ``imagebind_huge.pth`` (a plain state dict: the
architecture comes from a preset) and ours, a dict that also carries the config (and with
it the preprocessing constants) so the file alone rebuilds the model.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "imagebind_ros.checkpoint/1"
_SHOW = 8


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, or of another architecture."""


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint file safely (``weights_only``) and memory-mapped where possible."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: {p} (weights are never downloaded by imagebind_ros; "
            "put imagebind_huge.pth or a trained checkpoint there, see README 'Weights')")
    try:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zips, unpickling errors, bad magic numbers, EOF ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"cannot read checkpoint {p}: truncated or not a PyTorch "
                              f"checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"checkpoint {p} holds {type(obj).__name__}, not a state dict")
    if obj.get("format") == FORMAT:
        return obj
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"state_dict": obj}
    raise CheckpointError(f"checkpoint {p} is neither a state dict nor an imagebind_ros "
                          f"checkpoint (top-level keys: {sorted(obj)[:_SHOW]})")


def _names(keys: list[str]) -> str:
    more = f" ... (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor],
                     source: str = "checkpoint") -> None:
    """Raise one ``CheckpointError`` naming missing/unexpected keys or the first bad shape."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    name = getattr(getattr(model, "config", None), "name", type(model).__name__)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_names(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_names(unexpected)}")
        raise CheckpointError(f"{source} does not match model {name!r}: " + "; ".join(parts)
                              + " (wrong file, or another config: try --preset)")
    for k, v in expected.items():
        if tuple(state_dict[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source} does not match model {name!r}: {k} has shape "
                f"{tuple(state_dict[k].shape)} in the file, {tuple(v.shape)} in the model "
                "(another config: try --preset)")


def save_checkpoint(path: str | os.PathLike[str], state_dict: dict[str, torch.Tensor],
                    config: dict[str, Any], **extra: Any) -> Path:
    """Write our checkpoint format atomically (temp file + rename), so a crash never leaves
    a half-written file under the final name."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "config": config, "state_dict": state_dict, **extra}
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
