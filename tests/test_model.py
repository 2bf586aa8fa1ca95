"""Tiny-preset model tests: shapes, norms, logit scales, clip averaging, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from imagebind_ros.model import (CheckpointError, ImageBindConfig, create_model, get_config,
                                 save_model)

SHAPES = {"vision": (3, 224, 224), "audio": (3, 1, 128, 204), "depth": (1, 224, 224),
          "thermal": (1, 224, 224), "imu": (6, 2000)}


def _inputs(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(batch, *s, generator=g) for m, s in SHAPES.items()}
    x["text"] = torch.randint(1, 49000, (batch, 77), generator=g)
    x["text"][:, 5] = 49407  # end-of-text token, pooled by the head
    return x


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("tiny")


def test_output_shapes_norms_and_scales(tiny: torch.nn.Module) -> None:
    cfg = tiny.config
    with torch.no_grad():
        out = tiny(_inputs())
    assert set(out) == set(cfg.modalities)
    for m, y in out.items():
        assert y.shape == (2, cfg.out_embed_dim) and y.dtype == torch.float32
        scale = cfg.modality(m).logit_scale_init or 1.0
        norms = y.norm(dim=-1)
        if m == "audio":  # 3 clips averaged: the mean of unit vectors is at most unit length
            assert torch.all(norms <= scale + 1e-4) and torch.all(norms > 0.1 * scale)
        else:
            torch.testing.assert_close(norms, torch.full((2,), scale), rtol=1e-5, atol=1e-5)


def test_encode_is_unit_norm(tiny: torch.nn.Module) -> None:
    with torch.no_grad():
        for m, x in _inputs().items():
            e = tiny.encode(m, x)
            torch.testing.assert_close(e.norm(dim=-1), torch.ones(2))


def test_clip_averaging_matches_per_clip_mean(tiny: torch.nn.Module) -> None:
    audio = _inputs()["audio"]
    with torch.no_grad():
        whole = tiny({"audio": audio})["audio"]
        per_clip = torch.stack([tiny({"audio": audio[:, i]})["audio"] for i in range(3)], 1)
    torch.testing.assert_close(whole, per_clip.mean(1), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(whole, per_clip[:, 0])  # clips really differ


def test_image_equals_repeated_two_frame_clip_and_video_clips_average(
        tiny: torch.nn.Module) -> None:
    img = _inputs()["vision"]
    clip = img.unsqueeze(2).repeat(1, 1, 2, 1, 1)  # (B,3,2,H,W): the image as a 2-frame video
    video = torch.stack([clip, clip.flip(-1)], 1)  # (B, 2 clips, 3, 2, H, W)
    with torch.no_grad():
        a = tiny({"vision": img})["vision"]
        b = tiny({"vision": clip})["vision"]
        v = tiny({"vision": video})["vision"]
        flipped = tiny({"vision": clip.flip(-1)})["vision"]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v, (a + flipped) / 2, rtol=1e-5, atol=1e-6)


def test_text_pools_the_end_token(tiny: torch.nn.Module) -> None:
    t = _inputs()["text"][:1]
    changed_after_eot = t.clone()
    changed_after_eot[0, 10:] = 7  # causal attention: tokens after EOT cannot matter
    changed_before_eot = t.clone()
    changed_before_eot[0, 2] = 7
    with torch.no_grad():
        base = tiny.encode("text", t)
        torch.testing.assert_close(tiny.encode("text", changed_after_eot), base)
        assert not torch.allclose(tiny.encode("text", changed_before_eot), base)


def test_batch_items_are_independent(tiny: torch.nn.Module) -> None:
    x = _inputs(batch=3)
    with torch.no_grad():
        full = tiny(x)
        single = tiny({m: v[1:2] for m, v in x.items()})
    for m in full:
        torch.testing.assert_close(full[m][1:2], single[m], rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip(tiny: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    save_model(path, tiny)
    loaded = create_model(checkpoint=path)  # config comes from the file, no preset named
    assert loaded.config == tiny.config and not loaded.training
    x = _inputs(seed=3)
    with torch.no_grad():
        a, b = tiny(x), loaded(x)
    for m in a:
        assert torch.equal(a[m], b[m])


def test_plain_state_dict_needs_matching_preset(tiny: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "plain.pth"
    torch.save(tiny.state_dict(), path)
    assert create_model("tiny", checkpoint=path).config.name == "tiny"
    with pytest.raises(CheckpointError,
                       match=r"80 missing keys: modality_trunks\.audio\.blocks\.1"):
        create_model("imagebind_small", checkpoint=path)  # 2 blocks per trunk, tiny has 1
    wider = get_config("tiny")
    wider.out_embed_dim = 24
    torch.save(create_model_from(wider).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"modality_heads\.vision\.2\.weight has shape "
                       r"\(24, 32\) in the file, \(16, 32\) in the model"):
        create_model("tiny", checkpoint=path)


def test_missing_and_unexpected_keys_are_named(tiny: torch.nn.Module, tmp_path: Path) -> None:
    sd = dict(tiny.state_dict())
    del sd["modality_heads.audio.2.weight"]
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as e:
        create_model("tiny", checkpoint=path)
    msg = str(e.value)
    assert "1 missing keys: modality_heads.audio.2.weight" in msg
    assert "1 unexpected keys: extra.weight" in msg


def test_unreadable_checkpoints_fail_clearly(tiny: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        create_model("tiny", checkpoint=tmp_path / "imagebind_huge.pth")
    good = tmp_path / "good.pth"
    save_model(good, tiny)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        create_model(checkpoint=truncated)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        create_model(checkpoint=text)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        create_model(checkpoint=tmp_path / "list.pth")


def test_spoke_only_config_builds_only_its_modalities(tmp_path: Path) -> None:
    cfg = get_config("tiny")
    cfg.vision = cfg.text = None
    model = create_model_from(cfg)
    assert model.modalities == ("audio", "depth", "thermal", "imu")
    save_model(tmp_path / "spokes.pt", model)
    assert create_model(checkpoint=tmp_path / "spokes.pt").modalities == model.modalities
    with pytest.raises(KeyError, match="'vision' is not in this model"):
        model.encode("vision", torch.zeros(1, 3, 224, 224))


def create_model_from(cfg: ImageBindConfig) -> torch.nn.Module:
    from imagebind_ros.model import ImageBindModel
    return ImageBindModel(cfg).eval()


def test_wrong_input_shapes_fail_clearly(tiny: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match=r"IMU input must be \(B, 6, 2000\)"):
        tiny.encode("imu", torch.zeros(1, 6, 1000))
    with pytest.raises(ValueError, match="expects"):
        tiny.encode("depth", torch.zeros(1, 1, 160, 160))
    with pytest.raises(ValueError, match=r"text must be \(B, 77\)"):
        tiny.encode("text", torch.zeros(1, 70, dtype=torch.long))


def test_huge_preset_parameter_count() -> None:
    # Built on the meta device: counts without allocating 4.8 GB. The released
    # imagebind_huge.pth holds about 1.2e9 parameters (4.8 GB in float32).
    with torch.device("meta"):
        from imagebind_ros.model import ImageBindModel
        model = ImageBindModel(get_config("imagebind_huge"))
    n = sum(p.numel() for p in model.parameters())
    assert 1.1e9 < n < 1.3e9, n
    assert model.modality_preprocessors["vision"].num_patches == 256
    assert math.isclose(model.modality_postprocessors["text"][1].log_logit_scale.numel(), 1)
