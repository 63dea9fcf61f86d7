"""SceneSqueezer core: dataset -> map -> compressed map -> localizer -> pose (no ROS imports)."""

__version__ = "0.1.0"
