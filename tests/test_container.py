"""``graph_container``: the model-holding nodes in one process, as ``fusion.launch.py``
starts them, over real DDS from another process.

Checked: one model instance for three nodes; each node gets its own section of the params
file (a section does not leak to the others); a node-specific remapping moves only that
node's topic; the hosted encoder works on the remapped topic; Ctrl-C exits 0.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np

from node_process import ENV, NodeProcess, wait_for
from ros_required import require_ros

require_ros()
import rclpy  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from imagebind_ros.msg import Embedding  # noqa: E402
from imagebind_ros.ros import conversions as cv  # noqa: E402
from imagebind_ros.ros.node_utils import RELIABLE_QOS, sensor_qos  # noqa: E402

MAIN = "import sys; from imagebind_ros.ros.container import main; sys.exit(main())"
PARAMS = """\
/**:
  ros__parameters:
    preset: tiny
    threads: 1
encoder_node:
  ros__parameters:
    modalities: [vision]
    vision.max_rate_hz: 0.0
detector_node:
  ros__parameters:
    max_rate_hz: 0.5
"""


def _domain() -> int:
    return int(ENV.get("ROS_DOMAIN_ID", "0")) % 100 + 150


def test_container_hosts_nodes_with_their_own_parameters_and_remaps(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    domain = _domain()
    proc = NodeProcess([sys.executable, "-c", MAIN, "--nodes",
                        "memory_node,detector_node,encoder_node", "--ros-args",
                        "--params-file", str(params), "-r", "encoder_node:camera/image_raw:=/cam"],
                       env={**ENV, "ROS_DOMAIN_ID": str(domain)})
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    probe = rclpy.create_node("container_probe", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(probe)
    try:
        def started() -> bool:
            return any("model instance(s)" in ln for ln in proc.lines)

        wait_for(lambda: started() or proc.proc.poll() is not None, 120, "the container")
        assert started(), proc.lines[-10:]
        assert any("; 1 model instance(s)" in ln for ln in proc.lines)
        assert any("hosting encoder_node, memory_node, detector_node in one process" in ln
                   for ln in proc.lines)

        def subscribers(topic: str) -> list[str]:
            return sorted(i.node_name for i in probe.get_subscriptions_info_by_topic(topic))

        wait_for(lambda: subscribers("/cam") == ["encoder_node"], 20, "encoder on /cam")
        assert subscribers("/camera/image_raw") == ["detector_node"]  # remap is the encoder's
        assert subscribers("/depth/image_raw") == []  # its section: modalities [vision]

        def parameter(node: str, name: str) -> object:
            client = probe.create_client(GetParameters, f"/{node}/get_parameters")
            assert client.wait_for_service(timeout_sec=20)
            future = client.call_async(GetParameters.Request(names=[name]))
            executor.spin_until_future_complete(future, timeout_sec=20)
            value = future.result().values[0]
            return list(value.string_array_value) or value.double_value

        assert parameter("encoder_node", "modalities") == ["vision"]
        assert parameter("memory_node", "modalities") == ["vision", "audio", "depth",
                                                          "thermal", "imu"]
        assert parameter("detector_node", "max_rate_hz") == 0.5

        got: list[Embedding] = []
        probe.create_subscription(Embedding, "embeddings/vision", got.append, RELIABLE_QOS)
        pub = probe.create_publisher(Image, "/cam", sensor_qos(5))
        frame = np.random.default_rng(1).integers(0, 255, (48, 64, 3), np.uint8)
        end = time.monotonic() + 60
        while not got and time.monotonic() < end:
            pub.publish(cv.numpy_to_image(frame, "rgb8", cv.make_header(time.time_ns(), "c")))
            executor.spin_once(timeout_sec=0.2)
        assert got and len(got[0].vector) > 0 and got[0].model_id == "random-init:tiny"
    finally:
        executor.shutdown()
        probe.destroy_node()
        rclpy.shutdown(context=ctx)
        code = proc.stop(signal.SIGINT, timeout=20)
    assert code == 0, proc.lines[-10:]
    assert not [ln for ln in proc.lines if "Traceback" in ln], proc.lines[-20:]
