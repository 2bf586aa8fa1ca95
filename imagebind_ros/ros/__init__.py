"""ROS 2 side of imagebind_ros: the only package that imports rclpy.

``conversions`` turns messages into numpy arrays (and back) with clear errors; the nodes
(``encoder_node``, ``microphone_node``, ``sim_sensors_node``, ``detector_node``,
``memory_node``) stay thin around the pure library; ``runner`` starts them in one process;
``model_cache`` gives every node in a process the same model instance.
Nothing is imported here, so ``import imagebind_ros.ros.conversions`` needs no rclpy.
"""
