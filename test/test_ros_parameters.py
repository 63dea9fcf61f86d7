"""config/localizer.yaml mirrors the parameter declarations one to one."""

import yaml

from scenesqueezer_ros.parameters import PARAMETER_SPECS, LocalizerParameters, defaults
from scenesqueezer_ros.testing import REPO_ROOT


def test_yaml_defaults_mirror_declarations():
    config = yaml.safe_load((REPO_ROOT / "config" / "localizer.yaml").read_text())
    values = config["/**"]["ros__parameters"]
    assert values == defaults()
    for name, value in values.items():
        assert type(value) is type(defaults()[name]), name
    assert set(values) == set(LocalizerParameters.__dataclass_fields__)


def test_every_parameter_is_described():
    for spec in PARAMETER_SPECS:
        assert len(spec.description) > 20, spec.name
        if spec.choices:
            assert spec.default in spec.choices
