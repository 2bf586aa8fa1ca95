"""The detector node with ``method: dense`` over real DDS, in an ``imagebind-ros run`` child
process (demo model, on torch and on ONNX Runtime with an ``export --dense`` graph): its
detections equal the offline (torch) dense ``RegionDetector``'s on the same frame, and
``~/heatmap`` is an rgb8 picture of the camera's size and stamp that equals
``heatmap(frame, similarity map)`` computed offline, whose hottest point lies on the
prompted object."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from node_process import wait_for
from ros_required import require_ros

require_ros()
from test_detector_node import (DEMO, WORLD, check_detections, encode,  # noqa: E402
                                next_stamp, node_graph)

from sensor_msgs.msg import Image  # noqa: E402

from imagebind_ros import preprocess as pp  # noqa: E402
from imagebind_ros.decode import decode_image, stamp_to_ns  # noqa: E402
from imagebind_ros.detection import (DetectorConfig, Prompt, RegionDetector,  # noqa: E402
                                     heatmap)
from imagebind_ros.model import create_model  # noqa: E402
from imagebind_ros.model.dense import DenseVisionEncoder  # noqa: E402
from imagebind_ros.ros.node_utils import RELIABLE_QOS  # noqa: E402
from imagebind_ros.srv import SetPrompt  # noqa: E402

DENSE = {"method": "dense", "dense_variant": "maskclip", "dense_sizes": [128]}


@pytest.fixture(scope="module")
def offline() -> Any:
    if not DEMO.is_file():
        pytest.skip("the demo checkpoint is not here")
    torch.set_num_threads(1)
    return create_model(checkpoint=DEMO)


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def dense_graph(request: pytest.FixtureRequest, offline: Any,
                tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The detector on the demo checkpoint (torch), or on its ONNX export with a dense
    graph (onnxruntime): the offline torch reference must hold for both."""
    sets = ["use_encoder:=false", "use_detector:=true", "detector_node.max_rate_hz:=0.0",
            "threads:=1"]
    if request.param == "torch":
        sets.append(f"checkpoint:={DEMO}")
    else:
        pytest.importorskip("onnxruntime")
        from imagebind_ros.inference.export import export_onnx

        out = tmp_path_factory.mktemp("demo_onnx")
        export_onnx(offline, ["vision", "text"], out, progress=False, verify=False,
                    dense=[DENSE["dense_variant"]])
        sets += [f"onnx_dir:={out}", "backend:=onnxruntime"]
    sets += [f"detector_node.{k}:={v}" for k, v in DENSE.items()]
    with node_graph(sets, ("detecting in",)) as (child, harness):
        assert any("dense (maskclip, short sides 128 px)" in ln and request.param in ln
                   for ln in child.lines)
        heat: list[Image] = []
        harness.node.create_subscription(Image, "detector_node/heatmap", heat.append,
                                         RELIABLE_QOS)
        yield harness, heat


def offline_dense(model: Any) -> RegionDetector:
    enc = DenseVisionEncoder(model, DENSE["dense_variant"])

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return enc(torch.from_numpy(x)).numpy()
    cfg = DetectorConfig(method="dense", dense_sizes=tuple(DENSE["dense_sizes"]))
    return RegionDetector(lambda x: encode(model, "vision", x), model.config.vision, cfg, run)


def test_dense_detections_and_heatmap_over_dds(dense_graph: Any, offline: Any) -> None:
    h, heat = dense_graph
    scene = WORLD.scene([1, 4], np.random.default_rng(5))  # a car and rain
    car = int(np.flatnonzero(scene.class_ids == 1)[0])
    assert h.call(h.set_prompt, SetPrompt.Request(text="a photo of a car", label="car")).success
    stamp = next_stamp()
    dets, _ = h.frame(scene.image, stamp)
    text = encode(offline, "text", pp.tokenize(["a photo of a car"], offline.config.text))[0]
    det = offline_dense(offline)
    regions = det.regions(scene.image)
    check_detections(dets, det.detect_all(regions, [Prompt("car", "text", text)]), stamp)
    msg = wait_for(lambda: next((m for m in list(heat)
                                 if stamp_to_ns(m.header.stamp) == stamp), None), 30,
                   "the heat map of the frame")
    assert msg.header.frame_id == "cam_test"
    pic = decode_image(msg)
    assert pic.encoding == "rgb8" and pic.array.shape == scene.image.shape
    sim = det.similarity(regions, text)
    want = heatmap(scene.image, sim)
    diff = np.abs(pic.array.astype(int) - want.astype(int))
    assert (diff <= 2).mean() > 0.999, diff.max()
    assert not np.array_equal(pic.array, scene.image)  # a map is drawn, not the frame
    y, x = np.unravel_index(np.nanargmax(sim), sim.shape)
    x0, y0, x1, y1 = scene.boxes[car]
    assert x0 <= x < x1 and y0 <= y < y1, (x, y, scene.boxes[car])
