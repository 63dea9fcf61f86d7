"""Local feature extractors and matchers, chosen by name or as a whole named setup.

    extractor, matcher = load_feature_setup("xfeat")
    f0, f1 = extractor.extract(image0), extractor.extract(image1)   # (H, W, 3) uint8 RGB
    matches = matcher.match(f0, f1)                                  # Matches.indices (M, 2)

Keypoints are in COLMAP pixel convention (pixel centres at +0.5). Models are loaded once per
process and (name, conf, device): repeated ``get_*`` calls return the same object.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from ..errors import ConfigError
from .aliked import AlikedExtractor
from .base import Extractor, Features, Matcher, Matches, resolve_device
from .matchers import LightGlueAliked, LighterGlueXFeat, MutualNearestNeighbor
from .sift import SiftExtractor
from .xfeat import XFeatExtractor

EXTRACTORS: dict[str, type[Extractor]] = {
    "xfeat": XFeatExtractor,
    "aliked": AlikedExtractor,
    "sift": SiftExtractor,
}

MATCHERS: dict[str, type[Matcher]] = {
    "mnn": MutualNearestNeighbor,
    "lightglue": LightGlueAliked,
    "lighterglue": LighterGlueXFeat,
}

# One CLI flag picks a whole setup. Extractor and matcher confs are fixed here so that files named
# after a setup never mix features of different settings.
FEATURE_SETUPS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "xfeat": {
        "extractor": ("xfeat", {"max_keypoints": 2048}),
        "matcher": ("mnn", {"min_similarity": 0.82}),
    },
    "xfeat-lighterglue": {
        "extractor": ("xfeat", {"max_keypoints": 2048}),
        "matcher": ("lighterglue", {"filter_threshold": 0.1}),
    },
    "aliked": {
        "extractor": ("aliked", {"model_name": "aliked-n16", "max_keypoints": 2048}),
        "matcher": ("lightglue", {"filter_threshold": 0.1}),
    },
    "sift": {
        "extractor": ("sift", {"max_keypoints": 4096}),
        "matcher": ("mnn", {"ratio_threshold": 0.8}),
    },
}


def _conf_key(conf: dict[str, Any] | None) -> str:
    """A hashable, order-independent cache key of a conf (JSON with sorted keys)."""
    try:
        return json.dumps(conf or {}, sort_keys=True)
    except TypeError as exc:
        raise ConfigError(f"feature conf values must be plain numbers / strings / booleans / None: {exc}") from exc


def _unknown(kind: str, name: str, valid: dict) -> ConfigError:
    return ConfigError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}")


@functools.lru_cache(maxsize=None)
def _cached_extractor(name: str, conf_key: str, device: str) -> Extractor:
    return EXTRACTORS[name](json.loads(conf_key), device)


@functools.lru_cache(maxsize=None)
def _cached_matcher(name: str, conf_key: str, device: str) -> Matcher:
    return MATCHERS[name](json.loads(conf_key), device)


def get_extractor(name: str, conf: dict[str, Any] | None = None, device: str = "auto") -> Extractor:
    """The extractor ``name`` (a key of EXTRACTORS) with ``conf`` over its default_conf, loaded once per process."""
    if name not in EXTRACTORS:
        raise _unknown("extractor", name, EXTRACTORS)
    return _cached_extractor(name, _conf_key(conf), resolve_device(device))


def get_matcher(name: str, conf: dict[str, Any] | None = None, device: str = "auto") -> Matcher:
    """The matcher ``name`` (a key of MATCHERS) with ``conf`` over its default_conf, loaded once per process."""
    if name not in MATCHERS:
        raise _unknown("matcher", name, MATCHERS)
    return _cached_matcher(name, _conf_key(conf), resolve_device(device))


def setup_extractor(setup_name: str) -> tuple[str, dict[str, Any]]:
    """(extractor name, extractor conf) of the named setup in FEATURE_SETUPS."""
    if setup_name not in FEATURE_SETUPS:
        raise _unknown("feature setup", setup_name, FEATURE_SETUPS)
    return FEATURE_SETUPS[setup_name]["extractor"]


def extractor_name(setup_name: str) -> str:
    """The extractor whose descriptors a setup uses ('xfeat-lighterglue' -> 'xfeat'): the quantizers,
    global models and learned weights are trained per extractor and named after it."""
    return setup_extractor(setup_name)[0]


def load_feature_setup(setup_name: str, device: str = "auto") -> tuple[Extractor, Matcher]:
    """(extractor, matcher) of the named setup in FEATURE_SETUPS."""
    extractor, extractor_conf = setup_extractor(setup_name)
    matcher, matcher_conf = FEATURE_SETUPS[setup_name]["matcher"]
    return get_extractor(extractor, extractor_conf, device), get_matcher(matcher, matcher_conf, device)


__all__ = [
    "EXTRACTORS",
    "FEATURE_SETUPS",
    "MATCHERS",
    "AlikedExtractor",
    "Extractor",
    "Features",
    "LightGlueAliked",
    "LighterGlueXFeat",
    "Matcher",
    "Matches",
    "MutualNearestNeighbor",
    "SiftExtractor",
    "XFeatExtractor",
    "extractor_name",
    "get_extractor",
    "get_matcher",
    "load_feature_setup",
    "setup_extractor",
]
