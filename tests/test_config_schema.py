"""One typed config schema (bench/config_schema.py): every key's type, default, range and help
written once, in Hydra's ConfigStore; Hydra refuses a value of the wrong type or a key the schema
lacks; the ranges feed the config check; ``--help`` lists every key."""
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from bench.config_schema import MeasureConfig, help_page, help_text
from bench.jobspec import BOUNDS, config_problems
from bench.measure.latency import TimingConfig
from bench.profile import WindowOptions
from tests.conftest import ROOT


def _compose(*overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("config", list(overrides))


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict) and key not in ("model", "dataset", "device", "train"):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def test_help_lists_every_key_of_the_composed_config_with_type_default_and_help():
    cfg = OmegaConf.to_container(_compose(), resolve=True)
    text = help_text()
    for key in _leaves(cfg):
        line = next((line for line in text.splitlines() if line.startswith(f"  {key} (")), None)
        assert line is not None, key
        assert line.split(": ", 1)[1].strip(), line   # help text after the type and default
    assert "  measure.rel_ci (float = 0.03) [> 0, <= 1]: " in text
    assert "  threads (int or null = null) [>= 1]: " in text
    page = help_page()
    assert "$APP_CONFIG_GROUPS" in page   # Hydra fills in the groups' members
    assert "  train_step (timed, optional): one training step" in page   # the instruments, in order


def test_hydra_refuses_a_wrongly_typed_value_and_an_unknown_key():
    with pytest.raises(ConfigCompositionException, match="batch_size=abc"):
        _compose("batch_size=abc")
    with pytest.raises(ConfigCompositionException, match="measure.min_itres"):
        _compose("measure.min_itres=3")
    assert _compose("measure.min_iters=5").measure.min_iters == 5


def test_the_schemas_ranges_are_checked_with_the_rest_at_once():
    keys = {bound.key for bound in BOUNDS}
    assert {"batch_size", "threads", "measure.rel_ci", "lease.heartbeat_seconds", "train.lr"} <= keys
    problems = config_problems(_compose("batch_size=0", "measure.rel_ci=0", "threads=0"))
    assert "batch_size must be at least 1, got 0" in problems
    assert "measure.rel_ci must be above 0 and at most 1, got 0.0" in problems
    assert "threads must be at least 1 or null, got 0" in problems or "threads must be at least 1, got 0" in problems


def test_the_loops_defaults_are_the_schemas():
    schema, timing, windows = MeasureConfig(), TimingConfig(), WindowOptions()
    assert (timing.warmup_iters, timing.min_iters, timing.rel_ci, timing.max_run_time) == \
        (schema.warmup_iters, schema.min_iters, schema.rel_ci, schema.max_run_time)
    assert (windows.energy, windows.energy_min_seconds) == (schema.energy, schema.energy_min_seconds)
