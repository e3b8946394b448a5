"""Published figures (``conf/published.yaml``) beside the measured rows, and the claims tested.

Every verdict is computed from the current ``ok`` rows alone. Where the rows needed are missing,
the verdict says which rows would test the claim instead of falling back on a published figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from bench.report.tables import fmt

PUBLISHED_YAML = Path(__file__).resolve().parents[2] / "conf" / "published.yaml"

#: How each claim quantity is shown: (factor applied to the stored value, format).
QUANTITY_FORMAT = {
    "params_total": (1e-6, "{:.2f}M"),
    "activation_peak_mib": (1.0, "{:.1f} MiB"),
    "peak_memory_mib": (1.0, "{:.1f} MiB"),
    "miou": (100.0, "{:.1f}"),
}
#: Verdicts from worst to best: a claim takes the worst verdict of its tests.
NOT_HOLD, MIXED, NOT_TESTED, PARTLY, HOLDS = (
    "does not hold", "mixed", "not tested yet", "holds where tested", "holds")


def load_published(path: str | Path = PUBLISHED_YAML) -> dict:
    return yaml.safe_load(Path(path).read_text())


def with_model_key(frame: pd.DataFrame, aliases: dict[str, str]) -> pd.DataFrame:
    """``frame`` plus ``model_key``: the model name with registry aliases resolved."""
    return frame.assign(model_key=frame["model"].map(lambda m: aliases.get(m, m)))


def ok_values(current: pd.DataFrame, quantity: str, aliases: dict[str, str]) -> pd.DataFrame:
    """Current ``ok`` rows holding ``quantity``, with ``model_key``."""
    rows = current[(current["status"] == "ok") & current[quantity].notna()]
    return with_model_key(rows, aliases)


def show(quantity: str, value: float) -> str:
    factor, fmt = QUANTITY_FORMAT.get(quantity, (1.0, "{:.3g}"))
    return fmt.format(value * factor)


def dataset_matches(measured: str, published: str) -> bool:
    """``camvid`` matches a row's ``camvid``/``CamVid``; ``voc`` matches ``voc2012``."""
    return str(measured).lower().startswith(published.lower())


# --- claims ---------------------------------------------------------------------------------

@dataclass
class TestResult:
    test: dict
    verdict: str
    text: str                                          # plain-language verdict
    evidence: list[str] = field(default_factory=list)  # one line per compared setting


@dataclass
class ClaimResult:
    claim: dict
    verdict: str
    tests: list[TestResult]


def _advantage(test: dict, subject: float, other: float) -> float:
    """How much better ``subject`` is: a ratio (lower is better) or a difference (higher is)."""
    return other / subject if test["compare"] == "ratio" else subject - other


def _show_advantage(test: dict, advantage: float) -> str:
    """E.g. "14.3x fewer parameters", "1.25x more activation_peak_mib", "+5.0 mIoU points higher"."""
    if test["compare"] == "difference":
        factor = QUANTITY_FORMAT.get(test["quantity"], (1.0, ""))[0]
        return f"{advantage * factor:+.1f} {test['phrase']}"
    if advantage >= 1:
        return f"{advantage:.{1 if advantage >= 10 else 2}f}x {test['phrase']}"
    return f"{1 / advantage:.2f}x more {test['quantity']}"


def _needs(test: dict) -> str:
    if test["compare"] == "ratio":
        return f"the claim needs {test['other']}/{test['subject']} above {test['threshold']:g}"
    return f"the claim needs a difference above {test['threshold']:g}"


def _setting(keys: list[str], values) -> str:
    values = values if isinstance(values, tuple) else (values,)
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values))


def _training_note(rows: pd.DataFrame, same: list[str], key, subject: str, other: str) -> str:
    """How long each model trained, for accuracy evidence: a few steps decide little."""
    steps = rows.groupby(same + ["model_key"], dropna=False)["train_steps"].median()
    key = key if isinstance(key, tuple) else (key,)
    return (f" (after {steps.get((*key, subject), float('nan')):.0f} and "
            f"{steps.get((*key, other), float('nan')):.0f} training steps)")


def evaluate_test(current: pd.DataFrame, test: dict, aliases: dict[str, str]) -> TestResult:
    """Compare ``test['subject']`` with ``test['other']`` in every setting both were measured in."""
    quantity, subject, other, same = test["quantity"], test["subject"], test["other"], test["same"]
    rows = ok_values(current, quantity, aliases)
    rows = rows[rows["model_key"].isin([subject, other])]
    missing = [m for m in (subject, other) if m not in set(rows["model_key"])]
    if missing:
        return TestResult(test, NOT_TESTED,
                          f"{NOT_TESTED}: needs ok rows with {quantity} for {' and '.join(missing)}")
    # Median over a model's rows in one setting (they differ only in axes outside `same`).
    table = (rows.groupby(same + ["model_key"], dropna=False)[quantity].median()
             .unstack("model_key").reindex(columns=[subject, other]).dropna())
    if table.empty:
        return TestResult(test, NOT_TESTED,
                          f"{NOT_TESTED}: needs {quantity} rows for {subject} and {other} "
                          f"with the same {', '.join(same)}")
    advantages = [_advantage(test, s, o) for s, o in zip(table[subject], table[other])]
    held = [a > test["threshold"] for a in advantages]
    evidence = [
        f"{_setting(same, key)}: {subject} {show(quantity, s)} vs {other} {show(quantity, o)}"
        f" → {_show_advantage(test, a)}"
        f"{_training_note(rows, same, key, subject, other) if quantity == 'miou' else ''}"
        for key, s, o, a in zip(table.index, table[subject], table[other], advantages)]
    return TestResult(test, *_summarise(test, advantages, held), evidence)


def _summarise(test: dict, advantages: list[float], held: list[bool]) -> tuple[str, str]:
    """(verdict, text) over all settings, e.g. ("holds", "holds: 14.3x fewer parameters")."""
    low, high = min(advantages), max(advantages)
    shown = _show_advantage(test, low)
    if low != high:
        shown = f"{_show_advantage(test, low)} to {_show_advantage(test, high)}"
    where = f" in {len(held)} settings" if len(held) > 1 else ""
    if all(held):
        return HOLDS, f"{HOLDS}{where}: {shown}"
    needs = _needs(test)
    if not any(held):
        return NOT_HOLD, f"{NOT_HOLD}{where}: {shown} ({needs})"
    return MIXED, f"{MIXED}: holds in {sum(held)} of {len(held)} settings: {shown} ({needs})"


def _claim_verdict(verdicts: list[str]) -> str:
    if all(v == NOT_TESTED for v in verdicts):
        return NOT_TESTED
    for worst in (NOT_HOLD, MIXED):
        if worst in verdicts:
            return worst
    return PARTLY if NOT_TESTED in verdicts else HOLDS


def evaluate_claims(current: pd.DataFrame, published: dict) -> list[ClaimResult]:
    aliases = published.get("aliases") or {}
    results = []
    for claim in published.get("claims") or []:
        tests = [evaluate_test(current, test, aliases) for test in claim["tests"]]
        results.append(ClaimResult(claim, _claim_verdict([t.verdict for t in tests]), tests))
    return results


# --- published vs measured tables -----------------------------------------------------------

def _measured_params(rows: pd.DataFrame) -> dict[int, float]:
    """Median params (M) of a model's rows, per class count."""
    by_classes = rows.groupby("num_classes")["params_m"].median()
    return {int(k): v for k, v in by_classes.items()}


def params_table(current: pd.DataFrame, published: dict) -> pd.DataFrame:
    """Published parameter counts beside the measured ``params_total`` of each model."""
    rows = ok_values(current, "params_total", published.get("aliases") or {})
    records = []
    for model, entry in published["models"].items():
        figure = entry.get("params") or {}
        measured = _measured_params(rows[rows["model_key"] == model])
        printed, classes = figure.get("value_m"), figure.get("num_classes")
        ratio = measured[classes] / printed if printed and classes in measured else float("nan")
        records.append({
            "model": model,
            "published params (M)": printed,
            "source": figure.get("source", ""),
            "measured params (M)": "; ".join(f"{v:.3f} ({k} classes)" for k, v in measured.items()),
            "measured / published": fmt(ratio),
            "counting note": figure.get("counting_note", ""),
        })
    return pd.DataFrame.from_records(records)


def _measured_miou(rows: pd.DataFrame, dataset: str) -> str:
    matching = rows[rows["dataset"].map(lambda d: dataset_matches(d, dataset))]
    return "; ".join(f"{r.miou_pct:.1f} ({r.dataset} {r.split}, {r.resolution})"
                     for r in matching.itertuples())


def miou_table(current: pd.DataFrame, published: dict) -> pd.DataFrame:
    """Each published mIoU figure beside the measured mIoU of the model on that data set."""
    rows = ok_values(current, "miou", published.get("aliases") or {})
    records = []
    for model, entry in published["models"].items():
        for figure in entry.get("miou") or []:
            measured = _measured_miou(rows[rows["model_key"] == model], figure["dataset"])
            records.append({
                "model": model, "dataset": figure["dataset"], "split": figure["split"],
                "published mIoU (%)": figure["value"], "source": figure["source"],
                "measured mIoU (%)": measured or f"no accuracy rows on {figure['dataset']}",
            })
    return pd.DataFrame.from_records(records)


def table6(current: pd.DataFrame, published: dict) -> pd.DataFrame:
    """SegNet Table 6 beside the measured peak memory and latency at 360x480, batch 1."""
    rows = with_model_key(current[(current["status"] == "ok") & (current["resolution"] == "360x480")
                                  & (current["batch_size"] == 1)], published.get("aliases") or {})
    records = []
    for entry in published.get("segnet_table6") or []:
        mine = rows[rows["model_key"] == entry["model"]] if entry["model"] else rows.iloc[0:0]
        measured = "; ".join(f"{r.peak_memory_mib:.0f} MiB, {r.latency_ms_median:.1f} ms ({r.device}, "
                             f"{r.precision})" for r in mine.itertuples())
        records.append({
            "model (SegNet Table 6)": entry["name"], "segbench model": entry["model"] or "",
            "forward ms": entry["forward_ms"], "inference MB": entry["inference_mb"],
            "training MB (batch 4)": entry["train_mb"],
            "measured peak, latency at 360x480 b1": measured or ("no rows" if entry["model"] else ""),
        })
    return pd.DataFrame.from_records(records)
