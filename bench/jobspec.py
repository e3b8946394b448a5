"""One grid point, read from the Hydra config: typed fields and the key that names it."""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from bench.backends import UnknownBackendError, get_backend
from bench.config_schema import Bound, bounds
from bench.grid import SPLITS, ConfigError, UnofferedError, parse_resolution
from bench.paths import safe_name
from bench.scenarios import SCENARIOS
from bench.schedule import SCHEDULES
from bench.updates import OPTIMIZERS, Precision

#: The precision axis: its autocast dtype (None: none). int8 is a quantized deployment (a backend
#: that offers it quantizes the fp32 model after training; training runs in fp32).
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": None}
MODES = ("profile", "accuracy", "eval")
OOM_POLICIES = ("fail", "halve")


def default_threads() -> int:
    """``threads=null``: every CPU this process may run on. Made explicit (in the key and the row)
    because torch's own default differs between launchers: joblib's workers start with one."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: Every number a job reads, with the range that makes sense (checked before any work): the
#: schema's (bench/config_schema.py), and the training recipes', whose group has no schema yet.
BOUNDS = (
    *bounds(),
    Bound("train.lr", 0),
    Bound("train.momentum", 0),
    Bound("train.weight_decay", 0),
    Bound("train.bias_lr_factor", 0),
    Bound("train.batch_size", 1, integer=True),
    Bound("train.num_workers", 0, integer=True),
    Bound("train.seed", 0, integer=True),
    Bound("train.max_steps", 0, integer=True, nullable=True, low_inclusive=False),
    Bound("train.max_epochs", 0, nullable=True, low_inclusive=False),
    Bound("train.max_seconds", 0, nullable=True, low_inclusive=False),
    Bound("train.eval_every_steps", 1, integer=True, nullable=True),
    Bound("train.eval_every_seconds", 0, nullable=True, low_inclusive=False),
    Bound("train.target_miou", 0, 1, nullable=True),
    # U-Net's blocks, each null (off) or exactly these keys (checked only when the block is set).
    Bound("train.elastic.grid", 2, integer=True),
    Bound("train.elastic.sigma_px", 0),
    Bound("train.border_weight.w0", 0),
    Bound("train.border_weight.sigma_px", 0, low_inclusive=False),
)

#: Train keys that are null (off) or a mapping of settings, whose keys are the Bounds under them.
TRAIN_BLOCKS = ("train.elastic", "train.border_weight")

#: Pairs of values where the first must not exceed the second: (smaller, larger, why).
ORDERED = (
    ("measure.min_iters", "measure.max_iters", "the latency loop stops at max_iters"),
    ("measure.min_run_time", "measure.max_run_time", "the latency loop stops at max_run_time"),
    ("lease.heartbeat_seconds", "lease.stale_after_seconds",
     "a claim refreshed less often than it goes stale is taken over while its job runs"),
)


def _order_problems(cfg: DictConfig) -> list[str]:
    """Values that are each in range but contradict each other (checked after the bounds)."""
    problems = []
    for low_key, high_key, why in ORDERED:
        low, high = (OmegaConf.select(cfg, key, default=None) for key in (low_key, high_key))
        try:
            contradict = float(low) > float(high)
        except (TypeError, ValueError):
            continue  # unset or not a number: the bounds already said so
        if contradict:
            problems.append(f"{low_key}={low!r} exceeds {high_key}={high!r}; {why}: lower the first or raise the second")
    return problems


def _block_problems(cfg: DictConfig) -> list[str]:
    """A TRAIN_BLOCKS entry that is set must be a mapping of its own keys only (its Bounds check
    that each is there and in range): an unknown key is probably a misspelling."""
    problems = []
    for block in TRAIN_BLOCKS:
        value = OmegaConf.select(cfg, block, default=None)
        if value is None:
            continue
        keys = [bound.key.rsplit(".", 1)[1] for bound in BOUNDS if bound.key.startswith(block + ".")]
        shape = f"null or {{{', '.join(f'{key}: ...' for key in keys)}}}"
        if not isinstance(value, DictConfig):
            problems.append(f"{block} must be {shape}, got {value!r}")
        elif set(value) - set(keys):
            problems.append(f"{block} must be {shape}; unknown key {', '.join(sorted(set(value) - set(keys)))}")
    return problems


def _applies(cfg: DictConfig, bound: Bound) -> bool:
    """A bound inside a TRAIN_BLOCKS entry applies only when that block is a mapping: null turns
    the block off, and anything else is _block_problems' to report."""
    block = bound.key.rsplit(".", 1)[0]
    return block not in TRAIN_BLOCKS or isinstance(OmegaConf.select(cfg, block, default=None), DictConfig)


def _bound_problem(cfg: DictConfig, bound: Bound) -> str | None:
    value = OmegaConf.select(cfg, bound.key, default=None)
    if value is None:
        return None if bound.nullable else f"{bound.key} must be set"
    kind = "a whole number" if bound.integer else "a number"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or (bound.integer and not number.is_integer()):
        return f"{bound.key} must be {kind}{' or null' if bound.nullable else ''}, got {value!r}"
    too_low = number < bound.low if bound.low_inclusive else number <= bound.low
    if too_low or number > bound.high:
        low = f"at least {bound.low:g}" if bound.low_inclusive else f"above {bound.low:g}"
        high = "" if bound.high == math.inf else f" and at most {bound.high:g}"
        return f"{bound.key} must be {low}{high}, got {value!r}"
    return None


#: Config values that name one of a fixed set of choices: (key, choices, modes that read it).
CHOICES = (
    ("mode", MODES, MODES),
    ("scenario", SCENARIOS, MODES),
    ("precision", tuple(PRECISIONS), MODES),
    ("oom_policy", OOM_POLICIES, MODES),
    ("eval_split", SPLITS, ("accuracy", "eval")),
    ("train.curve_split", SPLITS, ("accuracy",)),
    ("train.optimizer", OPTIMIZERS, MODES),
    ("train.schedule", SCHEDULES, MODES),
)


def config_problems(cfg: DictConfig) -> list[str]:
    """Every invalid value of a job's config, each with what is accepted (empty: all valid).

    Checked before any work, so a bad value costs no training time and two bad values are
    reported together rather than one per attempt.
    """
    problems = []
    mode = cfg.get("mode")
    for key, choices, modes in CHOICES:
        value = OmegaConf.select(cfg, key, default=None)
        if (mode in modes or key == "mode") and value not in choices:
            problems.append(f"unknown {key} {value!r}; choose one of {', '.join(choices)}")
    bound_problems = [p for p in (_bound_problem(cfg, b) for b in BOUNDS if _applies(cfg, b)) if p]
    bound_problems += _block_problems(cfg)
    problems += bound_problems or _order_problems(cfg)
    if mode == "eval" and not cfg.get("checkpoint"):
        problems.append("mode=eval needs checkpoint=PATH (a checkpoint.pt written by mode=accuracy)")
    for check in (lambda: parse_resolution(cfg.resolution), lambda: _backend(cfg)):
        try:
            check()
        except ConfigError as exc:
            problems.append(str(exc))
    return problems + _instrument_problems(cfg)


def _instrument_problems(cfg: DictConfig) -> list[str]:
    """``measure.instruments`` names only registered instruments (the ``plugins`` register theirs)."""
    requested = list(OmegaConf.select(cfg, "measure.instruments", default=None) or [])
    if not requested:
        return []
    _import_plugins_quietly(cfg.get("plugins"))
    from bench.instruments import check_requested
    return check_requested(requested)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


@dataclass(frozen=True)
class JobSpec:
    mode: str
    model: str
    model_kwargs: dict[str, Any]
    dataset: str
    device: str
    device_index: int | None
    height: int
    width: int
    batch_size: int
    precision: str
    channels_last: bool
    backend: str
    threads: int | None
    scenario: str = "latency"

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "JobSpec":
        problems = config_problems(cfg)
        if problems:
            raise ConfigError(problems[0] if len(problems) == 1 else
                              f"{len(problems)} invalid values:\n" + "\n".join(f"  - {p}" for p in problems))
        backend = _backend(cfg)
        model = _plain(cfg.model)
        height, width = parse_resolution(cfg.resolution)
        return cls(
            mode=cfg.mode,
            model=model.pop("name"),
            model_kwargs=model,
            dataset=cfg.dataset.name,
            device=cfg.device.name,
            device_index=cfg.device.get("index"),
            height=height,
            width=width,
            batch_size=int(cfg.batch_size),
            precision=cfg.precision,
            channels_last=bool(cfg.channels_last),
            backend=backend,
            threads=default_threads() if cfg.threads is None else int(cfg.threads),
            scenario=cfg.get("scenario", "latency"),
        )

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]

    def training_precision(self, device: torch.device) -> Precision:
        """How this job trains on ``device``: the precision axis applies to training too."""
        return Precision(device.type, self.autocast_dtype)


def _import_plugins_quietly(plugins) -> None:
    """The ``plugins`` modules imported (they may register models, aliases and backends); one that
    fails to import is left for the job, which imports it again and records why it failed."""
    if not plugins:
        return   # importing ``models`` imports every model's module: only when a plugin needs it
    from models import import_plugins
    for module in plugins:
        try:
            import_plugins([module])
        except Exception:  # noqa: BLE001
            pass


def canonical_model(name: str, plugins=()) -> str:
    """``name`` with registry aliases resolved (``tiramisu`` -> ``fcdensenet103``): one network,
    one job. The ``plugins`` modules are imported first (a plugin may register the alias), so the
    key is the same before and after a job imported them; one that fails to import, or a name the
    registry does not know, is left for the job to report."""
    from models import UnknownModelError, resolve_name   # imports every model's module
    _import_plugins_quietly(plugins)
    try:
        return resolve_name(name)
    except UnknownModelError:
        return name


#: The instruments a switch in ``measure`` turns off (conf/config.yaml), at their default: a row
#: measured with one off lacks that instrument's columns, so it is another job. At the defaults
#: nothing is added to the key, so rows written before instruments were keyed keep their jobs.
INSTRUMENT_DEFAULTS = {"train_step": True, "peak_flops": True, "energy": True}


def _instruments_off_default(cfg: DictConfig) -> dict[str, bool]:
    measure = cfg.get("measure") or {}
    chosen = {name: bool(measure.get(name, default)) for name, default in INSTRUMENT_DEFAULTS.items()}
    return {name: on for name, on in chosen.items() if on != INSTRUMENT_DEFAULTS[name]}


#: Train keys that decide only how often a resumable state is saved, not what is trained.
RESUME_KEYS = ("checkpoint_every_steps", "checkpoint_every_seconds")


#: Train keys added after jobs were keyed, at the value that trains as before: left out of the key
#: there, so rows written before them keep their jobs (a resumed sweep does not re-run them).
TRAIN_KEYS_ADDED = {"elastic": None, "border_weight": None}


def _train_identity(train_cfg: DictConfig) -> dict[str, Any]:
    return {k: v for k, v in _plain(train_cfg).items()
            if k not in RESUME_KEYS and not (k in TRAIN_KEYS_ADDED and v == TRAIN_KEYS_ADDED[k])}


def _backend(cfg: DictConfig) -> str:
    """``backend``, with the old ``compile=true`` read as ``backend=compile`` (the same job key);
    a name the registry (bench/backends.py, and the ``plugins`` modules) does not know, or a
    setting the backend cannot run, is a ConfigError."""
    backend = cfg.get("backend", "eager")
    _import_plugins_quietly(cfg.get("plugins"))
    try:
        get_backend(backend)
    except UnknownBackendError as exc:
        raise ConfigError(str(exc)) from None
    if cfg.get("compile"):
        if backend not in ("eager", "compile"):
            raise ConfigError(f"compile=true is the old spelling of backend=compile and cannot be "
                              f"combined with backend={backend}; drop compile=true")
        backend = "compile"
    if cfg.get("scenario") == "throughput" and backend != "eager":
        raise ConfigError(f"scenario=throughput searches the batch size on the eager model; use it with "
                          f"backend=eager, or scenario=latency with backend={backend}")
    problems = get_backend(backend).problems(cfg.precision, bool(cfg.channels_last))
    if problems:
        raise UnofferedError("; ".join(problems))
    return backend


#: The axes whose values one backend may not offer together (Backend.problems).
DEPLOYMENT_AXES = ("backend", "precision", "channels_last")


def backend_refusal(cfg: DictConfig) -> str | None:
    """Why the job's backend does not offer its precision or layout (None: it does, or the
    config fails for another reason, which config_problems reports)."""
    try:
        _backend(cfg)
    except UnofferedError as exc:
        return str(exc)
    except ConfigError:
        return None
    return None


def _key(cfg: DictConfig, with_seed: bool) -> str:
    spec = JobSpec.from_config(cfg)
    # Keys written before the backend axis stay valid (resume skips their jobs): eager and
    # compile hash as the old ``compile`` flag did; only newer backends add a ``backend`` entry.
    # Likewise the latency scenario (every job before scenarios existed) keys as it did.
    model = canonical_model(spec.model, cfg.get("plugins"))
    keyed_spec = {k: v for k, v in spec.__dict__.items() if k not in ("backend", "scenario")}
    keyed_spec["model"] = model
    keyed_spec["compile"] = spec.backend == "compile"
    if spec.backend not in ("eager", "compile"):
        keyed_spec["backend"] = spec.backend
    if spec.scenario != "latency":
        keyed_spec["scenario"] = spec.scenario
    keyed = {
        "spec": keyed_spec,
        "seed": int(cfg.seed) if with_seed else None,
        "dataset": _plain(cfg.dataset),
        "train": _train_identity(cfg.train) if spec.mode == "accuracy" else None,
        "eval_split": cfg.eval_split if spec.mode != "profile" else None,
        "checkpoint": cfg.checkpoint if spec.mode == "eval" else None,
    }
    instruments = _instruments_off_default(cfg)
    if instruments:
        keyed["instruments"] = instruments
    if spec.precision == "int8":   # the calibration set decides the quantized weights' ranges
        keyed["quantization"] = _plain(cfg.get("quantization"))
    requested = sorted(OmegaConf.select(cfg, "measure.instruments", default=None) or [])
    if requested:   # plug-in instruments add columns: another job
        keyed["instruments_requested"] = requested
    digest = hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:10]
    backend_flag = {"eager": "", "compile": "_compiled"}.get(spec.backend, f"_{spec.backend}")
    flags = "".join(["_cl" if spec.channels_last else "", backend_flag,
                     "" if spec.scenario == "latency" else f"_{spec.scenario}"])
    seed = f"_s{int(cfg.seed)}" if with_seed else ""
    names = "_".join(safe_name(name) for name in (model, spec.dataset, spec.device))
    return (f"{names}_{spec.height}x{spec.width}_b{spec.batch_size}"
            f"_{spec.precision}{flags}_{spec.mode}{seed}_{digest}")


def job_key(cfg: DictConfig) -> str:
    """A readable, stable name for the grid point: the same configuration, the same key.

    Everything that changes a result goes in: the grid axes (the model by its canonical name, so
    an alias is the same job), the weight-initialisation ``seed``, the full data set config, for
    training runs the train config (its own ``seed`` included) and the scored split, and the
    instruments switched off in ``measure`` (``INSTRUMENT_DEFAULTS``) or added by
    ``measure.instruments`` (which columns a row holds).
    Left out: what only decides how a job runs or how finely a quantity is sampled (``force``,
    ``isolate``, output paths, ``progress``, the timing loop's other ``measure`` settings, how
    often the training state is saved).
    """
    return _key(cfg, with_seed=True)


def repeat_key(cfg: DictConfig) -> str:
    """The job key without the weight-initialisation seed: rows that share it are repeats of one
    configuration, which the report folds into a mean with a confidence interval."""
    return _key(cfg, with_seed=False)
