"""Launch the imagebind_ros node graph (full ROS 2 install: Jazzy, Kilted).

    ros2 launch imagebind_ros fusion.launch.py checkpoint:=/models/imagebind_huge.pth
    ros2 launch imagebind_ros fusion.launch.py use_sim_sensors:=true \\
        params_file:=$(ros2 pkg prefix imagebind_ros)/share/imagebind_ros/config/demo.yaml

Parameters come from ``params_file`` (default: the package's config/fusion.yaml, the same
file ``imagebind-ros run`` reads); a launch argument given on the command line overrides its
parameter, one left empty keeps the file's value. A relative file path in the params file
(``checkpoint``, ``labels_file``, ...) is found from the working directory, else from the
package's share directory, so the installed demo runs from anywhere. ``ros2 launch ...
--show-args`` lists every argument with its description. Without ``launch_ros`` (pip-only
installs) this module still imports, so its argument table can be checked; use
``imagebind-ros run`` there.

The model-holding nodes (encoder, detector, memory, fusion) run in ONE process,
``graph_container``, so they share one model (``container:=false``: one process per node,
one model copy each). Each keeps its own parameters (the params file's node sections and the
launch arguments, handed over as node sections), and ``<node>:<from>:=<to>`` remappings work
as in separate processes; sensors (simulated, microphone) stay processes of their own.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import yaml

from imagebind_ros.ros.model_params import MODEL_NODES, demo_model_default
from imagebind_ros.ros.runner import read_params

try:
    from launch import LaunchContext, LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.substitutions import FindPackageShare
except ImportError:  # pip-only install: the tables below stay importable
    LaunchDescription = None  # type: ignore[assignment,misc]

PACKAGE = "imagebind_ros"

# name -> (default, description). An empty default means "keep the params file's value".
ARGUMENTS: dict[str, tuple[str, str]] = {
    "params_file": ("", "ROS 2 parameter file for all nodes (default: this package's "
                        "config/fusion.yaml)"),
    "checkpoint": ("", "model checkpoint: imagebind_huge.pth or a trained imagebind_ros .pt"),
    "preset": ("", "architecture preset when the checkpoint carries no config "
                   "(imagebind_huge, imagebind_small, tiny)"),
    "backend": ("", "inference runtime: torch, onnxruntime, tensorrt or auto"),
    "onnx_dir": ("", "export directory for the onnxruntime / tensorrt backends"),
    "device": ("", "torch device, e.g. cuda or cpu"),
    "modalities": ("", "comma-separated modalities to encode and fuse, e.g. "
                       "vision,audio,imu"),
    "vision_topic": ("", "camera topic (sensor_msgs/Image)"),
    "depth_topic": ("", "depth topic (sensor_msgs/Image 16UC1 mm or 32FC1 m)"),
    "thermal_topic": ("", "thermal topic (sensor_msgs/Image mono8/mono16/32FC1)"),
    "audio_topic": ("", "audio topic (imagebind_ros/AudioChunk)"),
    "imu_topic": ("", "IMU topic (sensor_msgs/Imu)"),
    "labels_file": ("", "zero-shot labels, one per line"),
    "use_encoder": ("true", "start the encoder node"),
    "use_mic": ("false", "start the microphone node (sounddevice)"),
    "use_sim_sensors": ("false", "start the simulated sensors (SYNTHETIC world)"),
    "use_detector": ("false", "start the audio-prompted detector node"),
    "use_memory": ("false", "start the cross-modal memory node"),
    "use_fusion": ("true", "start the fusion node (one fused embedding and label from all "
                           "sensors)"),
    "autostart": ("", "true: the model-holding nodes configure and activate themselves; "
                      "false: they wait unconfigured for a lifecycle manager"),
    "container": ("true", "run the model-holding nodes in one process (graph_container) "
                          "sharing one model; false: one process and one model copy per node"),
}
SWITCHES = {"use_encoder": "encoder_node", "use_mic": "microphone_node",
            "use_sim_sensors": "sim_sensors_node", "use_detector": "detector_node",
            "use_memory": "memory_node", "use_fusion": "fusion_node"}
# launch argument -> [(node, parameter)] it sets
# (every model-holding node gets the model arguments: equal values share one model in
# `imagebind-ros run`, and a launch never starts a detector on another model than the encoder)
CONTAINER = "graph_container"
NOT_PARAMETERS = {"params_file", "container"}  # arguments that set no node parameter
PARAMETERS: dict[str, list[tuple[str, str]]] = {
    **{arg: [(node, arg) for node in MODEL_NODES]
       for arg in ("checkpoint", "preset", "backend", "onnx_dir", "device")},
    "autostart": [(node, "autostart") for node in MODEL_NODES],
    "modalities": [("encoder_node", "modalities"), ("fusion_node", "modalities")],
    "labels_file": [("encoder_node", "labels_file"), ("fusion_node", "labels_file")],
    "audio_topic": [("encoder_node", "audio.topic"), ("sim_sensors_node", "audio.topic"),
                    ("microphone_node", "topic"), ("detector_node", "audio.topic")],
    "vision_topic": [("encoder_node", "vision.topic"), ("sim_sensors_node", "vision.topic"),
                     ("detector_node", "camera.topic")],
    **{f"{m}_topic": [("encoder_node", f"{m}.topic"), ("sim_sensors_node", f"{m}.topic")]
       for m in ("depth", "thermal", "imu")},
}
LIST_ARGUMENTS = ("modalities",)
BOOL_ARGUMENTS = ("autostart",)
# Node parameters naming files. A relative one in the params file is looked up from the working
# directory (as `imagebind-ros run` does), else from the package's share directory, which
# mirrors the source tree: config/demo.yaml names checkpoints/demo/demo.pt, installed there.
PATH_PARAMETERS = ("checkpoint", "onnx_dir", "labels_file", "prompt.audio_file",
                   "calibration_file")


def overrides(values: dict[str, str], node: str) -> dict[str, Any]:
    """The parameters of ``node`` set by non-empty launch arguments."""
    out: dict[str, Any] = {}
    for arg, targets in PARAMETERS.items():
        value = values.get(arg, "")
        for target, param in targets:
            if target == node and value != "":
                out[param] = ([v.strip() for v in value.split(",") if v.strip()]
                              if arg in LIST_ARGUMENTS else _is_on(value)
                              if arg in BOOL_ARGUMENTS else value)
    return out


def file_parameters(params_file: str, node: str, cwd: str, share: str) -> dict[str, str]:
    """The file parameters of ``node`` in ``params_file`` that are relative, missing from
    ``cwd`` and present under ``share``, as absolute paths (so the installed demo runs from
    any directory)."""
    return {name: os.path.join(share, value)
            for name, value in read_params([params_file], node).items()
            if (name in PATH_PARAMETERS and isinstance(value, str) and value
                and not os.path.isabs(value)
                and not os.path.exists(os.path.join(cwd, value))
                and os.path.exists(os.path.join(share, value)))}


def node_parameters(values: dict[str, str], node: str, params_file: str, cwd: str,
                    share: str, demo: str | None = None) -> dict[str, Any]:
    """What the launch sets on ``node`` on top of the params file: absolute file paths and
    the non-empty launch arguments (these win); ``demo`` as a model node's checkpoint."""
    out = {**file_parameters(params_file, node, cwd, share), **overrides(values, node)}
    if demo and node in MODEL_NODES:
        out["checkpoint"] = demo
    return out


def container_sections(values: dict[str, str], nodes: list[str], params_file: str, cwd: str,
                       share: str, demo: str | None = None) -> dict[str, Any]:
    """``node_parameters`` of each hosted node as a parameter file's node sections (the
    container is one process: a plain dict would set every node's parameters alike)."""
    return {node: {"ros__parameters": node_parameters(values, node, params_file, cwd, share,
                                                      demo)}
            for node in nodes}


def _is_on(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def _nodes(context: LaunchContext) -> list[Any]:
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    share = FindPackageShare(PACKAGE).perform(context)
    params_file = values["params_file"] or os.path.join(share, "config", "fusion.yaml")
    env = {}
    if "FASTDDS_DEFAULT_PROFILES_FILE" not in os.environ:  # camera-sized best-effort messages
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = os.path.join(share, "config",
                                                            "fastdds_large_data.xml")
    selected = [node for switch, node in SWITCHES.items() if _is_on(values[switch])]
    models = [n for n in selected if n in MODEL_NODES]
    demo = (demo_model_default({n: {**read_params([params_file], n), **overrides(values, n)}
                                for n in models})
            if "sim_sensors_node" in selected and models else None)
    hosted = models if _is_on(values["container"]) else []
    actions = []
    if hosted:
        with tempfile.NamedTemporaryFile("w", prefix="imagebind_ros_container_",
                                         suffix=".yaml", delete=False) as f:
            yaml.safe_dump(container_sections(values, hosted, params_file, os.getcwd(),
                                              share, demo), f)
        actions.append(Node(package=PACKAGE, executable=CONTAINER, output="screen",
                            arguments=["--nodes", ",".join(hosted)],
                            parameters=[params_file, f.name], additional_env=env))
    return actions + [
        Node(package=PACKAGE, executable=node, name=node, output="screen",
             parameters=[params_file, node_parameters(values, node, params_file, os.getcwd(),
                                                      share, demo)],
             additional_env=env)
        for node in selected if node not in hosted]


def generate_launch_description() -> Any:
    if LaunchDescription is None:
        raise ImportError("fusion.launch.py needs launch and launch_ros (a full ROS 2 "
                          "install); without them use `imagebind-ros run`")
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGUMENTS.items()]
        + [OpaqueFunction(function=_nodes)])
