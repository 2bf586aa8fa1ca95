"""bench/gpu.py's CPU-side logic on the tiny preset, so the GPU run cannot rot unnoticed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_gpu_bench(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(ROOT / "bench" / "gpu.py"), "--preset", "tiny", "--device",
           "cpu", "--modalities", "vision,audio", "--batch", "1", "2", "--repeats", "1",
           "--warmup", "0", "--dense-size", "224", "--out-dir", str(out), *extra]
    return subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)


def test_gpu_bench_writes_every_row_json_and_markdown(tmp_path: Path) -> None:
    proc = run_gpu_bench(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "gpu.json").read_text())
    md = (tmp_path / "gpu.md").read_text()
    for m in ("vision", "audio"):
        rows = {(r["batch"], r["precision"]): r for r in res["modalities"][m]["rows"]}
        assert set(rows) == {(b, p) for b in (1, 2) for p in ("fp32", "bf16")}
        for (b, p), r in rows.items():
            assert 0 < r["p50_ms"] <= r["p99_ms"] and r["samples_per_s"] > 0
            assert r["cosine_min"] > (1 - 1e-6 if p == "fp32" else 0.99)
        # fp16 cannot run on a CPU: recorded with the backend's reason, not dropped
        assert "needs a CUDA GPU" in res["modalities"][m]["skipped"]["fp16"]
        assert f"| {m} | 2 | bf16 |" in md and f"| {m} | - | fp16 | not run:" in md
    dense = {r["precision"]: r for r in res["dense"]["rows"]}
    assert set(dense) == {"fp32", "bf16"} and dense["fp32"]["patches"] == 16 * 21
    assert dense["bf16"]["cosine_min"] > 0.99 and "| bf16, 224 px short side |" in md
    assert not res["unfinished"] and res["env"]["tf32"] is False


def test_gpu_bench_budget_stops_new_work_and_says_so(tmp_path: Path) -> None:
    proc = run_gpu_bench(tmp_path, "--budget-s", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "gpu.json").read_text())
    assert res["unfinished"] == ["vision", "audio", "dense"] and not res["modalities"]
    assert "Not reached within --budget-s: vision, audio, dense" in (tmp_path / "gpu.md"
                                                                      ).read_text()
