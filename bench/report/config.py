"""The report's settings: one typed schema, read from ``key=value`` overrides on the command line.

``python -m bench.report report.latency_budget_ms=50 report.memory_budget_mib=500`` (or
``make report ARGS="report.latency_budget_ms=50"``). OmegaConf checks each value against the
field's type, so ``report.latency_budget_ms=fast`` is an error that names the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


@dataclass
class ReportConfig:
    latency_budget_ms: float | None = field(default=None, metadata={
        "help": "latency per batch a pick must fit (the upper end of its 95% interval); "
                "unset: the page lists the pick at every budget (the accuracy/latency front)"})
    memory_budget_mib: float | None = field(default=None, metadata={
        "help": "peak memory of one forward pass (MiB) a pick must fit; unset: no memory limit"})

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not value > 0:
                raise ValueError(f"report.{f.name}={value}: a budget must be above 0 (or unset: null)")


def help_text() -> str:
    """Every key with its type, default and help, for ``--help``."""
    return "\n".join(f"  report.{f.name}={f.default} ({f.type}): {f.metadata['help']}"
                     for f in fields(ReportConfig))


def parse_overrides(overrides: list[str]) -> ReportConfig:
    """``report.<key>=<value>`` strings as a ReportConfig; a ValueError names the bad override."""
    for override in overrides:
        if not override.startswith("report.") or "=" not in override:
            raise ValueError(f"{override!r}: expected report.<key>=<value>; the keys are:\n{help_text()}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ReportConfig),
                                 OmegaConf.from_dotlist([o.removeprefix("report.") for o in overrides]))
    except OmegaConfBaseException as exc:
        raise ValueError(f"{exc.msg.splitlines()[0]} (report.{exc.full_key}); the keys are:\n{help_text()}") from exc
    return ReportConfig(**OmegaConf.to_container(merged))
