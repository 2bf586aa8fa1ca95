"""ImageBind in pure PyTorch: configs, presets, the model, checkpoints. No ROS here."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

from .checkpoint import CheckpointError, check_state_dict, read_checkpoint, save_checkpoint
from .config import (MODALITY_CONFIGS, PRESETS, AudioConfig, DepthConfig, ImageBindConfig,
                     ImuConfig, TextConfig, ThermalConfig, TrunkConfig, VisionConfig,
                     get_config)
from .imagebind import ImageBindModel, ModalityEncoder, state_prefixes

__all__ = [
    "AudioConfig", "CheckpointError", "DepthConfig", "ImageBindConfig", "ImageBindModel",
    "ImuConfig", "MODALITY_CONFIGS", "ModalityEncoder", "PRESETS", "TextConfig",
    "ThermalConfig", "TrunkConfig", "VisionConfig", "create_model", "get_config",
    "save_model",
]


def create_model(name: str | None = None, checkpoint: str | os.PathLike[str] | None = None,
                 device: str | torch.device = "cpu",
                 modalities: Iterable[str] | None = None) -> ImageBindModel:
    """Build a model in eval mode, random-init or loaded from ``checkpoint``.

    An imagebind_ros checkpoint carries its config, so ``name`` may be omitted; a plain
    state dict (the official ``imagebind_huge.pth``) uses preset ``name`` (default
    ``imagebind_huge``). With a checkpoint the model is built on the meta device and the
    (memory-mapped) tensors are assigned, so a 4.8 GB file needs no second copy in RAM.
    ``modalities`` builds only those encoders (KeyError for one the model lacks); the
    other encoders' tensors in the file are never read (memory-mapped, not assigned).
    """
    if checkpoint is None:
        config = get_config(name or "imagebind_huge").subset(modalities)
        return ImageBindModel(config).to(device).eval()
    ckpt = read_checkpoint(checkpoint)
    if "config" in ckpt:
        full = ImageBindConfig.from_dict(ckpt["config"])
    else:
        full = get_config(name or "imagebind_huge")
    config = full.subset(modalities)
    with torch.device("meta"):
        model = ImageBindModel(config)
    skip = state_prefixes(m for m in full.modalities if m not in config.modalities)
    state_dict = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith(skip)}
    check_state_dict(model, state_dict, source=f"checkpoint {os.fspath(checkpoint)}")
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.float().to(device).eval()


def save_model(path: str | os.PathLike[str], model: ImageBindModel, **extra: object) -> None:
    """Save a model with its config (and so its preprocessing constants)."""
    save_checkpoint(path, model.state_dict(), model.config.to_dict(), **extra)
