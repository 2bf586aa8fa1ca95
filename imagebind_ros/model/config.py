"""Model configuration: one dataclass per modality, and named presets.

Preprocessing constants live in the same dataclasses, so a checkpoint that stores its config
also stores how its inputs must be prepared (open_clip's ``PreprocessCfg`` idea).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class TrunkConfig:
    """Transformer trunk shared by every modality (pre-norm blocks, MLP ratio 4)."""

    embed_dim: int = 768
    num_blocks: int = 12
    num_heads: int = 12
    drop_path: float = 0.0
    # ImageBind appends a learned key/value token in every non-CLIP trunk.
    add_bias_kv: bool = True
    # Only the vision trunk has a LayerNorm before the first block.
    pre_transformer_ln: bool = False
    # Output scaling after L2 normalisation: exp(log(init)), capped at 100.
    logit_scale_init: float | None = None
    logit_scale_learnable: bool = False


@dataclass
class VisionConfig(TrunkConfig):
    embed_dim: int = 1280
    num_blocks: int = 32
    num_heads: int = 16
    add_bias_kv: bool = False
    pre_transformer_ln: bool = True
    image_size: int = 224
    video_frames: int = 2
    kernel_size: tuple[int, int, int] = (2, 14, 14)
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD


@dataclass
class TextConfig(TrunkConfig):
    embed_dim: int = 1024
    num_blocks: int = 24
    num_heads: int = 16
    add_bias_kv: bool = False
    logit_scale_init: float | None = 1 / 0.07
    logit_scale_learnable: bool = True
    context_length: int = 77
    vocab_size: int = 49408


@dataclass
class AudioConfig(TrunkConfig):
    embed_dim: int = 768
    num_blocks: int = 12
    num_heads: int = 12
    drop_path: float = 0.1
    logit_scale_init: float | None = 20.0
    kernel_size: int = 16
    stride: int = 10
    num_mel_bins: int = 128
    target_length: int = 204
    sample_rate: int = 16000
    clip_duration: float = 2.0
    clips_per_video: int = 3
    mean: float = -4.268
    std: float = 9.138


@dataclass
class DepthConfig(TrunkConfig):
    embed_dim: int = 384
    num_blocks: int = 12
    num_heads: int = 8
    logit_scale_init: float | None = 5.0
    kernel_size: int = 16
    image_size: int = 224
    # Omnivore's SUN RGB-D disparity: depth z (metres) -> d = focal_length_px * baseline_m /
    # min(depth_scale * z, max_depth_m), clipped to max_disparity_px and divided by it, then
    # (d - mean) / std. depth_scale = 8 reproduces SUN RGB-D's bit-rotated PNGs read as plain
    # millimetres, the scale mean/std fit. See docs/preprocessing.md.
    focal_length_px: float = 518.857901
    baseline_m: float = 0.075
    depth_scale: float = 8.0
    max_depth_m: float = 50.0
    max_disparity_px: float = 75.0
    mean: float = 0.0418
    std: float = 0.0295


@dataclass
class ThermalConfig(TrunkConfig):
    embed_dim: int = 768
    num_blocks: int = 12
    num_heads: int = 12
    logit_scale_init: float | None = 10.0
    kernel_size: int = 16
    image_size: int = 224
    # mono8 as is; mono16/float get a linear gain between these percentiles of the frame
    # (camera-style AGC), then [0, 1] and (t - mean) / std. LLVIP-style 8-bit input is not
    # mean/std normalised. See docs/preprocessing.md.
    agc_percentiles: tuple[float, float] = (1.0, 99.0)
    mean: float = 0.0
    std: float = 1.0


@dataclass
class ImuConfig(TrunkConfig):
    embed_dim: int = 512
    num_blocks: int = 6
    num_heads: int = 8
    drop_path: float = 0.7
    logit_scale_init: float | None = 5.0
    kernel_size: int = 8
    channels: int = 6
    num_samples: int = 2000
    # The window the num_samples cover (the paper's 5-s IMU clips -> 400 Hz).
    window_seconds: float = 5.0


MODALITY_CONFIGS: dict[str, type[TrunkConfig]] = {
    "vision": VisionConfig,
    "text": TextConfig,
    "audio": AudioConfig,
    "depth": DepthConfig,
    "thermal": ThermalConfig,
    "imu": ImuConfig,
}


@dataclass
class ImageBindConfig:
    """A full model: a shared output dimension and any subset of the six encoders.

    A modality set to ``None`` is absent from the model (e.g. a spoke-only checkpoint).
    """

    name: str = "imagebind_huge"
    out_embed_dim: int = 1024
    vision: VisionConfig | None = field(default_factory=VisionConfig)
    text: TextConfig | None = field(default_factory=TextConfig)
    audio: AudioConfig | None = field(default_factory=AudioConfig)
    depth: DepthConfig | None = field(default_factory=DepthConfig)
    thermal: ThermalConfig | None = field(default_factory=ThermalConfig)
    imu: ImuConfig | None = field(default_factory=ImuConfig)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITY_CONFIGS if getattr(self, m) is not None)

    def modality(self, name: str) -> TrunkConfig:
        cfg = getattr(self, name, None) if name in MODALITY_CONFIGS else None
        if cfg is None:
            raise KeyError(f"modality {name!r} is not in model {self.name!r} "
                           f"(has: {', '.join(self.modalities)})")
        return cfg

    def subset(self, modalities: Iterable[str] | None) -> ImageBindConfig:
        """This config with only ``modalities`` (None: all); KeyError naming one it lacks."""
        if modalities is None:
            return self
        wanted = set(modalities)
        for m in wanted:
            self.modality(m)
        if not wanted:
            raise KeyError(f"an empty modality subset of model {self.name!r}")
        return dataclasses.replace(self, **{m: None for m in self.modalities
                                            if m not in wanted})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageBindConfig:
        kwargs: dict[str, Any] = {"name": d.get("name", "custom"),
                                  "out_embed_dim": int(d["out_embed_dim"])}
        for m, mcls in MODALITY_CONFIGS.items():
            sub = d.get(m)
            if sub is None:
                kwargs[m] = None
                continue
            known = {f.name for f in dataclasses.fields(mcls)}
            unknown = set(sub) - known
            if unknown:
                raise ValueError(f"config for {m!r} has unknown fields: {sorted(unknown)}")
            sub = {k: tuple(v) if isinstance(v, list) else v for k, v in sub.items()}
            kwargs[m] = mcls(**sub)
        return cls(**kwargs)


def _small(name: str, width: int, blocks: int, heads: int, out: int) -> ImageBindConfig:
    """Every encoder at one width: the golden 'small' config and the test presets."""
    def trunk(c: type[TrunkConfig]) -> Any:
        return c(embed_dim=width, num_blocks=blocks, num_heads=heads)

    return ImageBindConfig(
        name=name, out_embed_dim=out,
        vision=trunk(VisionConfig), text=trunk(TextConfig), audio=trunk(AudioConfig),
        depth=trunk(DepthConfig), thermal=trunk(ThermalConfig), imu=trunk(ImuConfig))


PRESETS: dict[str, Any] = {
    # The released ImageBind (ViT-H 630M vision/text from OpenCLIP + five trained encoders).
    "imagebind_huge": lambda: ImageBindConfig(name="imagebind_huge"),
    # The configuration of tests/data/golden/imagebind_small (reference parity tests).
    "imagebind_small": lambda: _small("imagebind_small", 64, 2, 4, 32),
    # Tiny random-init model for unit tests and the CPU demo path.
    "tiny": lambda: _small("tiny", 32, 1, 2, 16),
}


def get_config(name: str) -> ImageBindConfig:
    """Return a fresh config for a named preset."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]()
