"""ONNX export on the tiny preset: parity with torch, manifest round trip, damaged exports.

The torch reference is a model loaded afresh from the checkpoint the exported model was
saved to before the export, so a graph that got other weights or another mode (dropout on)
than the file holds, or an export that changed the caller's model, cannot agree with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_required import require

from imagebind_ros.inference import ManifestError, load_manifest, quantize
from imagebind_ros.inference.export import OPSET, export_onnx
from imagebind_ros.inference.manifest import MANIFEST_FORMAT, fingerprint
from imagebind_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
from imagebind_ros.inference.quantize import derived_model
from imagebind_ros.modalities import example_input
from imagebind_ros.model import ImageBindConfig, create_model, save_model

require("onnxscript", "torch's dynamo ONNX exporter needs it")
ort = require("onnxruntime")

MODALITIES = ("vision", "text", "audio", "depth", "thermal", "imu")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_model(path, create_model("tiny"))
    return path


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> torch.nn.Module:
    """The model handed to the exporter."""
    return create_model(checkpoint=checkpoint)


@pytest.fixture(scope="module")
def export_dir(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(model, None, out, progress=False)
    return out


@pytest.fixture(scope="module")
def reference(checkpoint: Path, export_dir: Path) -> torch.nn.Module:
    """An independent torch model: the checkpoint loaded again, after the export ran."""
    return create_model(checkpoint=checkpoint)


def encode(model: torch.nn.Module, modality: str, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model.encode(modality, x).numpy()


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _session_output(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {name: x})[0]


def _one_clip(modality: str, x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """(model input, graph input): audio graphs take one clip per row, not the clip stack."""
    if modality != "audio":
        return x, x.numpy()
    return x[:, :1], x[:, 0].numpy()


@pytest.mark.parametrize("modality", MODALITIES)
def test_every_encoder_matches_torch(reference: torch.nn.Module, export_dir: Path,
                                     modality: str) -> None:
    # Batch 3 differs from the export's example batch (2): the batch axis must be dynamic.
    x = example_input(reference.config, modality, batch=3,
                      generator=torch.Generator().manual_seed(7))
    x, feed = _one_clip(modality, x)
    want = encode(reference, modality, x)
    got = _session_output(export_dir / f"{modality}.onnx", modality, feed)
    assert got.shape == (3, reference.config.out_embed_dim)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_export_is_eval_mode_and_leaves_the_callers_model_alone(
        checkpoint: Path, reference: torch.nn.Module, tmp_path: Path) -> None:
    # IMU has Dropout(0.5) in its head: a graph traced in train mode would drop half of it.
    # A caller's model in train mode must still export the eval-mode encoder, and come
    # back as it was: same mode, same weights.
    model = create_model(checkpoint=checkpoint).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, ["imu"], tmp_path, progress=False, verify=False)
    assert all(m.training for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    x = example_input(reference.config, "imu", batch=4, generator=torch.Generator().manual_seed(1))
    got = _session_output(tmp_path / "imu.onnx", "imu", x.numpy())
    np.testing.assert_allclose(got, encode(reference, "imu", x), atol=1e-4, rtol=0)


def test_manifest_round_trip(model: torch.nn.Module, export_dir: Path) -> None:
    on_disk = json.loads((export_dir / "manifest.json").read_text())
    manifest = load_manifest(export_dir)
    assert manifest.to_dict() == on_disk
    assert on_disk["format"] == MANIFEST_FORMAT and on_disk["opset"] == OPSET
    assert ImageBindConfig.from_dict(on_disk["config"]) == model.config
    assert on_disk["versions"]["torch"] == torch.__version__
    assert on_disk["preprocessing"]["audio"]["mean"] == model.config.audio.mean
    assert on_disk["checkpoint"] is None  # random init: nothing to hash
    for m in MODALITIES:
        e = manifest.entry(m)
        data = (export_dir / e.file).read_bytes()
        assert e.sha256 == hashlib.sha256(data).hexdigest() and e.size == len(data)
        assert e.input_shape[0] == "batch" and e.max_abs_diff is not None
        assert e.max_abs_diff <= 1e-4
    # Written back from the loaded object, the manifest is the same file.
    manifest.write()
    assert json.loads((export_dir / "manifest.json").read_text()) == on_disk


def test_external_data_and_checkpoint_hash(model: torch.nn.Module, reference: torch.nn.Module,
                                           tmp_path: Path) -> None:
    ckpt = tmp_path / "tiny.pt"
    save_model(ckpt, model)
    out = tmp_path / "ext"
    export_onnx(model, ["depth"], out, checkpoint_path=ckpt, progress=False, external_data=True)
    manifest = load_manifest(out)
    assert manifest.checkpoint == {"path": str(ckpt),
                                   "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    e = manifest.entry("depth")
    assert e.external_data == "depth.onnx.data" and (out / e.external_data).stat().st_size > 0
    x = example_input(model.config, "depth", batch=1, generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose(_session_output(out / "depth.onnx", "depth", x.numpy()),
                               encode(reference, "depth", x), atol=1e-4, rtol=0)
    # The weights file is part of the encoder's identity (engine and variant caches use it).
    before = fingerprint(manifest, "depth")
    e.external_data_sha256 = "0" * 64
    assert fingerprint(manifest, "depth") != before


def test_truncated_onnx_is_a_clear_error(export_dir: Path, tmp_path: Path) -> None:
    d = _copy(export_dir, tmp_path / "trunc")
    f = d / "vision.onnx"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ManifestError, match="vision.onnx has .* bytes.*truncated"):
        load_manifest(d)
    with pytest.raises(ManifestError, match="truncated"):
        OnnxRuntimeBackend(d, modalities=["vision"])
    # Even with the manifest edited to the truncated size and checks off, the runtime's own
    # failure comes out as one clear error, not a crash.
    man = json.loads((d / "manifest.json").read_text())
    man["encoders"]["vision"]["size"] = f.stat().st_size
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ManifestError, match="ONNX Runtime cannot load .*vision.onnx"):
        OnnxRuntimeBackend(d, modalities=["vision"], verify=False)


def test_replaced_file_fails_the_hash_check(export_dir: Path, tmp_path: Path) -> None:
    d = _copy(export_dir, tmp_path / "flip")
    f = d / "audio.onnx"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF  # same size, different content
    f.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="audio.onnx does not match the sha256"):
        load_manifest(d)
    load_manifest(d, verify=False)  # sizes alone cannot see it: that is what verify is for
    # a backend hashes only its encoders' files: an IMU node never reads audio.onnx
    load_manifest(d, modalities=["imu"])
    OnnxRuntimeBackend(d, modalities=["imu"])
    with pytest.raises(ManifestError, match="audio.onnx does not match the sha256"):
        OnnxRuntimeBackend(d, modalities=["imu", "audio"])


def test_mismatched_manifest_is_a_clear_error(export_dir: Path, tmp_path: Path) -> None:
    d = _copy(export_dir, tmp_path / "swap")
    man = json.loads((d / "manifest.json").read_text())
    # The thermal graph placed under the depth entry, hashes updated to match: only the
    # graph's own signature (input name) can tell, and the backend checks it.
    shutil.copy(d / "thermal.onnx", d / "depth.onnx")
    man["encoders"]["depth"].update(sha256=man["encoders"]["thermal"]["sha256"],
                                    size=man["encoders"]["thermal"]["size"])
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ManifestError, match="mismatched manifest"):
        OnnxRuntimeBackend(d, modalities=["depth"])
    # A shape edited away from what the config implies.
    man["encoders"]["vision"]["input_shape"] = ["batch", 3, 112, 112]
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ManifestError, match="'vision' says input"):
        load_manifest(d)


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ('{"format": "something/else"}', "not an imagebind_ros ONNX manifest"),
    (json.dumps({"format": MANIFEST_FORMAT, "config": {}}), "malformed"),
])
def test_bad_manifest_files(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(ManifestError, match=match):
        load_manifest(tmp_path)


def test_missing_export_and_bad_modality(model: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no ONNX export"):
        load_manifest(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="cannot export modalities"):
        export_onnx(model, ["sonar"], tmp_path, progress=False)


def test_fp16_export_close_to_fp32(model: torch.nn.Module, reference: torch.nn.Module,
                                   tmp_path: Path) -> None:
    export_onnx(model, ["audio"], tmp_path, fp16=True, progress=False)
    manifest = load_manifest(tmp_path)
    assert manifest.precision == "fp16"
    x = example_input(model.config, "audio", batch=4, generator=torch.Generator().manual_seed(3))
    x, feed = _one_clip("audio", x)
    got = _session_output(tmp_path / "audio.onnx", "audio", feed)  # float32 in and out
    want = encode(reference, "audio", x)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1)
    assert got.dtype == np.float32 and cos.min() > 0.999
    with pytest.raises(ValueError, match="fp16 export; it runs only as fp16"):
        OnnxRuntimeBackend(tmp_path, precision="fp32")


def test_int8_variant_is_cached_and_rebuilt_when_stale(
        reference: torch.nn.Module, export_dir: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    manifest = load_manifest(export_dir)
    path = derived_model(manifest, "vision", "int8", cache_dir=tmp_path)
    x = example_input(reference.config, "vision", batch=4,
                      generator=torch.Generator().manual_seed(4))
    got = _session_output(path, "vision", x.numpy())
    want = encode(reference, "vision", x)
    assert ((got * want).sum(1) / np.linalg.norm(got, axis=1)).min() > 0.99
    stamp = path.stat().st_mtime_ns
    assert derived_model(manifest, "vision", "int8", cache_dir=tmp_path) == path
    assert path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    # Other options are another variant: the cached one is rebuilt, with one warning.
    with caplog.at_level(logging.WARNING, logger="imagebind_ros.inference.quantize"):
        derived_model(manifest, "vision", "int8", cache_dir=tmp_path,
                      reduce_range=not quantize.int8_defaults()["reduce_range"])
    assert [r.message for r in caplog.records if "rebuilding" in r.message]


def test_int8_default_follows_vnni(export_dir: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture) -> None:
    manifest = load_manifest(export_dir)
    sidecar = tmp_path / "imu.int8.json"
    # 7-bit weights only where int16 pair sums could saturate (no VNNI).
    monkeypatch.setattr(quantize, "cpu_flags", lambda: {"avx2", "fma"})
    derived_model(manifest, "imu", "int8", cache_dir=tmp_path)
    assert json.loads(sidecar.read_text())["options"]["reduce_range"] is True
    # The same cache on a VNNI CPU: another default, so the variant is rebuilt, not reused.
    monkeypatch.setattr(quantize, "cpu_flags", lambda: {"avx2", "avx512_vnni"})
    with caplog.at_level(logging.WARNING, logger="imagebind_ros.inference.quantize"):
        derived_model(manifest, "imu", "int8", cache_dir=tmp_path)
    assert json.loads(sidecar.read_text())["options"]["reduce_range"] is False
    assert sum("rebuilding" in r.message for r in caplog.records) == 1


def test_quantizer_chatter_stays_out_of_the_log(export_dir: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    # ONNX Runtime's quantizer logs per-tensor INFO lines and an advice WARNING to the root
    # logger on every call; a user's INFO logging must not fill with them.
    with caplog.at_level(logging.INFO):
        quantize.quantize_int8(export_dir / "imu.onnx", tmp_path / "imu.int8.onnx")
    assert (tmp_path / "imu.int8.onnx").stat().st_size > 0
    assert not [r for r in caplog.records if "onnxruntime" in r.pathname]
