"""Skip tests whose packages or tools are missing on partial installs, but FAIL them where
they must work.

`make test` sets IMAGEBIND_ROS_REQUIRE_ROS=1: there everything `make setup` installs (rclpy
and our built interfaces, onnx/onnxruntime/onnxscript, sounddevice, PulseAudio's tools) is
part of the setup, so its absence is a broken setup, not a reason to skip. Without the
variable (a `pip install .` without extras, say) such tests skip with the reason. Only what
no setup can provide here (a GPU, a full ROS 2 install's launch_ros) skips everywhere.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType

import pytest


def strict() -> bool:
    """True under `make test`: missing requirements fail instead of skipping."""
    return os.environ.get("IMAGEBIND_ROS_REQUIRE_ROS") == "1"


def missing(why: str) -> None:
    """Fail (under `make test`) or skip (elsewhere) the current test or module."""
    if strict():
        pytest.fail(why, pytrace=False)
    pytest.skip(why, allow_module_level=True)


def require(module: str, why: str = "") -> ModuleType:
    """Import ``module`` for a test module (like ``pytest.importorskip``, strict under
    `make test`)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing(f"{module} unavailable ({e}){'; ' + why if why else ''}; run `make setup`")
        raise  # unreachable: missing() fails or skips


def require_tools(*tools: str, why: str = "") -> None:
    """Every executable in ``tools`` is on PATH (strict under `make test`)."""
    absent = [t for t in tools if shutil.which(t) is None]
    if absent:
        missing(f"needs {', '.join(absent)} on PATH{' (' + why + ')' if why else ''}; "
                "`make setup` installs them")


def require_ros() -> None:
    """Call at the top of a test module that needs rclpy and our built interfaces."""
    try:
        import rclpy  # noqa: F401

        from imagebind_ros import msg, srv  # noqa: F401
    except ImportError as e:
        missing(f"ROS 2 unavailable ({e}); run `make setup`")
