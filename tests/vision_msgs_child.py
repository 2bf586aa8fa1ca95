"""Child process of test_vision_msgs.py: needs the built vision_msgs fixture on its path.

Reads detections (JSON) on stdin, converts them with ``detections_to_vision_msgs`` on the
REAL generated classes, round-trips the message through rclpy's CDR serialisation, and
prints what came back; then starts a detector node with ``detections_format: vision_msgs``
and prints the type its detections topic is published with.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import rclpy
import vision_msgs.msg as vm
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message, serialize_message

from imagebind_ros.detection import Detection
from imagebind_ros.ros import conversions as cv


def main() -> int:
    cases = json.load(sys.stdin)
    dets = [Detection(np.array(c["box"], float), c["score"], c["label"], "text")
            for c in cases]
    msg = cv.detections_to_vision_msgs(vm, cv.make_header(1_500_000_000, "cam"), dets)
    back = deserialize_message(serialize_message(msg), vm.Detection2DArray)
    out = {"stamp": [back.header.stamp.sec, back.header.stamp.nanosec],
           "frame": back.header.frame_id,
           "detections": [{"frame": d.header.frame_id, "id": d.id,
                           "results": [[r.hypothesis.class_id, r.hypothesis.score]
                                       for r in d.results],
                           "center": [d.bbox.center.position.x, d.bbox.center.position.y,
                                      d.bbox.center.theta],
                           "size": [d.bbox.size_x, d.bbox.size_y]}
                          for d in back.detections]}
    from imagebind_ros.ros.detector_node import DetectorNode

    rclpy.init()
    node = DetectorNode(parameter_overrides=[
        Parameter("preset", value="tiny"), Parameter("detections_format", value="vision_msgs"),
        Parameter("diagnostics.period_s", value=0.0)])
    out["published_types"] = dict(node.get_publisher_names_and_types_by_node(
        node.get_name(), node.get_namespace()))["/detections"]
    node.destroy_node()
    rclpy.shutdown()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
