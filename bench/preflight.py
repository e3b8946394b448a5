"""Every job of a sweep checked before any of them runs, all problems in one message.

``python -m bench -m model=fcn_basic resolution=32x32,abc`` must not spend the first job's
training before refusing ``abc``, and a bad image in the test split must not wait for the
jobs that read it. So the launching process composes each job's config, as the sweeper will,
checks its values (bench/jobspec.py) and every file of every split the jobs will read
(bench/data/check.py, cached by file size and time), and stops the sweep with every problem
named before the first job starts.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from bench.grid import parse_resolution
from bench.jobspec import DEPLOYMENT_AXES, backend_refusal, config_problems

log = logging.getLogger(__name__)


class SweepInvalidError(ValueError):
    """Jobs of a sweep that would fail on their values or their data; the message lists them."""


def sweep_overrides(config: DictConfig) -> list[list[str]] | None:
    """Each job's overrides, as the basic sweeper (and the launchers it feeds) will launch them;
    None for a sweeper with a syntax of its own. Command-line values win over a named grid's."""
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    try:
        parsed = OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task])
        [jobs] = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    except Exception:  # noqa: BLE001  (another sweeper's syntax: its jobs are checked one by one)
        return None
    return jobs


def splits_read(job: DictConfig) -> set[str]:
    """The data splits a job reads: a training job's (bench/evaluate.py), or the scored split."""
    if job.mode == "accuracy":
        from bench.evaluate import training_splits  # imports torch: only for jobs that train
        return training_splits(job.train, job.eval_split)
    return {job.eval_split} if job.mode == "eval" else set()


def _varying(jobs: list[list[str]]) -> set[str]:
    """The override keys whose value differs between jobs: what tells one job from another."""
    values: dict[str, set[str]] = {}
    for overrides in jobs:
        for override in overrides:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return {key for key, seen in values.items() if len(seen) > 1}


def sweep_problems(config: DictConfig, jobs: list[list[str]]) -> tuple[list[str], list[str]]:
    """Every invalid value of every job, then every bad data file the valid jobs would read; and,
    apart, the jobs left out because their backend does not offer their precision or layout
    (only where the sweep crosses those axes: ``backend=eager,onnxruntime precision=fp32,int8``
    means the combinations that exist, while ``backend=eager precision=int8`` alone is a mistake)."""
    from bench.data.check import check_split_files  # imports torch: only once there is a sweep

    loader = GlobalHydra.instance().config_loader()
    varying = _varying(jobs)
    crosses_deployments = bool(varying & set(DEPLOYMENT_AXES))
    problems: list[str] = []
    unoffered: list[str] = []
    reads: dict[str, tuple[DictConfig, tuple[int, int], Path, set[str]]] = {}
    for number, overrides in enumerate(jobs):
        job = loader.load_sweep_config(config, list(overrides))
        label = " ".join(o for o in overrides if o.partition("=")[0] in varying) or "the only job"
        found = config_problems(job)
        refusal = backend_refusal(job) if crosses_deployments else None
        if refusal is not None and found == [refusal]:
            unoffered.append(f"job {number} ({label}): {refusal}")
            continue
        problems += [f"job {number} ({label}): {problem}" for problem in found]
        if found or not splits_read(job):
            continue
        # Keyed on the data set alone: the files are the same at every resolution (they are
        # resized when read), so a sweep over resolutions checks them, and names a bad one, once.
        data_key = json.dumps(OmegaConf.to_container(job.dataset, resolve=True), sort_keys=True)
        _, _, _, splits = reads.setdefault(data_key, (job.dataset, parse_resolution(job.resolution),
                                                      Path(job.results_dir) / "cache", set()))
        splits |= splits_read(job)
    for dataset, resolution, cache_dir, splits in reads.values():
        try:
            check_split_files(dataset, splits, resolution, cache_dir)
        except (OSError, ValueError) as exc:  # missing, undecodable or mislabelled files
            problems.append(str(exc))
    return problems, unoffered


def check_sweep(config: DictConfig, jobs: list[list[str]] | None) -> None:
    """Raise SweepInvalidError naming every problem of ``jobs`` (``sweep_overrides``); name the
    combinations the backends do not offer, which the sweep leaves out (status ``unoffered``)."""
    problems, unoffered = sweep_problems(config, jobs) if jobs else ([], [])
    if problems:
        raise SweepInvalidError(f"{len(problems)} problem(s) found before any job ran; fix them and run "
                                "again:\n" + "\n".join(f"  - {problem}" for problem in problems))
    if unoffered:
        log.warning(f"{len(unoffered)} combination(s) left out, as their backend does not offer them:\n"
                    + "\n".join(f"  - {line}" for line in unoffered))
