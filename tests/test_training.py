"""Training building blocks against independent references: the epoch plan, the loss, the
schedule, configs, hubs, the hub-feature cache, metrics and the checkpoints nodes load."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from imagebind_ros.model import ImageBindModel, create_model, get_config, save_model
from imagebind_ros.model.checkpoint import read_checkpoint
from imagebind_ros.synthetic import BACKGROUND_CAPTIONS, SyntheticWorld
from training import cache as hub_cache
from training.augment import partial_crop_box
from training.config import load_config
from training.data import EpochPlan, Transforms, build_eval_dataset, build_pair_dataset
from training.eval import evaluate, retrieval, templates_from, zero_shot
from training.eval import main as eval_main
from training.hub import hub_config, load_hub
from training.model_io import TextTower, build_config, bundle, image_transform
from training.train import contrastive_loss, lr_lambda
from training.train import main as train_main

TINY = str(Path(__file__).resolve().parents[1] / "training" / "configs" / "tiny.yaml")
QUIET = ["--log.progress", "false", "--log.tensorboard", "false"]


def _tiny_hub_model(seed: int = 0) -> ImageBindModel:
    cfg = get_config("tiny").to_dict()
    cfg["vision"].update(image_size=32, kernel_size=(2, 8, 8))
    torch.manual_seed(seed)
    from imagebind_ros.model import ImageBindConfig
    return ImageBindModel(ImageBindConfig.from_dict(cfg)).eval()


# ------------------------------------------------------------------ epoch plan
def test_epoch_plan_covers_shards_and_resumes() -> None:
    plan = EpochPlan(sizes={"a": 10, "b": 3}, views={"a": 1, "b": 2}, replicate={"b": 2},
                     global_batch=4, seed=5)
    assert plan.steps == 3  # ceil(10 / 4) beats ceil(3 * 2 / 4)
    for m, n, rep in (("a", 10, 1), ("b", 3, 2)):
        idx, views = plan.order(m, epoch=0)
        assert len(idx) == plan.steps * 4
        # the first n * rep positions are a replicated permutation: each sample rep times
        assert np.bincount(idx[:n * rep].numpy(), minlength=n).tolist() == [rep] * n
        assert set(views.tolist()) <= set(range(2 if m == "b" else 1))
        full = plan.batches(m, 0, 0, rank=0, world=1)
        halves = [plan.batches(m, 0, 0, rank=r, world=2) for r in range(2)]
        for s in range(plan.steps):  # ranks split each global batch in order
            assert halves[0][s] + halves[1][s] == full[s]
        assert plan.batches(m, 0, 2, 0, 1) == full[2:]  # resuming at step 2 = skipping 2
    assert plan.order("a", 0)[0].tolist() == plan.order("a", 0)[0].tolist()
    assert plan.order("a", 0)[0].tolist() != plan.order("a", 1)[0].tolist()
    with pytest.raises(ValueError, match="not divisible"):
        plan.batches("a", 0, 0, rank=0, world=3)


# ------------------------------------------------------------------ loss and schedule
def _reference_infonce(a: np.ndarray, x: np.ndarray, scale: float) -> float:
    """Symmetric InfoNCE written out in float64: mean of the two cross-entropies."""
    logits = scale * a @ x.T

    def ce(lg: np.ndarray) -> float:
        lse = np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1)) + lg.max(1)
        return float(np.mean(lse - np.diag(lg)))
    return 0.5 * (ce(logits) + ce(logits.T))


def test_contrastive_loss_is_symmetric_infonce() -> None:
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(6, 5, generator=g), dim=-1)
    x = F.normalize(torch.randn(6, 5, generator=g), dim=-1)
    for temp in (0.05, 0.2):
        got = contrastive_loss(ClipLoss(), a, x, 1 / temp).item()
        want = _reference_infonce(a.double().numpy(), x.double().numpy(), 1 / temp)
        assert got == pytest.approx(want, rel=1e-5)
    # a perfect pairing at a low temperature has (nearly) zero loss
    assert contrastive_loss(ClipLoss(), a, a, 1 / 0.01).item() < 1e-3


def test_warmup_cosine_schedule() -> None:
    f = lr_lambda(warmup=4, total=14, min_ratio=0.1)
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4) == pytest.approx(1.0)
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)


# ------------------------------------------------------------------ config
def test_config_overrides_and_clear_errors() -> None:
    cfg = load_config(TINY, ["--optim.lr", "0.5", "--data.train.audio.n", "7",
                             "--modalities", "audio", "--temperature.audio", "0.07"])
    assert cfg["optim"]["lr"] == 0.5 and cfg["data"]["train"]["audio"]["n"] == 7
    assert cfg["modalities"] == ["audio"] and cfg["temperature"]["audio"] == 0.07
    assert cfg["optim"]["betas"] == [0.9, 0.95]  # default kept
    with pytest.raises(KeyError, match="lrr"):
        load_config(TINY, ["--optim.lrr", "1"])
    with pytest.raises(KeyError, match="bogus"):
        load_config(TINY, ["--bogus", "1"])
    with pytest.raises(ValueError, match="stage"):
        load_config(TINY, ["--stage", "both"])
    with pytest.raises(ValueError, match="no training data"):
        load_config(TINY, ["--modalities", "audio,depth", "--data.train", "{}"])
    with pytest.raises(ValueError, match="temperatures must be positive"):
        load_config(TINY, ["--temperature.imu", "0"])
    with pytest.raises(ValueError, match="pairs"):
        load_config(TINY, ["--epochs"])
    cfg = load_config(TINY, [])
    cfg["model"]["out_embed_dim"] = 99
    with pytest.raises(ValueError, match="hub's output"):
        build_config(cfg, out_dim=16)


# ------------------------------------------------------------------ hubs
def test_checkpoint_hub_is_the_frozen_vision_text_of_the_file(tmp_path: Path) -> None:
    model = _tiny_hub_model()
    path = tmp_path / "hub.pt"
    save_model(path, model)
    hub = load_hub({"kind": "checkpoint", "path": str(path)})
    assert set(hub.model.modalities) == {"vision", "text"}  # audio etc. of the file ignored
    assert hub.reference["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not any(p.requires_grad for p in hub.parameters())
    hub.train()
    assert not hub.model.training  # the hub never trains, not even dropout
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    x = hub.image_transform(rgb)[None]
    assert x.shape == (1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(hub.encode_image(x), model.encode("vision", x))
        tokens = hub.tokenize(["a dog", "a car"])
        torch.testing.assert_close(hub.encode_text(tokens), model.encode("text", tokens))
    # a plain state dict (the official imagebind_huge.pth format) takes the preset
    plain = tmp_path / "plain.pt"
    torch.save(create_model("tiny").state_dict(), plain)
    assert load_hub({"kind": "checkpoint", "path": str(plain), "preset": "tiny"}).out_dim == 16
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_hub({"kind": "checkpoint", "path": str(tmp_path / "missing.pth")})


def test_open_clip_hub_from_a_local_file(tmp_path: Path) -> None:
    import open_clip
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32,
                                           "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                        "layers": 1}}
    (tmp_path / "tiny-oc-test.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "tiny-oc-test.json")
    ref, _, preprocess = open_clip.create_model_and_transforms("tiny-oc-test")
    weights = tmp_path / "tiny_oc.bin"
    torch.save(ref.state_dict(), weights)
    hub = load_hub({"kind": "open_clip", "name": "tiny-oc-test", "pretrained": str(weights)})
    assert hub.out_dim == 16 and hub.reference["sha256"]
    rgb = np.random.default_rng(1).integers(0, 256, (50, 40, 3), dtype=np.uint8)
    x = hub.image_transform(rgb)[None]
    from PIL import Image
    torch.testing.assert_close(x[0], preprocess(Image.fromarray(rgb)))
    with torch.no_grad():
        torch.testing.assert_close(hub.encode_image(x), F.normalize(ref.eval().encode_image(x)))
        t = hub.tokenize(["a photo of a dog"])
        torch.testing.assert_close(hub.encode_text(t), ref.encode_text(t, normalize=True))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_hub({"kind": "open_clip", "name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"})


# ------------------------------------------------------------------ hub-feature cache
def test_cache_holds_the_live_hub_features_per_view(tmp_path: Path) -> None:
    cfg = load_config(TINY, ["--modalities", "depth"])
    hub = load_hub(cfg["hub"])
    tf = Transforms(build_config(cfg, hub.out_dim), hub.image_transform)
    ds = build_pair_dataset({"kind": "synthetic", "n": 6, "image_size": 32, "views": 2},
                            "depth", tf)
    feats = hub_cache.load_or_build(hub, ds, tmp_path, torch.device("cpu"), batch_size=4,
                                    dtype="float32")
    assert feats.shape == (6, 2, hub.out_dim)
    with torch.no_grad():
        for i in range(6):
            for v in range(2):
                live = hub.encode_image(ds.load(i, v)["vision"][None])[0]
                torch.testing.assert_close(torch.from_numpy(np.array(feats[i, v])), live,
                                           rtol=1e-5, atol=1e-6)
    # view 1 is the flipped image (and the flipped depth map): a different embedding
    assert not np.allclose(feats[:, 0], feats[:, 1])
    torch.testing.assert_close(ds.load(2, 1)["depth"], ds.load(2, 0)["depth"].flip(-1))
    got = hub_cache.lookup(feats, torch.tensor([3, 0]), torch.tensor([1, 0]))
    torch.testing.assert_close(got, torch.from_numpy(np.stack([feats[3, 1], feats[0, 0]])))

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("the cache was rebuilt")
    real, hub_cache.encode_views = hub_cache.encode_views, boom
    try:
        again = hub_cache.load_or_build(hub, ds, tmp_path, torch.device("cpu"), dtype="float32")
        np.testing.assert_array_equal(again, feats)
    finally:
        hub_cache.encode_views = real
    other = build_pair_dataset({"kind": "synthetic", "n": 6, "image_size": 32, "seed": 1},
                               "depth", tf)
    assert hub_cache.cache_path(tmp_path, hub, other) != hub_cache.cache_path(tmp_path, hub, ds)


# ------------------------------------------------------------------ detection negatives
def test_partial_crop_box_shows_only_a_part_of_the_object() -> None:
    rng = np.random.default_rng(0)
    obj = (0.3, 0.2, 0.7, 0.6)  # relative x0, y0, x1, y1
    for _ in range(50):
        b = partial_crop_box(rng, (0.05, 0.5), obj, cover=(0.02, 0.35), aspect=4 / 3)
        assert b is not None
        assert 0 <= b.top and b.top + b.height <= 1 + 1e-9
        assert 0 <= b.left and b.left + b.width <= 1 + 1e-9
        assert b.width * 4 / 3 == pytest.approx(b.height)  # square in pixels
        # coverage by hand on a pixel grid (independent of the box arithmetic)
        ys, xs = np.mgrid[0:400, 0:400] / 400.0
        inside_obj = (xs >= obj[0]) & (xs < obj[2]) & (ys >= obj[1]) & (ys < obj[3])
        inside_crop = ((xs >= b.left) & (xs < b.left + b.width) & (ys >= b.top)
                       & (ys < b.top + b.height))
        cover = (inside_obj & inside_crop).sum() / inside_obj.sum()
        assert 0.01 <= cover <= 0.37
    # an object that fills the frame cannot be cut by a crop of at least half the frame
    assert partial_crop_box(rng, (0.5, 0.6), (0.0, 0.0, 1.0, 1.0)) is None


def test_synthetic_background_frames_and_part_negatives() -> None:
    config = get_config("imagebind_small")
    tf = Transforms(config, image_transform(config))
    spec = {"kind": "synthetic", "n": 16, "image_size": 32, "views": None, "crop": [0.3, 1.0]}
    plain = build_pair_dataset(spec, "text", tf)
    neg = build_pair_dataset({**spec, "background": 0.25, "parts": 0.5}, "text", tf)
    assert len(plain) == 16 and len(neg) == 20 and plain.key(0) != neg.key(0)
    background = {tuple(t.tolist()) for t in tf.text(list(BACKGROUND_CAPTIONS))}
    for i in range(16):  # the object samples are unchanged; view 0 is always the plain pair
        torch.testing.assert_close(neg.load(i, 0)["text"], plain.load(i, 0)["text"])
        torch.testing.assert_close(neg.load(i, 0)["vision"], plain.load(i, 0)["vision"])
        assert tuple(neg.load(i, 0)["text"].tolist()) not in background
    for i in range(16, 20):  # object-free frames, captioned as background
        assert neg.boxes[i] is None
        assert tuple(neg.load(i, 0)["text"].tolist()) in background
    parts = [tuple(neg.load(i, v)["text"].tolist()) in background
             for i in range(16) for v in range(1, 9)]
    assert 0.2 < np.mean(parts) < 0.7  # about half of the augmented views, as asked
    world = SyntheticWorld(image_size=32)
    frame = world.background(np.random.default_rng(3), ("vision", "depth"))
    assert frame.boxes.shape == (0, 4) and frame.thermal is None
    assert frame.image.shape == (32, 32, 3) and frame.depth_m.min() > 5  # no object in front
    with pytest.raises(ValueError, match="text pairs only"):
        build_pair_dataset({**spec, "views": 2, "crop": None, "background": 0.2}, "audio", tf)
    with pytest.raises(ValueError, match="need text pairs with crop"):
        build_pair_dataset({**spec, "crop": None, "parts": 0.2}, "text", tf)


# ------------------------------------------------------------------ metrics
def test_retrieval_and_zero_shot_by_hand() -> None:
    eye = torch.eye(4)
    # gallery: sample 0 and 1 swapped, 2 and 3 correct
    gal = eye[[1, 0, 2, 3]]
    labels = torch.tensor([0, 0, 1, 1])
    r = retrieval({"a": eye, "b": gal}, ks=(1, 2), labels=labels)["a->b"]
    assert r == {"R@1": 0.5, "R@2": 0.5, "class@1": 1.0}
    # a collapsed encoder is at chance, not perfect: ties count against the true item
    same = torch.ones(8, 3) / math.sqrt(3)
    r = retrieval({"a": same, "b": same}, ks=(1, 5))["a->b"]
    assert r == {"R@1": 0.0, "R@5": 0.0}
    clf = torch.eye(4)[:, :3]  # 3 classes, prototypes e0, e1, e2
    emb = {"x": torch.eye(4)[[0, 1, 2, 0]]}
    z = zero_shot(emb, torch.tensor([0, 1, 2, 2]), clf)["x"]
    assert z == {"top1": 0.75, "chance": pytest.approx(1 / 3)}


# ------------------------------------------------------------------ end to end (tiny)
def test_trained_checkpoint_loads_directly_and_the_hub_never_changes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train_main(["--config", TINY, "--out_dir", str(out), "--epochs", "1",
                       "--eval.plots", "true", "--log.tensorboard", "true",
                       "--log.progress", "false"]) == 0
    for name in ("model.pt", "latest.pt", "metrics.json", "curves.png", "similarity.png"):
        assert (out / name).is_file(), name
    assert list((out / "tb").iterdir())
    model = create_model(checkpoint=out / "model.pt")
    assert set(model.modalities) == {"vision", "text", "audio", "imu"}
    cfg = load_config(TINY, [])
    hub = load_hub(cfg["hub"])
    state = model.state_dict()
    for k, v in hub.model.state_dict().items():  # embedded hub == the untouched hub
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    torch.manual_seed(0)
    init = ImageBindModel(build_config(cfg, hub.out_dim)).state_dict()
    moved = [k for k, v in init.items() if not torch.equal(v, state[k])]
    assert any("modality_trunks.audio" in k for k in moved)
    assert any("modality_trunks.imu" in k for k in moved)
    metrics = json.loads((out / "metrics.json").read_text())
    final = metrics["epochs"][-1]["eval"]
    assert set(final["zero_shot"]) == {"vision", "audio", "imu"}
    assert "audio->imu" in final["retrieval"]
    # training/eval.py on the saved file reproduces the numbers of the training run
    ev = tmp_path / "eval.json"
    assert eval_main(["--checkpoint", str(out / "model.pt"), "--config", TINY,
                      "--out", str(ev)]) == 0
    again = json.loads(ev.read_text())
    for m, v in final["zero_shot"].items():
        assert again["zero_shot"][m]["top1"] == pytest.approx(v["top1"])
    for p, v in final["retrieval"].items():
        assert again["retrieval"][p] == pytest.approx(v)


def test_referenced_hub_bundles_into_one_file(tmp_path: Path) -> None:
    hub_file = tmp_path / "hub.pt"
    save_model(hub_file, _tiny_hub_model(seed=3))
    out = tmp_path / "run"
    assert train_main(["--config", TINY, "--out_dir", str(out), "--epochs", "1",
                       "--hub.kind", "checkpoint", "--hub.path", str(hub_file),
                       "--hub.embed", "false", "--data.eval", "null", *QUIET]) == 0
    ckpt = read_checkpoint(out / "model.pt")
    assert ckpt["hub"]["sha256"] == hashlib.sha256(hub_file.read_bytes()).hexdigest()
    assert set(create_model(checkpoint=out / "model.pt").modalities) == {"audio", "imu"}
    full = bundle(out / "model.pt", tmp_path / "full.pt")
    model = create_model(checkpoint=full)
    assert set(model.modalities) == {"vision", "text", "audio", "imu"}
    hub = load_hub({"kind": "checkpoint", "path": str(hub_file)})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode("vision", x), hub.encode_image(x))
    assert hub_config(model.config).vision == hub.model.config.vision
    save_model(hub_file, _tiny_hub_model(seed=4))  # the hub file changes under the spokes
    with pytest.raises(ValueError, match="hub weights changed"):
        bundle(out / "model.pt", tmp_path / "full2.pt")


# ------------------------------------------------------------------ the committed demo model
def test_committed_demo_model_is_small_and_zero_shots_fresh_synthetic_data() -> None:
    demo = Path(__file__).resolve().parents[1] / "checkpoints" / "demo" / "demo.pt"
    assert demo.stat().st_size < 10 * 2 ** 20
    ckpt = read_checkpoint(demo)
    assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values()
               if v.is_floating_point())  # stored as float16 ...
    model = create_model(checkpoint=demo)  # ... loaded as float32, config from the file
    assert next(model.parameters()).dtype == torch.float32
    assert set(model.modalities) == {"vision", "text", "audio", "depth", "thermal", "imu"}
    # 48 samples no training run or the committed metrics saw (another seed of the test split)
    tf = Transforms(model.config, image_transform(model.config))
    ev = build_eval_dataset({"kind": "synthetic", "n": 48, "split": "test", "seed": 12345,
                             "image_size": 64}, tf)
    encoders = {m: (lambda x, m=m: model.encode(m, x)) for m in model.modalities if m != "text"}
    metrics, _ = evaluate(encoders, TextTower(model), ev, templates_from("simple"),
                          torch.device("cpu"), batch_size=48)
    for m, v in metrics["zero_shot"].items():
        assert v["top1"] >= 4 * v["chance"], (m, metrics["zero_shot"])
