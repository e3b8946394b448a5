"""One grid point, read from the Hydra config: typed fields and the key that names it."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from bench.backends import BACKENDS
from bench.updates import Precision

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
MODES = ("profile", "accuracy", "eval")


class ConfigError(ValueError):
    """A configuration value that cannot name a job; the message says what is accepted."""


def parse_resolution(value: Any) -> tuple[int, int]:
    """``"360x480"`` (height x width), ``"256"`` or 256 (square), or (height, width) -> (height, width)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        value = f"{value[0]}x{value[1]}"
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text)
    if not match:
        raise ConfigError(f"resolution must look like HEIGHTxWIDTH, e.g. resolution=360x480; got {value!r}")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    if height < 1 or width < 1:
        raise ConfigError(f"resolution must be positive, got {value!r}")
    return height, width


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

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "JobSpec":
        if cfg.mode not in MODES:
            raise ConfigError(f"unknown mode {cfg.mode!r}; choose one of {', '.join(MODES)}")
        if cfg.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {cfg.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if int(cfg.batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {cfg.batch_size}")
        if cfg.mode == "eval" and not cfg.checkpoint:
            raise ConfigError("mode=eval needs checkpoint=PATH (a checkpoint.pt written by mode=accuracy)")
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
            threads=None if cfg.threads is None else int(cfg.threads),
        )

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]

    def training_precision(self, device: torch.device) -> Precision:
        """How this job trains on ``device``: the precision axis applies to training too."""
        return Precision(device.type, self.autocast_dtype)


#: Train keys that decide only how often a resumable state is saved, not what is trained.
RESUME_KEYS = ("checkpoint_every_steps", "checkpoint_every_seconds")


def _train_identity(train_cfg: DictConfig) -> dict[str, Any]:
    return {k: v for k, v in _plain(train_cfg).items() if k not in RESUME_KEYS}


def _backend(cfg: DictConfig) -> str:
    """``backend``, with the old ``compile=true`` read as ``backend=compile`` (the same job key)."""
    backend = cfg.get("backend", "eager")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if cfg.get("compile"):
        if backend not in ("eager", "compile"):
            raise ConfigError(f"compile=true is the old spelling of backend=compile and cannot be "
                              f"combined with backend={backend}; drop compile=true")
        backend = "compile"
    if backend == "onnxruntime" and (cfg.precision != "fp32" or cfg.channels_last):
        raise ConfigError("backend=onnxruntime runs the exported fp32 graph in ONNX Runtime's own "
                          "layout: use precision=fp32 channels_last=false with it")
    return backend


def _key(cfg: DictConfig, with_seed: bool) -> str:
    spec = JobSpec.from_config(cfg)
    # Keys written before the backend axis stay valid (resume skips their jobs): eager and
    # compile hash as the old ``compile`` flag did; only newer backends add a ``backend`` entry.
    keyed_spec = {k: v for k, v in spec.__dict__.items() if k != "backend"}
    keyed_spec["compile"] = spec.backend == "compile"
    if spec.backend not in ("eager", "compile"):
        keyed_spec["backend"] = spec.backend
    keyed = {
        "spec": keyed_spec,
        "seed": int(cfg.seed) if with_seed else None,
        "dataset": _plain(cfg.dataset),
        "train": _train_identity(cfg.train) if spec.mode == "accuracy" else None,
        "eval_split": cfg.eval_split if spec.mode != "profile" else None,
        "checkpoint": cfg.checkpoint if spec.mode == "eval" else None,
    }
    digest = hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:10]
    backend_flag = {"eager": "", "compile": "_compiled"}.get(spec.backend, f"_{spec.backend}")
    flags = "".join(["_cl" if spec.channels_last else "", backend_flag])
    seed = f"_s{int(cfg.seed)}" if with_seed else ""
    return (f"{spec.model}_{spec.dataset}_{spec.device}_{spec.height}x{spec.width}_b{spec.batch_size}"
            f"_{spec.precision}{flags}_{spec.mode}{seed}_{digest}")


def job_key(cfg: DictConfig) -> str:
    """A readable, stable name for the grid point: the same configuration, the same key.

    Everything that changes a result goes in: the grid axes, the weight-initialisation ``seed``,
    the full data set config, and for training runs the train config (its own ``seed`` included)
    and the scored split. Left out: what only decides how a job runs or how finely a quantity is
    sampled (``force``, ``isolate``, output paths, ``progress``, the timing loop's ``measure``,
    how often the training state is saved).
    """
    return _key(cfg, with_seed=True)


def repeat_key(cfg: DictConfig) -> str:
    """The job key without the weight-initialisation seed: rows that share it are repeats of one
    configuration, which the report folds into a mean with a confidence interval."""
    return _key(cfg, with_seed=False)
