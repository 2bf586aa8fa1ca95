"""Clean shutdown: a node process and the runner exit 0 on SIGINT and SIGTERM.

Each process is started as a user would start it, signalled while its timers publish at
high rates (the race that made ``sim_sensors_node`` exit 1 with "publisher's context is
invalid"), and judged by its exit status and its output.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from node_process import ENV, NodeProcess, wait_for
from ros_required import require_ros

require_ros()

ROOT = Path(__file__).resolve().parents[1]
SIM_MAIN = "import sys; from imagebind_ros.ros.sim_sensors_node import main; sys.exit(main())"
BAD_OUTPUT = ("Traceback", "never retrieved", "RCLError", "context is invalid")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGINT,
                                 signal.SIGTERM])
def test_sim_sensors_exit_zero_on_signal(sig: int) -> None:
    child = NodeProcess([sys.executable, "-c", SIM_MAIN, "--ros-args", "-p",
                         "imu.rate_hz:=2000.0", "-p", "audio.chunk_s:=0.002", "-p",
                         "width:=64", "-p", "height:=48"], cwd=ROOT)
    wait_for(lambda: any("SYNTHETIC sensors" in ln for ln in child.lines)
             or child.proc.poll() is not None, 60, "the simulated sensors to start")
    assert child.proc.poll() is None, "\n".join(child.lines)
    code = child.stop(sig)
    out = "\n".join(child.lines)
    assert code == 0, out
    assert not any(b in out for b in BAD_OUTPUT), out


def test_runner_with_sim_sensors_and_no_checkpoint_uses_the_demo_model() -> None:
    """`imagebind-ros run --set use_sim_sensors:=true` with no model: the demo model, said
    in one line; embeddings flow; Ctrl-C exits 0 without asyncio's "never retrieved"."""
    env = {**ENV, "ROS_DOMAIN_ID": str(int(ENV["ROS_DOMAIN_ID"]) % 100 + 111)}
    child = NodeProcess([sys.executable, "-m", "imagebind_ros.cli", "run", "--set",
                         "use_sim_sensors:=true", "--set", "sim_sensors_node.width:=64",
                         "--set", "sim_sensors_node.height:=48", "--table",
                         "--table-period", "1"], cwd=ROOT, env=env)
    wait_for(lambda: any("vision" in ln and " ms " in ln for ln in child.lines)
             or child.proc.poll() is not None, 90, "a vision row in the table")
    assert child.proc.poll() is None, "\n".join(child.lines)
    code = child.stop(signal.SIGINT, timeout=30)
    out = "\n".join(child.lines)
    assert code == 0, out
    assert sum("using the demo model" in ln for ln in child.lines) == 1, out
    assert "checkpoints/demo/demo.pt" in out and "no model" not in out.replace(
        "no model set", "")
    assert not any(b in out for b in BAD_OUTPUT), out


def test_demo_model_default_only_when_no_node_names_a_model(
        capsys: pytest.CaptureFixture[str]) -> None:
    from imagebind_ros.ros.model_params import demo_model_default

    demo = demo_model_default({"encoder_node": {"labels": ["a"]}, "fusion_node": {}})
    assert demo is not None and Path(demo).is_file()  # the source tree's or the installed
    assert Path(demo).parts[-3:] == ("checkpoints", "demo", "demo.pt")
    assert capsys.readouterr().out.count("using the demo model") == 1
    for named in ({"checkpoint": "m.pt"}, {"preset": "tiny"}, {"onnx_dir": "export"}):
        assert demo_model_default({"encoder_node": {}, "detector_node": named}) is None
    assert "demo" not in capsys.readouterr().out
