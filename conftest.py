"""Repository-root conftest: makes the checkout importable and defines shared paths / markers."""

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
SHARED_DATA = Path(os.environ.get("SCENESQUEEZER_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(REPO_ROOT))


try:
    from hypothesis import settings as _hypothesis_settings

    # CI explores the same examples on every run (a failure is reproducible from the log);
    # local runs keep hypothesis' random exploration to find new counterexamples.
    _hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")
except ImportError:  # hypothesis is a test requirement; collection will report it
    pass


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer than a CI run should spend (deselected with -m 'not slow')")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_street_scene(tmp_path_factory):
    """A 24-frame 640x480 synthetic street (seed 0) with day and night queries, shared by the suite."""
    from scenesqueezer_core.synthetic import generate_scene

    root = tmp_path_factory.mktemp("small_street")
    return generate_scene(root / "scene", preset="street", seed=0, num_frames=24, width=640, height=480)


@pytest.fixture(scope="session")
def small_street_map(small_street_scene, tmp_path_factory):
    """The xfeat SceneMap of small_street_scene."""
    from scenesqueezer_core.mapping import build_map

    return build_map(small_street_scene, tmp_path_factory.mktemp("small_street_map") / "street.ssmap",
                     features="xfeat", device="cpu")


@pytest.fixture(scope="session")
def small_street_rig_scene(tmp_path_factory):
    """small_street_scene with a 3-camera rig on every query (generate_scene(rig=True)): the same
    mapping frames, so small_street_map serves it; splits query_day_rig / query_night_rig, rig.json."""
    from scenesqueezer_core.synthetic import generate_scene

    root = tmp_path_factory.mktemp("small_street_rig")
    return generate_scene(root / "scene", preset="street", seed=0, num_frames=24, width=640, height=480, rig=True)
