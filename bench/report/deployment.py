"""The best deployment of each architecture: per model, device, threads, resolution and batch, the fastest
backend/precision/layout whose predictions matched eager's (``status=ok``: parity on a random input
and, with trained weights, the accuracy gate on validation images), its speed-up over eager fp32
with a 95% interval from both rows' raw per-call times, and the share of fp32 eager's mIoU it kept.
(Its figure, latency per backend per model, is drawn in ``bench.report.plots``.)"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.compare import MIN_CALLS, ratio_test
from bench.report.frame import json_value
from bench.report.tables import fmt

#: One deployment question: these are fixed, the backend, precision and layout vary.
SETTING = ["model", "device", "threads", "resolution", "batch_size"]


def _variant(row) -> str:
    layout = ", channels_last" if row.channels_last else ""
    return f"{row.backend} {row.precision}{layout}"


def _timed(current: pd.DataFrame) -> pd.DataFrame:
    """Rows that ran a latency loop or stopped at the parity check, one per variant of a setting."""
    rows = current[current["status"].isin(["ok", "mismatch"])]
    rows = rows[rows["latency_ms_median"].notna() | (rows["status"] == "mismatch")]
    # Accuracy and profile rows of one variant time the same thing: keep the newest.
    return rows.sort_values("finished_at").drop_duplicates(
        [*SETTING, "backend", "precision", "channels_last"], keep="last")


def _compared(group: pd.DataFrame) -> str:
    parts = []
    variants = group[["latency_ms_median", "status", "backend", "precision", "channels_last"]]
    for row in variants.sort_values("latency_ms_median", na_position="last").itertuples():
        shown = "mismatch" if row.status == "mismatch" else f"{row.latency_ms_median:.2f} ms"
        parts.append(f"{_variant(row)}: {shown}")
    return "; ".join(parts)


def best_deployment_table(current: pd.DataFrame) -> pd.DataFrame:
    """One line per setting measured with more than one backend, precision or layout."""
    lines = []
    for setting, group in _timed(current).groupby(SETTING, sort=True):
        if len(group) < 2:
            continue
        faithful = group[group["status"] == "ok"]
        names = dict(zip(["model", "device", "threads", "resolution", "batch"], setting))
        if faithful.empty:
            lines.append({**names, "fastest faithful deployment": "none passed parity",
                          "all variants": _compared(group)})
            continue
        best = faithful.loc[faithful["latency_ms_median"].idxmin()]
        eager = faithful[(faithful["backend"] == "eager") & (faithful["precision"] == "fp32")
                         & ~faithful["channels_last"].astype(bool)]
        eager_ms = eager["latency_ms_median"].iloc[0] if len(eager) else np.nan
        eager_times = eager["latency_times_ms"].iloc[0] if len(eager) else ""
        lines.append({
            **names,
            "fastest faithful deployment": _variant(best),
            "latency/batch ms, median": fmt(best["latency_ms_median"]),
            "eager fp32 ms": fmt(eager_ms),
            SPEED_UP: _speed_up(eager_ms, eager_times, best),
            "max abs logit diff": fmt(best["parity_max_abs_diff"], "{:.1e}"),
            "argmax agreement": fmt(best["parity_argmax_agreement"], "{:.4%}"),
            "accuracy kept (gate)": _gate(best),
            "GFLOP/s (of peak)": _efficiency(best),
            "all variants": _compared(group),
        })
    return pd.DataFrame(lines)


#: The speed-up's interval: bench.compare's bootstrap of the ratio of medians over both rows' raw calls.
SPEED_UP = "speed-up over eager fp32 [95% CI]"


def _speed_up(eager_ms: float, eager_times: str, best) -> str:
    """eager fp32's median latency over the deployment's, with the interval ``bench.compare`` gives
    the same ratio from both rows' raw per-call times (JSON text in the frame)."""
    test = ratio_test(json_value(best["latency_times_ms"], []), json_value(eager_times, []), p_value=False)
    if test is None:
        ratio = fmt(eager_ms / best["latency_ms_median"], "{:.2f}x")
        return f"{ratio} (no interval: under {MIN_CALLS} raw times a side)" if ratio else ""
    return f"{test.ratio:.2f}x [{test.low:.2f}, {test.high:.2f}]"


def _gate(row) -> str:
    """The accuracy gate's figure (bench/measure/accuracy_gate.py), or why there is none."""
    if row.get("gate_gated") is True:
        return f"{fmt(row['gate_ratio'], '{:.2%}')} of fp32 eager's mIoU ({row['gate_images']:.0f} val images)"
    if row.get("gate_gated") is False:
        return "not gated: random weights" if str(row.get("gate_weights")).startswith("random") else "not gated"
    return ""


def _efficiency(row) -> str:
    if pd.isna(row["achieved_flops_per_s"]):
        return ""
    text = f"{row['achieved_flops_per_s'] / 1e9:.0f} ({fmt(row['peak_fraction'], '{:.0%}')})"
    if row.get("peak_exceeded") is True:  # the FLOP count overstates the work (see the row's peak_note)
        text += " above the matmul peak: fewer multiply-adds than counted (e.g. Winograd)"
    return text
