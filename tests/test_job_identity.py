"""What makes two jobs one: the job key (bench/jobspec.py)."""
from __future__ import annotations

import yaml
from hydra import compose, initialize_config_dir

from bench.jobspec import INSTRUMENT_DEFAULTS, JobSpec, job_key
from tests.conftest import ROOT


def key(*overrides: str) -> str:
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return job_key(compose("config", ["model=fcn_basic", "resolution=32x32", *overrides]))


def test_switching_an_instrument_off_is_another_job():
    plain = key()
    for switch in INSTRUMENT_DEFAULTS:
        assert key(f"measure.{switch}=false") != plain, switch
    # How finely a quantity is sampled stays out of the key.
    assert key("measure.min_run_time=3", "measure.rel_ci=0.05", "measure.require_idle=true") == plain


def test_keys_at_the_default_instruments_are_those_written_before_instruments_were_keyed():
    # Computed by the previous key function (commit 9156c75) for this config: resume keeps its rows.
    assert key() == "fcn_basic_synthetic_cpu_32x32_b1_fp32_profile_s0_2767272714"


def test_an_alias_is_the_same_job_under_the_canonical_name():
    assert key("model=tiramisu") == key("model=fcdensenet103")
    assert key("model=tiramisu").startswith("fcdensenet103_")
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):   # the row keeps the name given
        assert JobSpec.from_config(compose("config", ["model=tiramisu"])).model == "tiramisu"


def test_a_plugin_alias_keys_the_same_before_and_after_the_plugin_is_imported():
    # tests/plugin_models.py registers tiny_segmenter with the alias "smp/unet".
    plugin = ("plugins=[tests.plugin_models]",)
    assert key(*plugin, "model.name=smp/unet") == key(*plugin, "model.name=tiny_segmenter")


def test_instrument_defaults_are_the_configs():
    measure = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())["measure"]
    assert {name: measure[name] for name in INSTRUMENT_DEFAULTS} == INSTRUMENT_DEFAULTS
