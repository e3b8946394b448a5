"""segbench's harness.

Importing it registers the ``${pid:}`` config resolver: run and sweep directories carry the
launching process's id, so two workers started in the same second never share one. Hydra copies
resolved values into each job's config, so a job in a launcher's worker sees the launcher's id.
"""
import os

from omegaconf import OmegaConf

OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True, replace=True)
