"""Dense patch embeddings: one vision forward -> an embedding in the joint space per patch.

ImageBind's vision head is a final LayerNorm, the CLS token and a linear map. Applied to
every patch token instead of the CLS token it gives a (H', W', D) map that can be compared
with a sound, a caption or any embedding. Read plainly, patch tokens of the last block carry
little local meaning (they mostly mirror the global content); the training-free methods
below change only the LAST block (Zhou et al. 2022 MaskCLIP; Wang et al. 2024 SCLIP;
Lan et al. 2024 ClearCLIP; Hajimiri et al. 2025 NACLIP), written from their descriptions:

- ``plain``: the unchanged block, every token through the head.
- ``maskclip``: attention replaced by each token's own value (q and k ignored); residual and
  FFN kept.
- ``sclip``: attention weights softmax(q q^T) + softmax(k k^T) (correlative attention);
  residual and FFN kept.
- ``clearclip``: q-q attention, no residual, no FFN: the attention output alone is read.
- ``naclip``: k-k attention plus a Gaussian neighbourhood bias on the patch grid (each patch
  attends mostly to its neighbours), no residual, no FFN.

The input may be larger than the training size (any multiple of the patch size): the learned
position embedding is resized bicubically to the new grid, as is usual for ViTs.
Pure torch; ``DenseVisionEncoder`` is an ``nn.Module`` and exports to ONNX.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .imagebind import ImageBindModel
from .layers import Attention, Block

DENSE_VARIANTS = ("plain", "maskclip", "sclip", "clearclip", "naclip")


def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int], new: tuple[int, int]
                     ) -> torch.Tensor:
    """(1, 1 + gh*gw, d) position embedding -> (1, 1 + nh*nw, d); the CLS entry is kept."""
    if tuple(grid) == tuple(new):
        return pos
    d = pos.shape[-1]
    patches = pos[:, 1:].reshape(1, grid[0], grid[1], d).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=new, mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, -1, d)], dim=1)


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, h, d // h).transpose(1, 2)


def _softmax_attn(a: torch.Tensor, b: torch.Tensor, scale: float,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    logits = a @ b.transpose(-2, -1) * scale
    if bias is not None:
        logits = logits + bias
    return logits.softmax(dim=-1)


def neighbourhood_bias(grid: tuple[int, int], sigma: float) -> torch.Tensor:
    """(1 + n, 1 + n) additive logits: -dist^2 / (2 sigma^2) between patch grid cells; the
    CLS row and column get 0 (no spatial prior)."""
    ys, xs = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    pts = torch.stack([ys.flatten(), xs.flatten()], 1).float()
    d2 = (pts[:, None] - pts[None]).pow(2).sum(-1)
    n = pts.shape[0]
    out = torch.zeros(n + 1, n + 1)
    out[1:, 1:] = -d2 / (2 * sigma ** 2)
    return out


class DenseVisionEncoder(nn.Module):
    """(B, 3, H, W) normalised images -> (B, H/p, W/p, D) unit-norm patch embeddings.

    Shares the weights of ``model`` (nothing is copied). ``variant`` picks the last-block
    reading (``DENSE_VARIANTS``); ``sigma`` is NACLIP's neighbourhood width in patches.
    ``forward_tokens`` also returns the CLS embedding (with ``plain`` it is the model's own
    image embedding).
    """

    def __init__(self, model: ImageBindModel, variant: str = "maskclip",
                 sigma: float = 5.0) -> None:
        super().__init__()
        if "vision" not in model.modalities:
            raise KeyError("dense embeddings need a model with a vision encoder")
        if variant not in DENSE_VARIANTS:
            raise ValueError(f"dense variant must be one of {DENSE_VARIANTS}, got {variant!r}")
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.variant = variant
        self.sigma = float(sigma)
        self.config = model.config.vision
        pre = model.modality_preprocessors["vision"]
        self.stem = pre.rgbt_stem
        self.cls_token = pre.cls_token
        self.pos = pre.pos_embedding_helper
        self.trunk = model.modality_trunks["vision"]
        head = model.modality_heads["vision"]
        self.norm, self.proj = head[0], head[-1]
        kt, self.patch, pw = self.config.kernel_size
        if self.patch != pw:
            raise ValueError(f"square patches only, got {self.config.kernel_size}")
        if self.config.video_frames != kt:
            raise ValueError("dense embeddings of single images need video_frames == "
                             f"temporal kernel, got {self.config.video_frames} and {kt}")
        g = self.config.image_size // self.patch
        self.grid = (g, g)

    def grid_for(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Patch grid of an (H, W) input; ValueError if H or W is not a multiple of p."""
        h, w = hw
        p = self.patch
        if h % p or w % p or h < p or w < p:
            raise ValueError(f"dense input sides must be positive multiples of the patch size "
                             f"{p}, got {h}x{w}")
        return h // p, w // p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(x)[1]

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (CLS embedding (B, D), patch embeddings (B, H/p, W/p, D)), unit norm."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"dense input must be (B, 3, H, W), got {tuple(x.shape)}")
        grid = self.grid_for((x.shape[2], x.shape[3]))
        tokens = self.stem(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], 1) + resize_pos_embed(self.pos.pos_embed, self.grid,
                                                                grid)
        t = self.trunk.pre_transformer_layer(tokens)
        for blk in self.trunk.blocks[:-1]:
            t = blk(t)
        t = self._last(self.trunk.blocks[-1], t, grid)
        out = F.normalize(self.proj(self.norm(t)), dim=-1)
        return out[:, 0], out[:, 1:].reshape(x.shape[0], grid[0], grid[1], -1)

    def _last(self, blk: Block, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        if self.variant == "plain":
            return blk(x)
        y = blk.norm_1(x)
        att: Attention = blk.attn
        q, k, v = F.linear(y, att.in_proj_weight, att.in_proj_bias).chunk(3, dim=-1)
        if self.variant == "maskclip":
            x = x + att.out_proj(v)
            return x + blk.mlp(blk.norm_2(x))
        h = att.num_heads
        q, k, v = _heads(q, h), _heads(k, h), _heads(v, h)
        scale = 1.0 / math.sqrt(q.shape[-1])
        if self.variant == "sclip":
            w = _softmax_attn(q, q, scale) + _softmax_attn(k, k, scale)
        elif self.variant == "clearclip":
            w = _softmax_attn(q, q, scale)
        else:  # naclip
            bias = neighbourhood_bias(grid, self.sigma).to(x)
            w = _softmax_attn(k, k, scale, bias)
        b, _, n, _ = v.shape
        out = att.out_proj((w @ v).transpose(1, 2).reshape(b, n, -1))
        if self.variant == "sclip":
            x = x + out
            return x + blk.mlp(blk.norm_2(x))
        return out
