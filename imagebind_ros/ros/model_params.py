"""The model parameters of every node that holds a model (encoder, detector, memory).

Declared once here with one meaning, so equal values in one process give the same model
instance (``imagebind_ros.model_cache``) and a launch argument such as ``checkpoint`` means
the same thing to every node.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from rclpy.node import Node

from imagebind_ros.model_cache import SharedModel, get_shared_model
from imagebind_ros.ros.node_utils import StartupError, declare, package_file

MODEL_NODES = ("encoder_node", "detector_node", "memory_node", "fusion_node")
MODEL_PARAMETERS = ("checkpoint", "preset", "onnx_dir")  # any one of them names a model
DEMO_CHECKPOINT = "checkpoints/demo/demo.pt"


def declare_model_parameters(node: Node) -> dict[str, Any]:
    """Declare the read-only model parameters on ``node``; their values by name."""
    def d(name: str, default: Any, text: str) -> Any:
        return declare(node, name, default, text, read_only=True)

    return {
        "checkpoint": d("checkpoint", "", "model checkpoint (.pt/.pth); empty = none"),
        "preset": d("preset", "", "architecture preset (imagebind_huge, imagebind_small, "
                    "tiny); with no checkpoint it is random-initialised (tests only)"),
        "backend": d("backend", "torch", "runtime: torch, onnxruntime, tensorrt or auto"),
        "onnx_dir": d("onnx_dir", "", "export directory for onnxruntime/tensorrt"),
        "precision": d("precision", "", "fp32, bf16, fp16, int8; empty = backend default"),
        "device": d("device", "", "torch device (cpu, cuda); empty = cuda if available"),
        "threads": d("threads", -1, "CPU threads for inference (process-wide): -1 = all "
                     "cores but one (left to ROS), 0 = the runtime's default"),
    }


def has_model(p: dict[str, Any]) -> bool:
    """Whether the parameters name a model at all (a checkpoint, an export or a preset)."""
    return bool(p["checkpoint"] or p["preset"] or p["onnx_dir"])


def demo_model_default(params: dict[str, dict[str, Any]]) -> str | None:
    """The demo checkpoint a graph with simulated sensors uses when none of its nodes'
    parameters (``{node: {name: value}}``) name a model, else None. The demo model was
    trained on the same SYNTHETIC world, so the graph answers instead of exiting "no model";
    prints the one line that says so."""
    if any(p.get(k) for p in params.values() for k in MODEL_PARAMETERS):
        return None
    demo = package_file(DEMO_CHECKPOINT)
    if demo is None:
        return None
    print(f"no model set and simulated sensors on: using the demo model {demo} (trained on "
          "the same SYNTHETIC world; set 'checkpoint' for another)", flush=True)
    return str(demo)


def load_model(p: dict[str, Any], needs: Sequence[str] = (),
               uses: Sequence[str] | None = None) -> SharedModel:
    """The shared model of these parameters with the encoders of ``needs`` and ``uses``
    loaded (``uses=None``: every encoder); StartupError if no model is set or it lacks
    one of the ``needs``. A node asks only for what it encodes: a robot without a thermal
    camera never loads the thermal encoder."""
    if not has_model(p):
        raise StartupError("no model: set the 'checkpoint' parameter (or 'onnx_dir' for an "
                           "export, or 'preset' for a random-init test model)")
    threads = p["threads"] if p["threads"] >= 0 else max(1, (os.cpu_count() or 2) - 1)
    shared = get_shared_model(p["checkpoint"] or None, p["preset"] or None, p["backend"],
                              p["onnx_dir"] or None, p["precision"] or None,
                              p["device"] or None, threads,
                              None if uses is None else (*needs, *uses))
    missing = [m for m in needs if m not in shared.modalities]
    if missing:
        raise StartupError(f"model {shared.model_id} has no {', '.join(missing)} encoder "
                           f"(has: {', '.join(shared.modalities)})")
    return shared
