"""Cross-modal memory (imagebind_ros.memory, imagebind_ros.embedder): bounds, thinning and
top-k against a brute-force reference, embedding arithmetic against analytic values, and the
demo model answering an audio query with images and depth maps of the sounding class."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from imagebind_ros.embedder import Embedder
from imagebind_ros.memory import MAX_TEXT, NS, EmbeddingMemory, combine
from imagebind_ros.model import create_model, get_config
from imagebind_ros.synthetic import SyntheticWorld

# committed (checkpoints/demo/README.md): a missing file is a broken checkout, and fails
DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "demo" / "demo.pt"


def unit_rows(g: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = g.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_combine_is_the_normalised_weighted_sum() -> None:
    e1, e2 = np.eye(3)[0], np.eye(3)[1]
    np.testing.assert_allclose(combine([e1, 5 * e2]), [2 ** -0.5, 2 ** -0.5, 0], atol=1e-6)
    np.testing.assert_allclose(combine([e1, e2], [3, 1]), np.array([3, 1, 0]) / 10 ** 0.5,
                               atol=1e-6)
    np.testing.assert_allclose(combine([e1 + e2, e2], [1, -2 ** -0.5]), e1, atol=1e-6)
    for parts, weights, msg in (([], None, "at least one"), ([e1], [1, 2], "2 weights"),
                                ([e1, e1], [1, -1], "cancel"), ([e1, np.ones(4)], None,
                                                                "different sizes"),
                                ([e1], [np.nan], "finite"), ([np.zeros(3)], None, "zeros")):
        with pytest.raises(ValueError, match=msg):
            combine(parts, weights)


def test_query_matches_brute_force_across_modalities() -> None:
    g = np.random.default_rng(0)
    mem = EmbeddingMemory(capacity=50)
    stored = []  # the reference: (vector, modality, stamp, sequence)
    mods = ("vision", "audio", "depth")
    for i, v in enumerate(unit_rows(g, 120, 16)):
        m = mods[i % 3]
        seq = mem.add(3.0 * v, m, i * NS, frame_id=f"f{i}")  # stored normalised
        stored.append((v, m, i * NS, seq))
    assert mem.counts() == {"vision": 40, "audio": 40, "depth": 40}
    for q in unit_rows(g, 5, 16):
        for wanted in (None, ["audio"], ["vision", "depth"]):
            hits = mem.query(q, k=7, modalities=wanted)
            ref = sorted(((float(v @ q), s) for v, m, _, s in stored
                          if wanted is None or m in wanted), key=lambda t: -t[0])[:7]
            assert [h.sequence for h in hits] == [s for _, s in ref]
            np.testing.assert_allclose([h.similarity for h in hits], [r for r, _ in ref],
                                       atol=1e-5)
            for h in hits:
                v, m, stamp, _ = stored[h.sequence]
                assert (h.modality, h.stamp_ns, h.frame_id) == (m, stamp, f"f{h.sequence}")
    assert mem.query(np.ones(16), modalities=["imu"]) == []


def test_capacity_is_per_modality_and_evicts_oldest() -> None:
    g = np.random.default_rng(1)
    mem = EmbeddingMemory(capacity=10)
    audio = unit_rows(g, 3, 8)
    for i, v in enumerate(audio):
        mem.add(v, "audio", i * NS)
    for i, v in enumerate(unit_rows(g, 25, 8)):  # a fast camera floods its own ring only
        mem.add(v, "vision", (10 + i) * NS)
    assert mem.counts() == {"audio": 3, "vision": 10}
    assert len(mem) == 13
    seqs = sorted(h.sequence for h in mem.query(np.ones(8), k=100, modalities=["vision"]))
    assert seqs == list(range(3 + 15, 3 + 25))  # the newest 10 of the 25
    hit = mem.query(audio[1], k=1)[0]
    assert (hit.modality, hit.stamp_ns) == ("audio", NS) and hit.similarity == pytest.approx(1)


def test_min_interval_thins_by_stamp_time() -> None:
    mem = EmbeddingMemory(capacity=100, min_interval_s=1.0)
    v = np.ones(4)
    kept = [mem.add(v, "vision", int(t * NS)) for t in np.arange(0, 5, 0.25)]
    assert sum(k is not None for k in kept) == 5 and mem.skipped == 15
    assert mem.add(v, "audio", int(0.1 * NS)) is not None  # other modalities unaffected


def test_ties_return_newer_first_and_labels_attach_later() -> None:
    mem = EmbeddingMemory(capacity=5)
    for i in range(3):
        mem.add(np.ones(4), "depth", i * NS)
    assert [h.sequence for h in mem.query(np.ones(4), k=3)] == [2, 1, 0]
    assert mem.set_label("depth", NS, "kettle")
    assert not mem.set_label("depth", 7 * NS, "dog")
    assert not mem.set_label("thermal", NS, "dog")
    assert {h.stamp_ns: h.label for h in mem.query(np.ones(4), k=3)} == {
        0: "", NS: "kettle", 2 * NS: ""}


def test_bad_items_and_queries_raise_clear_errors() -> None:
    mem = EmbeddingMemory(capacity=5)
    assert mem.query(np.ones(4)) == []  # empty memory
    mem.add(np.ones(4), "vision", 0, model_id="demo.pt:x")
    for args, msg in (((np.ones(5), "vision", 1), "5 values"),
                      ((np.array([1, np.inf, 0, 0]), "vision", 1), "NaN or Inf"),
                      ((np.zeros(4), "vision", 1), "zeros"), ((np.ones(4), "", 1), "modality")):
        with pytest.raises(ValueError, match=msg):
            mem.add(*args)
    with pytest.raises(ValueError, match="not comparable"):
        mem.add(np.ones(4), "audio", 1, model_id="other.pt:y")
    with pytest.raises(ValueError, match="3 values"):
        mem.query(np.ones(3))
    with pytest.raises(ValueError, match="k must"):
        mem.query(np.ones(4), k=0)
    with pytest.raises(ValueError):
        EmbeddingMemory(capacity=0)


def test_concurrent_adds_and_queries() -> None:
    mem = EmbeddingMemory(capacity=1000)
    g = np.random.default_rng(2)
    rows = unit_rows(g, 800, 8)
    errors = []

    def writer(m: str, part: np.ndarray) -> None:
        for i, v in enumerate(part):
            mem.add(v, m, i)

    def reader() -> None:
        try:
            for v in rows[:200]:
                for h in mem.query(v, k=3):
                    assert -1.0001 <= h.similarity <= 1.0001
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(m, rows[i::4])) for i, m in
               enumerate(("vision", "audio", "depth", "imu"))] + [
        threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert mem.counts() == {m: 200 for m in ("vision", "audio", "depth", "imu")}
    assert sorted(h.sequence for h in mem.query(rows[0], k=800)) == list(range(800))


def test_embedder_checks_inputs() -> None:
    model = create_model("tiny")
    cfg = model.config

    @torch.no_grad()
    def enc(m: str, x: np.ndarray) -> np.ndarray:
        return model.encode(m, torch.from_numpy(x)).numpy()

    emb = Embedder(enc, cfg)
    assert emb.texts(["a dog", "a car"]).shape == (2, cfg.out_embed_dim)
    assert emb.audio(np.zeros(16000, np.int16), 16000).shape == (cfg.out_embed_dim,)
    with pytest.raises(ValueError, match="non-empty"):
        emb.texts(["a dog", " "])
    with pytest.raises(FileNotFoundError, match="audio file not found"):
        emb.audio_file("/nonexistent.wav")
    no_text = get_config("tiny")
    no_text.text = None
    with pytest.raises(ValueError, match="no text encoder"):
        Embedder(enc, no_text).texts(["a dog"])


def test_audio_query_returns_images_and_depth_maps_of_the_sounding_class() -> None:
    """Stream samples of several classes into the memory (images, depth maps, thermal, sound,
    as the encoder node publishes them); a FRESH sound of class k, restricted to images and
    depth maps, must bring back class k first."""
    torch.set_num_threads(1)
    model = create_model(checkpoint=DEMO)

    @torch.no_grad()
    def enc(m: str, x: np.ndarray) -> np.ndarray:
        return model.encode(m, torch.from_numpy(np.asarray(x))).numpy()

    from imagebind_ros import preprocess as pp

    cfg = model.config
    world = SyntheticWorld()
    mem = EmbeddingMemory(capacity=200)
    classes = range(world.num_classes)
    stream = world.dataset(4 * world.num_classes, split="test", seed=5,
                           modalities=("vision", "depth", "thermal", "audio"))
    for i, s in enumerate(stream):
        t = i * NS // 2
        mem.add(enc("vision", pp.image_to_tensor(s.image, cfg.vision)[None]), "vision", t,
                label=s.label)
        mem.add(enc("depth", pp.depth_to_tensor(s.depth_m, cfg.depth, "m")[None]), "depth",
                t, label=s.label)
        mem.add(enc("thermal", pp.thermal_to_tensor(s.thermal, cfg.thermal)[None]),
                "thermal", t, label=s.label)
        mem.add(enc("audio", pp.audio_to_tensor(s.audio, world.sample_rate, cfg.audio)[None]),
                "audio", t, label=s.label)
    emb = Embedder(enc, cfg)
    g = np.random.default_rng([world.seed, 99])
    top1, top3, anywhere = [], [], []
    for k in classes:
        q = emb.audio(world.audio(k, g), world.sample_rate)
        hits = mem.query(q, k=3, modalities=["vision", "depth"])
        assert {h.modality for h in hits} <= {"vision", "depth"}
        top1.append(hits[0].label == world.classes[k])
        top3.append(np.mean([h.label == world.classes[k] for h in hits]))
        # unrestricted, every modality is searched (stored sounds included)
        anywhere.append(mem.query(q, k=1)[0].label == world.classes[k])
    assert all(top1), f"top-1 wrong for classes {[c for c, ok in zip(classes, top1) if not ok]}"
    assert np.mean(top3) >= 0.9, f"precision@3 {np.mean(top3):.2f}"
    assert np.mean(anywhere) >= 7 / 8


def test_hostile_items_cannot_grow_a_strict_memory() -> None:
    """Random modality strings, empty or foreign model ids, huge frame ids and a huge
    first vector are refused or cut: the bytes held stay those of the allowed rings."""
    mem = EmbeddingMemory(capacity=10, modalities=("vision", "audio"), strict=True)
    rng = np.random.default_rng(0)
    for i in range(300):
        name = "".join(rng.choice(list("abcxyz"), 12))
        with pytest.raises(ValueError, match="not stored here"):
            mem.add(rng.normal(size=8), name, i + 1, model_id="m")
    with pytest.raises(ValueError, match="no model_id"):
        mem.add(np.ones(8), "vision", 1)
    with pytest.raises(ValueError, match="at most"):
        mem.add(np.ones(10**5), "vision", 1, model_id="m")
    for i in range(50):
        mem.add(rng.normal(size=8), "vision", i + 1, "f" * 10**5, model_id="m")
    with pytest.raises(ValueError, match="not comparable"):
        mem.add(np.ones(8), "audio", 1, model_id="other")
    assert mem.counts() == {"vision": 10} and mem.dim == 8
    held = sum(r.vectors.nbytes + sum(map(len, r.frames)) for r in mem._rings.values())
    assert held <= 10 * 8 * 4 + 10 * MAX_TEXT
