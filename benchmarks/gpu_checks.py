"""The checks of the GPU validation kit (``benchmarks/gpu_check.py``): each a function of the
``Setup`` returning a ``Record`` (passed, failed or skipped, with its reason and figures).

Every check goes through the project's own code: jobs through ``bench.runner.run_job`` with
Hydra overrides (their rows land under ``<out>/results``), timing through ``measure_latency``,
memory through ``forward_peak_memory``, training through ``bench.train.train_model``.

On a machine without CUDA the same checks run as a dry run on the CPU, with a tiny model from
``tests/plugin_models.py`` at a tiny size, so the kit's own code runs on every change; a dry run
that works is reported as skipped (``no CUDA device``, with its figures): it validates the kit,
not the GPU. A dry run that breaks is a failure.
"""
from __future__ import annotations

import gc
import importlib
import math
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tqdm import tqdm

import models
from bench.backends import CUDA_PROVIDERS
from bench.jobspec import JobSpec, parse_resolution
from bench.measure.latency import CUDA_TIMER, TimingConfig
from bench.measure.memory import CUDA_COUNTER, forward_peak_memory
from bench.measure.nvml import NvmlUnavailable, ProcessMemory
from bench.measure.size import MIB
from bench.runner import run_job
from bench.schema import ResultRow
from bench.store import ResultStore
from bench.train import train_model
from bench.updates import NonFiniteLossError, Precision
from benchmarks.latency_agreement import agreement

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
NO_CUDA = "no CUDA device"

PRECISIONS = ("fp32", "bf16", "fp16")
CHANNELS_LAST_PRECISION = "fp16"   # the layout is checked at one precision: tensor cores' NHWC fp16
BATCH_SIZES = (1, 4)
#: torchvision's DeepLabV3 cannot train at batch size 1: the BatchNorm after its ASPP image
#: pooling sees one value per channel (README). Their batch-1 jobs profile inference only.
NO_TRAINING_STEP_AT_BATCH_1 = ("deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50", "deeplabv3_resnet101")
#: The train config a model profiles its training step with, where it is not train=default.
MODEL_TRAIN = {"adversarial": "adversarial"}
#: Registered models left out of the model grid: a claim's counterfactual, not a net to deploy
#: (256M parameters; its training step at 360x480, batch 4, needs more memory than the GPU has).
NOT_IN_THE_GRID = ("fcdensenet103_upsample_all",)
LATENCY_TOLERANCE = 0.10   # CUDA events against torch.utils.benchmark.Timer, per model
AGREEMENT_ROUNDS = 3       # the two timers alternate; the median round of each is compared


@dataclass
class Record:
    """One check's outcome: ``reason`` is one line (why skipped or failed, or the headline
    figures); ``details`` are the lines per model or per job."""
    name: str
    status: str
    reason: str
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class Setup:
    """Where and at what size the checks run: ``gpu`` for one CUDA device, ``dry_run`` for the CPU."""
    device: torch.device
    out: Path
    models: tuple[str, ...]       # the model grid and the per-model agreement checks
    resolution: str
    timing: tuple[str, ...]       # measure.* overrides of the profile jobs
    train: tuple[str, str, int]   # fp16 training: model, resolution, steps
    oom_model: tuple[str, ...]    # overrides naming the model of the out-of-memory check
    ort_models: tuple[str, ...]
    agreement_seconds: float      # min_run_time of each timer in the latency check
    plugins: tuple[str, ...] = ()
    nvml: ProcessMemory | None = None
    nvml_problem: str = ""

    @classmethod
    def gpu(cls, out: Path, model_names: tuple[str, ...] = ()) -> "Setup":
        """Every registered model but ``NOT_IN_THE_GRID`` (or ``model_names``) at 360x480 on cuda:0.
        NVML's reader is made here, before this process creates its CUDA context (bench/measure/nvml.py)."""
        device = torch.device("cuda", 0)
        try:
            nvml, problem = ProcessMemory(device), ""
        except NvmlUnavailable as exc:
            nvml, problem = None, str(exc)
        grid_models = tuple(name for name in models.list_models() if name not in NOT_IN_THE_GRID)
        return cls(device=device, out=out, models=model_names or grid_models, resolution="360x480",
                   timing=("measure.warmup_iters=2", "measure.min_run_time=0", "measure.min_iters=5",
                           "measure.max_run_time=2", "measure.energy=false"),
                   train=("fcdensenet56", "96x128", 300), oom_model=("model=fcn_basic",),
                   ort_models=("fcn_basic", "segnet_basic"), agreement_seconds=0.1, nvml=nvml, nvml_problem=problem)

    @classmethod
    def dry_run(cls, out: Path) -> "Setup":
        """The same checks on the CPU with the test suite's tiny models (``tests/plugin_models.py``):
        the fault injector fails a batch above 2 with a real CPU allocation failure."""
        plugins = ("tests.plugin_models",)
        for module in plugins:
            importlib.import_module(module)
        return cls(device=torch.device("cpu"), out=out, models=("tiny_segmenter",), resolution="32x48",
                   timing=("measure.warmup_iters=1", "measure.min_run_time=0", "measure.min_iters=3", "measure.max_run_time=0.2",
                           "measure.peak_flops=false"),
                   train=("tiny_segmenter", "32x48", 60),
                   oom_model=("model=custom", "model.name=fault_injector", "+model.oom_above_batch=2",
                              "+model.real_cpu_oom=true"),
                   ort_models=("tiny_segmenter",), agreement_seconds=0.05, plugins=plugins)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def results(self) -> Path:
        return self.out / "results"


# ---- jobs through the harness ----------------------------------------------------------------

def model_overrides(name: str) -> list[str]:
    """How a job names the model: its own config (conf/model/), else as a plugin's model."""
    chosen = [f"model={name}"] if (CONF / "model" / f"{name}.yaml").exists() else ["model=custom", f"model.name={name}"]
    return chosen + ([f"train={MODEL_TRAIN[name]}"] if name in MODEL_TRAIN else [])


def job_config(setup: Setup, *overrides: str) -> DictConfig:
    """A job's config as ``python -m bench`` composes it, writing into the kit's results; every job
    runs afresh (force) so a re-used output folder is measured again."""
    base = [f"results_dir={setup.results}", f"device={setup.device.type}", "force=true", "progress=false",
            f"resolution={setup.resolution}", f"plugins=[{','.join(setup.plugins)}]", *setup.timing]
    with initialize_config_dir(str(CONF), version_base=None):
        return compose("config", [*base, *overrides])


def run(setup: Setup, *overrides: str) -> ResultRow:
    """One job in this process through ``run_job``; its console lines go to ``<out>/jobs.log``."""
    cfg = job_config(setup, *overrides)
    runs = setup.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    with open(setup.out / "jobs.log", "a") as log, redirect_stdout(log):
        outcome = run_job(cfg, runs / f"{sum(1 for _ in runs.iterdir()):04d}")
    if not outcome.row_file:
        raise RuntimeError(f"job {' '.join(overrides)} wrote no row: [{outcome.status}] {outcome.error}")
    return ResultStore(setup.results).read(Path(outcome.row_file))


def build_model(cfg: DictConfig) -> torch.nn.Module:
    """The job's model, built as ``bench.runner`` builds it (with the model config's options)."""
    spec = JobSpec.from_config(cfg)
    return models.create_model(spec.model, num_classes=int(cfg.dataset.num_classes), **spec.model_kwargs)


def first_line(text: str) -> str:
    """The first line of an error message or traceback, for a one-line reason."""
    return text.strip().splitlines()[0] if text.strip() else ""


def row_problem(setup: Setup, row: ResultRow) -> str:
    """Why a row does not show the device's own code path ('' when it does)."""
    if row.status != "ok":
        return f"[{row.status}] {first_line(row.error)}"
    if setup.cuda and row.backend == "eager" and (row.timer, row.memory_counter) != (CUDA_TIMER, CUDA_COUNTER):
        return f"measured with {row.timer!r} and {row.memory_counter!r}, not CUDA events and the allocator"
    return ""


def verdict(setup: Setup, name: str, problems: list[str], headline: str, details: list[str]) -> Record:
    """Failed with its problems (the first in the reason, the others in the details); else passed on
    CUDA, and skipped on the CPU (a dry run that works says nothing about a GPU)."""
    if problems:
        return Record(name, FAILED, f"{len(problems)} problem(s): {problems[0]}", problems[1:] + details)
    if not setup.cuda:
        return Record(name, SKIPPED, f"{NO_CUDA}; the dry run on the CPU worked: {headline}", details)
    return Record(name, PASSED, headline, details)


# ---- the checks ------------------------------------------------------------------------------

def pytest_record(setup: Setup, name: str, args: list[str]) -> Record:
    """Run pytest in a fresh process; passed, skipped (every test skipped, with the reasons) or
    failed (naming the failed tests). Its output is ``<out>/<name>.log``."""
    xml, log = setup.out / f"{name}.xml", setup.out / f"{name}.log"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *args]
    with open(log, "w") as output:
        code = subprocess.run(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT).returncode
    cases = list(ET.parse(xml).getroot().iter("testcase")) if xml.exists() else []
    broken = [f"{case.get('classname')}::{case.get('name')}" for case in cases
              if case.find("failure") is not None or case.find("error") is not None]
    skips = [case.find("skipped") for case in cases if case.find("skipped") is not None]
    if broken or code != 0 or not cases:
        why = f"failed: {', '.join(broken)}" if broken else f"pytest exited with code {code}"
        return Record(name, FAILED, f"{why} (see {log})", broken)
    if len(skips) == len(cases):
        reasons = sorted({skip.get("message", "") for skip in skips})
        return Record(name, SKIPPED, f"all {len(cases)} tests skipped: {'; '.join(reasons)}")
    return Record(name, PASSED, f"{len(cases) - len(skips)} passed, {len(skips)} skipped: pytest {' '.join(args)}")


def check_cuda_tests(setup: Setup) -> Record:
    """The tests marked ``cuda`` (skipped without a GPU by tests/conftest.py), tests/test_cli.py's
    GPU form among them."""
    return pytest_record(setup, "cuda-tests", ["-m", "cuda", "tests"])


#: Tests that make test runs on the CPU and that a GPU machine changes: the command line's other
#: runs, and the CUDA code paths' logic with CUDA stood in for (beside a real torch.cuda now).
MACHINE_TESTS = ["tests/test_cli.py", "tests/test_cuda_paths.py"]


def check_machine_tests(setup: Setup) -> Record:
    """MACHINE_TESTS on the GPU machine, less the cuda-marked ones (check_cuda_tests runs those)."""
    if not setup.cuda:
        return Record("machine-tests", SKIPPED, f"{NO_CUDA} (make test runs {' and '.join(MACHINE_TESTS)} on the CPU)")
    return pytest_record(setup, "machine-tests", ["-m", "not cuda", *MACHINE_TESTS])


def grid(model_names: tuple[str, ...]) -> list[tuple[str, int, str, bool]]:
    """(model, batch size, precision, channels_last) for every job of the model check."""
    layouts = [*((precision, False) for precision in PRECISIONS), (CHANNELS_LAST_PRECISION, True)]
    return [(name, batch, precision, channels_last) for name in model_names for batch in BATCH_SIZES
            for precision, channels_last in layouts]


def check_models(setup: Setup) -> Record:
    """Every model, batch 1 and 4, fp32, bf16 and fp16 (and channels_last at one precision):
    profile mode with the training step, each row on the device's own timer and allocator."""
    jobs = grid(setup.models)
    problems = []
    for name, batch, precision, channels_last in tqdm(jobs, desc="models", unit="job", file=sys.stderr):
        overrides = [*model_overrides(name), "mode=profile", f"batch_size={batch}", f"precision={precision}",
                     f"channels_last={channels_last}"]
        if batch == 1 and name in NO_TRAINING_STEP_AT_BATCH_1:
            overrides.append("measure.train_step=false")
        problem = row_problem(setup, run(setup, *overrides))
        if problem:
            problems.append(f"{name} b{batch} {precision}{' channels_last' if channels_last else ''}: {problem}")
    headline = (f"{len(jobs)} jobs ok: {len(setup.models)} model(s) at {setup.resolution}, batch "
                f"{' and '.join(map(str, BATCH_SIZES))}, {'/'.join(PRECISIONS)} and {CHANNELS_LAST_PRECISION} "
                "channels_last, with the training step")
    return verdict(setup, "models", problems, headline, [])


def per_model(setup: Setup, desc: str, measure: Callable[[str, torch.nn.Module, torch.Tensor], None]) -> None:
    """``measure(name, model in eval mode on the device, one input at the setup's resolution)`` for
    each model, built as its job builds it; each is freed before the next is built (the allocator's
    and NVML's figures are then one model's)."""
    height, width = parse_resolution(setup.resolution)
    for name in tqdm(setup.models, desc=desc, unit="model", file=sys.stderr):
        model = build_model(job_config(setup, *model_overrides(name)))
        measure(name, model.eval().to(setup.device), torch.randn(1, 3, height, width, device=setup.device))
        del model
        gc.collect()
        if setup.cuda:
            torch.cuda.empty_cache()


def check_latency(setup: Setup) -> Record:
    """The harness's CUDA-event latency against ``torch.utils.benchmark.Timer`` per model (batch 1,
    fp32): a ratio outside 1 +- LATENCY_TOLERANCE fails on a GPU."""
    problems, details, ratios = [], [], []

    def measure(name: str, model: torch.nn.Module, inputs: torch.Tensor) -> None:
        def forward() -> None:
            with torch.inference_mode():
                model(inputs)

        harness_stats, reference_ms = agreement(forward, setup.device, torch.get_num_threads(), AGREEMENT_ROUNDS,
                                                TimingConfig(warmup_iters=3, min_run_time=setup.agreement_seconds,
                                                             min_iters=10))
        harness = statistics.median(stats.median_ms for stats in harness_stats)
        reference = statistics.median(reference_ms)
        ratios.append(harness / reference)
        details.append(f"{name}: harness {harness:.3f} ms, Timer {reference:.3f} ms, ratio {ratios[-1]:.3f}")
        if setup.cuda and abs(ratios[-1] - 1) > LATENCY_TOLERANCE:
            problems.append(f"{name}: ratio {ratios[-1]:.3f} is outside 1 +- {LATENCY_TOLERANCE}")

    per_model(setup, "latency", measure)
    timer = "CUDA events" if setup.cuda else "perf_counter"
    return verdict(setup, "latency", problems, f"{timer} against blocked_autorange for {len(ratios)} model(s), "
                   f"ratios {min(ratios):.3f} to {max(ratios):.3f}", details)


def check_memory(setup: Setup) -> Record:
    """``max_memory_allocated`` over one forward pass (batch 1, fp32) against what NVML says the
    process holds, per model; the difference split into the allocator's reserved but unallocated
    blocks and the rest (CUDA context, library handles, loaded kernels)."""
    if not setup.cuda:
        return Record("memory", SKIPPED, f"{NO_CUDA} (NVML counts GPU memory only)")
    if setup.nvml is None:
        return Record("memory", SKIPPED, setup.nvml_problem)
    problems, details, sources = [], [], set()

    def measure(name: str, model: torch.nn.Module, inputs: torch.Tensor) -> None:
        allocated = forward_peak_memory(model, inputs, setup.device).peak_mib
        reserved = torch.cuda.max_memory_reserved(setup.device) / MIB
        held, source = setup.nvml.read()
        held /= MIB
        sources.add(source)
        details.append(f"{name}: allocated {allocated:.0f} MiB / NVML {held:.0f} MiB = {allocated / held:.2f}; "
                       f"difference {held - allocated:.0f} MiB = reserved blocks {reserved - allocated:.0f} MiB "
                       f"+ context and libraries {held - reserved:.0f} MiB")
        if not held >= reserved >= allocated > 0:
            problems.append(f"{name}: expected NVML >= reserved >= allocated > 0")

    per_model(setup, "memory", measure)
    return verdict(setup, "memory", problems, f"{len(details)} model(s), NVML read as {' and '.join(sorted(sources))}",
                   details)


@dataclass(frozen=True)
class ScalerWatch(Precision):
    """A precision as the training loop takes it, keeping the gradient scalers it makes so that
    their scale can be read after training."""
    scalers: list[torch.amp.GradScaler] = field(default_factory=list, compare=False, repr=False)

    def scaler(self) -> torch.amp.GradScaler:
        made = super().scaler()
        self.scalers.append(made)
        return made


def check_fp16_training(setup: Setup) -> Record:
    """A few hundred steps of the training loop under fp16 autocast with the gradient scaler, on
    the generated data set: the loss must fall and stay finite; the final scale is recorded."""
    name, resolution, steps = setup.train
    cfg = job_config(setup, *model_overrides(name), "mode=accuracy", "precision=fp16", f"resolution={resolution}",
                     f"train.max_steps={steps}", "train.max_seconds=null",
                     f"train.num_workers={4 if setup.cuda else 0}")
    model = build_model(cfg)
    precision = ScalerWatch(setup.device.type, torch.float16)
    try:
        result = train_model(model, cfg.dataset, cfg.train, parse_resolution(resolution), setup.device,
                             run_dir=None, progress=True, precision=precision)
    except NonFiniteLossError as exc:
        return Record("fp16-training", FAILED, str(exc))
    window = max(1, steps // 10)
    first, last = (sum(part) / window for part in (result.loss_history[:window], result.loss_history[-window:]))
    scale = precision.scalers[0].get_scale()
    problems = [f"the loss did not fall: {first:.3f} -> {last:.3f}"] if not last < first else []
    if not (math.isfinite(scale) and scale > 0):
        problems.append(f"the gradient scale is {scale}")
    headline = (f"{result.steps} steps of {name} at {resolution}, batch {cfg.train.batch_size}: loss "
                f"{first:.3f} -> {last:.3f} (mean of the first and last {window}), no inf/NaN, final scale {scale:g}")
    return verdict(setup, "fp16-training", problems, headline, [])


def too_big_batch(setup: Setup) -> int:
    """A power of two whose input batch alone exceeds the card's memory, so the first attempt
    fails in CUDA's allocator and the halvings that follow are quick."""
    height, width = parse_resolution(setup.resolution)
    image_bytes = 3 * height * width * 4
    total = torch.cuda.get_device_properties(setup.device).total_memory
    return 2 ** math.ceil(math.log2(total / image_bytes))


def check_oom(setup: Setup) -> Record:
    """A real out-of-memory error under ``oom_policy=halve``: the row is the halved batch's."""
    batch = too_big_batch(setup) if setup.cuda else 8
    row = run(setup, *setup.oom_model, f"batch_size={batch}", "oom_policy=halve",
              "measure.train_step=false", "measure.peak_flops=false")
    problem = row_problem(setup, row)
    problems = [problem] if problem else []
    if not problem and not row.batch_size_used < batch:
        problems.append(f"batch {batch} fitted; no out-of-memory error happened")
    headline = f"batch {batch} ran out of memory, the row is batch {row.batch_size_used}'s"
    return verdict(setup, "oom", problems, headline, [])


ENERGY_SECONDS = 10.0  # NVML's energy counter updates at a finite rate: a window long against it


def check_energy(setup: Setup) -> Record:
    """Energy per image from NVML's total-energy counter over a window of forward passes, with the
    idle power just before it (bench/measure/energy.py): available, positive, over the whole window."""
    seconds = ENERGY_SECONDS if setup.cuda else 0.1
    row = run(setup, *model_overrides(setup.ort_models[0]), "measure.train_step=false", "measure.energy=true",
              f"measure.energy_min_seconds={seconds}", f"measure.energy_idle_seconds={seconds / 5}")
    problem = row_problem(setup, row)
    if problem:
        return verdict(setup, "energy", [problem], "", [])
    if not row.energy_available:
        reason = f"energy unavailable: {row.energy_unavailable_reason}"
        return Record("energy", FAILED if setup.cuda else SKIPPED, reason if setup.cuda else f"{NO_CUDA}; {reason}")
    problems = [] if row.energy_joules_per_image > 0 and row.energy_window_seconds >= seconds else [
        f"{row.energy_joules_per_image} J per image over {row.energy_window_seconds} s (window asked: {seconds} s)"]
    headline = (f"{setup.ort_models[0]}: {row.energy_joules_per_image:.3g} J/image "
                f"({row.energy_joules_per_image_above_idle:.3g} above idle), {row.energy_average_power_w:.0f} W "
                f"average, {row.energy_idle_power_w:.0f} W idle, over {row.energy_window_seconds:.1f} s ({row.energy_method})")
    return verdict(setup, "energy", problems, headline, [])


def check_onnxruntime(setup: Setup) -> Record:
    """ONNX Runtime on the device's execution provider (TensorRT's, else CUDA's) with parity
    against eager."""
    import onnxruntime as ort

    offered = ort.get_available_providers()
    if setup.cuda and not set(CUDA_PROVIDERS) & set(offered):
        return Record("onnxruntime", SKIPPED, f"onnxruntime {ort.__version__} offers no CUDA execution provider "
                      f"({', '.join(offered)}); see the README's GPU validation kit")
    problems, details = [], []
    for name in setup.ort_models:
        row = run(setup, *model_overrides(name), "backend=onnxruntime", "measure.train_step=false")
        problem = row_problem(setup, row)
        if not problem and setup.cuda and row.backend_provider not in CUDA_PROVIDERS:
            problem = f"ran on {row.backend_provider}"
        if problem:
            problems.append(f"{name}: {problem}")
        else:
            details.append(f"{name}: {row.backend_provider}, argmax agreement {row.parity_argmax_agreement:.4%}, "
                           f"max abs logit difference {row.parity_max_abs_diff:.1e}")
    return verdict(setup, "onnxruntime", problems, f"{len(details)} model(s) passed parity", details)


def check_report(setup: Setup) -> Record:
    """The report over the kit's rows (``python -m bench.report``'s code)."""
    from bench.report import write_report

    return Record("report", PASSED, f"written: {write_report(setup.results)}")


#: The checks in the order they run; the names are what ``--checks`` selects.
CHECKS = {
    "cuda-tests": check_cuda_tests,
    "machine-tests": check_machine_tests,
    "models": check_models,
    "latency": check_latency,
    "memory": check_memory,
    "fp16-training": check_fp16_training,
    "oom": check_oom,
    "energy": check_energy,
    "onnxruntime": check_onnxruntime,
    "report": check_report,
}
