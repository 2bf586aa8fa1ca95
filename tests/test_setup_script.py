"""`make setup` failures end in one clear line, not a traceback (scripts/setup.sh)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ros_required import missing

ROOT = Path(__file__).resolve().parents[1]


def _setup_copy(tmp_path: Path, requirements: str) -> Path:
    """A checkout-shaped directory with our setup script and the given requirements."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("setup.sh", "fix_ros_wheels.py"):
        shutil.copy(ROOT / "scripts" / name, repo / "scripts" / name)
    for name in ("pyproject.toml", "package.xml", "CMakeLists.txt"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "msg", repo / "msg")
    shutil.copytree(ROOT / "srv", repo / "srv")
    (repo / "requirements.txt").write_text(requirements)
    (repo / "requirements-ros.txt").write_text("")
    return repo


def _run(repo: Path, python: str, venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(repo / "scripts" / "setup.sh")], capture_output=True,
                          text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": python, "VENV": str(venv)})


def test_wrong_python_is_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho 3.9\n")
    fake.chmod(0o755)
    repo = _setup_copy(tmp_path, "")
    r = _run(repo, str(fake), tmp_path / "venv")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Python 3.11 is required" in lines[0] and "3.9" in lines[0]
    assert "Traceback" not in r.stdout + r.stderr
    assert not (tmp_path / "venv").exists()


def test_missing_python_is_one_line(tmp_path: Path) -> None:
    repo = _setup_copy(tmp_path, "")
    r = _run(repo, str(tmp_path / "no-such-python"), tmp_path / "venv")
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        f"make setup: error: '{tmp_path / 'no-such-python'}' not found; install Python 3.11"]


def python311() -> str:
    """A Python 3.11 to run the script with: this one if it is 3.11 (the venv's, under
    `make test`: creating a venv from it and pip stay offline-fast), else one on PATH."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if found is None:
        # the script refuses other Pythons before it reaches pip (tested above)
        missing("the setup script needs Python 3.11 and none is on PATH")
    return str(found)


def test_failing_dependency_is_one_line(tmp_path: Path) -> None:
    repo = _setup_copy(tmp_path, "imagebind-ros-no-such-package-xyz==0.0.1\n")
    r = _run(repo, python311(), tmp_path / "venv")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("make setup: error: pip install of requirements failed")
    assert "imagebind-ros-no-such-package-xyz" in lines[0]
    assert "Traceback" not in r.stdout + r.stderr
