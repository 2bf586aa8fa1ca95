"""TensorRT: the engine cache everywhere; engine builds and parity where a GPU and TRT exist."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from imagebind_ros.inference import BackendUnavailable, create_backend
from imagebind_ros.inference.tensorrt_backend import EngineCache, tensorrt_unavailable_reason
from imagebind_ros.modalities import example_input

KEY = {"format": 1, "tensorrt": "10.13.0", "gpu": "NVIDIA H100 (sm_90)", "precision": "fp16",
       "max_batch": 8, "onnx": "ab" * 32, "input_shape": [3, 224, 224]}
NO_TRT = tensorrt_unavailable_reason()


def test_cache_round_trip_and_key_isolation(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.load("vision", KEY) is None  # empty: a miss, not an error
    cache.store("vision", KEY, b"engine-bytes")
    assert cache.load("vision", KEY) == b"engine-bytes"
    # Another GPU, TensorRT version, precision or ONNX file is another entry: never reused.
    for field, value in (("gpu", "NVIDIA RTX 4090 (sm_89)"), ("tensorrt", "10.14.0"),
                         ("precision", "fp32"), ("onnx", "cd" * 32)):
        other = {**KEY, field: value}
        assert cache.path("vision", other) != cache.path("vision", KEY)
        assert cache.load("vision", other) is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "sidecar", "key"])
def test_damaged_entry_is_rebuilt_with_one_log_line(tmp_path: Path, damage: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store("audio", KEY, bytes(range(256)) * 4)
    meta = path.with_suffix(".json")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "flip":
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF  # same size, one bit pattern off
        path.write_bytes(bytes(data))
    elif damage == "sidecar":
        meta.write_text("{half a json")
    else:  # a hash collision or a hand-copied file: the sidecar's key is not ours
        meta.write_text(meta.read_text().replace("NVIDIA H100", "NVIDIA A100"))
    with caplog.at_level(logging.WARNING, logger="imagebind_ros.inference.tensorrt_backend"):
        assert cache.load("audio", KEY) is None
    lines = [r.message for r in caplog.records]
    assert len(lines) == 1 and "unusable" in lines[0] and "rebuilding" in lines[0]


def test_unavailable_tensorrt_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    reason = tensorrt_unavailable_reason()
    assert reason is not None and "'tensorrt' Python package" in reason and "\n" not in reason
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        create_backend("tensorrt", onnx_dir=tmp_path)


gpu = pytest.mark.skipif(NO_TRT is not None, reason=f"TensorRT tests need a GPU: {NO_TRT}")


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    from imagebind_ros.inference.export import export_onnx
    from imagebind_ros.model import create_model

    torch.manual_seed(2)
    model = create_model("tiny")
    out = tmp_path_factory.mktemp("trt_onnx")
    export_onnx(model, ["vision", "text", "audio"], out, progress=False)
    return model, out


@gpu
@pytest.mark.parametrize("precision, tol", [("fp32", 1e-4), ("fp16", None)])
def test_engine_matches_torch(tiny_export: tuple[torch.nn.Module, Path], tmp_path: Path,
                              precision: str, tol: float | None) -> None:
    model, onnx_dir = tiny_export
    backend = create_backend("tensorrt", onnx_dir=onnx_dir, precision=precision,
                             max_batch=4, cache_dir=tmp_path)
    for m in backend.modalities:
        x = example_input(model.config, m, 6, torch.Generator().manual_seed(5))  # 6 > max 4
        got = backend.encode(m, x)
        want = model.encode(m, x).detach().numpy()
        if tol is not None:
            np.testing.assert_allclose(got, want, atol=tol, rtol=0)
        else:
            assert ((got * want).sum(1)).min() > 0.999


@gpu
def test_engine_cache_is_reused_then_rebuilt_when_corrupt(
        tiny_export: tuple[torch.nn.Module, Path], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    _, onnx_dir = tiny_export
    with caplog.at_level(logging.WARNING):
        create_backend("tensorrt", onnx_dir=onnx_dir, modalities=["vision"], cache_dir=tmp_path)
    assert any("takes minutes" in r.message for r in caplog.records)
    engines = list(tmp_path.glob("vision-*.engine"))
    assert len(engines) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        create_backend("tensorrt", onnx_dir=onnx_dir, modalities=["vision"], cache_dir=tmp_path)
    assert not any("building" in r.message for r in caplog.records)  # loaded from disk
    engines[0].write_bytes(engines[0].read_bytes()[:1000])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        create_backend("tensorrt", onnx_dir=onnx_dir, modalities=["vision"], cache_dir=tmp_path)
    assert sum("unusable" in r.message for r in caplog.records) == 1
