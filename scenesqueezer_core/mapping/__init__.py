"""Map building: dataset -> SceneMap (features, verified matches, triangulated points, retrieval)."""

from .build import DEFAULT_BUILD_CONF, build_map, build_scene_map
from .scene_map import SceneMap

__all__ = ["DEFAULT_BUILD_CONF", "SceneMap", "build_map", "build_scene_map"]
