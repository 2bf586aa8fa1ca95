"""`imagebind-ros export` end to end on the tiny preset, and its one-line errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_required import require

from imagebind_ros import cli
from imagebind_ros.inference import load_manifest
from imagebind_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
from imagebind_ros.modalities import example_input
from imagebind_ros.model import create_model, save_model

require("onnxscript", "torch's dynamo ONNX exporter needs it")
require("onnxruntime")

MODS = ("vision", "audio", "text")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_model(path, create_model("tiny"))
    return path


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_export_then_onnxruntime_matches_torch(checkpoint: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "export"
    rc = cli.main(["export", "--checkpoint", str(checkpoint), "--modalities", ",".join(MODS),
                   "--out", str(out), "--int8", "--quiet"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "wrote fp32 export of tiny and int8 variants" in stdout
    assert all(line.split(":")[0] in MODS for line in stdout.splitlines()[:-1])
    manifest = load_manifest(out)
    assert manifest.modalities == MODS
    assert manifest.checkpoint is not None
    assert manifest.checkpoint["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    # The reference is the checkpoint loaded afresh, not the model the CLI exported.
    model = create_model(checkpoint=checkpoint)
    fp32 = OnnxRuntimeBackend(out)
    derived = sorted(p.name for p in (out / "derived").glob("*.int8.onnx"))
    assert derived == sorted(f"{m}.int8.onnx" for m in MODS)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "derived").glob("*.onnx")}
    int8 = OnnxRuntimeBackend(out, precision="int8")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # made by export, not now
    for m in MODS:
        x = example_input(model.config, m, 3, torch.Generator().manual_seed(11))
        want = model.encode(m, x).detach().numpy()
        np.testing.assert_allclose(fp32.encode(m, x), want, atol=1e-4, rtol=0)
        assert ((int8.encode(m, x) * want).sum(1)).min() > 0.99


def test_missing_checkpoint_is_one_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never"
    rc = cli.main(["export", "--checkpoint", str(tmp_path / "nope.pth"), "--out", str(out)])
    assert rc == 2
    line = _error_line(capsys)
    assert line.startswith("imagebind-ros export: error: checkpoint not found:")
    assert "nope.pth" in line and not out.exists()


def test_damaged_checkpoint_is_one_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert cli.main(["export", "--checkpoint", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "cannot read checkpoint" in _error_line(capsys)


@pytest.mark.parametrize("args, message", [
    (["--preset", "tiny", "--modalities", "vision,sonar"], "modality 'sonar' is not in model"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--preset", "tiny", "--opset", "17"], "opset 17"),
    (["--preset", "tiny", "--modalities", ","], "--modalities is empty"),
])
def test_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    args: list[str], message: str) -> None:
    assert cli.main(["export", *args, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_fp16_and_int8_exclude_each_other(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["export", "--preset", "tiny", "--fp16", "--int8", "--out", str(tmp_path)])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
