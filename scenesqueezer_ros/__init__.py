"""ROS 2 face of SceneSqueezer: the localizer node and its message conversions (imports rclpy)."""
