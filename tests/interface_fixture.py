"""Build another package's ROS interfaces for a test, with colcon, once per content.

Some messages the package must read come from packages that are not on PyPI
(``audio_common_msgs``, ``vision_msgs``, ...). Their definitions, typed from upstream, live
under ``tests/fixtures/interfaces/<variant>/<package>/`` (package.xml, CMakeLists.txt,
msg/); ``build_interfaces`` generates the real message classes and type support from them
into ``build/test_interfaces/<variant>/``, exactly as ``make setup`` builds ours, and
returns what a CHILD process needs to import them (``child_env``). Packages of the same name
(the two incompatible ``audio_common_msgs``) are separate variants, each used in its own
child process, since one process can import only one of them.

A build is reused while the fixture's files, the Python version and the venv are unchanged
(a hash in ``build/test_interfaces/<variant>/stamp``); a file lock keeps parallel test
sessions from building the same variant at once. Use it from a session fixture:

    @pytest.fixture(scope="session")
    def vision_msgs_env():
        return child_env(build_interfaces("vision_msgs"))

    subprocess.run([sys.executable, "child.py"], env=vision_msgs_env, check=True)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "interfaces"
BUILD_ROOT = REPO / "build" / "test_interfaces"


@dataclass(frozen=True)
class InterfaceBuild:
    """An installed interface package: its prefix and the paths a process needs."""

    package: str
    prefix: Path
    pythonpath: Path
    library_path: Path


def _digest(src: Path, venv: Path) -> str:
    h = hashlib.sha256(f"{sys.version}\n{venv}\n".encode())
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _installed(prefix: Path) -> Path:
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return prefix / "lib" / ver / "site-packages"


def build_interfaces(variant: str, timeout_s: float = 900.0) -> InterfaceBuild:
    """Build (or reuse) ``tests/fixtures/interfaces/<variant>/<package>`` -> its install.

    Raises ``RuntimeError`` with the end of the build log if colcon fails.
    """
    src_root = FIXTURES / variant
    packages = sorted(p.parent.name for p in src_root.glob("*/package.xml"))
    if len(packages) != 1:
        raise ValueError(f"{src_root} must hold exactly one package, found {packages}")
    package = packages[0]
    venv = Path(sys.prefix)
    root = BUILD_ROOT / variant
    root.mkdir(parents=True, exist_ok=True)
    prefix = root / "install" / package
    build = InterfaceBuild(package, prefix, _installed(prefix), prefix / "lib")
    want = _digest(src_root, venv)
    stamp = root / "stamp"
    with open(root.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == want and build.pythonpath.is_dir():
            return build
        for sub in ("src", "build", "install", "log"):
            shutil.rmtree(root / sub, ignore_errors=True)
        shutil.copytree(src_root, root / "src")
        env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
               "VIRTUAL_ENV": str(venv), "AMENT_PREFIX_PATH": str(venv),
               "CMAKE_PREFIX_PATH": str(venv), "COLCON_LOG_PATH": str(root / "log")}
        py = venv / "bin" / "python"
        py = py if py.exists() else Path(sys.executable)
        cmd = [str(venv / "bin" / "colcon"), "build", "--base-paths", str(root / "src"),
               "--build-base", str(root / "build"), "--install-base", str(root / "install"),
               "--cmake-args", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={py}",
               f"-DPYTHON_EXECUTABLE={py}"]
        log = root / "build.log"
        with open(log, "w") as out:
            proc = subprocess.run(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout_s, check=False)
        if proc.returncode != 0 or not build.pythonpath.is_dir():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise RuntimeError(f"colcon build of {variant}/{package} failed "
                               f"(exit {proc.returncode}); log {log}:\n{tail}")
        stamp.write_text(want)
    return build


def child_env(*builds: InterfaceBuild, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a child process that imports the built packages (first wins)."""
    env = dict(os.environ if base is None else base)

    def prepend(key: str, paths: list[Path]) -> None:
        old = [p for p in env.get(key, "").split(os.pathsep) if p]
        env[key] = os.pathsep.join([str(p) for p in paths] + old)

    prepend("PYTHONPATH", [b.pythonpath for b in builds])
    prepend("LD_LIBRARY_PATH", [b.library_path for b in builds])
    prepend("AMENT_PREFIX_PATH", [b.prefix for b in builds])
    return env
