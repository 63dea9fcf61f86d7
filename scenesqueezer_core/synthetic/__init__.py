"""Synthetic street / courtyard scenes with exact poses and depth: demo and training data.

``generate_scene(out_dir, preset="street", seed=0, num_frames=200, ...)`` writes a dataset folder in
the format of ``../shared/data`` plus per-frame depth; ``PRESETS`` maps preset names to world builders.
"""

from .generate import default_camera, generate_scene, plan_frames, render_frame, render_query_images
from .render import RenderResult, render
from .world import PRESETS, Plane, World, build_world

__all__ = ["PRESETS", "Plane", "RenderResult", "World", "build_world", "default_camera", "generate_scene",
           "plan_frames", "render", "render_frame", "render_query_images"]
