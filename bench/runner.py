"""Running one job: resume check, fault isolation, the stages, and storing its row.

Every failure inside a job becomes a row with a status and a cause, never a crash of the
sweep: ``unavailable`` (device not present), ``oom`` (CUDA or CPU out of memory), ``error``
(anything else, traceback stored beside the row), ``timeout`` (an isolated job past its limit),
``interrupted`` (Ctrl-C: the row is stored, then the sweep stops).

A job is claimed (bench/lease.py) before it runs, so workers sharing a grid and a results
directory run each job once. A row that cannot be written is printed as JSON instead of lost.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bench.checkpoint import STATE_NAME
from bench.devices import DeviceUnavailableError, resolve_device
from bench.environment import device_name, environment
from bench.formatting import format_ms
from bench.instruments import plugin_columns
from bench.jobspec import ConfigError, JobSpec, backend_refusal, default_threads, job_key, repeat_key
from bench.lease import Lease, claim, holds, other_workers_here
from bench.measure.latency import TimingConfig
from bench.paths import inside
from bench.progress import child_ticks
from bench.profile import WindowOptions, first_call_ms, images_per_s, profile_model
from bench.measure.oom import is_out_of_memory
from bench.scenarios import throughput_search
from bench.schema import ResultRow
from bench.store import ResultStore, describe_os_error

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class JobOutcome:
    job_key: str
    # a row status; or "skipped" (an ok row existed), "claimed" (another worker runs it),
    # "invalid" (bad config), "unoffered" (in a sweep, a combination its backend does not offer),
    # "unsaved" (measured, but the row could not be written)
    status: str
    row_file: str = ""
    error: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _import_plugins(cfg: DictConfig) -> None:
    """Modules named in ``plugins`` register extra models (``@register_model``) when imported."""
    from models import import_plugins  # the package import registers the built-in architectures
    import_plugins(cfg.get("plugins"))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _base_row(cfg: DictConfig, run_id: str) -> ResultRow:
    """A row holding the job's identity, grid point and environment, before any measurement."""
    spec = JobSpec.from_config(cfg)
    return ResultRow(
        job_key=job_key(cfg), repeat_key=repeat_key(cfg), seed=int(cfg.seed), run_id=run_id,
        status="ok", started_at=_now(), mode=spec.mode,
        model=spec.model, model_kwargs=spec.model_kwargs, dataset=spec.dataset,
        num_classes=int(cfg.dataset.num_classes), device=spec.device, height=spec.height,
        width=spec.width, batch_size=spec.batch_size, precision=spec.precision,
        channels_last=spec.channels_last, backend=spec.backend, threads=spec.threads, scenario=spec.scenario,
        config=OmegaConf.to_container(cfg, resolve=True),
        **{k: v for k, v in environment(torch.device("cpu")).items() if k != "device_name"},
    )


def training_state_path(cfg: DictConfig) -> Path:
    """Where a training job keeps the state it resumes from: by job key, so a re-run finds it."""
    return inside(ResultStore(cfg.results_dir).root / "state", job_key(cfg), STATE_NAME)


def _weights_source(mode: str, checkpoint: str | None) -> str | None:
    """Where the profiled weights come from, in words (the accuracy gate's row says it); None: random."""
    return {"accuracy": "trained by this job", "eval": f"checkpoint {checkpoint}"}.get(mode)


def _stages(cfg: DictConfig, spec: JobSpec, row: ResultRow, run_dir: Path) -> None:
    """Build the model and fill ``row`` with the accuracy (when asked) and profile fields."""
    from models import create_model

    device = resolve_device(spec.device, spec.device_index)
    row.device_name = device_name(device)
    torch.set_num_threads(spec.threads)
    row.threads = torch.get_num_threads()
    torch.manual_seed(int(cfg.seed))
    num_classes = int(cfg.dataset.num_classes)
    in_channels = int(cfg.dataset.get("in_channels", 3))
    started = time.perf_counter()
    model = create_model(spec.model, num_classes=num_classes, in_channels=in_channels, **spec.model_kwargs)
    row.build_seconds = time.perf_counter() - started
    try:
        row.first_call_ms = first_call_ms(model, spec, in_channels, device)
    except Exception as exc:  # noqa: BLE001  (the profile stage meets it again: halves the batch or records it)
        if not is_out_of_memory(exc):
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()

    if spec.mode in ("accuracy", "eval"):
        from bench.evaluate import run_accuracy
        accuracy = run_accuracy(
            model.to(device), cfg.dataset, cfg.train, cfg.eval_split, (spec.height, spec.width),
            device, run_dir, checkpoint=cfg.checkpoint if spec.mode == "eval" else None,
            progress=bool(cfg.progress), precision=spec.training_precision(device),
            channels_last=spec.channels_last, state_path=training_state_path(cfg),
            cache_dir=Path(cfg.results_dir) / "cache")
        lost = accuracy.get("checkpoint_error")
        row.update({**accuracy, "checkpoint": None if lost else accuracy["checkpoint"] or ""})

    timing = TimingConfig.from_config(cfg.measure)
    batch_size = spec.batch_size
    if spec.scenario == "throughput":
        search = throughput_search(
            lambda batch: images_per_s(model, spec, batch, in_channels, device, timing), spec.batch_size,
            int(cfg.measure.throughput_max_batch), float(cfg.measure.throughput_min_gain), is_out_of_memory)
        batch_size, row.throughput_search = search.best_batch, search.steps
    while True:
        try:
            measured = profile_model(
                model, spec, num_classes, in_channels, device, timing, batch_size,
                train_cfg=cfg.train if cfg.measure.train_step else None,
                ignore_index=int(cfg.dataset.ignore_index), progress=bool(cfg.progress),
                cache_dir=Path(cfg.results_dir) / "cache",
                min_agreement=float(cfg.parity.min_argmax_agreement),
                peak_flops=bool(cfg.measure.peak_flops), windows=WindowOptions.from_config(cfg.measure),
                instruments_requested=tuple(cfg.measure.get("instruments") or ()),
                dataset_cfg=cfg.dataset, weights=_weights_source(spec.mode, cfg.get("checkpoint")),
                gate_images=int(cfg.parity.accuracy_images), min_accuracy_ratio=float(cfg.parity.min_accuracy_ratio),
                calibration_images=int(cfg.quantization.calibration_images))
            break
        except Exception as exc:  # noqa: BLE001  (only out-of-memory errors are retried)
            if not is_out_of_memory(exc) or cfg.oom_policy != "halve" or batch_size == 1:
                raise
            batch_size //= 2  # recorded as batch_size_used; batch_size stays the key
            if device.type == "cuda":
                torch.cuda.empty_cache()
    row.update(measured, extra_columns=plugin_columns())
    if row.checkpoint_error:  # every figure is measured; only the weights themselves are lost
        row.status = "unsaved"
        row.error = (f"the trained weights could not be written ({row.checkpoint_error}); accuracy and "
                     "profile were measured from the weights in memory")


INTERRUPTED = "KeyboardInterrupt: stopped by Ctrl-C (SIGINT) while the job ran"


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C during a job whose row is stored: carries the job's outcome up to the sweep."""

    def __init__(self, outcome: "JobOutcome"):
        super().__init__(outcome.error)
        self.outcome = outcome


def _warn_of_shared_cpus(results_dir: str, threads: int) -> int:
    """The other workers on this host now; a warning when together they ask for more CPUs than
    this process may use, since each then slows the others' timings."""
    others, cpus = other_workers_here(results_dir), default_threads()
    if others and threads * (others + 1) > cpus:
        log.warning(f"warning: {others} other segbench worker(s) on this host run jobs in {results_dir}; "
                    f"at threads={threads} each they share {cpus} CPUs, so this job's timings are slowed by "
                    f"theirs (the row records concurrent_workers={others}). For timings as if alone, give "
                    f"every worker its share, threads={max(1, cpus // (others + 1))}, or run one worker per host.")
    return others


@dataclass(frozen=True)
class Claim:
    """Where the job's lease is and which claim is ours: an isolated job's process checks it too."""
    path: Path
    token: str

    def keep_or_abandon(self, row: ResultRow) -> None:
        """A job that went silent and was taken over keeps its figures, but never as the ok row:
        the new owner's row is the job's result."""
        if not holds(self.path, self.token):
            was = f"{row.status}: {row.error}" if row.error else row.status
            row.status = "abandoned"
            row.error = ("the job made no progress for lease.stale_after_seconds and another worker took "
                         f"it over; this row keeps its figures for the record (it would have been {was})")


def execute(cfg: DictConfig, run_dir: Path, run_id: str | None = None,
            claim_held: Claim | None = None) -> tuple[ResultRow, str]:
    """Run one job in this process; returns its row and (for a failure) the traceback text."""
    spec = JobSpec.from_config(cfg)
    row = _base_row(cfg, run_id or uuid.uuid4().hex[:12])
    started = time.perf_counter()
    trace = ""
    row.concurrent_workers = _warn_of_shared_cpus(cfg.results_dir, spec.threads)
    try:
        _import_plugins(cfg)
        _stages(cfg, spec, row, run_dir)
    except DeviceUnavailableError as exc:
        row.status, row.error = "unavailable", str(exc)
    except KeyboardInterrupt:  # the caller stores the row, then stops the sweep
        row.status, row.error = "interrupted", INTERRUPTED
    except Exception as exc:  # noqa: BLE001  (any failure becomes a recorded row)
        row.status = "oom" if is_out_of_memory(exc) else "error"
        row.error, trace = _describe(exc), traceback.format_exc()
    row.finished_at = _now()
    row.wall_seconds = time.perf_counter() - started
    row.concurrent_workers = max(row.concurrent_workers, other_workers_here(cfg.results_dir))
    if claim_held is not None:
        claim_held.keep_or_abandon(row)
    return row, trace


def _execute_isolated(cfg: DictConfig, run_dir: Path, store: ResultStore,
                      claim_held: Claim) -> tuple[ResultRow, str, bool]:
    """Run the job in a fresh interpreter (``bench.worker``), so no state leaks between jobs
    and ``job_timeout`` can stop it; its ticks keep this process's claim alive.

    Returns (row, traceback, stored): ``stored`` is True when the worker wrote the row itself.
    """
    run_id = uuid.uuid4().hex[:12]
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "job_config.yaml"
    OmegaConf.save(cfg, config_file, resolve=True)
    command = [sys.executable, "-m", "bench.worker", str(config_file), str(run_dir), run_id,
               str(claim_held.path), claim_held.token]
    timeout = cfg.job_timeout
    started = _now()
    with tempfile.TemporaryFile("w+") as log_file, child_ticks(run_dir / "progress") as progress_env:
        try:
            process = subprocess.run(command, stdout=None, stderr=log_file, timeout=timeout,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **progress_env})
            status, cause = "error", f"worker exited with code {process.returncode} and wrote no row"
        except subprocess.TimeoutExpired:
            status, cause = "timeout", f"job exceeded job_timeout={timeout} s and was killed"
        except KeyboardInterrupt:  # Ctrl-C reached the worker too; it may have stored its row
            status, cause = "interrupted", INTERRUPTED
        written = [r for r in store.load(job_key(cfg)).rows if r.run_id == run_id]
        if written:
            return written[0], "", True
        log_file.seek(0)
        stderr_tail = log_file.read()[-4000:]
    row = _base_row(cfg, run_id)
    row.status, row.error, row.started_at, row.finished_at = status, cause, started, _now()
    claim_held.keep_or_abandon(row)
    return row, stderr_tail, False


def _latency_text(row: ResultRow, prefix: str) -> str:
    """``12.3 ms median [12.1, 12.6] n=40``, and a flag when the loop stopped short of its precision."""
    def get(name: str):
        return getattr(row, f"{prefix}{name}")

    text = f"{format_ms(get('latency_ms_median'))} ms median"
    if get("latency_ms_ci_low") is not None:
        text += f" [{format_ms(get('latency_ms_ci_low'))}, {format_ms(get('latency_ms_ci_high'))}] 95% CI"
    text += f" n={get('latency_iters')}"
    if get("latency_precision_reached") is False:
        text += f" (short of ±{get('latency_target_rel_ci'):.0%}: {get('latency_stop_reason')})"
    return text


def summary_line(row: ResultRow) -> str:
    """One line per finished job, for the console."""
    head = (f"[{row.status}] {row.model} {row.dataset} {row.device} {row.height}x{row.width} "
            f"b{row.batch_size} {row.precision}")
    if row.latency_ms_median is None:  # failed before it was measured
        return f"{head}: {row.error}"
    parts = [_latency_text(row, ""), f"{row.params_total / 1e6:.2f} M params",
             f"{row.flops_per_image / 1e9:.2f} GFLOP/img"]
    if row.peak_memory_mib is not None:  # None: ONNX Runtime's memory off the CPU is not read
        parts.append(f"peak {row.peak_memory_mib:.0f} MiB")
    if row.train_latency_ms_median is not None:
        parts.append(f"train step {_latency_text(row, 'train_')}, peak {row.train_peak_memory_mib:.0f} MiB")
    if row.miou is not None:
        parts.insert(0, f"mIoU {row.miou:.3f} ({row.split})")
    if row.resumed_from_step is not None:
        parts.insert(0, f"resumed from step {row.resumed_from_step}")
    if row.backend != "eager":
        parts.insert(0, f"{row.backend}: argmax agreement with eager {row.parity_argmax_agreement:.4%}, "
                        f"max abs logit diff {row.parity_max_abs_diff:.1e}")
    if row.contention_busy:
        parts.append(f"MEASURED UNDER LOAD: {row.contention_note}")
    if row.concurrent_workers:
        parts.append(f"measured beside {row.concurrent_workers} other worker(s) on this host")
    for instrument, why in row.instrument_errors.items():
        parts.append(f"{instrument} not measured ({why})")
    if row.status != "ok":  # measured, yet not the job's ok row (unsaved weights, abandoned)
        parts.append(row.error)
    return f"{head}: " + ", ".join(parts)


def _unsaved(row: ResultRow, path: Path, exc: OSError) -> str:
    """Log a row that could not be written, whole, so the measurement can be recovered."""
    line = (f"[unsaved] {row.model} {row.height}x{row.width}: the row could not be written "
            f"({describe_os_error(exc)}). It follows as JSON: save it as {path} to keep it.")
    text = json.dumps(row.to_dict(), sort_keys=True, default=str)
    log.error(f"{line}\n{text}")  # also into the job's log file, where that disk can still take it
    return f"row not written ({describe_os_error(exc)}); job status {row.status}: {row.error or 'ok'}"


def _done(cfg: DictConfig, key: str, store: ResultStore) -> JobOutcome | None:
    """The skipped outcome when the job has an ok row (and force is off), else None."""
    if cfg.force or not store.has_ok_row(key):
        return None
    log.info(f"[skipped] {key}: an ok row exists (force=true re-runs it)")
    return JobOutcome(key, "skipped")


def _run_claimed(cfg: DictConfig, key: str, run_dir: Path, store: ResultStore, lease: Lease) -> JobOutcome:
    done = _done(cfg, key, store)  # finished by another worker between our first look and our claim
    if done is not None:
        return done
    claim_held = Claim(lease.path, lease.owner.token)
    if cfg.isolate or cfg.job_timeout is not None:  # only a separate process can be stopped on time
        row, trace, stored = _execute_isolated(cfg, run_dir, store, claim_held)
    else:
        (row, trace), stored = execute(cfg, run_dir, claim_held=claim_held), False
    path = store.row_path(row)
    outcome = JobOutcome(key, row.status, str(path), row.error)
    if not stored:
        try:
            store.write(row, trace)
        except OSError as exc:
            outcome = JobOutcome(key, "unsaved", str(path), _unsaved(row, path, exc))
    if outcome.status == "ok":   # the row holds the result now; the resumable state has served
        shutil.rmtree(training_state_path(cfg).parent, ignore_errors=True)
    if outcome.row_file and Path(outcome.row_file).exists():  # else _unsaved printed it as JSON
        log.info(summary_line(row))
    if row.status == "interrupted":
        raise JobInterrupted(outcome)
    return outcome


def _run_or_skip(cfg: DictConfig, key: str, run_dir: Path, store: ResultStore) -> JobOutcome:
    done = _done(cfg, key, store)
    if done is not None:
        return done
    lease = claim(store.root, key, float(cfg.lease.stale_after_seconds), float(cfg.lease.heartbeat_seconds))
    if not isinstance(lease, Lease):
        log.info(f"[claimed] {key}: another worker runs it ({lease})")
        return JobOutcome(key, "claimed")
    with lease:
        return _run_claimed(cfg, key, run_dir, store, lease)


def _write_outcome(run_dir: Path, outcome: JobOutcome) -> None:
    """The sweep summary reads these; the row, not this marker, is the result."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "outcome.json").write_text(outcome.to_json())
    except OSError as exc:
        log.warning(f"warning: the job's outcome marker could not be written in {run_dir} "
                    f"({describe_os_error(exc)}); the sweep summary will not count this job")


def _in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(cfg: DictConfig, run_dir: Path) -> JobOutcome:
    """Validate, resume check, claim, run (in-process or isolated), store the row, write the outcome."""
    store = ResultStore(cfg.results_dir)
    try:
        key = job_key(cfg)  # validates the whole config first: every invalid value, at once
    except ConfigError as exc:
        # No grid point to name, so no row. A sweep's combination the backend does not offer was
        # named before the sweep began (bench/preflight.py) and is left out; anything else is
        # invalid, and the outcome marker makes the sweep fail.
        if _in_sweep() and backend_refusal(cfg) == str(exc):
            outcome = JobOutcome("", "unoffered", error=str(exc))
            log.info(f"[unoffered] {exc}")
        else:
            outcome = JobOutcome("", "invalid", error=str(exc))
            log.error(f"[invalid] {exc}")
    else:
        try:
            outcome = _run_or_skip(cfg, key, run_dir, store)
        except KeyboardInterrupt as exc:  # stored (when it was running), then the sweep stops
            _write_outcome(run_dir, getattr(exc, "outcome", JobOutcome(key, "interrupted", error=INTERRUPTED)))
            raise
    _write_outcome(run_dir, outcome)
    return outcome
