"""SYNTHETIC world tests: determinism, shapes/units, aligned geometry, learnable but randomised
class signatures, and a stream whose chunks join without clicks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imagebind_ros.synthetic import (CLASSES, Sample, SyntheticWorld, depth_to_mm, stack,
                                     thermal_to_mono16)


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld()


@pytest.fixture(scope="module")
def small() -> SyntheticWorld:
    return SyntheticWorld(image_size=96)


@pytest.fixture(scope="module")
def splits(small: SyntheticWorld) -> tuple[list[Sample], list[Sample]]:
    return small.dataset(160, "train", seed=1), small.dataset(80, "test", seed=1)


def _arrays(s: Sample) -> list[np.ndarray]:
    return [s.image, s.box, s.audio, s.depth_m, s.thermal, s.imu, s.imu_t]


def _object_fraction(layer: np.ndarray, box: np.ndarray, differs) -> float:
    """Fraction of box pixels that differ from the background of their own row, estimated from
    the same row outside the box (the background only varies along y)."""
    x0, y0, x1, y1 = box
    hits, total = 0, 0
    for y in range(y0, y1):
        outside = np.concatenate([layer[y, :x0], layer[y, x1:]])
        if outside.size >= 4:
            hits += int(differs(layer[y, x0:x1], np.median(outside, axis=0)).sum())
            total += x1 - x0
    return hits / max(total, 1)


def _in_front(depth: np.ndarray, box: np.ndarray) -> float:
    return _object_fraction(depth, box, lambda d, bg: d < 0.9 * bg)


def _not_ambient(thermal: np.ndarray, box: np.ndarray) -> float:
    return _object_fraction(thermal, box, lambda t, bg: np.abs(t - bg) > 2.0)


def _not_backdrop(image: np.ndarray, box: np.ndarray) -> float:
    return _object_fraction(image.astype(float), box,
                            lambda px, bg: np.abs(px - bg).sum(-1) > 40)


def test_deterministic_by_seed(world: SyntheticWorld) -> None:
    a = world.sample(3, np.random.default_rng(7))
    b = world.sample(3, np.random.default_rng(7))
    c = world.sample(3, np.random.default_rng(8))
    assert a.caption == b.caption
    for x, y, z in zip(_arrays(a), _arrays(b), _arrays(c)):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.image, c.image) and not np.array_equal(a.audio, c.audio)
    assert not np.array_equal(a.imu, c.imu)


def test_modalities_do_not_depend_on_each_other(small: SyntheticWorld) -> None:
    full = small.dataset(8, "val", seed=3)
    only = small.dataset(8, "val", seed=3, modalities=("vision", "audio"))
    for f, o in zip(full, only):
        assert f.class_id == o.class_id
        assert np.array_equal(f.image, o.image) and np.array_equal(f.box, o.box)
        assert np.array_equal(f.audio, o.audio)
        assert o.caption is o.depth_m is o.thermal is o.imu is o.imu_t is None
    with pytest.raises(ValueError):
        small.sample(0, np.random.default_rng(0), ("vision", "lidar"))


@pytest.mark.parametrize("class_id", range(len(CLASSES)))
def test_shapes_units_and_alignment(world: SyntheticWorld, class_id: int) -> None:
    s = world.sample(class_id, np.random.default_rng([11, class_id]))
    assert s.label == CLASSES[class_id] and s.label in s.caption
    assert s.image.shape == (224, 224, 3) and s.image.dtype == np.uint8
    assert s.depth_m.shape == s.thermal.shape == (224, 224)
    assert s.depth_m.dtype == s.thermal.dtype == np.float32
    assert 0.05 <= s.depth_m.min() and s.depth_m.max() < 15.0
    assert -20.0 < s.thermal.min() and s.thermal.max() < 400.0
    assert s.audio.shape == (32000,) and s.audio.dtype == np.float32
    assert np.abs(s.audio).max() <= 1.0 and s.audio.std() > 0.01
    assert s.imu.shape == (2000, 6) and s.imu.dtype == np.float32
    assert np.allclose(np.diff(s.imu_t), 1 / 200) and s.imu_t[0] == 0.0
    assert 9.0 < np.linalg.norm(s.imu[:, :3].mean(0)) < 10.6  # gravity, sensor roughly level
    x0, y0, x1, y1 = s.box
    assert 0 <= x0 < x1 <= 224 and 0 <= y0 < y1 <= 224
    # The object is really in its box, in every visual modality (they share one geometry).
    assert _in_front(s.depth_m, s.box) > 0.1
    assert _not_ambient(s.thermal, s.box) > 0.1
    assert _not_backdrop(s.image, s.box) > 0.1


def test_other_sizes_rates_and_ros_encodings() -> None:
    w = SyntheticWorld(num_classes=4, image_size=(96, 128), sample_rate=8000,
                       audio_seconds=0.5, imu_rate=100.0, imu_seconds=3.0)
    s = w.sample(3, np.random.default_rng(0))
    assert s.image.shape == (96, 128, 3) and s.depth_m.shape == (96, 128)
    assert s.audio.shape == (4000,) and s.imu.shape == (300, 6)
    assert {x.class_id for x in w.dataset(20)} == {0, 1, 2, 3}
    mm = depth_to_mm(s.depth_m)
    assert mm.dtype == np.uint16 and np.abs(mm / 1000.0 - s.depth_m).max() <= 0.0005 + 1e-6
    k = thermal_to_mono16(s.thermal)
    assert k.dtype == np.uint16 and np.abs(k / 100.0 - 273.15 - s.thermal).max() <= 0.005 + 1e-4
    with pytest.raises(ValueError):
        SyntheticWorld(num_classes=9)


def test_scene_boxes_disjoint_and_filled(world: SyntheticWorld) -> None:
    for seed in range(4):
        ids = [1, 5, 7, 0, 6][: 2 + seed]
        sc = world.scene(ids, np.random.default_rng(seed))
        assert sc.image.shape == (480, 640, 3) and sc.depth_m.shape == sc.thermal.shape
        assert list(sc.class_ids) == ids and sc.boxes.shape == (len(ids), 4)
        for i, (x0, y0, x1, y1) in enumerate(sc.boxes):
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
            assert _in_front(sc.depth_m, sc.boxes[i]) > 0.1
            for a in sc.boxes[i + 1:]:  # disjoint, with a visible gap
                assert x1 < a[0] or a[2] < x0 or y1 < a[1] or a[3] < y0


def test_captions_are_varied_and_grammatical(world: SyntheticWorld) -> None:
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        caps = {world.caption(c, rng) for _ in range(40)}
        assert len(caps) > 10 and all(name in cap for cap in caps)
    caps = [world.caption(CLASSES.index("engine"), rng) for _ in range(40)]
    assert not any(" a engine" in cap or cap.startswith("a engine") for cap in caps)


def _box(s: Sample, layer: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = s.box
    return layer[y0:y1, x0:x1]


def _f_image(s: Sample) -> np.ndarray:
    hsv = cv2.cvtColor(np.ascontiguousarray(_box(s, s.image)), cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1], None, [12, 4], [0, 180, 0, 256]).ravel()
    return h / h.sum()


def _f_depth(s: Sample) -> np.ndarray:
    h, _ = np.histogram(_box(s, s.depth_m), 24, (0, 12))
    return h / h.sum()


def _f_thermal(s: Sample) -> np.ndarray:
    t = _box(s, s.thermal)
    return np.array([t.mean(), np.percentile(t, 90), t.max(), t.std()])


def _band_log_power(x: np.ndarray, rate: float, lo: float, bands: int) -> np.ndarray:
    p = np.abs(np.fft.rfft(x - x.mean(0), axis=0)) ** 2
    edges = np.searchsorted(np.fft.rfftfreq(x.shape[0], 1 / rate),
                            np.geomspace(lo, rate / 2, bands + 1)[:-1])
    return np.log(np.add.reduceat(p, edges, axis=0) + 1e-9).ravel()


def _f_audio(s: Sample) -> np.ndarray:
    b = _band_log_power(s.audio, 16000, 40, 32)
    return b - b.mean()  # level-invariant spectral shape


def _f_imu(s: Sample) -> np.ndarray:
    return _band_log_power(s.imu, 200, 0.1, 16)


def _nearest_centroid(train: list[Sample], test: list[Sample], feature) -> float:
    x = np.array([feature(s) for s in train], dtype=float)
    xt = np.array([feature(s) for s in test], dtype=float)
    y, yt = np.array([s.class_id for s in train]), np.array([s.class_id for s in test])
    mu, sd = x.mean(0), x.std(0) + 1e-9
    x, xt = (x - mu) / sd, (xt - mu) / sd
    centroids = np.array([x[y == k].mean(0) for k in range(len(CLASSES))])
    pred = ((xt[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    return float((pred == yt).mean())


@pytest.mark.parametrize("feature,floor", [(_f_image, 0.5), (_f_depth, 0.35), (_f_thermal, 0.6),
                                           (_f_audio, 0.8), (_f_imu, 0.8)])
def test_class_signatures_are_learnable(splits, feature, floor: float) -> None:
    """Simple hand features + nearest class centroid beat chance (1/8) by a wide margin on
    held-out samples from an independent split."""
    assert _nearest_centroid(*splits, feature) >= floor


@pytest.mark.parametrize("raw", [
    lambda s: cv2.resize(s.image, (24, 24)).ravel(),
    lambda s: s.audio[::8],
    lambda s: s.imu[::4].ravel()])
def test_randomisation_defeats_raw_templates(splits, raw) -> None:
    """A per-class mean of raw pixels / waveforms is a poor classifier: the signatures vary."""
    assert _nearest_centroid(*splits, raw) < 0.5


def test_same_class_samples_differ_and_splits_are_disjoint(splits) -> None:
    train, test = splits
    dogs = [s for s in train if s.class_id == 0][:2]
    assert not np.array_equal(dogs[0].image, dogs[1].image)
    assert abs(np.corrcoef(dogs[0].audio, dogs[1].audio)[0, 1]) < 0.5
    assert not np.array_equal(dogs[0].imu, dogs[1].imu)
    seen = {s.audio.tobytes() for s in train}
    assert not any(s.audio.tobytes() in seen for s in test)
    assert np.bincount([s.class_id for s in train]).tolist() == [20] * 8


def test_stack_batches_present_fields(small: SyntheticWorld) -> None:
    batch = stack(small.dataset(6, modalities=("text", "imu")))
    assert batch["imu"].shape == (6, 2000, 6) and batch["imu_t"].shape == (6, 2000)
    assert len(batch["caption"]) == 6 and batch["class_id"].shape == (6,)
    assert "image" not in batch and "audio" not in batch


def test_stream_is_consistent_and_continuous(world: SyntheticWorld) -> None:
    st = world.stream(seed=3, switch_seconds=2.0)
    sr, seg = world.sample_rate, 2 * world.sample_rate
    classes = [st.class_at(t) for t in np.arange(0, 10, 0.5)]
    assert all(classes[i] == classes[i - i % 4] for i in range(len(classes)))  # per segment
    assert all(classes[i] != classes[i + 4] for i in range(0, len(classes) - 4, 4))
    # 20 ms chunks are exactly the one-shot signal, so chunk joins are seamless by design...
    full = st.audio(0, 5 * seg)
    chunks = np.concatenate([st.audio(i * 320, 320) for i in range(5 * seg // 320)])
    assert np.array_equal(full, chunks)
    # ...and class switches are cross-faded: no step bigger than the signal's own.
    step = np.abs(np.diff(full))
    for k in range(1, 5):
        join = step[k * seg - int(0.06 * sr):k * seg + int(0.06 * sr)].max()
        normal = max(step[(k - 1) * seg + 1000:k * seg - 1000].max(),
                     step[k * seg + 1000:(k + 1) * seg - 1000].max())
        assert join <= normal
    imu, t = st.imu(0, 2000)
    parts = [st.imu(i, 7) for i in range(0, 2000, 7)]
    assert np.array_equal(imu, np.concatenate([p[0] for p in parts])[:2000])
    assert np.allclose(t, np.arange(2000) / 200.0)
    jerk = np.abs(np.diff(imu, axis=0))
    for k in range(1, 5):
        assert (jerk[k * 400 - 60:k * 400 + 60].max(0) <= jerk.max(0)).all()
    assert np.abs(np.linalg.norm(imu[:, :3].mean(0)) - 9.8) < 0.8
    a, b = st.camera(0.5), st.camera(0.5 + 1 / 30)
    assert st.class_at(0.5) in a.class_ids and len(a.class_ids) == 3
    assert np.array_equal(a.boxes, b.boxes) and not np.array_equal(a.image, b.image)
    assert np.abs(a.image.astype(int) - b.image).mean() < 10  # same scene, fresh noise
    assert np.array_equal(st.camera(0.5).image, a.image)
    c = st.camera(2.5)
    assert st.class_at(2.5) in c.class_ids and not np.array_equal(c.boxes, a.boxes)
    with pytest.raises(ValueError):
        st.audio(-320, 320)
    with pytest.raises(ValueError):
        st.camera(-0.1)
    with pytest.raises(ValueError):
        world.stream(switch_seconds=0.2)


def test_generation_is_fast_enough_for_training(small: SyntheticWorld) -> None:
    """A guard against accidental slow paths, loose enough for a busy 2-core machine."""
    import time

    rng = np.random.default_rng(0)
    t0 = time.process_time()
    for i in range(50):
        small.image(i % 8, rng)
        small.audio(i % 8, rng)
        small.imu(i % 8, rng)
    assert (time.process_time() - t0) / 50 < 0.05
