"""Model configs for training, and trained checkpoints that nodes load as they are.

A node needs hub and spokes in one ``ImageBindModel``. Two ways, chosen by ``hub.embed``:

* embedded (small hubs, e.g. the synthetic demo): the checkpoint's config lists vision and
  text too and its state dict holds their weights, so plain
  ``create_model(checkpoint=...)`` gives all modalities;
* referenced (large hubs such as imagebind_huge): the file holds only the spokes plus a
  ``hub`` entry (kind, path, sha256) from which :func:`bundle` writes a self-contained file
  (or ``create_model`` resolves it, see docs/training.md).

Every checkpoint keeps the ``hub`` reference, so what a spoke was bound to is never lost.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from imagebind_ros.model import (MODALITY_CONFIGS, ImageBindConfig, ImageBindModel,
                                 create_model, get_config)
from imagebind_ros.model.checkpoint import read_checkpoint, save_checkpoint

from .data import Transforms
from .hub import HUB_MODALITIES, Hub, load_hub


def build_config(cfg: dict[str, Any], out_dim: int | None) -> ImageBindConfig:
    """The trained encoders' config: preset + ``model.<modality>`` overrides.

    ``out_dim`` is the hub's output dimension (spokes must land in its space); ``None``
    when training the hub itself.
    """
    model = dict(cfg["model"])
    preset = model.pop("preset", "tiny")
    want_dim = model.pop("out_embed_dim", None)
    unknown = sorted(set(model) - set(MODALITY_CONFIGS))
    if unknown:
        raise KeyError(f"model section: {unknown} are not modalities "
                       f"({', '.join(MODALITY_CONFIGS)}) nor preset/out_embed_dim")
    if out_dim is not None and want_dim is not None and int(want_dim) != out_dim:
        raise ValueError(f"model.out_embed_dim {want_dim} differs from the hub's output "
                         f"dimension {out_dim}: spokes must embed into the hub's space")
    base = get_config(preset).to_dict()
    trained = set(cfg["modalities"]) | (set(HUB_MODALITIES) if cfg["stage"] == "hub" else set())
    d: dict[str, Any] = {"name": cfg["name"],
                         "out_embed_dim": out_dim or want_dim or base["out_embed_dim"]}
    for m, mcls in MODALITY_CONFIGS.items():
        if m not in trained:
            d[m] = None
            continue
        sub = base.get(m) or ImageBindConfig(**{m: mcls()}).to_dict()[m]
        d[m] = {**sub, **(model.get(m) or {})}
    return ImageBindConfig.from_dict(d)


def merged_config(config: ImageBindConfig, hub_cfg: ImageBindConfig) -> ImageBindConfig:
    """Spokes' config plus the hub's vision and text."""
    d = config.to_dict()
    h = hub_cfg.to_dict()
    for m in HUB_MODALITIES:
        d[m] = h[m]
    return ImageBindConfig.from_dict(d)


def should_embed(hub: Hub, setting: bool | str, max_params: int) -> bool:
    """Whether the hub's weights go into trained checkpoints (see the module docstring)."""
    if setting == "auto":
        return hub.embedded() is not None and hub.num_params() <= int(max_params)
    if setting is True and hub.embedded() is None:
        raise ValueError(f"hub.embed true needs an ImageBind-layout hub; {hub.reference['kind']}"
                         " hubs can only be referenced (set hub.embed auto or false)")
    return bool(setting)


def export_state(model: ImageBindModel, hub: Hub | None, embed: bool,
                 ) -> tuple[dict[str, torch.Tensor], ImageBindConfig]:
    """State dict and config of the deployable model (trained encoders, hub if embedded)."""
    state = dict(model.state_dict())
    config = model.config
    if hub is not None and embed:
        hub_cfg, hub_state = hub.embedded()
        state.update(hub_state)
        config = merged_config(config, hub_cfg)
    return state, config


def save_trained(path: str | os.PathLike[str], model: ImageBindModel, hub: Hub | None,
                 embed: bool, **extra: Any) -> Path:
    """Atomically write a checkpoint ``create_model(checkpoint=path)`` loads."""
    state, config = export_state(model, hub, embed)
    if hub is not None:
        extra["hub"] = hub.reference
    return save_checkpoint(path, state, config.to_dict(), **extra)


def hub_from_reference(ref: dict[str, Any]) -> Hub:
    """Rebuild the hub a checkpoint was trained against; the weights must be unchanged."""
    hub = load_hub(ref)
    if ref.get("sha256") and hub.reference.get("sha256") != ref["sha256"]:
        where = ref.get("path") or ref.get("pretrained")
        raise ValueError(f"hub weights changed since training: {where} has sha256 "
                         f"{hub.reference.get('sha256')}, the checkpoint was trained "
                         f"against {ref['sha256']}")
    return hub


class TextTower:
    """``encode_text``/``tokenize`` over an ImageBindModel's text encoder, for prompts."""

    def __init__(self, model: ImageBindModel) -> None:
        self.model = model

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        out = self.model.forward_modality("text", tokens)
        return torch.nn.functional.normalize(out, dim=-1) if normalize else out

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        from imagebind_ros.preprocess import tokenize
        return tokenize(list(texts), self.model.config.modality("text"))


def image_transform(config: ImageBindConfig) -> Callable[[Any], torch.Tensor]:
    """The node's image preprocessing for a model with a vision encoder."""
    from imagebind_ros.preprocess import image_to_tensor
    vision = config.modality("vision")
    return lambda rgb: image_to_tensor(rgb, vision)


def model_encoders(checkpoint: str | os.PathLike[str], device: torch.device,
                   ) -> tuple[dict[str, Callable[[torch.Tensor], torch.Tensor]], Any,
                              Transforms]:
    """Encoders per modality, the text tower and the transforms of a trained checkpoint."""
    ckpt = read_checkpoint(checkpoint)
    model = create_model(checkpoint=checkpoint, device=device)
    for p in model.parameters():
        p.requires_grad_(False)
    encoders: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        m: (lambda x, m=m: model.encode(m, x)) for m in model.modalities if m != "text"}
    if all(m in model.modalities for m in HUB_MODALITIES):
        return encoders, TextTower(model), Transforms(model.config,
                                                      image_transform(model.config))
    if "hub" not in ckpt:
        raise ValueError(f"{checkpoint} has no vision/text encoders and no hub reference")
    hub = hub_from_reference(ckpt["hub"]).to(device)
    encoders["vision"] = hub.encode_image
    return encoders, hub, Transforms(model.config, hub.image_transform)


def bundle(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write one self-contained file (hub vision/text + spokes) from a referencing one."""
    ckpt = read_checkpoint(checkpoint)
    if "hub" not in ckpt:
        raise ValueError(f"{checkpoint} has no hub reference: nothing to bundle")
    config = ImageBindConfig.from_dict(ckpt["config"])
    if all(getattr(config, m) is not None for m in HUB_MODALITIES):
        raise ValueError(f"{checkpoint} already holds vision and text")
    hub = hub_from_reference(ckpt["hub"])
    emb = hub.embedded()
    if emb is None:
        raise ValueError(f"a {hub.reference['kind']} hub has no ImageBind layout and cannot "
                         "be bundled; keep the reference and load the hub separately")
    hub_cfg, hub_state = emb
    state = {**dict(ckpt["state_dict"]), **hub_state}
    extra = {k: v for k, v in ckpt.items() if k not in ("format", "config", "state_dict",
                                                           "train")}
    return save_checkpoint(out, state, merged_config(config, hub_cfg).to_dict(), **extra)

