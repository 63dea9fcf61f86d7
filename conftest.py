"""Repository-root conftest: makes the checkout importable and defines shared paths / markers."""

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
SHARED_DATA = Path(os.environ.get("SCENESQUEEZER_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(REPO_ROOT))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer than a CI run should spend (deselected with -m 'not slow')")
