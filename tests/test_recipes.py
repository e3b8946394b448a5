"""The papers' training recipes (conf/train/*.yaml): each composes over default.yaml, sets only
train keys that default.yaml defines, and names a source for every value it sets."""
from __future__ import annotations

import re

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import ROOT

TRAIN_DIR = ROOT / "conf" / "train"
RECIPES = ["tiramisu", "segnet", "fcn", "dilation", "unet", "adversarial"]
# Keys a recipe may set beyond default.yaml's: the adversarial protocol's own block.
EXTRA_KEYS = {"adversarial": {"adversarial"}}
# A line that sets a value: "key: value", possibly indented, the value not itself a comment.
SETS_VALUE = re.compile(r"^\s*[A-Za-z_]\w*:\s*[^\s#]")


def default_keys() -> set[str]:
    return set(yaml.safe_load((TRAIN_DIR / "default.yaml").read_text()))


def recipe(name: str) -> dict:
    return yaml.safe_load((TRAIN_DIR / f"{name}.yaml").read_text())


def composed_train(name: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return compose("config", [f"train={name}"]).train


def test_every_recipe_file_is_listed():
    assert sorted(p.stem for p in TRAIN_DIR.glob("*.yaml")) == sorted(RECIPES + ["default"])


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_composes_over_default_with_its_own_values(name):
    train = composed_train(name)
    own = {key: value for key, value in recipe(name).items() if key != "defaults"}
    assert set(train) == default_keys() | set(own)          # everything default.yaml has, nothing unknown
    for key, value in own.items():
        composed = OmegaConf.to_container(train[key]) if OmegaConf.is_config(train[key]) else train[key]
        assert composed == value, key                          # the recipe wins over default.yaml


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_sets_only_known_train_keys(name):
    own = recipe(name)
    assert own.pop("defaults") == ["default", "_self_"]       # default.yaml first, the recipe over it
    known = default_keys() | EXTRA_KEYS.get(name, set())
    assert set(own) <= known, set(own) - known
    finetune = own.get("finetune") or {}
    assert set(finetune) <= default_keys() - {"finetune"}, set(finetune) - default_keys()


@pytest.mark.parametrize("name", RECIPES)
def test_every_value_has_a_source_comment(name):
    lines = (TRAIN_DIR / f"{name}.yaml").read_text().splitlines()
    setting = [line for line in lines if SETS_VALUE.match(line) and not line.startswith("defaults:")]
    assert setting, "the recipe sets nothing"
    uncommented = [line for line in setting if "#" not in line]
    assert not uncommented, f"{name}.yaml: values without a source comment: {uncommented}"


def test_source_comment_check_catches_a_bare_value():
    """The pattern the comment test relies on: a value line is recognised, a comment line is not."""
    assert SETS_VALUE.match("lr: 0.001") and SETS_VALUE.match("  crop: null")
    assert not SETS_VALUE.match("# lr: 0.001") and not SETS_VALUE.match("finetune:   # stage two")
