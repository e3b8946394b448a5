"""Instruments: each measures one thing about a prepared model and returns its own typed record.

The profile stage (bench/profile.py) prepares the model, its inputs and the deployment once, then
runs every selected instrument in its phase (``setup``, ``timed``: inside the window whose
contention is watched, ``after``) in the order of registration. An instrument's record becomes
row columns by one rule (bench/records.py: its ``prefix`` joined to the record's column names).

Adding an instrument is one module: a subclass of ``Instrument`` with its record type, registered
with ``register_instrument``. The built-in ones are in ``bench/instruments/builtin.py``; a plug-in
module (``plugins=[...]``) registers its own, which then runs where ``measure.instruments`` names
it. Registration checks the record's columns against the row (bench/schema.py): a built-in
instrument's columns are all ``ResultRow`` fields, so a misspelt one fails at import; a plug-in's
are all new, and the row keeps them beside its own (``ResultRow.extra``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from bench.records import column_names
from bench.schema import columns as row_columns

if TYPE_CHECKING:
    import torch
    from torch import nn

    from bench.backends import Backend, Deployment
    from bench.jobspec import JobSpec
    from bench.measure.latency import TimingConfig
    from bench.profile import WindowOptions

PHASES = ("setup", "timed", "after")


@dataclass
class Probe:
    """What an instrument may use: the prepared model and inputs, the job, the reference pass
    (the first forward pass, counted by ``torch.utils.flop_counter``) and the records of the
    instruments that ran before it."""
    model: "nn.Module"            # the part inference runs, in eval mode, on the device, in the job's layout
    whole: "nn.Module"            # the model as built (an adversarial model's adversary too)
    inputs: "torch.Tensor"        # a random batch of the job's shape and layout
    spec: "JobSpec"
    device: "torch.device"
    batch_size: int               # the batch measured (smaller than the job's after oom_policy=halve)
    num_classes: int
    in_channels: int
    ignore_index: int
    timing: "TimingConfig"
    windows: "WindowOptions"      # what the stage does around the timed windows (energy among it)
    peak_flops: bool              # measure.peak_flops: set the achieved FLOP/s against the peak
    requested: tuple[str, ...]    # measure.instruments: the plug-in instruments to run
    train_cfg: Mapping[str, Any] | None  # the training recipe, when a training step is measured
    min_agreement: float          # parity.min_argmax_agreement
    dataset: Mapping[str, Any]    # the job's data set config (the accuracy gate scores its val split)
    weights: str | None           # where the weights come from; None: random initialisation
    gate_images: int              # parity.accuracy_images: validation images the accuracy gate scores
    min_accuracy_ratio: float     # parity.min_accuracy_ratio
    cache_dir: Path
    progress: bool
    backend: "Backend"
    deployment: "Deployment"
    flops: int                    # of the reference pass: the whole batch
    kept: list | None             # what the decoder kept in it (bench/measure/decoder.py); None: undeclared
    logits: "torch.Tensor | None"  # its output, for parity; dropped before memory is measured
    records: dict[str, Any] = field(default_factory=dict)  # by instrument name


class Instrument:
    """One measurement. Subclasses set the class attributes and implement ``measure``."""
    name: str = ""
    record: type = object      # the dataclass ``measure`` returns
    prefix: str = ""           # joined to the record's column names (bench/records.py)
    phase: str = "after"       # setup | timed | after (PHASES)
    # An optional instrument that raises (other than out of memory, the job's ``oom_policy``'s)
    # leaves its columns empty and says why in the row's ``instrument_errors``; the row keeps every
    # other figure. A required one's failure is the job's.
    optional: bool = True
    help: str = ""             # one line: what it measures

    def selected(self, probe: Probe) -> bool:
        """Whether it runs for this job: a plug-in where ``measure.instruments`` names it."""
        return self.name in probe.requested

    def measure(self, probe: Probe) -> Any:
        """Its record, or None when there is nothing to record for this model."""
        raise NotImplementedError

    def stops(self, record: Any) -> str:
        """Why the row stops here with ``status=mismatch`` (nothing after it runs), or ""."""
        return ""

    def columns(self) -> list[str]:
        return column_names(self.record, self.prefix)


class InstrumentError(ValueError):
    """An instrument that cannot be registered, or a name that names none; the message says why."""


_REGISTRY: dict[str, Instrument] = {}


def register_instrument(instrument: Instrument) -> Instrument:
    """Add ``instrument`` after those registered so far (its place in its phase's order)."""
    if not instrument.name or instrument.name in _REGISTRY:
        raise InstrumentError(f"an instrument needs a name of its own; {instrument.name!r} is "
                              f"{'taken' if instrument.name else 'empty'}")
    if instrument.phase not in PHASES:
        raise InstrumentError(f"instrument {instrument.name}: phase {instrument.phase!r} is not one of {PHASES}")
    names = instrument.columns()
    known = set(row_columns())
    declared = [name for name in names if name in known]
    if declared and len(declared) != len(names):
        unknown = sorted(set(names) - known)
        raise InstrumentError(f"instrument {instrument.name}: its record fills {', '.join(unknown)}, which "
                              "the row (bench/schema.py ResultRow) has no field for, beside columns it does "
                              "have; misspelt? (a plug-in's columns must all be new)")
    owners = {name: other.name for other in _REGISTRY.values() for name in other.columns()}
    taken = sorted(name for name in names if name in owners)
    if taken:
        raise InstrumentError(f"instrument {instrument.name}: {', '.join(taken)} already filled by "
                              f"instrument {owners[taken[0]]}; name its columns apart (its prefix)")
    _REGISTRY[instrument.name] = instrument
    return instrument


def instruments(phase: str | None = None) -> list[Instrument]:
    """The registered instruments in order, those of ``phase`` only when given."""
    return [i for i in _REGISTRY.values() if phase is None or i.phase == phase]


def plugin_columns() -> frozenset[str]:
    """The columns of registered instruments that are no ``ResultRow`` field (plug-ins')."""
    known = set(row_columns())
    return frozenset(name for i in _REGISTRY.values() for name in i.columns() if name not in known)


def check_requested(names: list[str]) -> list[str]:
    """Problems with ``measure.instruments``: a name that no registered instrument has."""
    known = [i.name for i in _REGISTRY.values()]
    return [f"measure.instruments: unknown instrument {name!r}; registered: {', '.join(known)}"
            for name in names if name not in known]


from bench.instruments import builtin  # noqa: E402,F401  (registers the built-in instruments, in order)
