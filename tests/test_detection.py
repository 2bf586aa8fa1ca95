"""Prompted detection (imagebind_ros.detection): geometry against independent references,
window crops against the reference preprocessing, localisation with an analytic encoder, and
a small version of the synthetic benchmark with the demo checkpoint (docs/detection.md has the
full one)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from imagebind_ros import preprocess as pp
from imagebind_ros.detection import (DetectorConfig, Prompt, RegionDetector, box_iou,
                                     draw_detections, evaluate_synthetic, map_regions, nms,
                                     pyramid, similarity_map, window_tensors)
from imagebind_ros.model import VisionConfig, create_model, get_config
from imagebind_ros.synthetic import SyntheticWorld

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "demo" / "demo.pt"
VISION = dataclasses.replace(get_config("tiny").vision, image_size=32)


def random_boxes(g: np.random.Generator, n: int, size: float = 100.0) -> np.ndarray:
    xy = g.uniform(0, size, (n, 2))
    wh = g.uniform(1, size / 2, (n, 2))
    return np.concatenate([xy, xy + wh], 1)


# ----------------------------------------------------------------------------- geometry


def test_box_iou_analytic() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20], [2, 2, 4, 4]])
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0, 4 / 100])


def test_nms_matches_torchvision() -> None:
    g = np.random.default_rng(0)
    for _ in range(20):
        boxes = random_boxes(g, 60)
        scores = g.uniform(size=60)
        for iou in (0.3, 0.5, 0.7):
            ref = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou)
            np.testing.assert_array_equal(nms(boxes, scores, iou), ref.numpy())


def test_pyramid_covers_frame_and_respects_max_regions() -> None:
    for hw in ((480, 640), (97, 203), (300, 300)):
        cfg = DetectorConfig(scales=(0.1, 0.2, 0.5, 1.0), stride=0.25, max_regions=10_000)
        levels = pyramid(hw, 32, cfg)
        assert len(levels) == 4
        covered = np.zeros(hw, bool)
        for lv, s in zip(levels, cfg.scales):
            b = lv.boxes()
            side = s * min(hw)
            np.testing.assert_allclose(b[:, 2] - b[:, 0], side, rtol=0.03)
            np.testing.assert_allclose(b[:, 3] - b[:, 1], side, rtol=0.03)
            assert b.min() >= -1e-6 and (b[:, 2] <= hw[1] + 1e-6).all()
            assert (b[:, 3] <= hw[0] + 1e-6).all()
            for x0, y0, x1, y1 in np.rint(b).astype(int):
                covered[y0:y1, x0:x1] = True
            # neighbouring windows are at most stride x side apart
            xs = np.unique(b[:, 0])
            if len(xs) > 1:
                assert np.diff(xs).max() <= 0.25 * side * 1.05 + 1
        assert covered.all()
        for cap in (500, 50, 7):
            small = pyramid(hw, 32, dataclasses.replace(cfg, max_regions=cap))
            assert 1 <= sum(len(lv.origins) for lv in small) <= cap


def test_windows_equal_reference_preprocessing_of_the_crop() -> None:
    """Each pyramid window is what image_to_tensor makes of the same crop (area/bicubic
    resize of the whole frame vs PIL bicubic of the crop: a few grey levels apart)."""
    img = SyntheticWorld(image_size=64).scene([0, 1, 2], np.random.default_rng(1)).image
    for size in (32, 64, 224):
        cfg = dataclasses.replace(VISION, image_size=size)
        levels = pyramid(img.shape[:2], size, DetectorConfig(scales=(0.1, 0.3, 0.8)))
        for lv, batch in zip(levels, window_tensors(img, levels, cfg)):
            assert batch.shape == (len(lv.origins), 3, size, size)
            boxes = np.rint(lv.boxes()).astype(int)
            for i in np.random.default_rng(0).choice(len(boxes), 4, replace=False):
                x0, y0, x1, y1 = boxes[i]
                ref = pp.image_to_tensor(np.ascontiguousarray(img[y0:y1, x0:x1]), cfg)
                assert np.abs(ref.numpy() - batch[i]).mean() < 0.05


def test_similarity_map_matches_brute_force() -> None:
    g = np.random.default_rng(3)
    hw = (37, 51)
    boxes = random_boxes(g, 40, 50.0)
    scores = g.normal(size=40)
    ref_sum, ref_n = np.zeros(hw), np.zeros(hw)
    for (x0, y0, x1, y1), s in zip(np.rint(boxes).astype(int), scores):
        ref_sum[max(0, y0):min(hw[0], y1), max(0, x0):min(hw[1], x1)] += s
        ref_n[max(0, y0):min(hw[0], y1), max(0, x0):min(hw[1], x1)] += 1
    got = similarity_map(boxes, scores, hw)
    covered = ref_n > 0
    np.testing.assert_allclose(got[covered], ref_sum[covered] / ref_n[covered], atol=1e-9)
    assert np.isnan(got[~covered]).all()


def test_map_regions_finds_planted_regions_strongest_first() -> None:
    hw = (200, 300)
    levels = pyramid(hw, 16, DetectorConfig(scales=(0.1, 0.2), stride=0.25))
    boxes = np.concatenate([lv.boxes() for lv in levels])
    targets = np.array([[40, 50, 100, 110], [200, 60, 260, 160]], float)
    # a window's score: how much of it each target fills (the second one weaker)
    cover = _inside_fraction(boxes, targets)
    scores = cover[:, 0] + 0.6 * cover[:, 1]
    found = map_regions(similarity_map(boxes, scores, hw), threshold=0.5, max_regions=3)
    assert len(found) == 2
    for (box, mask), target in zip(found, targets):
        assert box_iou(box, target)[0, 0] > 0.6
        assert mask.dtype == bool and mask.shape == hw
    assert map_regions(similarity_map(boxes, np.zeros(len(boxes)), hw), 0.5, 3) == []


def _inside_fraction(boxes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Fraction of each window covered by each target (N, M)."""
    iw = np.clip(np.minimum(boxes[:, None, 2], targets[None, :, 2])
                 - np.maximum(boxes[:, None, 0], targets[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(boxes[:, None, 3], targets[None, :, 3])
                 - np.maximum(boxes[:, None, 1], targets[None, :, 1]), 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return iw * ih / area[:, None]


# ----------------------------------------------------------------------------- detector


class ColourEncoder:
    """An analytic 'vision encoder': a window's embedding is the fractions of its pixels that
    are strongly red, green, blue or none of these (unit norm). Counts calls, so tests can
    see that a frame is embedded once."""

    def __init__(self, cfg: VisionConfig) -> None:
        self.mean = np.asarray(cfg.mean, np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(cfg.std, np.float32).reshape(1, 3, 1, 1)
        self.calls = 0
        self.windows = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.windows += len(batch)
        rgb = batch * self.std + self.mean  # back to [0, 1]
        dominant = rgb.argmax(axis=1)  # (N, S, S): which channel is strongest per pixel
        strong = rgb.max(axis=1) - rgb.min(axis=1) > 0.3  # saturated pixels only
        feats = np.stack([((dominant == c) & strong).mean(axis=(1, 2)) for c in range(3)], 1)
        feats = np.concatenate([feats, 1 - feats.sum(1, keepdims=True)], 1)
        return (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)


def planted_scene() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    g = np.random.default_rng(0)
    img = np.clip(g.normal(128, 10, (240, 320, 3)), 0, 255).astype(np.uint8)
    boxes = {"red": np.array([30, 40, 90, 110]), "blue": np.array([180, 120, 280, 200])}
    img[40:110, 30:90] = (220, 30, 30)
    img[120:200, 180:280] = (30, 40, 220)
    return img, boxes


@pytest.mark.parametrize("refine", [0, 4])
def test_detector_finds_planted_objects_with_one_embedding_pass(refine: int) -> None:
    img, truth = planted_scene()
    enc = ColourEncoder(VISION)
    # without GrabCut the box is the map region's: at 0.6 of the peak it hugs the object
    # (the default 0.5 leaves the tightening to GrabCut)
    det = RegionDetector(enc, VISION, DetectorConfig(scales=(0.15, 0.25), batch_size=50,
                                                     refine_iterations=refine,
                                                     map_threshold=0.5 if refine else 0.6))
    regions = det.regions(img)
    calls = enc.calls
    assert calls == -(-enc.windows // 50)  # batches of batch_size
    prompts = [Prompt("red", "text", np.array([1.0, 0, 0, 0])),
               Prompt("blue", "audio", np.array([0, 0, 1.0, 0]))]
    dets = det.detect_all(regions, prompts)
    assert enc.calls == calls  # the prompts reuse the frame's embeddings
    best = {}
    for d in dets:
        best.setdefault(d.label, d)
    assert set(best) == {"red", "blue"}
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    for label, d in best.items():
        iou = box_iou(d.box, truth[label])[0, 0]
        assert iou >= (0.85 if refine else 0.6), (label, d.box, iou)
        assert d.modality == {"red": "text", "blue": "audio"}[label]
        assert 0.9 < d.score <= 1.0 + 1e-6
    if refine:  # GrabCut snaps to the painted edges
        np.testing.assert_allclose(best["red"].box, truth["red"], atol=3)


def test_windows_mode_thresholds_and_suppresses() -> None:
    img, truth = planted_scene()
    det = RegionDetector(ColourEncoder(VISION), VISION, DetectorConfig(
        scales=(0.25,), localize="windows", min_score=0.5, nms_iou=0.3, max_detections=10))
    dets = det(img, [Prompt("red", "text", np.array([1.0, 0, 0, 0]))])
    assert dets and all(d.score >= 0.5 for d in dets)
    boxes = np.stack([d.box for d in dets])
    iou = box_iou(boxes, boxes)
    assert (iou[~np.eye(len(dets), dtype=bool)] <= 0.3).all()
    assert box_iou(dets[0].box, truth["red"])[0, 0] > 0.4


def test_bad_inputs_raise_clear_errors() -> None:
    img, _ = planted_scene()
    det = RegionDetector(ColourEncoder(VISION), VISION, DetectorConfig(scales=(0.3,)))
    with pytest.raises(ValueError, match="RGB uint8"):
        det.regions(img[:, :, 0])
    with pytest.raises(ValueError, match="RGB uint8"):
        det.regions(img.astype(np.float32))
    regions = det.regions(img)
    for vec, msg in ((np.ones(5), "5 values"), (np.array([np.nan, 0, 0, 1]), "NaN"),
                     (np.zeros(4), "zeros")):
        with pytest.raises(ValueError, match=msg):
            det.detect(regions, Prompt("x", "text", vec))
    for bad in (dict(scales=()), dict(scales=(1.5,)), dict(stride=0), dict(localize="x"),
                dict(map_threshold=1.0), dict(max_regions=0), dict(refine_iterations=-1)):
        with pytest.raises(ValueError):
            DetectorConfig(**bad)


def test_draw_detections_marks_boxes_without_touching_input() -> None:
    img, truth = planted_scene()
    dets = RegionDetector(ColourEncoder(VISION), VISION, DetectorConfig(scales=(0.2,)))(
        img, [Prompt("red", "text", np.array([1.0, 0, 0, 0]))])
    before = img.copy()
    out = draw_detections(img, dets)
    np.testing.assert_array_equal(img, before)
    assert out.shape == img.shape and (out != img).any()


# ----------------------------------------------------------------------------- demo model


@pytest.mark.skipif(not DEMO.is_file(), reason="demo checkpoint not built")
def test_demo_model_audio_and_text_prompts_find_the_object() -> None:
    """Small version of docs/detection.md's benchmark: 6 held-out scenes of 3 objects, every
    object prompted by a fresh sound and by a caption. The full run (50 scenes) is
    bench/detection.py (0.85 for both). These 6 scenes come from the tuning stream (seed 1):
    15/18 sounds and 14/18 captions hit, most at IoU > 0.75; 12/18 is required, far above
    chance (a random box has IoU >= 0.5 with the object in well under 1 % of trials)."""
    torch.set_num_threads(1)
    model = create_model(checkpoint=DEMO)
    vision, audio, text = (model.config.modality(m) for m in ("vision", "audio", "text"))

    @torch.no_grad()
    def enc(modality: str, x: torch.Tensor) -> np.ndarray:
        return model.encode(modality, x).numpy()

    world = SyntheticWorld()
    makers = {
        "audio": lambda c, g: enc("audio", pp.audio_to_tensor(
            world.audio(c, g), world.sample_rate, audio).unsqueeze(0))[0],
        "text": lambda c, g: enc("text", pp.tokenize([f"a photo of a {world.classes[c]}"],
                                                     text))[0]}
    det = RegionDetector(lambda x: enc("vision", torch.from_numpy(x)), vision)
    trials = evaluate_synthetic(det, world, makers, scenes=6, seed=1)
    assert len(trials) == 6 * 3 * 2
    for modality in makers:
        rate = np.mean([t.hit for t in trials if t.modality == modality])
        assert rate >= 0.65, f"{modality} prompts: {rate:.2f} of top detections hit"


def test_dense_method_one_forward_finds_planted_objects_and_draws_heatmap() -> None:
    """method 'dense': the 'patch embeddings' of an analytic encoder (a patch's mean colour
    as red/green/blue/grey) come from ONE call per frame; the prompt's map is the grid resized
    to the frame, its region the painted object."""
    from imagebind_ros.detection import heatmap

    img, truth = planted_scene()
    calls = []

    def dense(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        p = VISION.kernel_size[1]
        b, c, h, w = x.shape
        cells = x.reshape(b, c, h // p, p, w // p, p).mean((3, 5)).transpose(0, 2, 3, 1)
        emb = np.concatenate([cells, np.full(cells.shape[:3] + (1,), 0.5)], -1)
        emb = np.maximum(emb, 0) + 1e-3
        return emb / np.linalg.norm(emb, axis=-1, keepdims=True)

    det = RegionDetector(lambda x: None, VISION, DetectorConfig(
        method="dense", dense_sizes=(240,), refine_iterations=0, map_threshold=0.6), dense)
    regions = det.regions(img)
    assert len(calls) == 1 and calls[0][2:] == (238, 322)  # multiples of the 14-px patch
    prompts = [Prompt("red", "text", np.array([1.0, 0, 0, 0])),
               Prompt("blue", "audio", np.array([0, 0, 1.0, 0]))]
    best = {d.label: d for d in det.detect_all(regions, prompts)}
    assert len(calls) == 1
    for label, d in best.items():
        assert box_iou(d.box, truth[label])[0, 0] >= 0.6, (label, d.box)
    heat = heatmap(img, det.similarity(regions, prompts[0].vector))
    assert heat.shape == img.shape and heat.dtype == np.uint8
    x0, y0, x1, y1 = truth["red"]
    assert heat[y0:y1, x0:x1, 0].mean() > heat[:, :, 0].mean() + 30  # red end of JET
    with pytest.raises(ValueError, match="dense encoder"):
        RegionDetector(lambda x: None, VISION, DetectorConfig(method="dense"))
