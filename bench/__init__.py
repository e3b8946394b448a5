"""segbench's harness.

Importing it registers the ``${pid:}`` config resolver: run and sweep directories carry the
launching process's id, so two workers started in the same second never share one. Hydra copies
resolved values into each job's config, so a job in a launcher's worker sees the launcher's id.
It also registers ``${safe_name:...}`` (bench/paths.py) for folder names built from model names.
"""
import os

from omegaconf import OmegaConf

from bench.paths import safe_name

OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True, replace=True)
# ``${safe_name:${model.name}}``: run folders named after a model whose name is not a file name.
OmegaConf.register_new_resolver("safe_name", safe_name, replace=True)
