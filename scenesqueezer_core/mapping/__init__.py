"""Map building: dataset -> SceneMap (features, verified matches, triangulated points, retrieval).

The SceneMap itself (and its file) lives in ``scenesqueezer_core.maps``.
"""

from .build import DEFAULT_BUILD_CONF, build_map, build_scene_map

__all__ = ["DEFAULT_BUILD_CONF", "build_map", "build_scene_map"]
