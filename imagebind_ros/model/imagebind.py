"""The ImageBind model: per modality, preprocessor -> trunk -> head -> postprocessor."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .config import (AudioConfig, DepthConfig, ImageBindConfig, ImuConfig, TextConfig,
                     ThermalConfig, TrunkConfig, VisionConfig)
from .layers import (ImuPreprocessor, LogitScale, Normalize, PatchStem, RepeatFrames,
                     SelectToken, TextHead, TextPreprocessor, TokenPreprocessor, Trunk)


def _conv_stem(cfg: DepthConfig | ThermalConfig | AudioConfig, stride: int) -> PatchStem:
    conv = nn.Conv2d(1, cfg.embed_dim, kernel_size=cfg.kernel_size, stride=stride, bias=False)
    return PatchStem(conv, cfg.embed_dim)


def _preprocessor(name: str, cfg: TrunkConfig) -> nn.Module:
    d = cfg.embed_dim
    if isinstance(cfg, VisionConfig):
        conv = nn.Conv3d(3, d, kernel_size=cfg.kernel_size, stride=cfg.kernel_size, bias=False)
        stem = PatchStem(nn.Sequential(RepeatFrames(cfg.video_frames), conv))
        shape = (3, cfg.video_frames, cfg.image_size, cfg.image_size)
        return TokenPreprocessor(stem, "rgbt_stem", shape, d)
    if isinstance(cfg, TextConfig):
        return TextPreprocessor(cfg.vocab_size, cfg.context_length, d)
    if isinstance(cfg, AudioConfig):
        return TokenPreprocessor(_conv_stem(cfg, cfg.stride), "rgbt_stem",
                                 (1, cfg.num_mel_bins, cfg.target_length), d)
    if isinstance(cfg, DepthConfig):
        return TokenPreprocessor(_conv_stem(cfg, cfg.kernel_size), "depth_stem",
                                 (1, cfg.image_size, cfg.image_size), d)
    if isinstance(cfg, ThermalConfig):
        return TokenPreprocessor(_conv_stem(cfg, cfg.kernel_size), "rgbt_stem",
                                 (1, cfg.image_size, cfg.image_size), d)
    if isinstance(cfg, ImuConfig):
        return ImuPreprocessor(cfg.channels, cfg.num_samples, cfg.kernel_size, d)
    raise TypeError(f"no preprocessor for modality {name!r} ({type(cfg).__name__})")


def _head(cfg: TrunkConfig, out_dim: int) -> nn.Module:
    if isinstance(cfg, TextConfig):
        return TextHead(cfg.embed_dim, out_dim)
    layers: list[nn.Module] = [nn.LayerNorm(cfg.embed_dim, eps=1e-6), SelectToken(0)]
    if isinstance(cfg, ImuConfig):
        layers.append(nn.Dropout(0.5))
    layers.append(nn.Linear(cfg.embed_dim, out_dim, bias=False))
    return nn.Sequential(*layers)


def _postprocessor(cfg: TrunkConfig) -> nn.Module:
    if cfg.logit_scale_init is None:
        return Normalize()
    return nn.Sequential(Normalize(), LogitScale(cfg.logit_scale_init, cfg.logit_scale_learnable))


class ImageBindModel(nn.Module):
    """Six (or fewer) encoders into one ``out_embed_dim`` space.

    ``forward`` follows the reference contract: a dict ``modality -> tensor`` in, a dict
    ``modality -> (B, out_embed_dim)`` out, L2-normalised then multiplied by the modality's
    logit scale (vision has none). Inputs with several clips per sample ((B, S, ...) audio,
    depth, thermal; (B, S, 3, T, H, W) video) are encoded per clip and the clip outputs
    averaged. ``encode`` returns unit-norm embeddings, which is what the nodes publish.
    """

    def __init__(self, config: ImageBindConfig) -> None:
        super().__init__()
        self.config = config
        mods = config.modalities
        self.modality_preprocessors = nn.ModuleDict(
            {m: _preprocessor(m, config.modality(m)) for m in mods})
        self.modality_trunks = nn.ModuleDict({m: self._trunk(config.modality(m)) for m in mods})
        self.modality_heads = nn.ModuleDict(
            {m: _head(config.modality(m), config.out_embed_dim) for m in mods})
        self.modality_postprocessors = nn.ModuleDict(
            {m: _postprocessor(config.modality(m)) for m in mods})

    @staticmethod
    def _trunk(cfg: TrunkConfig) -> Trunk:
        return Trunk(cfg.embed_dim, cfg.num_blocks, cfg.num_heads, cfg.add_bias_kv,
                     cfg.drop_path, cfg.pre_transformer_ln)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.config.modalities

    def encode_modality(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """One modality through its four stages (no clip handling)."""
        if modality not in self.modality_trunks:
            raise KeyError(f"modality {modality!r} is not in this model "
                           f"(has: {', '.join(self.modalities)})")
        tokens = self.modality_preprocessors[modality](x)
        causal = modality == "text"
        feats = self.modality_trunks[modality](tokens, causal)
        head = self.modality_heads[modality]
        out = head(feats, x) if modality == "text" else head(feats)
        return self.modality_postprocessors[modality](out)

    def forward_modality(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Reference semantics for one modality, including clip averaging."""
        # The reference folds any rank >= 5 input into clips; a (B,3,T,H,W) video clip is
        # one sample for vision, so vision folds only at rank 6.
        fold = x.ndim >= 5 and not (modality == "vision" and x.ndim == 5)
        if not fold:
            return self.encode_modality(modality, x)
        b, s = x.shape[:2]
        out = self.encode_modality(modality, x.reshape(b * s, *x.shape[2:]))
        return out.reshape(b, s, -1).mean(dim=1)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.forward_modality(m, x) for m, x in inputs.items() if x is not None}

    def encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings (B, out_embed_dim): what nodes publish and compare."""
        return F.normalize(self.forward_modality(modality, x), dim=-1)

    def add_encoders(self, other: ImageBindModel) -> None:
        """Take ``other``'s encoders (modalities this model lacks) into this model, so one
        instance grows as nodes ask for more modalities; ``other`` must share the config."""
        mods = other.modalities
        clash = [m for m in mods if m in self.modalities]
        if clash or other.config.out_embed_dim != self.config.out_embed_dim:
            raise ValueError(f"cannot add encoders {list(mods)} to {list(self.modalities)}")
        for name in ("modality_preprocessors", "modality_trunks", "modality_heads",
                     "modality_postprocessors"):
            getattr(self, name).update({m: getattr(other, name)[m] for m in mods})
        self.config = dataclasses.replace(
            self.config, **{m: getattr(other.config, m) for m in mods})

    def parts(self, modalities: tuple[str, ...] | list[str]) -> list[nn.Module]:
        """The four stages of each of ``modalities`` (to cast, count or move them)."""
        return [d[m] for d in (self.modality_preprocessors, self.modality_trunks,
                               self.modality_heads, self.modality_postprocessors)
                for m in modalities]

    def encoder(self, modality: str) -> ModalityEncoder:
        """A module with ``forward(x) -> unit-norm embedding`` for one modality (for export)."""
        return ModalityEncoder(self, modality)


def state_prefixes(modalities: Iterable[str]) -> tuple[str, ...]:
    """State-dict key prefixes of the weights of ``modalities`` (one per stage)."""
    return tuple(f"{part}.{m}." for m in modalities for part in (
        "modality_preprocessors", "modality_trunks", "modality_heads",
        "modality_postprocessors"))


class ModalityEncoder(nn.Module):
    """A single-input view of one modality of an ``ImageBindModel`` (shares its weights)."""

    def __init__(self, model: ImageBindModel, modality: str) -> None:
        super().__init__()
        if modality not in model.modalities:
            raise KeyError(f"modality {modality!r} is not in this model")
        self.modality = modality
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(self.modality, x)
