"""Augmentations (training/augment.py): crop geometry by hand, aligned crops of maps of
different resolutions, frequency masking, and their use in the synthetic pair datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imagebind_ros.preprocess import depth_to_tensor, image_to_tensor
from training.augment import (
    FULL,
    CropBox,
    aligned_crop,
    crop,
    frequency_mask,
    hflip,
    random_crop_box,
    view_rng,
)
from training.config import load_config
from training.data import Transforms, build_pair_dataset
from training.hub import load_hub
from training.model_io import build_config

TINY = Path(__file__).resolve().parents[1] / "training" / "configs" / "tiny.yaml"


def test_crop_by_hand() -> None:
    a = np.arange(8 * 8).reshape(8, 8)
    got = crop(a, CropBox(top=0.25, left=0.5, height=0.5, width=0.25))
    np.testing.assert_array_equal(got, a[2:6, 4:6])
    rgb = np.arange(4 * 6 * 3).reshape(4, 6, 3)
    np.testing.assert_array_equal(crop(rgb, FULL), rgb)
    # a box thinner than a pixel still gives one pixel, never an empty array
    assert crop(a, CropBox(0.99, 0.99, 0.001, 0.001)).shape == (1, 1)
    np.testing.assert_array_equal(hflip(a), a[:, ::-1])


def test_aligned_crop_cuts_the_same_scene_part_at_any_resolution() -> None:
    # a 64x64 "image" whose 4x4 blocks hold the value of the 16x16 "depth map" pixel below
    depth = np.random.default_rng(0).integers(0, 1000, (16, 16))
    image = np.kron(depth, np.ones((4, 4), int))
    for v in range(20):
        b = random_crop_box(view_rng(0, 3, v), scale=(0.2, 1.0))
        # snap to the coarse grid so both crops are whole pixels of the depth map
        b = CropBox(*(round(c * 16) / 16 for c in b))
        if b.height == 0 or b.width == 0:
            continue
        ci, cd = aligned_crop([image, depth], b)
        np.testing.assert_array_equal(ci[::4, ::4], cd)
        np.testing.assert_array_equal(ci, np.kron(cd, np.ones((4, 4), int)))


def test_random_crop_box_respects_scale_ratio_and_contained_box() -> None:
    aspect = 4 / 3  # a 640x480 frame: ratios are in pixels, not in relative units
    obj = (0.40, 0.30, 0.55, 0.60)  # x0, y0, x1, y1
    seen_area = []
    for v in range(300):
        b = random_crop_box(view_rng("s", 0, v), (0.3, 1.0), (3 / 4, 4 / 3), aspect, obj)
        assert 0 <= b.top and b.top + b.height <= 1 + 1e-9
        assert 0 <= b.left and b.left + b.width <= 1 + 1e-9
        assert b.left <= obj[0] and b.left + b.width >= obj[2]
        assert b.top <= obj[1] and b.top + b.height >= obj[3]
        if b != FULL:
            area = b.height * b.width
            assert 0.3 - 1e-9 <= area <= 1 + 1e-9
            assert 3 / 4 - 1e-9 <= b.width * aspect / b.height <= 4 / 3 + 1e-9
            seen_area.append(area)
    assert min(seen_area) < 0.45 and max(seen_area) > 0.85  # the range is really used
    # deterministic per (seed, index, view), different across views
    assert random_crop_box(view_rng(1, 2, 3)) == random_crop_box(view_rng(1, 2, 3))
    assert random_crop_box(view_rng(1, 2, 3)) != random_crop_box(view_rng(1, 2, 4))
    # an object larger than any allowed crop: the whole frame, which contains it
    assert random_crop_box(view_rng(0, 0, 0), (0.1, 0.2), contain=(0, 0, 0.9, 0.9)) == FULL
    with pytest.raises(ValueError, match="scale"):
        random_crop_box(view_rng(0, 0, 0), (0.5, 1.5))


def test_frequency_mask_masks_whole_mel_bands() -> None:
    spec = torch.randn(3, 1, 32, 50)
    widths = set()
    for v in range(200):
        out = frequency_mask(spec, view_rng(0, 0, v), max_bins=6)
        masked = (out == 0).all(dim=-1)  # (3, 1, 32): a band is zero over all frames
        rows = masked[0, 0].nonzero().flatten().tolist()
        assert all(torch.equal(masked[c, 0], masked[0, 0]) for c in range(3))  # every clip
        if rows:
            assert rows == list(range(rows[0], rows[-1] + 1))  # one contiguous band
        widths.add(len(rows))
        keep = ~masked[..., None].expand_as(out)
        torch.testing.assert_close(out[keep], spec[keep], rtol=0, atol=0)
    assert widths == set(range(7))  # 0 ... max_bins
    assert not (spec == 0).any()  # the input is untouched
    with pytest.raises(ValueError, match="mel bins"):
        frequency_mask(spec, view_rng(0, 0, 0), max_bins=32)


def _transforms() -> Transforms:
    cfg = load_config(TINY, ["--modalities", "depth,audio"])
    hub = load_hub(cfg["hub"])
    vision = hub.model.config.modality("vision")  # the hub's image preprocessing
    assert vision.image_size == 32
    return Transforms(build_config(cfg, hub.out_dim), lambda rgb: image_to_tensor(rgb, vision))


def test_synthetic_views_crop_image_and_depth_together() -> None:
    tf = _transforms()
    spec = {"kind": "synthetic", "n": 4, "image_size": 32, "views": 4, "crop": [0.3, 0.9]}
    ds = build_pair_dataset(spec, "depth", tf)
    plain = build_pair_dataset({**spec, "views": 1, "crop": None}, "depth", tf)
    dcfg = tf.config.modality("depth")
    cropped = 0
    for i in range(4):
        v0 = ds.load(i, 0)
        torch.testing.assert_close(v0["depth"], plain.load(i, 0)["depth"])  # view 0 = plain
        torch.testing.assert_close(v0["vision"], plain.load(i, 0)["vision"])
        for v in (1, 2, 3):
            # the pair a view gives = the same box cut from the raw image and depth map,
            # mirrored for odd views, then the node's preprocessing
            sample = ds.world.dataset(4, "train", ds.seed, ("vision", "depth"))[i]
            box = random_crop_box(view_rng(ds.seed, i, v), (0.3, 0.9), aspect=1.0,
                                  contain=sample.box / 32)
            img, dep = aligned_crop([sample.image, sample.depth_m], box)
            if v % 2:
                img, dep = hflip(img), hflip(dep)
            got = ds.load(i, v)
            torch.testing.assert_close(got["vision"], tf.image(img))
            torch.testing.assert_close(got["depth"], depth_to_tensor(dep, dcfg, units="m"))
            cropped += box != FULL  # FULL: the object is too large for any allowed crop
    assert cropped >= 6
    # crops change the cache identity, so stale hub features are never reused
    assert ds.fingerprint() != build_pair_dataset({**spec, "crop": [0.5, 1.0]}, "depth",
                                                  tf).fingerprint()


def test_synthetic_audio_views_are_frequency_masked() -> None:
    tf = _transforms()
    ds = build_pair_dataset({"kind": "synthetic", "n": 2, "image_size": 32, "views": None,
                             "freq_mask": 8}, "audio", tf)
    assert ds.num_views is None  # unbounded: a new mask every time a sample is drawn
    x0 = ds.load(1, 0, image=False)["audio"]
    x5 = ds.load(1, 5, image=False)["audio"]
    torch.testing.assert_close(ds.load(1, 5, image=False)["audio"], x5)  # deterministic
    torch.testing.assert_close(x5, frequency_mask(x0, view_rng(ds.seed, 1, 5), 8))
    with pytest.raises(ValueError, match="views"):
        build_pair_dataset({"kind": "synthetic", "n": 2, "image_size": 32,
                            "freq_mask": 8}, "audio", tf)
    with pytest.raises(ValueError, match="audio"):
        build_pair_dataset({"kind": "synthetic", "n": 2, "image_size": 32, "views": 2,
                            "freq_mask": 8}, "depth", tf)
