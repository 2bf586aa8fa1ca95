"""imagebind_ros: ImageBind's one embedding space on a robot.

The library part (``model``, ``preprocess``, ``inference``, ``synthetic``) imports torch and
numpy only; ROS 2 code lives in ``imagebind_ros.ros`` and is the only place rclpy is used.
"""

__version__ = "0.1.0"

MODALITIES = ("vision", "text", "audio", "depth", "thermal", "imu")
