"""Dense patch embeddings (imagebind_ros.model.dense): the CLS path against the model's own
forward, the value path of a one-block model computed by hand, position-embedding resizing,
and the demo model's patches on a picture made of two objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imagebind_ros import preprocess as pp
from imagebind_ros.model import create_model
from imagebind_ros.model.dense import DENSE_VARIANTS, DenseVisionEncoder, resize_pos_embed
from imagebind_ros.synthetic import SyntheticWorld

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "demo" / "demo.pt"


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("tiny")


def test_plain_cls_is_the_models_image_embedding() -> None:
    """With the unchanged last block, the CLS token through the head IS model.encode: the
    dense path rebuilds the trunk from the same weights."""
    model = tiny()
    x = torch.randn(2, 3, 224, 224)
    cls, patches = DenseVisionEncoder(model, "plain").forward_tokens(x)
    torch.testing.assert_close(cls, model.encode("vision", x), atol=1e-5, rtol=1e-5)
    assert patches.shape == (2, 16, 16, model.config.out_embed_dim)
    torch.testing.assert_close(patches.norm(dim=-1), torch.ones(2, 16, 16))


def test_maskclip_value_path_by_hand_on_a_one_block_model() -> None:
    """tiny has one block, so MaskCLIP's patch i is a function of patch i's pixels and
    position alone: x_i = stem(patch_i) + pos_i (+ pre-LN), then x_i + W_o(W_v LN1(x_i) +
    b_v) + b_o, the FFN, the final LN and the head. Computed here token by token with
    explicit matrix products, and checked to ignore every other patch."""
    model = tiny()
    pre = model.modality_preprocessors["vision"]
    trunk = model.modality_trunks["vision"]
    blk = trunk.blocks[0]
    head = model.modality_heads["vision"]
    x = torch.randn(1, 3, 224, 224)
    got = DenseVisionEncoder(model, "maskclip")(x)[0]
    conv = pre.rgbt_stem.proj[1]
    d = conv.weight.shape[0]
    w2d = conv.weight.sum(2)  # two identical frames: the temporal kernel sums out
    wv, bv = blk.attn.in_proj_weight[2 * d:], blk.attn.in_proj_bias[2 * d:]
    pos = pre.pos_embedding_helper.pos_embed[0, 1:]
    ln = trunk.pre_transformer_layer[0]
    for i, j in ((0, 0), (3, 11), (15, 15)):
        patch = x[0, :, 14 * i:14 * i + 14, 14 * j:14 * j + 14]
        t = (w2d * patch).sum((1, 2, 3)) + pos[16 * i + j]
        t = F.layer_norm(t, (d,), ln.weight, ln.bias, 1e-6)
        y = F.layer_norm(t, (d,), blk.norm_1.weight, blk.norm_1.bias, 1e-6)
        t = t + blk.attn.out_proj.weight @ (wv @ y + bv) + blk.attn.out_proj.bias
        y = F.layer_norm(t, (d,), blk.norm_2.weight, blk.norm_2.bias, 1e-6)
        hid = F.gelu(blk.mlp.fc1.weight @ y + blk.mlp.fc1.bias)
        t = t + blk.mlp.fc2.weight @ hid + blk.mlp.fc2.bias
        e = head[-1].weight @ F.layer_norm(t, (d,), head[0].weight, head[0].bias, 1e-6)
        torch.testing.assert_close(got[i, j], e / e.norm(), atol=1e-5, rtol=1e-5)
    # locality: change the top-left quarter; maskclip's far patches keep their values,
    # the plain block's (which attends everywhere) do not
    y = x.clone()
    y[..., :112, :112] = torch.randn(1, 3, 112, 112)
    for variant, same in (("maskclip", True), ("plain", False)):
        enc = DenseVisionEncoder(model, variant)
        far = enc(x)[0, 8:, 8:], enc(y)[0, 8:, 8:]
        assert torch.allclose(*far, atol=1e-6) == same, variant


def test_pos_embed_resizing_and_larger_inputs() -> None:
    g, d = 8, 3
    # resizing is linear in the values (channel 2 = channel 0 + 2 x channel 1 stays so)
    yy, xx = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    field = torch.stack([xx, yy, xx + 2 * yy], -1).float().reshape(1, g * g, d)
    pos = torch.cat([torch.full((1, 1, d), 7.0), field], 1)
    out = resize_pos_embed(pos, (g, g), (16, 16))
    assert out.shape == (1, 257, d) and torch.equal(out[:, 0], pos[:, 0])
    grid = out[0, 1:].reshape(16, 16, d)
    inner = slice(4, 11)
    torch.testing.assert_close(grid[inner, inner, 2],
                               grid[inner, inner, 0] + 2 * grid[inner, inner, 1])
    # PyTorch's cubic kernel (a = -0.75) is not exact on ramps, but ordered and within a
    # few hundredths of the old grid's positions (i + 0.5) / 2 - 0.5
    expect = (torch.arange(16.0)[inner] + 0.5) / 2 - 0.5
    torch.testing.assert_close(grid[8, inner, 0], expect, atol=0.06, rtol=0)
    assert (grid[8, 1:, 0] > grid[8, :-1, 0]).all()
    flat = resize_pos_embed(torch.full((1, 65, d), 0.25), (g, g), (5, 11))
    torch.testing.assert_close(flat, torch.full((1, 56, d), 0.25))
    assert resize_pos_embed(pos, (g, g), (g, g)) is pos
    model = tiny()
    enc = DenseVisionEncoder(model, "maskclip")
    assert enc(torch.randn(1, 3, 280, 448)).shape == (1, 20, 32, 16)
    with pytest.raises(ValueError, match="multiples of the patch size 14"):
        enc(torch.randn(1, 3, 230, 224))
    with pytest.raises(ValueError, match="variant"):
        DenseVisionEncoder(model, "gem")


@pytest.mark.parametrize("variant", DENSE_VARIANTS)
def test_every_variant_gives_unit_patch_embeddings(variant: str) -> None:
    torch.manual_seed(0)
    model = create_model("imagebind_small")
    out = DenseVisionEncoder(model, variant)(torch.randn(1, 3, 224, 280))
    assert out.shape == (1, 16, 20, model.config.out_embed_dim)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(1, 16, 20))


@pytest.mark.skipif(not DEMO.is_file(), reason="demo checkpoint not built")
def test_demo_patches_score_each_half_for_its_class() -> None:
    """Left half one class's picture, right half another's: the patches of each half (its
    central columns) score their own class's caption above the other's.

    The demo hub was trained on whole pictures only and its patches are weak (38 halves,
    128 px: maskclip 25/38 right, plain 18/38, i.e. chance; patch top-1 over 8 classes
    0.13-0.22 for every variant, chance 0.125): these 12 fixed halves give 9/12 with
    maskclip, which is what is required (a regression below it fails)."""
    model = create_model(checkpoint=DEMO)
    cfg = model.config
    world = SyntheticWorld(image_size=cfg.vision.image_size * 2)
    with torch.no_grad():
        text = model.encode("text", pp.tokenize(
            [f"a photo of a {c}" for c in world.classes], cfg.text))
    enc = DenseVisionEncoder(model, "maskclip")
    g = np.random.default_rng(3)
    wins = total = 0
    for a, b in ((0, 1), (2, 3), (5, 6), (1, 7), (3, 0), (6, 2)):
        left, right = world.image(a, g)[0], world.image(b, g)[0]
        s = left.shape[0]
        img = np.concatenate([left[:, s // 4:3 * s // 4], right[:, s // 4:3 * s // 4]], 1)
        x = normalise(img, cfg.vision)
        with torch.no_grad():
            m = enc(x)[0] @ text.T  # (gh, gw, classes)
        gw = m.shape[1]
        for cls, other, cols in ((a, b, slice(1, gw // 2 - 1)), (b, a, slice(gw // 2 + 1,
                                                                              gw - 1))):
            part = m[:, cols]
            wins += int(part[..., cls].mean() > part[..., other].mean())
            total += 1
    assert wins >= 9, f"{wins}/{total}"


def normalise(img: np.ndarray, vision) -> torch.Tensor:  # noqa: ANN001
    mean = torch.tensor(vision.mean).view(3, 1, 1)
    std = torch.tensor(vision.std).view(3, 1, 1)
    return ((torch.from_numpy(img).permute(2, 0, 1).float() / 255 - mean) / std)[None]


@pytest.fixture(scope="module")
def dense_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """tiny's vision and text encoders exported with two dense graphs (one tracing each)."""
    pytest.importorskip("onnxruntime")
    from imagebind_ros.inference.export import export_onnx

    model = tiny()
    out = tmp_path_factory.mktemp("dense_onnx")
    export_onnx(model, ["vision", "text"], out, progress=False, verify=False,
                dense=["maskclip", "naclip"])
    return model, out


@pytest.mark.parametrize("variant", ["maskclip", "naclip"])
def test_onnxruntime_backend_runs_the_dense_graph_like_torch(dense_export: tuple,
                                                             variant: str) -> None:
    """The ONNX Runtime backend loads the manifest's dense graph and gives torch's patch
    embeddings at sizes the export never traced (the graph resizes the position
    embedding itself)."""
    from imagebind_ros.inference.onnxruntime_backend import OnnxRuntimeBackend

    model, out = dense_export
    ort = OnnxRuntimeBackend(out, threads=1)
    assert ort.dense_variants == ("maskclip", "naclip")
    enc = DenseVisionEncoder(model, variant).eval()
    for hw in ((224, 224), (112, 336), (476, 644)):
        x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(hw[1]))
        with torch.no_grad():
            want = enc(x).numpy()
        got = ort.encode_dense(x.numpy(), variant)
        assert got.shape == (1, hw[0] // 14, hw[1] // 14, model.config.out_embed_dim)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_dense_graph_refusals(dense_export: tuple, tmp_path: Path) -> None:
    """A variant that was not exported, a frame off the patch grid and a tampered dense
    entry each get one clear error."""
    import json
    import shutil

    from imagebind_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
    from imagebind_ros.inference.base import BackendUnavailable
    from imagebind_ros.inference.manifest import ManifestError

    _, out = dense_export
    ort = OnnxRuntimeBackend(out, threads=1)
    with pytest.raises(BackendUnavailable, match="no dense vision output 'sclip'.*maskclip"):
        ort.encode_dense(np.zeros((1, 3, 224, 224), np.float32), "sclip")
    with pytest.raises(ValueError, match="multiples of 14"):
        ort.encode_dense(np.zeros((1, 3, 224, 230), np.float32), "maskclip")
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    text = (bad / "manifest.json").read_text()
    doc = json.loads(text)
    doc["dense"]["maskclip"]["output_shape"][-1] = 7
    (bad / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match="dense entry 'maskclip'"):
        OnnxRuntimeBackend(bad)
    (bad / "manifest.json").write_text(text)
    # a dense graph is the vision encoder's: hashed by a backend with vision, not by one
    # of text alone
    f = bad / "vision_dense_naclip.onnx"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF  # same size, different content
    f.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="vision_dense_naclip.onnx does not match"):
        OnnxRuntimeBackend(bad, modalities=["vision"])
    assert OnnxRuntimeBackend(bad, modalities=["text"]).dense_variants == ()
    f.write_bytes(b"x")
    with pytest.raises(ManifestError, match="vision_dense_naclip.onnx has 1 bytes"):
        OnnxRuntimeBackend(bad, verify=False)


def test_torch_bf16_backend_runs_the_dense_read_out_on_its_bf16_weights() -> None:
    """bf16 holds the vision matmul weights in bf16 (cast once); the dense read-out runs
    them under the backend's autocast and stays within bf16 rounding of fp32 torch."""
    from imagebind_ros.inference import create_backend

    model = tiny()
    want_model = tiny()  # an fp32 copy with the same seed, untouched by the cast
    bf16 = create_backend("torch", model=model, device="cpu", precision="bf16",
                          modalities=["vision"])
    x = torch.randn(1, 3, 112, 168, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        want = DenseVisionEncoder(want_model, "naclip").eval()(x).numpy()
    got = bf16.encode_dense(x.numpy(), "naclip")
    assert got.dtype == np.float32 and got.shape == want.shape
    assert float((got * want).sum(-1).min()) > 0.99
