"""The hub's dense objective (training/dense_objective.py): where an object lies in the model
input after crop, resize, centre crop and mirror (hand-computed cases, and a round trip
through the real image pipeline), the per-patch targets, and the loss's direction."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from imagebind_ros.model import create_model
from imagebind_ros.preprocess import image_to_tensor, tokenize
from training.augment import FULL, CropBox, crop, hflip, random_crop_box
from training.dense_objective import DenseObjective, patch_targets, view_box

ROOT = Path(__file__).resolve().parents[1]


def test_view_box_hand_cases() -> None:
    hw = (100, 200)  # a 100 x 200 frame; the object spans x 100-150, y 25-75 pixels
    obj = (0.5, 0.25, 0.75, 0.75)
    # whole frame: the centre 100 x 100 square starts at x = 50
    assert view_box(obj, FULL, hw, False) == pytest.approx((0.5, 0.25, 1.0, 0.75))
    assert view_box(obj, None, hw, True) == pytest.approx((0.0, 0.25, 0.5, 0.75))
    # the right half: x 100-200 is the whole square
    assert view_box(obj, CropBox(0.0, 0.5, 1.0, 0.5), hw, False) == pytest.approx(
        (0.0, 0.25, 0.5, 0.75))
    # the left half does not show the object; a background frame has none
    assert all(math.isnan(v) for v in view_box(obj, CropBox(0.0, 0.0, 1.0, 0.5), hw, False))
    assert all(math.isnan(v) for v in view_box(None, FULL, hw, False))


def test_view_box_round_trip_through_the_image_pipeline() -> None:
    """A white box on black, cut, mirrored and preprocessed as the hub's training views
    are: the white pixels of the model input lie where ``view_box`` says."""
    rng = np.random.default_rng(0)
    h, w, s = 96, 128, 64
    vision = create_model("tiny").config.vision
    vision = replace(vision, image_size=s)
    checked = 0
    for _ in range(40):
        x0, y0 = rng.uniform(0, 0.6), rng.uniform(0, 0.6)
        obj = (x0, y0, x0 + rng.uniform(0.15, 0.4), y0 + rng.uniform(0.15, 0.4))
        img = np.zeros((h, w, 3), np.uint8)
        img[round(obj[1] * h):round(obj[3] * h), round(obj[0] * w):round(obj[2] * w)] = 255
        box = random_crop_box(rng, (0.2, 1.0), aspect=w / h)
        flip = bool(rng.integers(2))
        view = crop(img, box)
        x = image_to_tensor(hflip(view) if flip else view, vision)[0].numpy()
        white = x > x.min() + 0.5 * (x.max() - x.min()) if x.max() > x.min() else x > 1e9
        want = view_box(obj, box, (h, w), flip)
        if math.isnan(want[0]):
            assert not white.any()
            continue
        ys, xs = np.nonzero(white)
        got = (xs.min() / s, ys.min() / s, (xs.max() + 1) / s, (ys.max() + 1) / s)
        np.testing.assert_allclose(got, want, atol=2.5 / s)  # bicubic blur, rounding
        checked += 1
    assert checked >= 20


def test_patch_targets_by_hand() -> None:
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.6, 0.1, 1.0, 0.4],
                          [float("nan")] * 4, [0.0, 0.0, 1.0, 1.0]])
    t = patch_targets(boxes, torch.tensor([3, 1, 2, -1]), (4, 4), background=8)
    want = torch.full((4, 4, 4), 8)
    want[0, :2, :2] = 3
    want[1, :2, 2:] = 1  # centres x 0.625, 0.875 and y 0.125, 0.375: inside x 0.6-1, y 0.1-0.4
    # NaN box and class -1 (a background frame): background everywhere
    torch.testing.assert_close(t, want)


def test_dense_objective_step_lowers_its_loss_and_trains_both_towers() -> None:
    torch.manual_seed(0)
    model = create_model("tiny")
    cfg = model.config.text
    obj = DenseObjective(model, tokenize(["a photo of a dog", "a photo of a car"], cfg),
                         tokenize(["an empty room"], cfg), "maskclip", 0.07)
    images = torch.randn(2, 3, 224, 224)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]])
    classes = torch.tensor([0, 1])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    first = obj(images, boxes, classes)
    first.backward()
    grads = {n.split(".")[1]: p.grad is not None and bool(p.grad.abs().sum() > 0)
             for n, p in model.named_parameters() if n.startswith("modality_trunks")}
    assert grads.get("vision") and grads.get("text")
    for _ in range(5):
        opt.step()
        opt.zero_grad()
        loss = obj(images, boxes, classes)
        loss.backward()
    assert float(loss) < float(first)
    with pytest.raises(ValueError, match="temperature"):
        DenseObjective(model, tokenize(["a"], cfg), tokenize(["b"], cfg), "maskclip", 0.0)


def test_hub_stage_trains_with_the_dense_objective(tmp_path: Path) -> None:
    """A two-step hub run with ``dense.weight``: the epoch's losses hold a finite dense term;
    the objective is refused outside the hub stage."""
    from training import train
    from training.config import load_config

    cfg = str(ROOT / "training" / "configs" / "synthetic_hub.yaml")
    status = train.main(["--config", cfg, "--out_dir", str(tmp_path), "--dense.weight", "1.0",
                         "--epochs", "1", "--data.steps_per_epoch", "2", "--batch_size", "8",
                         "--data.train.text.n", "32", "--data.eval", "null", "--threads", "1",
                         "--log.tensorboard", "false", "--log.progress", "false"])
    assert status == 0
    loss = json.loads((tmp_path / "metrics.json").read_text())["epochs"][-1]["loss"]
    assert set(loss) == {"text", "dense"} and all(math.isfinite(v) for v in loss.values())
    spokes = str(ROOT / "training" / "configs" / "synthetic_spokes.yaml")
    with pytest.raises(ValueError, match="stage hub only"):
        load_config(spokes, ["--dense.weight", "1.0"], check_data=False)
