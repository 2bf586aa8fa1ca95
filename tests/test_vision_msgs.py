"""The detector's vision_msgs output, on the REAL generated vision_msgs classes.

The 2-D detection messages of vision_msgs 4.x (typed from upstream) are built with colcon
by ``interface_fixture`` once; a child process (``vision_msgs_child.py``) converts
detections, round-trips them through CDR and starts a detector node publishing
vision_msgs/Detection2DArray. Expected values are computed here by hand. Without
vision_msgs the parameter is refused with one clear line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from interface_fixture import build_interfaces, child_env
from ros_required import require_ros

require_ros()
import rclpy  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from imagebind_ros.ros.node_utils import StartupError  # noqa: E402

CHILD = Path(__file__).with_name("vision_msgs_child.py")


@pytest.fixture(scope="session")
def vision_msgs_env() -> Any:
    try:
        return child_env(build_interfaces("vision_msgs"))
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        if os.environ.get("IMAGEBIND_ROS_REQUIRE_ROS") == "1":
            pytest.fail(f"cannot build the vision_msgs fixture: {e}", pytrace=False)
        pytest.skip(f"cannot build the vision_msgs fixture: {e}")


def test_detections_as_vision_msgs(vision_msgs_env: dict[str, str]) -> None:
    cases = [{"box": [10, 20, 110, 70], "score": 0.75, "label": "dog"},
             {"box": [0.5, 1.5, 3.5, 9.5], "score": 1.7, "label": "the sound"},
             {"box": [5, 5, 6, 6], "score": -0.2, "label": "car"}]
    proc = subprocess.run([sys.executable, str(CHILD)], input=json.dumps(cases),
                          env=vision_msgs_env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["stamp"] == [1, 500_000_000] and out["frame"] == "cam"
    assert out["detections"] == [
        {"frame": "cam", "id": "", "results": [["dog", 0.75]], "center": [60.0, 45.0, 0.0],
         "size": [100.0, 50.0]},
        {"frame": "cam", "id": "", "results": [["the sound", 1.0]],  # clipped as ours
         "center": [2.0, 5.5, 0.0], "size": [3.0, 8.0]},
        {"frame": "cam", "id": "", "results": [["car", 0.0]], "center": [5.5, 5.5, 0.0],
         "size": [1.0, 1.0]}]
    assert out["published_types"] == ["vision_msgs/msg/Detection2DArray"]


def test_vision_msgs_format_without_the_package_is_one_clear_error() -> None:
    from imagebind_ros.ros.detector_node import DetectorNode

    try:
        import vision_msgs  # noqa: F401
        pytest.skip("vision_msgs is installed in this process")
    except ImportError:
        pass
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=(os.getpid() + 31) % 100 + 101)
    try:
        with pytest.raises(StartupError, match="needs the vision_msgs package"):
            DetectorNode(context=ctx, parameter_overrides=[
                Parameter("preset", value="tiny"),
                Parameter("detections_format", value="vision_msgs")])
        with pytest.raises(StartupError, match="choose imagebind_ros or vision_msgs"):
            DetectorNode(context=ctx, parameter_overrides=[
                Parameter("preset", value="tiny"), Parameter("detections_format", value="x")])
    finally:
        rclpy.shutdown(context=ctx)
