"""The frozen image/text hub that new encoders are bound to.

Three sources, one interface (``encode_image``, ``encode_text``, ``tokenize``,
``image_transform``):

* ``checkpoint``: vision + text of an ImageBind-layout checkpoint, the official
  ``imagebind_huge.pth`` (architecture from ``preset``) or one of ours (e.g. the small hub
  trained on the synthetic world). The other encoders in the file are ignored.
* ``open_clip``: any open_clip model, ``open_clip.create_model_and_transforms(name,
  pretrained=<local file>)``. Never a pretrained *tag*: that would download.
* ``random``: a seeded random-init ImageBind vision + text of a preset, for fast tests.

The hub never trains: its parameters are frozen and it always runs in eval mode.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imagebind_ros.model import ImageBindConfig, ImageBindModel, get_config
from imagebind_ros.model.checkpoint import check_state_dict, read_checkpoint

HUB_MODALITIES = ("vision", "text")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, streamed (identifies a hub in references and cache names)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def hub_config(config: ImageBindConfig) -> ImageBindConfig:
    """``config`` restricted to the hub modalities."""
    d = config.to_dict()
    for m in d:
        if m not in ("name", "out_embed_dim", *HUB_MODALITIES):
            d[m] = None
    return ImageBindConfig.from_dict(d)


class Hub(nn.Module, abc.ABC):
    """Frozen image and text encoders into one space (unit-norm outputs)."""

    #: how to rebuild this hub (kind, path, sha256 ...), stored in every checkpoint
    reference: dict[str, Any]
    #: output dimension of the shared space
    out_dim: int

    def freeze(self) -> Hub:
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> Hub:
        """Always eval: the hub is never trained (dropout, drop-path stay off)."""
        return super().train(False)

    @property
    def fingerprint(self) -> str:
        """Short identity of the hub weights (hub-feature cache names)."""
        ref = json.dumps(self.reference, sort_keys=True, default=str)
        return hashlib.sha256(ref.encode()).hexdigest()[:16]

    def embedded(self) -> tuple[ImageBindConfig, dict[str, torch.Tensor]] | None:
        """(config, state dict) to store inside trained checkpoints, or None if impossible."""
        return None

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @abc.abstractmethod
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed images -> unit-norm (B, out_dim) embeddings."""

    @abc.abstractmethod
    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """open_clip's signature, so ``open_clip.build_zero_shot_classifier`` can use it."""

    @abc.abstractmethod
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Strings -> the token tensor ``encode_text`` takes."""

    @abc.abstractmethod
    def image_transform(self, rgb: np.ndarray) -> torch.Tensor:
        """uint8 HxWx3 RGB -> the tensor ``encode_image`` takes for one image."""


class ImageBindHub(Hub):
    """Vision and text of an :class:`ImageBindModel` (ImageBind, or a small trained hub)."""

    def __init__(self, model: ImageBindModel, reference: dict[str, Any]) -> None:
        super().__init__()
        missing = [m for m in HUB_MODALITIES if m not in model.modalities]
        if missing:
            raise ValueError(f"a hub needs vision and text; model {model.config.name!r} "
                             f"lacks {missing}")
        self.model = model
        self.reference = reference
        self.out_dim = model.config.out_embed_dim
        self.freeze()

    def embedded(self) -> tuple[ImageBindConfig, dict[str, torch.Tensor]]:
        return self.model.config, self.model.state_dict()

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode("vision", x)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        out = self.model.forward_modality("text", tokens)
        return F.normalize(out, dim=-1) if normalize else out

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        from imagebind_ros.preprocess import tokenize
        return tokenize(list(texts), self.model.config.modality("text"))

    def image_transform(self, rgb: np.ndarray) -> torch.Tensor:
        from imagebind_ros.preprocess import image_to_tensor
        return image_to_tensor(rgb, self.model.config.modality("vision"))


class OpenClipHub(Hub):
    """An open_clip model; images go through its own eval transform."""

    def __init__(self, name: str, pretrained: str) -> None:
        super().__init__()
        import open_clip
        from PIL import Image
        self._pil = Image.fromarray
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained)
        self.tokenizer = open_clip.get_tokenizer(name)
        self.out_dim = int(self.model.visual.output_dim)
        self.reference = {"kind": "open_clip", "name": name,
                          "pretrained": str(Path(pretrained).resolve()),
                          "sha256": file_sha256(pretrained)}
        self.freeze()

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(x), dim=-1)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.model.encode_text(tokens, normalize=normalize)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts))

    def image_transform(self, rgb: np.ndarray) -> torch.Tensor:
        return self.preprocess(self._pil(np.ascontiguousarray(rgb)))


def _imagebind_hub(path: str, preset: str) -> ImageBindHub:
    ckpt = read_checkpoint(path)
    full = ImageBindConfig.from_dict(ckpt["config"]) if "config" in ckpt else get_config(preset)
    config = hub_config(full)
    state = {k: v for k, v in ckpt["state_dict"].items()
             if k.split(".")[1:2] and k.split(".")[1] in HUB_MODALITIES}
    with torch.device("meta"):
        model = ImageBindModel(config)
    check_state_dict(model, state, source=f"hub checkpoint {path}")
    model.load_state_dict(state, strict=True, assign=True)
    ref = {"kind": "checkpoint", "path": str(Path(path).resolve()), "sha256": file_sha256(path)}
    if "config" not in ckpt:
        ref["preset"] = preset
    return ImageBindHub(model.float(), ref)


def load_hub(spec: dict[str, Any]) -> Hub:
    """Build the frozen hub described by a config's ``hub`` section (on the CPU)."""
    kind = spec.get("kind")
    if kind in ("checkpoint", "imagebind"):
        if not spec.get("path"):
            raise ValueError("hub.kind checkpoint needs hub.path (e.g. imagebind_huge.pth)")
        return _imagebind_hub(str(spec["path"]), spec.get("preset") or "imagebind_huge")
    if kind == "open_clip":
        name, pretrained = spec.get("name"), spec.get("pretrained")
        if not name or not pretrained:
            raise ValueError("hub.kind open_clip needs hub.name and hub.pretrained (a file)")
        if not Path(pretrained).is_file():
            raise FileNotFoundError(
                f"open_clip weights not found: {pretrained} (hub.pretrained must be a local "
                "file; imagebind_ros never downloads weights)")
        return OpenClipHub(str(name), str(pretrained))
    if kind == "random":
        preset, seed = spec.get("preset") or "tiny", int(spec.get("seed") or 0)
        over = dict(spec.get("config") or {})
        d = hub_config(get_config(preset)).to_dict()
        for k, v in over.items():
            if k not in d:
                raise KeyError(f"hub.config: unknown key {k!r} (known: {sorted(d)})")
            d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d[k], dict) else v
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ImageBindModel(hub_config(ImageBindConfig.from_dict(d)))
        return ImageBindHub(model, {"kind": "random", "preset": preset, "seed": seed,
                                    "config": over})
    raise ValueError(f"unknown hub.kind {kind!r} (checkpoint | open_clip | random)")
