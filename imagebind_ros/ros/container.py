"""``graph_container``: the model-holding nodes in ONE process under ``ros2 launch``.

    graph_container --nodes encoder_node,detector_node,memory_node \\
        --ros-args --params-file config/fusion.yaml -r encoder_node:camera/image_raw:=/cam

The Python counterpart of a C++ component container: every node in it shares one model per
(checkpoint, preset, backend, precision, device) through ``model_cache`` (``imagebind_huge``
is 4.8 GB a copy). Its ROS arguments are the process's, and rcl applies them per node as in
separate processes: a parameter file's node sections (``encoder_node:``) and ``/**``, node
remappings ``<node>:<from>:=<to>``, and ``__ns`` (the namespace of every node in it). No
``__node`` remap: it would rename every node. ``fusion.launch.py`` starts it by default
(``container:=false``: one process per node).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from imagebind_ros.ros.runner import NODES, _executor, _shutdown, _start

MODEL_NODES = ("encoder_node", "detector_node", "memory_node", "fusion_node")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graph_container", description=__doc__.split("\n")[0])
    p.add_argument("--nodes", required=True,
                   help=f"comma-separated nodes to host ({', '.join(MODEL_NODES)})")
    p.add_argument("--executor", choices=("events", "single", "multi"), default="events",
                   help="rclpy executor (as imagebind-ros run)")
    return p


def parse_nodes(text: str) -> list[str]:
    """The node list, encoder first (it loads the model the others find in the cache)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in NODES]
    if unknown or not names:
        raise ValueError(f"unknown nodes {unknown or '[]'}; choose from {', '.join(NODES)}")
    return sorted(dict.fromkeys(names), key=lambda n: n != "encoder_node")


def main(argv: Sequence[str] | None = None) -> int:
    import rclpy
    from rclpy.utilities import remove_ros_args

    from imagebind_ros.model_cache import cached_models
    from imagebind_ros.ros.node_utils import STARTUP_ERRORS, spin, use_large_data_profile

    args = list(sys.argv if argv is None else argv)
    opts = build_parser().parse_args(remove_ros_args(args)[1:])
    try:
        names = parse_nodes(opts.nodes)
    except ValueError as e:
        print(f"graph_container: error: {e}", file=sys.stderr)
        return 2
    use_large_data_profile()
    rclpy.init(args=args)
    log = rclpy.logging.get_logger("graph_container")
    nodes: dict[str, Any] = {}
    try:
        for name in names:
            try:
                nodes[name] = _start(name, [])
            except STARTUP_ERRORS as e:
                log.error(f"{name} cannot start: {e}")
                return 1
        executor = _executor(opts.executor)
        for n in nodes.values():
            executor.add_node(n)
        log.info(f"hosting {', '.join(nodes)} in one process; "
                 f"{len(cached_models())} model instance(s)")
        spin(executor)  # until Ctrl-C / SIGTERM shuts rclpy down
        executor.shutdown(timeout_sec=5)
        return 0
    finally:
        _shutdown(nodes)
