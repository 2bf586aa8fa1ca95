"""`imagebind-ros embed` end to end on files, against the library API on the same inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from imagebind_ros import preprocess as pp
from imagebind_ros.cli import main
from imagebind_ros.model import create_model, save_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_model(path, create_model("tiny"))
    return path


def _files(tmp: Path) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    out: dict[str, list[str]] = {m: [] for m in ("vision", "audio", "depth", "thermal", "imu")}
    for i in range(3):
        img = tmp / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (90 + i, 120, 3), dtype=np.uint8)).save(img)
        wav = tmp / f"a{i}.wav"
        soundfile.write(wav, rng.uniform(-0.5, 0.5, 16000 * (2 + i)).astype(np.float32), 16000)
        dep = tmp / f"d{i}.png"
        Image.fromarray(rng.integers(300, 5000, (60, 80), dtype=np.uint16)).save(dep)
        th = tmp / f"t{i}.npy"
        np.save(th, rng.uniform(20, 40, (64, 64)).astype(np.float32))
        imu = tmp / f"i{i}.npy"
        t = np.linspace(0, 5, 1000)
        np.save(imu, np.column_stack([t, rng.normal(size=(1000, 6))]))
        for m, f in zip(out, (img, wav, dep, th, imu)):
            out[m].append(str(f))
    return out


def test_embed_matches_library(ckpt: Path, tmp_path: Path) -> None:
    files = _files(tmp_path)
    model = create_model(checkpoint=ckpt)
    cfg = model.config
    expected = {
        "vision": [pp.image_to_tensor(pp.load_image(f), cfg.vision) for f in files["vision"]],
        "audio": [pp.audio_to_tensor(*pp.load_audio(f), cfg.audio) for f in files["audio"]],
        "depth": [pp.depth_to_tensor(np.array(Image.open(f)), cfg.depth, units="mm")
                  for f in files["depth"]],
        "thermal": [pp.thermal_to_tensor(np.load(f), cfg.thermal) for f in files["thermal"]],
        "imu": [pp.imu_to_tensor(np.load(f)[:, 1:], np.load(f)[:, 0], cfg.imu)
                for f in files["imu"]],
    }
    for m, paths in files.items():
        out = tmp_path / f"{m}.npy"
        assert main(["embed", "--checkpoint", str(ckpt), "--modality", m, *paths,
                     "--out", str(out), "--batch-size", "2", "--quiet"]) == 0
        got = np.load(out)
        assert got.shape == (3, cfg.out_embed_dim) and got.dtype == np.float32
        with torch.no_grad():
            ref = model.encode(m, torch.stack(expected[m])).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_embed_text_and_errors(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                               ) -> None:
    out = tmp_path / "t.npy"
    assert main(["embed", "--checkpoint", str(ckpt), "--modality", "text", "a dog",
                 "a car", "--out", str(out), "--quiet"]) == 0
    emb = np.load(out)
    assert emb.shape == (2, 16) and not np.allclose(emb[0], emb[1])
    assert main(["embed", "--checkpoint", str(tmp_path / "nope.pth"), "--modality", "text",
                 "x", "--out", str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["embed", "--checkpoint", str(ckpt), "--modality", "vision",
                 str(tmp_path / "missing.png"), "--out", str(out)]) == 2
    assert "vision file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00" * 100)
    assert main(["embed", "--checkpoint", str(bad), "--modality", "text", "x",
                 "--out", str(out)]) == 2
    assert "truncated or not a PyTorch checkpoint" in capsys.readouterr().err
