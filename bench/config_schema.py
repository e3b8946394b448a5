"""The job config's schema: every key of conf/config.yaml with its type, default, help and range.

Hydra's structured configs: the dataclasses below are stored in the ConfigStore as
``segbench_schema``, which conf/config.yaml extends, so Hydra checks each value's type when it
composes a job (``batch_size=abc`` is refused there; importing this module stores them) and refuses keys the schema lacks. Ranges
(``Bound``) are checked with every other problem at once, before any work, by
``bench/jobspec.py`` ``config_problems``. ``python -m bench --help`` lists every key from here.

The config groups (``model``, ``dataset``, ``device``, ``train``) are open here: their keys
differ per member (a model's own options, a recipe's schedule); their ranges are checked by
``bench/jobspec.py``. Nothing here imports torch: the latency loop's defaults come from here too.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

SCHEMA_NAME = "segbench_schema"


@dataclass(frozen=True)
class Bound:
    """The accepted range of one numeric config value (``key``: its dotted path)."""
    key: str
    low: float
    high: float = math.inf
    integer: bool = False
    nullable: bool = False
    low_inclusive: bool = True


def setting(default: Any, help: str, *, low: float | None = None, high: float = math.inf,
            low_inclusive: bool = True) -> Any:
    """A schema field: its default, one line of help and, for a number, its range."""
    metadata = {"help": help}
    if low is not None:
        metadata["range"] = (low, high, low_inclusive)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class MeasureConfig:
    """The latency loop (bench/measure/latency.py) and the instruments around it."""
    warmup_iters: int = setting(3, "untimed calls before the timed ones", low=0)
    min_run_time: float = setting(1.0, "seconds of timed calls, at least", low=0)
    min_iters: int = setting(10, "timed calls, at least (the median's 95% interval needs 6)", low=1)
    max_iters: int = setting(10000, "timed calls, at most (a spread needs 2)", low=2)
    rel_ci: float = setting(0.03, "stop once the median's 95% interval is within this fraction of it",
                            low=0, high=1, low_inclusive=False)
    max_run_time: float = setting(20.0, "... or after this many seconds, flagged as short of rel_ci", low=0,
                                  low_inclusive=False)
    require_idle: bool = setting(False, "wait up to idle_max_wait s for other processes to leave the CPUs "
                                        "before timing (then time anyway, flagged)")
    idle_max_wait: float = setting(60.0, "seconds require_idle waits at most", low=0)
    energy: bool = setting(True, "energy per image from RAPL (CPU) or NVML (CUDA) where readable; "
                                 "else the row says why not")
    energy_min_seconds: float = setting(10.0, "the energy window, at least (counters update at a finite rate)",
                                        low=0)
    energy_idle_seconds: float = setting(2.0, "idle power measured just before it, reported and subtracted",
                                         low=0, low_inclusive=False)
    throughput_min_gain: float = setting(0.05, "scenario=throughput: stop doubling the batch when images/s "
                                               "gains less than this", low=0)
    throughput_max_batch: int = setting(64, "scenario=throughput: the largest batch tried", low=1)
    train_step: bool = setting(True, "also time one training step (the recipe's optimizer) and its memory")
    peak_flops: bool = setting(True, "achieved FLOP/s against the machine's matmul peak (timed once per "
                                     "environment)")
    instruments: list[str] = setting([], "plug-in instruments to run too, by registered name "
                                         "(bench/instruments/; a plugins module registers them)")


@dataclass
class ParityConfig:
    """Non-eager backends: logits compared with eager's on the same input."""
    min_argmax_agreement: float = setting(0.999, "below it the row is status=mismatch and is not timed",
                                          low=0, high=1)
    min_accuracy_ratio: float = setting(0.99, "a deployment other than fp32 eager must keep this share of fp32 "
                                              "eager's mIoU on validation images (MLPerf's 99%), else mismatch",
                                        low=0, high=1)
    accuracy_images: int = setting(16, "validation images the accuracy gate scores both ways (0: no gate)", low=0)


@dataclass
class QuantizationConfig:
    """precision=int8: the backend quantizes the fp32 model, calibrated on training images."""
    calibration_images: int = setting(32, "training images (first of the split, job's resolution) whose "
                                          "activations set the int8 ranges", low=1)


@dataclass
class LeaseConfig:
    """Workers sharing a grid and results_dir claim each job first (results_dir/leases/)."""
    stale_after_seconds: float = setting(600, "a claim not refreshed for this long is taken over",
                                         low=0, low_inclusive=False)
    heartbeat_seconds: float = setting(30, "how often a running job refreshes its claim", low=0,
                                       low_inclusive=False)


@dataclass
class SegbenchConfig:
    """One job: one grid point (conf/config.yaml; the groups' members are in conf/<group>/)."""
    model: Any = setting(None, "config group conf/model/: the architecture and its options")
    dataset: Any = setting(None, "config group conf/dataset/: the data set and where it is")
    device: Any = setting(None, "config group conf/device/: cpu | cuda | mps")
    train: Any = setting(None, "config group conf/train/: the training recipe (mode=accuracy)")
    mode: str = setting("profile", "profile | accuracy (train, evaluate, then profile) | eval (score "
                                   "checkpoint, then profile)")
    scenario: str = setting("latency", "latency (MLPerf single stream) | throughput (the batch with the "
                                       "most images/s, offline)")
    resolution: str = setting("128x128", "HEIGHTxWIDTH of the input")
    batch_size: int = setting(1, "images per forward pass", low=1)
    precision: str = setting("fp32", "fp32 | fp16 | bf16 (autocast) | int8 (a quantized deployment: "
                                     "backend=onnxruntime or openvino)")
    channels_last: bool = setting(False, "the channels_last memory layout")
    backend: str = setting("eager", "eager | compile | onnxruntime | openvino | a plugin's (bench/backends.py)")
    compile: bool = setting(False, "the old spelling of backend=compile")
    parity: ParityConfig = field(default_factory=ParityConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    threads: Optional[int] = setting(None, "torch CPU threads; null: every CPU the process may use", low=1)
    seed: int = setting(0, "weight initialisation", low=0)
    eval_split: str = setting("val", "the split mode=accuracy and mode=eval score")
    checkpoint: Optional[str] = setting(None, "a checkpoint.pt for mode=eval")
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    results_dir: str = setting("results", "where rows, reports and caches go (env SEGBENCH_RESULTS)")
    force: bool = setting(False, "re-run jobs that already have an ok row (earlier rows are kept)")
    isolate: bool = setting(False, "run each job in a fresh subprocess")
    job_timeout: Optional[float] = setting(None, "seconds; a job past it is killed and recorded as timeout",
                                           low=0, low_inclusive=False)
    oom_policy: str = setting("fail", "fail | halve (retry with half the batch)")
    lease: LeaseConfig = field(default_factory=LeaseConfig)
    plugins: list[str] = setting([], "Python modules to import first (your models, backends, instruments)")
    progress: bool = setting(True, "progress bars on the console")


def register() -> None:
    """Store the schema in Hydra's ConfigStore (conf/config.yaml's defaults name it), and the
    ``${schema_help:}`` resolver that conf/config.yaml's help template (``--help``) reads."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=SegbenchConfig)
    OmegaConf.register_new_resolver("schema_help", help_page, replace=True)


def _instrument_lines() -> str:
    from bench.instruments import instruments   # torch: only when the help is asked for

    return "\n".join(f"  {i.name} ({i.phase}{', optional' if i.optional else ''}): {i.help}" for i in instruments())


def help_page() -> str:
    """``python -m bench --help``: the usage, Hydra's config groups, then every key."""
    return ("segbench: measure semantic-segmentation models, one job per grid point.\n\n"
            "  python -m bench model=unet resolution=128x128\n"
            "  python -m bench -m model=fcn8s,segnet resolution=256x256,512x512\n"
            "  python -m bench sweep=default        # a named grid (conf/sweep/)\n\n"
            "== Config groups (pick one member: group=member) ==\n$APP_CONFIG_GROUPS\n\n"
            "== Every key: name (type = default) [range]: what it does ==\n" + help_text() + "\n\n"
            "== Instruments, in the order they run (bench/instruments/) ==\n" + _instrument_lines() + "\n\n"
            "Override any of them as key=value (a group's own keys as model.depth=4); "
            "python -m bench --cfg job prints the composed config. Hydra's own flags: --hydra-help.\n")


def _settings(schema: type, prefix: str = "") -> list[tuple[str, dataclasses.Field, Any]]:
    """(dotted key, field, type) of every leaf of ``schema``, nested schemas followed."""
    hints = typing.get_type_hints(schema)
    leaves = []
    for f in dataclasses.fields(schema):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            leaves += _settings(kind, f"{prefix}{f.name}.")
        else:
            leaves.append((prefix + f.name, f, kind))
    return leaves


def bounds() -> list[Bound]:
    """The ranges the schema declares, for ``config_problems``."""
    found = []
    for key, f, kind in _settings(SegbenchConfig):
        if "range" in f.metadata:
            low, high, inclusive = f.metadata["range"]
            args = typing.get_args(kind)
            found.append(Bound(key, low, high, integer=int in (args or (kind,)), nullable=type(None) in args,
                               low_inclusive=inclusive))
    return found


def _type_name(kind: Any) -> str:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is list:
        return f"list of {args[0].__name__}"
    if args:
        return f"{_type_name(args[0])} or null"
    return "group" if kind is Any else kind.__name__


def _default(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:
        return str(f.default_factory())
    return "null" if f.default is None else str(f.default).lower() if isinstance(f.default, bool) else str(f.default)


def help_text() -> str:
    """Every key: its type, default and help, with its range where it has one."""
    lines = []
    for key, f, kind in _settings(SegbenchConfig):
        default = "" if kind is Any else f" = {_default(f)}"
        span = ""
        if "range" in f.metadata:
            low, high, inclusive = f.metadata["range"]
            span = f" [{'>=' if inclusive else '>'} {low:g}{'' if high == math.inf else f', <= {high:g}'}]"
        lines.append(f"  {key} ({_type_name(kind)}{default}){span}: {f.metadata['help']}")
    return "\n".join(lines)


register()   # on import, as the model, backend and instrument registries: whoever composes a job imports this
