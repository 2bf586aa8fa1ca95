"""Runtime backends on the tiny preset: same embeddings as the torch model, clear errors."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_required import require

from imagebind_ros import modalities
from imagebind_ros import preprocess as pp
from imagebind_ros.decode import Sound
from imagebind_ros.inference import BackendUnavailable, create_backend
from imagebind_ros.inference.export import export_onnx
from imagebind_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
from imagebind_ros.inference.torch_backend import TorchBackend
from imagebind_ros.modalities import example_input
from imagebind_ros.model import create_model

require("onnxscript", "torch's dynamo ONNX exporter needs it")
require("onnxruntime")

MODS = ("vision", "text", "audio", "imu")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(1)
    return create_model("tiny")


@pytest.fixture(scope="module")
def onnx_dir(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx_backends")
    export_onnx(model, MODS, out, progress=False, verify=False)
    return out


def _x(model: torch.nn.Module, modality: str, batch: int, seed: int = 0) -> torch.Tensor:
    return example_input(model.config, modality, batch, torch.Generator().manual_seed(seed))


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("modality", MODS)
def test_onnxruntime_fp32_matches_torch(model: torch.nn.Module, onnx_dir: Path,
                                        modality: str) -> None:
    backend = create_backend("onnxruntime", onnx_dir=onnx_dir, modalities=[modality])
    x = _x(model, modality, 5)
    got = backend.encode(modality, x.numpy())
    assert got.dtype == np.float32 and got.shape == (5, model.config.out_embed_dim)
    np.testing.assert_allclose(got, model.encode(modality, x).detach().numpy(), atol=1e-4,
                               rtol=0)


def test_live_audio_window_runs_one_clip_and_matches_three_identical_clips(
        model: torch.nn.Module, onnx_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-s window is encoded as one clip on every runtime, and its embedding is the one
    of the reference's three clips of the same samples (the model's clip average)."""
    sr = 16000
    window = (0.3 * np.sin(np.arange(2 * sr) * 0.07)).astype(np.float32)
    want = model.encode("audio", pp.audio_to_tensor(window, sr, model.config.audio)[None])
    x = modalities.to_batch("audio", [Sound(window, sr)], model.config)
    for backend in (create_backend("torch", model=model, device="cpu"),
                    create_backend("onnxruntime", onnx_dir=onnx_dir, modalities=["audio"])):
        rows: list[int] = []
        run = backend._run
        monkeypatch.setattr(backend, "_run", lambda m, a: rows.append(len(a)) or run(m, a))
        got = backend.encode("audio", x)
        assert rows == [1]
        np.testing.assert_allclose(got, want.detach().numpy(), atol=1e-5, rtol=0)


def test_torch_backend_is_the_model(model: torch.nn.Module) -> None:
    backend = create_backend("torch", model=model, device="cpu")
    assert backend.name == "torch" and backend.modalities == model.modalities
    for m in model.modalities:
        x = _x(model, m, 2, seed=3)
        want = model.encode(m, x).detach().numpy()
        np.testing.assert_allclose(backend.encode(m, x), want, atol=1e-6)


def test_reduced_precisions_stay_close(model: torch.nn.Module, onnx_dir: Path) -> None:
    ref = create_backend("torch", model=model, device="cpu")
    bf16 = create_backend("torch", model=copy.deepcopy(model), device="cpu", precision="bf16")
    int8 = create_backend("onnxruntime", onnx_dir=onnx_dir, precision="int8")
    for m in MODS:
        x = _x(model, m, 6, seed=4)
        want = ref.encode(m, x)
        for backend in (bf16, int8):
            got = backend.encode(m, x)
            assert _cos(got, want).min() > 0.99
            # Close, yet not fp32 in disguise: the reduced arithmetic really ran.
            assert np.abs(got - want).max() > 1e-4
        # Unit norm holds whatever the arithmetic precision.
        np.testing.assert_allclose(np.linalg.norm(int8.encode(m, x), axis=1), 1.0, atol=1e-6)


def test_bf16_holds_matmul_weights_in_bf16_and_casts_none_per_call(
        model: torch.nn.Module) -> None:
    """bf16 weights are cast once (no weight-sized copy per call, which autocast makes for
    fp32 weights), LayerNorms stay fp32, and the result stays within bf16 rounding."""
    from torch.profiler import ProfilerActivity, profile

    ref = create_backend("torch", model=model, device="cpu")
    own = copy.deepcopy(model)
    bf16 = create_backend("torch", model=own, device="cpu", precision="bf16")
    fc1 = own.modality_trunks["vision"].blocks[0].mlp.fc1
    norm = own.modality_trunks["vision"].blocks[0].norm_1
    assert fc1.weight.dtype == torch.bfloat16 and norm.weight.dtype == torch.float32
    weights = {tuple(p.shape) for p in own.parameters() if p.ndim >= 2}
    for m in ("vision", "audio"):
        x = _x(model, m, 2, seed=8)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            got = bf16.encode(m, x)
        casts = {tuple(e.input_shapes[0]) for e in prof.events() if e.name == "aten::_to_copy"}
        assert casts and not weights & casts, casts  # inputs are cast, weights are not
        assert _cos(got, ref.encode(m, x)).min() >= 0.999


def test_batches_are_split_at_max_batch(model: torch.nn.Module, onnx_dir: Path) -> None:
    whole = OnnxRuntimeBackend(onnx_dir, modalities=["vision"])
    split = OnnxRuntimeBackend(onnx_dir, modalities=["vision"], max_batch=2)
    x = _x(model, "vision", 5, seed=5).numpy()
    np.testing.assert_allclose(split.encode("vision", x), whole.encode("vision", x), atol=1e-6)


def test_input_forms_and_validation(model: torch.nn.Module, onnx_dir: Path) -> None:
    backend = OnnxRuntimeBackend(onnx_dir, modalities=["vision", "text"])
    x = _x(model, "vision", 1, seed=6)
    one = backend.encode("vision", x[0])  # a single sample gets a batch axis
    np.testing.assert_allclose(one, backend.encode("vision", x), atol=1e-6)
    assert one.shape == (1, model.config.out_embed_dim)
    assert backend.encode("vision", np.zeros((0, 3, 224, 224), np.float32)).shape == (0, 16)
    with pytest.raises(ValueError, match=r"vision input must be \(B, 3, 224, 224\)"):
        backend.encode("vision", np.zeros((2, 3, 112, 112), np.float32))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        backend.encode("vision", bad)
    with pytest.raises(KeyError, match="no 'audio' encoder"):
        backend.encode("audio", np.zeros((1, 3, 1, 128, 204), np.float32))
    ids = _x(model, "text", 2, seed=7)
    with pytest.raises(TypeError, match="token ids"):
        backend.encode("text", ids.float())
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 49408\)"):
        backend.encode("text", ids + 49408)


def test_create_backend_errors(model: torch.nn.Module, onnx_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        create_backend("tflite", model=model)
    with pytest.raises(ValueError, match="needs a model"):
        create_backend("torch", onnx_dir=onnx_dir)
    with pytest.raises(ValueError, match="needs an export directory"):
        create_backend("onnxruntime", model=model)
    with pytest.raises(ValueError, match="no precision 'int4'"):
        create_backend("onnxruntime", onnx_dir=onnx_dir, precision="int4")
    with pytest.raises(ValueError, match="no bfloat16 MatMul kernel.*torch backend's bf16"):
        create_backend("onnxruntime", onnx_dir=onnx_dir, precision="bf16")
    with pytest.raises(ValueError, match="int8 runs on the onnxruntime backend"):
        create_backend("torch", model=model, precision="int8")
    with pytest.raises(KeyError, match=r"\['depth'\] are not in export"):
        create_backend("onnxruntime", onnx_dir=onnx_dir, modalities=["depth"])
    with pytest.raises(BackendUnavailable, match="no backend can run here"):
        create_backend("auto")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU fallback checks need a CPU-only host")
def test_torch_fp16_needs_a_gpu(model: torch.nn.Module) -> None:
    with pytest.raises(BackendUnavailable, match="fp16 needs a CUDA GPU"):
        TorchBackend(model, precision="fp16", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU fallback checks need a CPU-only host")
def test_auto_falls_back_on_cpu(model: torch.nn.Module, onnx_dir: Path,
                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="imagebind_ros.inference.factory"):
        backend = create_backend("auto", model=model, onnx_dir=onnx_dir)
    assert isinstance(backend, OnnxRuntimeBackend) and backend.precision == "fp32"
    skipped = [r.message for r in caplog.records if "skipping" in r.message]
    assert any(s.startswith("backend auto: skipping tensorrt:") for s in skipped)
    x = _x(model, "imu", 3, seed=8)
    np.testing.assert_allclose(backend.encode("imu", x), model.encode("imu", x).detach().numpy(),
                               atol=1e-4)
    # With no export, auto lands on the torch model; asked for int8, on ONNX Runtime.
    assert isinstance(create_backend("auto", model=model), TorchBackend)
    assert create_backend("auto", model=model, onnx_dir=onnx_dir,
                          precision="int8").name == "onnxruntime"


def test_inference_bench_runs_on_tiny(tmp_path: Path) -> None:
    """bench/inference.py end to end on one tiny encoder: every configuration, sane ratios."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, str(root / "bench/inference.py"), "--preset", "tiny", "--modalities",
         "imu", "--batch", "1", "2", "--repeats", "2", "--peak-seconds", "0.1", "--out",
         str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    rows = {(r["batch"], r["config"]): r for r in res["rows"]}
    assert set(rows) == {(b, c) for b in (1, 2)
                         for c in ("torch fp32", "torch bf16", "ORT fp32", "ORT int8")}
    for (b, c), r in rows.items():
        assert r["n"] == 2 and r["p50_ms"] > 0 and r["gflops"] > 0
        assert r["cosine_min"] > (0.99999 if "fp32" in c else 0.99)
        if c == "torch fp32":
            assert r["speedup"] == 1.0
    assert res["env"]["OMP_WAIT_POLICY"] and len(res["loadavg_start"]) == 3
    assert all(res["peaks_best"][k] > 0 for k in ("fp32", "bf16", "int8"))
    assert "| imu | 2 | ORT int8 |" in proc.stdout and "ORT bf16: not run" in proc.stdout
