"""ROS 2 side of imagebind_ros: the only package that imports rclpy.

``conversions`` builds messages from numpy arrays (``imagebind_ros.decode`` reads them);
the nodes (``encoder_node``, ``microphone_node``, ``sim_sensors_node``, ``detector_node``,
``memory_node``) stay thin around the pure library, sharing ``node_utils`` (parameters, QoS,
warnings, the model parameters and ``main``); ``runner`` starts them in one process, where
``imagebind_ros.model_cache`` gives every node the same model instance.
Nothing is imported here, so ``import imagebind_ros.ros.conversions`` needs no rclpy.
"""
