"""Building blocks of the ImageBind encoders, written from the paper's description.

Parameter names mirror the released checkpoint (``in_proj_weight``, ``norm_1``, ``mlp.fc1``,
``pos_embedding_helper.pos_embed`` ...) so ``imagebind_huge.pth`` loads without a key map.
Attention runs batch-first through ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter layout.

    With ``add_bias_kv`` a learned key/value pair is appended to every sequence, which is
    what ImageBind's audio, depth, thermal and IMU trunks use.
    """

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.bias_k: nn.Parameter | None = None
        self.bias_v: nn.Parameter | None = None
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, dim))
            self.bias_v = nn.Parameter(torch.empty(1, 1, dim))
        self.out_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)
        if self.bias_k is not None and self.bias_v is not None:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, n, d = x.shape
        h = self.num_heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        mask = None
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.expand(b, 1, d)], dim=1)
            v = torch.cat([v, self.bias_v.expand(b, 1, d)], dim=1)
            if causal:  # the appended token is visible to every query
                mask = torch.ones(n, n + 1, dtype=torch.bool, device=x.device).tril()
                mask[:, -1] = True
                causal = False
        q = q.view(b, n, h, d // h).transpose(1, 2)
        k = k.view(b, k.shape[1], h, d // h).transpose(1, 2)
        v = v.view(b, v.shape[1], h, d // h).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample while training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-6, MLP ratio 4, exact GELU)."""

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool, drop_path: float) -> None:
        super().__init__()
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, add_bias_kv)
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm_1(x), causal))
        return x + self.drop_path(self.mlp(self.norm_2(x)))


class Trunk(nn.Module):
    """A stack of blocks; drop-path grows linearly from 0 to ``drop_path`` with depth."""

    def __init__(self, dim: int, num_blocks: int, num_heads: int, add_bias_kv: bool,
                 drop_path: float, pre_transformer_ln: bool) -> None:
        super().__init__()
        self.pre_transformer_layer: nn.Module = (
            nn.Sequential(nn.LayerNorm(dim, eps=1e-6)) if pre_transformer_ln else nn.Identity())
        rates = [drop_path * i / max(num_blocks - 1, 1) for i in range(num_blocks)]
        self.blocks = nn.ModuleList(Block(dim, num_heads, add_bias_kv, r) for r in rates)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = self.pre_transformer_layer(tokens)
        for blk in self.blocks:
            x = blk(x, causal)
        return x


class PatchStem(nn.Module):
    """Patchify (conv or linear ``proj``), flatten to tokens, optional LayerNorm."""

    def __init__(self, proj: nn.Module, norm_dim: int | None = None) -> None:
        super().__init__()
        self.proj = proj
        self.norm_layer = nn.LayerNorm(norm_dim) if norm_dim else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        if x.ndim > 3:  # B C (T) H W -> B (T H W) C
            x = x.flatten(2).transpose(1, 2)
        return self.norm_layer(x) if self.norm_layer is not None else x


class RepeatFrames(nn.Module):
    """Turn an image (B,C,H,W) or a 1-frame clip into a ``frames``-frame clip by repetition."""

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if x.shape[2] == 1:
            x = x.expand(-1, -1, self.frames, -1, -1)
        return x


class PosEmbed(nn.Module):
    """Holds the learned position embedding (named as in the released checkpoint)."""

    def __init__(self, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, num_tokens, dim) * dim ** -0.5)


class TokenPreprocessor(nn.Module):
    """Stem -> prepend a CLS token -> add the learned position embedding.

    ``stem_name`` keeps the checkpoint's attribute name (``rgbt_stem`` for vision, audio and
    thermal; ``depth_stem`` for depth).
    """

    def __init__(self, stem: PatchStem, stem_name: str, input_shape: tuple[int, ...],
                 dim: int) -> None:
        super().__init__()
        self.stem_name = stem_name
        self.add_module(stem_name, stem)
        self.input_shape = tuple(input_shape)
        with torch.no_grad():
            num_patches = stem.proj(torch.zeros(0, *input_shape)).shape[2:]
        self.num_patches = math.prod(num_patches)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * dim ** -0.5)
        self.pos_embedding_helper = PosEmbed(self.num_patches + 1, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = getattr(self, self.stem_name)(x)
        if tokens.shape[1] != self.num_patches:
            raise ValueError(f"input of shape {tuple(x.shape[1:])} gives {tokens.shape[1]} "
                             f"patches; this encoder expects {self.input_shape} "
                             f"({self.num_patches} patches)")
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embedding_helper.pos_embed


class ImuPreprocessor(nn.Module):
    """(B, 6, T) -> non-overlapping windows of ``kernel`` samples -> linear patch tokens."""

    def __init__(self, channels: int, num_samples: int, kernel: int, dim: int) -> None:
        super().__init__()
        if num_samples % kernel:
            raise ValueError(f"IMU num_samples {num_samples} not divisible by kernel {kernel}")
        self.kernel = kernel
        self.channels = channels
        self.num_samples = num_samples
        self.imu_stem = PatchStem(nn.Linear(channels * kernel, dim, bias=False), dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * dim ** -0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, num_samples // kernel + 1, dim) * 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != (self.channels, self.num_samples):
            raise ValueError(f"IMU input must be (B, {self.channels}, {self.num_samples}), "
                             f"got {tuple(x.shape)}")
        b = x.shape[0]
        # (B, C, T) -> (B, T/k, C, k) -> (B, T/k, C*k): channel-major inside each window.
        patches = x.unfold(-1, self.kernel, self.kernel).permute(0, 2, 1, 3).reshape(
            b, self.num_samples // self.kernel, -1)
        tokens = self.imu_stem(patches)
        return torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1) + self.pos_embed


class TextPreprocessor(nn.Module):
    """Token + position embedding; the causal mask is kept as a buffer like the checkpoint."""

    def __init__(self, vocab_size: int, context_length: int, dim: int) -> None:
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, context_length, dim) * 0.01)
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("mask", mask)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        if text.ndim != 2 or text.shape[1] != self.context_length:
            raise ValueError(f"text must be (B, {self.context_length}) token ids, "
                             f"got {tuple(text.shape)}")
        return self.token_embedding(text) + self.pos_embed


class SelectToken(nn.Module):
    """Pick one token (the CLS token at index 0)."""

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]


class TextHead(nn.Module):
    """Pool the end-of-text token (the largest id in each row, as in CLIP), then project."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, out_dim, bias=False))

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.proj(x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)])


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1, p=2)


class LogitScale(nn.Module):
    """Multiply by exp(log_logit_scale) capped at 100; a buffer when not learnable."""

    def __init__(self, init: float, learnable: bool, max_scale: float = 100.0) -> None:
        super().__init__()
        self.max_scale = max_scale
        value = torch.tensor(math.log(init), dtype=torch.float32)
        if learnable:
            self.log_logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_logit_scale", value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.log_logit_scale.exp(), max=self.max_scale) * x


def cast_matmul_weights(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Hold the weights of every matmul and convolution of ``module`` in ``dtype``, in place.

    Autocast casts fp32 weights to bf16/fp16 again on every call (a third of bf16 time on
    ViT-H); weights already in ``dtype`` pass through untouched. LayerNorms, position
    embeddings, tokens and logit scales stay fp32: they are small, and LayerNorm statistics
    and additive embeddings are where reduced precision loses accuracy. Those are copied
    off a memory-mapped checkpoint, so that the file's fp32 pages are released once nothing
    else uses the file (the weights are held once, in ``dtype``).
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            m.to(dtype)
        elif isinstance(m, Attention):
            m.in_proj_weight.data = m.in_proj_weight.data.to(dtype)
            m.in_proj_bias.data = m.in_proj_bias.data.to(dtype)
    for t in [*module.parameters(), *module.buffers()]:
        if t.dtype != dtype:
            t.data = t.data.clone()
    return module
