"""The self-contained HTML page: inline CSS, figures embedded as base64 PNG data URIs."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from bench.report.frame import json_value
from bench.report.published import ClaimResult
from bench.report.tables import distinct

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; padding: 0 1em; }
h1, h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0 1.5em; }
.wide { overflow-x: auto; }
ul.small { font-size: 13px; color: #444; }
.pick { font-size: 15px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 14px; }
.notice { background: #fff4e5; border-left: 4px solid #f0a020; padding: .5em 1em; }
.verdict { font-weight: bold; padding: 1px 6px; border-radius: 3px; }
.holds { background: #dff3e0; } .does-not-hold { background: #fbe0e0; }
.mixed, .holds-where-tested { background: #fff4d6; } .not-tested-yet { background: #eee; }
.inconclusive { background: #e6eef7; }
code { background: #f3f3f3; padding: 0 3px; }
"""


def esc(text) -> str:
    return html.escape(str(text))


def table_html(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p>(none)</p>"
    # In a box that scrolls sideways: a wide table never makes the page scroll.
    return f'<div class="wide">{frame.to_html(index=False, border=0, na_rep="", escape=True)}</div>'


def interactive_assets() -> str:
    """itables' DataTables bundle (JavaScript and CSS), inlined once, so the page's interactive
    tables work offline and the page stays one self-contained file."""
    from itables.javascript import generate_init_offline_itables_html
    from itables.options import dt_bundle
    return generate_init_offline_itables_html(dt_bundle)


def interactive_table_html(frame: pd.DataFrame) -> str:
    """``frame`` as a sortable, searchable, paged table (itables/DataTables), every row included."""
    if frame.empty:
        return "<p>(none)</p>"
    from itables import to_html_datatable
    # maxBytes=0: itables would otherwise drop rows of a large table to keep notebooks light.
    # Floats go as numbers (the tables round them), which is also 3x faster than formatting them.
    # scrollX: a wide table scrolls inside its box, never the page.
    return to_html_datatable(frame, connected=False, maxBytes=0, pageLength=25, classes="display compact",
                             showIndex=False, format_floats_in_python=False, scrollX=True)


def image_html(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>\n{body}\n</body></html>\n")


def unreadable_notice(unreadable: list[Path]) -> str:
    if not unreadable:
        return ""
    names = ", ".join(str(p) for p in unreadable)
    return (f'<p class="notice">{len(unreadable)} incomplete or corrupt row files were skipped: '
            f"{esc(names)}</p>")


def empty_page(results_dir: Path, unreadable: list[Path]) -> str:
    body = (f"<p>No result rows in <code>{esc(results_dir / 'rows')}</code> yet.</p>"
            "<p>Produce rows with <code>make bench</code> (the default grid), or one job with "
            "<code>python -m bench model=unet resolution=128x128</code>, then regenerate this page "
            "with <code>make report</code> (<code>python -m bench.report</code>).</p>"
            + unreadable_notice(unreadable))
    return page("segbench report", body)


def _css_class(verdict: str) -> str:
    return verdict.replace(" ", "-")


def _claim_line_html(result: ClaimResult) -> str:
    """The claim's one line (``ClaimResult.line``) in HTML: verdict, claim, what was tested, what
    was not, and the commands that would test it."""
    parts = [f'<span class="verdict {_css_class(result.verdict)}">{esc(result.verdict)}</span> '
             f"{esc(result.claim['claim'])}"]
    if result.tested:
        parts.append(f"<b>Tested:</b> {esc('; '.join(result.tested))}.")
    if result.untested:
        parts.append(f"<b>Not tested:</b> {esc('; '.join(result.untested))}.")
    if result.commands:
        parts.append("<b>To test:</b> " + ", ".join(f"<code>{esc(c)}</code>" for c in result.commands) + ".")
    return " ".join(parts)


def claims_html(results: list[ClaimResult]) -> str:
    """Each claim as one line (its verdict, what was tested and what not, the command that would
    test the rest), with the published figures and every test's evidence collapsed under it."""
    parts = ["<p>Verdicts compare the current ok rows only, in settings where both models were "
             "measured alike; accuracy rows trained briefly on synthetic data test the direction "
             "of a claim under those conditions, not the published numbers. One line per claim: its "
             "verdict, what was tested, what was not and the command that would test it; the "
             "published figures and each test's evidence are folded below it.</p>"]
    for result in results:
        claim = result.claim
        tests = "".join(
            f'<li><span class="verdict {_css_class(t.verdict)}">{esc(t.text)}</span> '
            f"<small>({esc(t.compared)})</small>"
            + ("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in t.evidence) + "</ul>" if t.evidence else "")
            + "</li>"
            for t in result.tests)
        parts.append(
            f'<p class="claim">{_claim_line_html(result)}</p>'
            f"<details><summary>Published figures and the evidence of each test</summary>"
            f"<p>Published: {esc(claim['published'])} <em>({esc(claim['source'])})</em></p>"
            f"<ul>{tests}</ul></details>")
    return "\n".join(parts)


def _min_run_times(current: pd.DataFrame) -> str:
    """The latency loop's ``measure.min_run_time`` from each row's resolved config."""
    def read(config: str):
        return json_value(config, {}).get("measure", {}).get("min_run_time")
    return distinct(current["config"].drop_duplicates().map(read)) + " s"


def methods_html(current: pd.DataFrame) -> str:
    """How each figure was measured, with the instruments and settings the rows record."""
    ok = current[current["status"] == "ok"]
    iters = ok["latency_iters"].dropna()
    iter_range = (f"{iters.min():.0f}" + (f" to {iters.max():.0f}" if iters.max() > iters.min() else "")
                  if not iters.empty else "none recorded")
    items = [
        ("Parameters", "<code>params_total</code>: every registered parameter (trainable and not); "
                       "buffers such as BatchNorm running statistics are not parameters. For the "
                       "adversarial model, size, FLOPs, memory and latency are the segmentor's alone "
                       "(inference never runs the adversary), whose size is stored apart "
                       "(<code>adversary_params_total</code>); its training step trains both."),
        ("FLOPs", f"counted by {esc(distinct(ok['flop_counter']))}; unit: {esc(distinct(ok['flop_unit']))}."),
        ("Latency", f"{esc(distinct(ok['warmup_iters']))} warm-up iterations, then each iteration timed "
                    f"on its own with {esc(distinct(ok['timer']))}, at least "
                    f"{esc(_min_run_times(ok))} of timed iterations and the minimum count, until the "
                    "median's 95% interval is within <code>measure.rel_ci</code> of it or "
                    f"<code>measure.max_run_time</code> is reached ({iter_range} iterations per row); "
                    "reported: median per batch with its distribution-free 95% interval (order "
                    "statistics) and n, 90th percentile, and throughput = batch size / median."),
        ("Memory", "one inference forward pass; every memory column names its method: "
                   "<i>allocator</i> (PyTorch's allocator: the CUDA peak, or on the CPU the profiler's "
                   "allocation events) or <i>resident-set growth</i> (ONNX Runtime, whose allocator "
                   f"exposes no statistics). Counters in these rows: {esc(distinct(ok['memory_counter']))}; "
                   "peak = weights + input + activation peak; activation = peak above the "
                   "pre-forward baseline, operator workspaces included. On CPU the activation "
                   "tensors alone (what operators return, without their internal buffers) are "
                   "stored as <code>tensor_activation_peak_mib</code>."),
        ("Training step", "forward, pixel-wise cross-entropy (a band of ignored pixels), backward and "
                          f"the train config's optimizer step ({esc(distinct(ok['train_optimizer']))}) "
                          "at learning rate 0, on a random batch; timed with the latency loop above; "
                          "its peak memory = weights + gradients + optimizer state + batch + the "
                          f"rise during one more step, counted by {esc(distinct(ok['train_memory_counter']))}; "
                          "saved for backward = bytes autograd keeps from one forward pass and loss, "
                          "each storage once, weights excluded. Measured in eager fp32 rows."),
        ("Deployment backends", f"backends {esc(distinct(current['backend']))}; exported with "
                                f"{esc(distinct(ok['backend_exporter']))} and run by "
                                f"{esc(distinct(ok['backend_runtime']))}; each non-eager backend's "
                                "logits compared with eager's on the same input before timing "
                                "(max absolute difference, argmax agreement over the pixels; below "
                                f"{esc(distinct(current['parity_threshold']))} the row is a mismatch "
                                "and is not timed)."),
        ("Efficiency", "achieved FLOP/s = FLOPs per image x batch / median latency; fraction of "
                       f"the machine's peak measured as {esc(distinct(ok['peak_method']))}."),
        ("Accuracy", "a confusion matrix accumulated over the whole evaluation split (splits: "
                     f"{esc(distinct(ok['split']))}); IoU per class = TP / (TP + FP + FN); classes "
                     "absent from both prediction and ground truth are left out of the mean (mIoU)."),
    ]
    return "<ul>" + "".join(f"<li><b>{name}</b>: {text}</li>" for name, text in items) + "</ul>"
