"""Fusion library against hand-computed cases, the synchroniser against hand-made stamp
sequences, the calibration fit against known parameters, and a small end-to-end check with
the demo model on synthetic samples (clean, camera missing, camera darkened)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imagebind_ros.fusion import (INVALID, NEVER, NO_INPUT, OUT_OF_SLOP, TIMEOUT,
                                  ApproximateSync, Calibration, Fuser, FusionConfig,
                                  ModalityCalibration, ModalityConfig, Observation,
                                  fit_calibration, fit_temperature_bias, modality_configs,
                                  sync_from_config)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo" / "demo.pt"
DEMO_CALIBRATION = ROOT / "checkpoints" / "demo" / "fusion_calibration.json"
LABELS = ("cat", "dog")
TEXT = np.eye(2, dtype=np.float32)  # label embeddings: the two axes


def unit(*v: float) -> np.ndarray:
    a = np.array(v, np.float32)
    return a / np.linalg.norm(a)


def softmax(z: list[float]) -> list[float]:
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# Two modalities with known temperatures (10 and 2), biases 0, prototypes = the label axes,
# typicality levels low 0 / typical 0.5, sharpness 3.
CAL = Calibration(
    {"vision": ModalityCalibration(10.0, {"cat": 0.0, "dog": 0.0}, TEXT, 0.0, 0.5),
     "audio": ModalityCalibration(2.0, {"cat": 0.0, "dog": 0.0}, TEXT, 0.0, 0.5)},
    LABELS, sharpness=3.0)
TWO = {"vision": ModalityConfig(), "audio": ModalityConfig()}
E_V, E_A = unit(0.8, 0.6), unit(0.6, 0.8)  # vision leans cat, audio leans dog


def fuser(method: str, cal: Calibration | None = CAL, **kw) -> Fuser:
    return Fuser(FusionConfig(method=method, modalities=kw.pop("mods", TWO), **kw), LABELS,
                 TEXT, cal)


def obs(e: np.ndarray, stamp: float = 10.0) -> Observation:
    return Observation(e, stamp)


def expected(method: str) -> tuple[list[float], list[float]]:
    """(scores, normalised weights [vision, audio]) from the definitions in docs/fusion.md."""
    cos = {"vision": [0.8, 0.6], "audio": [0.6, 0.8]}
    temp = {"vision": 10.0, "audio": 2.0}
    typ = {m: sigmoid(3 * max(c) / 0.5) for m, c in cos.items()}
    logp = {m: [math.log(p) for p in softmax([temp[m] * c for c in cos[m]])] for m in cos}
    if method == "mean":
        v = [a + b for a, b in zip(E_V, E_A)]
        n = math.hypot(*v)
        return softmax([100 * x / n for x in v]), [0.5, 0.5]
    if method == "embedding":
        mix = {m: typ[m] * temp[m] for m in cos}
        z = [sum(mix[m] * cos[m][k] for m in cos) for k in range(2)]
        return softmax(z), [mix["vision"] / sum(mix.values()), mix["audio"] / sum(mix.values())]
    if method == "decision":
        z = [sum(typ[m] * logp[m][k] for m in cos) for k in range(2)]
        return softmax(z), [typ["vision"] / sum(typ.values()), typ["audio"] / sum(typ.values())]
    rho = {m: 0.99 * typ[m] for m in cos}
    z = [sum(math.log(rho[m] * math.exp(logp[m][k]) + (1 - rho[m]) / 2) for m in cos)
         for k in range(2)]
    top = max(range(2), key=lambda k: z[k])
    works = {m: rho[m] * math.exp(logp[m][top]) for m in cos}
    rel = {m: works[m] / (works[m] + (1 - rho[m]) / 2) for m in cos}
    return softmax(z), [rel["vision"] / sum(rel.values()), rel["audio"] / sum(rel.values())]


@pytest.mark.parametrize("method", ["mean", "embedding", "decision", "robust"])
def test_two_modalities_hand_computed(method: str) -> None:
    res = fuser(method).fuse({"vision": obs(E_V), "audio": obs(E_A, 9.9)}, now=10.0)
    scores, weights = expected(method)
    np.testing.assert_allclose(res.scores, scores, rtol=1e-5, atol=1e-7)
    got = {c.modality: c.weight for c in res.contributions}
    np.testing.assert_allclose([got["vision"], got["audio"]], weights, rtol=1e-5)
    assert sum(got.values()) == pytest.approx(1.0)
    assert np.linalg.norm(res.embedding) == pytest.approx(1.0, abs=1e-6)
    assert res.label == "cat" and res.stamp == 10.0 and res.excluded == ()
    ages = {c.modality: c.age_s for c in res.contributions}
    assert ages == pytest.approx({"vision": 0.0, "audio": 0.1})


def test_calibration_is_what_decides() -> None:
    """Raw cosines are symmetric (0.8/0.6 each way): only the temperatures break the tie."""
    tied = fuser("decision", None).fuse({"vision": obs(E_V), "audio": obs(E_A)})
    np.testing.assert_allclose(tied.scores, [0.5, 0.5], atol=1e-6)
    assert fuser("decision").fuse({"vision": obs(E_V), "audio": obs(E_A)}).label == "cat"
    flipped = Calibration({"vision": CAL.modalities["audio"], "audio": CAL.modalities["vision"]},
                          LABELS)
    assert fuser("decision", flipped).fuse({"vision": obs(E_V), "audio": obs(E_A)}).label == "dog"


def test_missing_timed_out_disabled_invalid() -> None:
    alone = fuser("robust").fuse({"vision": obs(E_V)}, now=10.0)
    assert [c.modality for c in alone.contributions] == ["vision"]
    assert alone.contributions[0].weight == pytest.approx(1.0)
    assert alone.excluded == (("audio", NO_INPUT),)
    # the same result when audio is there but too old, disabled, or broken
    old = fuser("robust").fuse({"vision": obs(E_V), "audio": obs(E_A, 8.9)}, now=10.0)
    assert old.excluded == (("audio", TIMEOUT),)
    off = fuser("robust", mods={"vision": ModalityConfig(), "audio": ModalityConfig(False)})
    res = off.fuse({"vision": obs(E_V), "audio": obs(E_A)}, now=10.0)
    assert res.excluded == (("audio", "disabled"),)
    nan = fuser("robust").fuse({"vision": obs(E_V), "audio": obs(np.array([np.nan, 1.0]))})
    assert nan.excluded == (("audio", INVALID),)
    short = fuser("robust").fuse({"vision": obs(E_V), "audio": obs(np.ones(3))})
    assert short.excluded == (("audio", INVALID),)
    for r in (old, res, nan, short):
        np.testing.assert_allclose(r.scores, alone.scores)
    given = fuser("robust").fuse({"vision": obs(E_V)}, reasons={"audio": OUT_OF_SLOP})
    assert given.excluded == (("audio", OUT_OF_SLOP),)
    # a longer timeout keeps the old input
    long = fuser("robust", mods={"vision": ModalityConfig(), "audio": ModalityConfig(
        timeout_s=2.0)})
    assert len(long.fuse({"vision": obs(E_V), "audio": obs(E_A, 8.9)}, 10.0).contributions) == 2


def test_nothing_to_fuse() -> None:
    res = fuser("robust").fuse({}, now=1.0)
    assert res.embedding is None and res.scores is None and res.label is None
    assert res.top_k(3) == [] and dict(res.excluded) == {"vision": NO_INPUT, "audio": NO_INPUT}


def test_weight_is_an_exponent() -> None:
    """weight 2 on audio = audio counted twice (decision: z = sum w_m t_m log p_m)."""
    twice = fuser("decision", mods={"vision": ModalityConfig(), "audio": ModalityConfig(
        weight=2.0)}).fuse({"vision": obs(E_V), "audio": obs(E_A)})
    typ = {m: sigmoid(3 * 0.8 / 0.5) for m in ("v", "a")}
    lv = [math.log(p) for p in softmax([8.0, 6.0])]
    la = [math.log(p) for p in softmax([1.2, 1.6])]
    z = [typ["v"] * lv[k] + 2 * typ["a"] * la[k] for k in range(2)]
    np.testing.assert_allclose(twice.scores, softmax(z), rtol=1e-5)


def test_degraded_input_counts_less() -> None:
    """An input far from every prototype of its modality (a dark frame) loses its say."""
    g = np.random.default_rng(0)
    centres = {"vision": np.eye(4)[:2], "audio": np.eye(4)[2:]}  # class 0, 1 per modality
    text = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], np.float32) / math.sqrt(2)
    emb, y = {}, np.repeat([0, 1], 50)
    for m, c in centres.items():
        emb[m] = c[y] + 0.1 * g.standard_normal((100, 4))
        emb[m] /= np.linalg.norm(emb[m], axis=1, keepdims=True)
    cal = fit_calibration(emb, y, text, LABELS)
    f = Fuser(FusionConfig(modalities=TWO), LABELS, text, cal)
    clean_v = unit(1, 0, 0, 0)  # cat, typical
    dark_v = unit(0.05, 0.12, -0.7, -0.7)  # leans dog, far from every vision prototype
    audio = unit(0, 0, 1, 0.25)  # cat, typical
    clean = f.fuse({"vision": obs(clean_v), "audio": obs(audio)})
    dark = f.fuse({"vision": obs(dark_v), "audio": obs(audio)})
    w = {c.modality: c for c in dark.contributions}
    assert w["vision"].typicality < 0.05 < 0.9 < {c.modality: c for c in
                                                  clean.contributions}["vision"].typicality
    assert w["vision"].weight < 0.1 and dark.label == "cat"
    assert (text @ dark_v).argmax() == 1  # its own zero-shot says dog


def test_conflict_is_outvoted() -> None:
    """Three sensors say cat, one confidently says dog: robust pooling keeps cat and gives
    the dissenter a small weight (its probability of working, given the fused label)."""
    mods = {m: ModalityConfig() for m in ("a", "b", "c", "d")}
    cal = Calibration({m: ModalityCalibration(20.0, {}, TEXT, 0.0, 0.5) for m in mods},
                      LABELS)
    f = Fuser(FusionConfig(modalities=mods), LABELS, TEXT, cal)
    res = f.fuse({"a": obs(unit(0.9, 0.3)), "b": obs(unit(0.8, 0.5)), "c": obs(unit(0.7, 0.6)),
                  "d": obs(unit(0.1, 0.99))})
    w = {c.modality: c.weight for c in res.contributions}
    assert res.label == "cat" and w["d"] < 0.05 and min(w["a"], w["b"]) > 0.3
    assert sum(w.values()) == pytest.approx(1.0)


def test_set_labels_matches_biases_by_name() -> None:
    cal = Calibration({"vision": ModalityCalibration(1.0, {"cat": 2.0, "dog": -2.0}, TEXT, 0.0,
                                                     0.5)}, LABELS)
    f = Fuser(FusionConfig(method="decision", modalities={"vision": ModalityConfig()}),
              LABELS, TEXT, cal)
    e = unit(1, 1)  # equal cosines: the bias decides
    assert f.fuse({"vision": obs(e)}).label == "cat"
    f.set_labels(("dog", "cat"), TEXT[::-1])
    assert f.fuse({"vision": obs(e)}).label == "cat" and f.labels == ("dog", "cat")
    f.set_labels(("dog", "fox"), TEXT)  # "fox" unknown: bias 0, "dog" keeps -2 (centred)
    typ = sigmoid(3 * math.sqrt(0.5) / 0.5)  # decision: z = typicality * log p
    np.testing.assert_allclose(f.fuse({"vision": obs(e)}).scores,
                               softmax([-1.0 * typ, 1.0 * typ]), rtol=1e-5)
    with pytest.raises(ValueError, match="label embeddings"):
        f.set_labels(("a",), TEXT)
    with pytest.raises(ValueError, match="another model"):
        f.set_labels(LABELS, np.eye(2, 3, dtype=np.float32))


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="unknown fusion method"):
        FusionConfig(method="average")
    with pytest.raises(ValueError, match="weight"):
        ModalityConfig(weight=0.0)
    with pytest.raises(ValueError, match="timeout"):
        ModalityConfig(timeout_s=0.0)
    with pytest.raises(ValueError, match="max_reliability"):
        FusionConfig(max_reliability=1.0)
    mods = modality_configs(["vision", "audio"], {"audio": 2.0}, {"vision": 0.5}, ["audio"])
    assert mods == {"vision": ModalityConfig(True, 1.0, 0.5),
                    "audio": ModalityConfig(False, 2.0, 1.0)}


def test_fit_temperature_bias_recovers_known_parameters() -> None:
    g = np.random.default_rng(3)
    cos = g.uniform(-0.5, 0.5, (20000, 3))
    t, b = 7.0, np.array([0.5, 0.0, -0.5])
    logits = t * cos + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([g.choice(3, p=row) for row in p])
    temp, bias = fit_temperature_bias(cos, y, smoothing=0.0, l2=0.0)
    assert temp == pytest.approx(t, rel=0.05)
    np.testing.assert_allclose(bias, b, atol=0.05)
    separable = np.eye(3)[np.arange(300) % 3] * 0.5  # perfectly separable: t stays finite
    temp_s, _ = fit_temperature_bias(separable, np.arange(300) % 3)
    assert 5 < temp_s < 100


def test_fit_calibration_parts() -> None:
    """Temperature/bias as fit_temperature_bias on the cosines, prototypes = normalised
    class means, low/typical = the quantile/median of the best prototype cosine."""
    g = np.random.default_rng(5)
    y = np.arange(60) % 2
    e = np.eye(3)[y] + 0.3 * g.standard_normal((60, 3))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    text = np.eye(2, 3, dtype=np.float32)
    cal = fit_calibration({"vision": e}, y, text, LABELS, quantile=10.0).modalities["vision"]
    temp, bias = fit_temperature_bias(e @ text.T, y)
    assert cal.temperature == pytest.approx(temp) and 3 < temp < 100
    assert [cal.bias["cat"], cal.bias["dog"]] == pytest.approx(list(bias))
    means = np.stack([e[y == 0].mean(0), e[y == 1].mean(0)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    np.testing.assert_allclose(cal.prototypes, means, rtol=1e-5)
    best = (e @ means.T).max(1)
    assert cal.low == pytest.approx(np.percentile(best, 10), abs=1e-6)
    assert cal.typical == pytest.approx(np.median(best), abs=1e-6)
    with pytest.raises(ValueError, match="no calibration sample of \\['dog'\\]"):
        fit_calibration({"vision": e[y == 0]}, y[y == 0], text, LABELS)


def test_calibration_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cal.json"
    CAL.save(path)
    back = Calibration.load(path)
    assert back.labels == CAL.labels and back.sharpness == CAL.sharpness
    for m, c in CAL.modalities.items():
        assert back.modalities[m].temperature == c.temperature
        np.testing.assert_allclose(back.modalities[m].prototypes, c.prototypes)
    bad = json.loads(path.read_text())
    bad["modalities"]["vision"]["prototypes"] = [[1.0, 0.0]]
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=f"{path}.*prototypes"):
        Calibration.load(path)


# ----------------------------------------------------------------------------- synchroniser


def test_sync_pairs_within_slop_and_uses_each_message_once() -> None:
    s = ApproximateSync({"a": 1.0, "b": 1.0}, slop_s=0.1)
    assert s.add("a", 1.00, "a0", now=1.00) == []  # b may still come (within its timeout)
    out = s.add("b", 1.05, "b0", now=1.05)
    assert [(x.stamp, dict(x.members), dict(x.excluded)) for x in out] == [
        (1.05, {"a": (1.00, "a0"), "b": (1.05, "b0")}, {})]
    assert s.add("a", 1.10, "a1", now=1.10) == []  # b@1.05 is used: wait for a new b
    assert s.add("b", 1.30, "b1", now=1.30) == []  # a@1.10 too far (0.2 > slop)
    assert s.add("a", 1.45, "a2", now=1.45) == []  # b@1.30 too far too
    out = s.add("b", 1.50, "b2", now=1.50)
    assert [(x.stamp, dict(x.members)) for x in out] == [
        (1.50, {"a": (1.45, "a2"), "b": (1.50, "b2")})]
    assert s.emitted == 2 and s.poll(now=1.6) == []  # a@1.10, b@1.30 were dropped
    t = ApproximateSync({"a": 1.0, "b": 1.0}, slop_s=0.25)
    assert t.add("b", 1.0, "b", now=1.0) == []
    out = t.add("a", 1.25, "a", now=1.25)  # exactly the slop apart: still a pair
    assert [dict(x.members) for x in out] == [{"a": (1.25, "a"), "b": (1.0, "b")}]


def test_sync_never_received_stops_blocking_after_its_timeout() -> None:
    s = ApproximateSync({"a": 1.0, "b": 1.0}, slop_s=0.1)
    assert s.add("a", 0.0, 0, now=0.0) == [] and s.add("a", 0.5, 1, now=0.5) == []
    out = s.add("a", 1.1, 2, now=1.1)  # b silent since the start for > 1 s
    assert [(x.stamp, dict(x.members), dict(x.excluded)) for x in out] == [
        (1.1, {"a": (1.1, 2)}, {"b": NEVER})]


def test_sync_drops_a_silent_modality_after_its_timeout() -> None:
    s = ApproximateSync({"a": 1.0, "b": 0.5}, slop_s=0.05)
    assert s.add("b", 0.0, "b", now=0.0) == []
    assert len(s.add("a", 0.0, "a", now=0.0)) == 1
    sets = []
    for k in range(1, 11):  # a keeps coming at 10 Hz, b is silent after t = 0
        sets += s.add("a", k / 10, k, now=k / 10)
    assert [x.stamp for x in sets] == pytest.approx([0.6, 0.7, 0.8, 0.9, 1.0])
    assert all(dict(x.excluded) == {"b": TIMEOUT} and set(x.members) == {"a"} for x in sets)


def test_sync_waits_for_a_live_modality_then_gives_up() -> None:
    s = ApproximateSync({"a": 2.0, "b": 1.0}, slop_s=0.1)
    s.add("a", 1.0, "a0", now=1.0)
    assert len(s.add("b", 1.0, "b0", now=1.0)) == 1
    assert s.add("a", 1.5, "a1", now=1.5) == []  # b is live: wait for it
    assert s.add("b", 1.9, "b1", now=2.0) == []  # neither pairs up; both still live
    assert s.poll(now=2.49) == []
    late = s.poll(now=2.55)  # a@1.5 waited longer than b's timeout: emitted without b
    assert [(x.stamp, dict(x.members), dict(x.excluded)) for x in late] == [
        (1.5, {"a": (1.5, "a1")}, {"b": OUT_OF_SLOP})]


def test_sync_out_of_order_late_and_overflow() -> None:
    s = ApproximateSync({"a": 5.0, "b": 5.0}, slop_s=0.05, queue_size=2)
    assert s.add("b", 0.0, "b0", now=0.0) == []
    assert s.add("a", 2.2, "a22", now=2.3) == []
    assert s.add("a", 2.1, "a21", now=2.3) == []  # out of order: sorted into the queue
    out = s.add("b", 2.1, "b21", now=2.3)  # b@0.0 has no partner: skipped by the newer set
    assert [(x.stamp, dict(x.members)) for x in out] == [
        (2.1, {"a": (2.1, "a21"), "b": (2.1, "b21")})]
    assert s.add("a", 2.0, "old", now=2.3) == [] and s.late == 1  # before the last set
    s.add("a", 2.3, "a23", now=2.4)
    s.add("a", 2.4, "a24", now=2.5)  # queue of 2: a@2.2 pushed out
    assert s.overflow == 1
    assert s.add("b", 2.2, "b22", now=2.5) == []  # its partner a@2.2 is gone


def test_sync_errors_and_config() -> None:
    with pytest.raises(ValueError, match="slop"):
        ApproximateSync({"a": 1.0}, slop_s=-1)
    with pytest.raises(ValueError, match="timeouts"):
        ApproximateSync({"a": 0.0}, slop_s=0.1)
    s = sync_from_config(FusionConfig(modalities={
        "vision": ModalityConfig(timeout_s=0.5), "audio": ModalityConfig(False)}), 0.2)
    assert s.timeouts == {"vision": 0.5}
    with pytest.raises(KeyError, match="unknown modality 'audio'"):
        s.add("audio", 0.0, None, now=0.0)
    with pytest.raises(ValueError, match="finite"):
        s.add("vision", float("nan"), None, now=0.0)


def test_library_imports_neither_torch_nor_rclpy() -> None:
    code = ("import sys, imagebind_ros.fusion, imagebind_ros.degrade; "
            "bad = [m for m in ('torch', 'rclpy') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- demo model


def load_bench():  # noqa: ANN201 - the benchmark script as a module
    spec = importlib.util.spec_from_file_location("bench_fusion", ROOT / "bench" / "fusion.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def demo():  # noqa: ANN201
    bench = load_bench()
    return bench, bench.Bench(DEMO, threads=1)


def test_demo_model_fused_label(demo) -> None:  # noqa: ANN001
    """8 held-out samples (one per class; another draw than the benchmark's): the fused
    label is right clean, with the camera missing, and with the camera darkened so far that
    the camera alone is mostly wrong."""
    mod, bench = demo
    sp = bench.split("test", 77, 8)
    cal = Calibration.load(DEMO_CALIBRATION)
    f = Fuser(FusionConfig(), bench.labels, bench.text, cal)
    y = sp.targets
    assert (f.fuse_batch(sp.clean).scores.argmax(1) == y).all()
    no_camera = {m: e for m, e in sp.clean.items() if m != "vision"}
    assert (f.fuse_batch(no_camera).scores.argmax(1) == y).all()
    dark = bench.degraded(sp, 77, "camera_dark", 0.8)
    assert mod.top1(bench.text, dark, y) <= 0.5  # the camera alone is lost
    out = f.fuse_batch({**sp.clean, "vision": dark})
    assert (out.scores.argmax(1) == y).all()
    clean = f.fuse_batch(sp.clean)
    v = out.modalities.index("vision")
    assert out.weights[:, v].mean() < 0.5 * clean.weights[:, v].mean()
    for i in range(8):  # the single-sample path agrees with the batch path
        one = f.fuse({m: Observation(e[i], 1.0) for m, e in sp.clean.items()})
        np.testing.assert_allclose(one.scores, clean.scores[i], rtol=1e-5, atol=1e-7)


def test_calibrate_script_on_a_tiny_split(demo, tmp_path: Path) -> None:  # noqa: ANN001
    mod, _ = demo
    out = tmp_path / "cal.json"
    mod.main(["calibrate", "--tune-n", "16", "--calibration", str(out), "--threads", "1"])
    cal = Calibration.load(out)
    committed = Calibration.load(DEMO_CALIBRATION)
    assert cal.labels == committed.labels and cal.model_id == committed.model_id
    assert cal.checkpoint_sha256 == committed.checkpoint_sha256 != ""
    assert set(cal.modalities) == {"vision", "audio", "depth", "thermal", "imu"}
    assert all(c.temperature > 0 and c.typical > c.low for c in cal.modalities.values())
