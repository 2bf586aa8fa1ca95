"""`pip install .` gives the library without ROS; only imagebind_ros.ros needs rclpy."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK_ROS = """
import sys
class NoRos:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('rclpy', 'rosidl_runtime_py', 'sensor_msgs', 'std_msgs'):
            raise ImportError('ROS is blocked in this test: ' + name)
sys.meta_path.insert(0, NoRos())
"""


def test_library_imports_without_ros() -> None:
    code = BLOCK_ROS + (
        "import imagebind_ros.model, imagebind_ros.preprocess, imagebind_ros.synthetic\n"
        "import imagebind_ros.inference.factory, imagebind_ros.inference.export\n"
        "import imagebind_ros.cli, training.train, training.eval\n"
        "from imagebind_ros.model import create_model\n"
        "m = create_model('tiny')\n"
        "assert not [k for k in sys.modules if k.startswith('rclpy')]\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_wheel_holds_the_library_and_entry_points(tmp_path: Path) -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    src = tmp_path / "src"
    for name in tracked:  # build from a copy: setuptools writes build/ into the source tree
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("imagebind_ros-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("imagebind_ros/model/imagebind.py", "imagebind_ros/preprocess.py",
                 "imagebind_ros/inference/export.py", "training/train.py",
                 "training/configs/tiny.yaml"):
        assert must in names, must
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "imagebind-ros = imagebind_ros.cli:main" in text
