"""A run killed mid-way and resumed with ``--resume latest`` ends with the same weights as an
uninterrupted run: model, optimizer, schedule, RNG (IMU dropout) and data position restored.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imagebind_ros.model.checkpoint import read_checkpoint
from training.train import STOPPED, main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "training" / "configs" / "tiny.yaml")
# audio + IMU (its head has dropout 0.5: resuming must restore the RNG), 3 epochs x 8 steps
ARGS = ["--config", TINY, "--epochs", "3", "--data.train.audio.n", "64",
        "--data.train.imu.n", "64", "--log.progress", "false"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main([*ARGS, "--out_dir", str(out)]) == 0
    return read_checkpoint(out / "model.pt")


def _run_until(out: Path, marker: str, sig: signal.Signals) -> int:
    """Start a training process, send ``sig`` once ``marker`` is printed, return its status."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "training" / "train.py"), *ARGS,
                             "--out_dir", str(out), "--log.every", "1"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            proc.send_signal(sig)
            break
    try:
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert any(marker in s for s in seen), "".join(seen[-20:])
    return proc.returncode


def _assert_same_weights(ckpt: dict[str, object], reference: dict[str, object]) -> None:
    got, want = ckpt["state_dict"], reference["state_dict"]
    assert set(got) == set(want)
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    assert [h["loss"] for h in ckpt["history"]] == [h["loss"] for h in reference["history"]]


def test_sigterm_mid_epoch_then_resume(tmp_path: Path, reference: dict[str, object]) -> None:
    status = _run_until(tmp_path, "epoch 2 step 2/8", signal.SIGTERM)
    assert status == STOPPED
    pos = read_checkpoint(tmp_path / "latest.pt")["train"]
    assert pos["epoch"] == 1 and 2 <= pos["step"] < 8, pos  # stopped inside epoch 2
    assert main([*ARGS, "--out_dir", str(tmp_path), "--resume", "latest"]) == 0
    _assert_same_weights(read_checkpoint(tmp_path / "model.pt"), reference)


def test_sigkill_after_checkpoint_then_resume(tmp_path: Path,
                                              reference: dict[str, object]) -> None:
    status = _run_until(tmp_path, "saved after epoch 1", signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert read_checkpoint(tmp_path / "latest.pt")["train"]["epoch"] in (1, 2)
    assert main([*ARGS, "--out_dir", str(tmp_path), "--resume", "latest"]) == 0
    _assert_same_weights(read_checkpoint(tmp_path / "model.pt"), reference)
