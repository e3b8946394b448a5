"""``write_report``: every report file, regenerated from the stored rows alone."""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from bench.report import html
from bench.report.answer import Answer, answer_html, answer_markdown, answers
from bench.report.config import ReportConfig
from bench.report.contenders import COUNTING_NOTE, contenders_table
from bench.report.evidence import EvidenceBar
from bench.report.deployment import best_deployment_table
from bench.report.frame import load_frame
from bench.report.neutral import csv_safe, markdown_text
from bench.report.tasks import run_tasks
from bench.report.published import (
    ClaimResult, decoder_storage_table, densenet_memory_table, evaluate_claims, int64_note,
    load_published, miou_table, params_table, table6, table6_note)
from bench.report.tables import (
    Headline, accuracy_heading, accuracy_table, environment_table, failures_table, headline, jobs_table, to_markdown)

log = logging.getLogger(__name__)
REPORT_DIR = "report"


def write_tidy(everything: pd.DataFrame, results_dir: Path) -> list[Path]:
    """summary.csv / summary.parquet (one row per job, the newest: ``is_current``) and history.csv
    (every row); the CSV files with formula-like strings neutralised (spreadsheets open them),
    Parquet as stored."""
    paths = [results_dir / "summary.csv", results_dir / "summary.parquet", results_dir / "history.csv"]
    # Through Arrow: the same frames as pandas would write, ten times faster on 10,000 rows.
    everything_table = pa.Table.from_pandas(everything, preserve_index=False)
    current_table = everything_table.filter(everything_table["is_current"]).drop_columns(["is_current"])
    pa_csv.write_csv(csv_safe(current_table), paths[0])
    pq.write_table(current_table, paths[1])
    pa_csv.write_csv(csv_safe(everything_table), paths[2])
    return paths


def _claims_markdown(results: list[ClaimResult]) -> str:
    """One bullet per claim (``ClaimResult.line``: verdict, what was tested and what not, the
    commands that would test the rest), its published figures and evidence as sub-bullets."""
    def code(text: str) -> str:  # a code span renders its text as is: fenced past any backtick run
        text = " ".join(str(text).split())
        runs = "".join(c if c == "`" else " " for c in text).split()
        fence = "`" * (1 + max((len(run) for run in runs), default=0))
        pad = " " if text.startswith("`") or text.endswith("`") else ""
        return f"{fence}{pad}{text}{pad}{fence}"

    lines = []
    for result in results:
        claim = result.claim
        line = f"- **{markdown_text(result.verdict)}**: {markdown_text(claim['claim'])}"
        if result.tested:
            line += f" Tested: {markdown_text('; '.join(result.tested))}."
        if result.untested:
            line += f" Not tested: {markdown_text('; '.join(result.untested))}."
        if result.commands:
            line += " To test: " + ", ".join(code(c) for c in result.commands) + "."
        lines.append(line)
        lines.append(f"  - Published: {markdown_text(claim['published'])} ({markdown_text(claim['source'])})")
        for test in result.tests:  # they name models
            lines.append(f"  - {markdown_text(test.text)}")
            lines += [f"    - {markdown_text(evidence)}" for evidence in test.evidence]
    return "\n".join(lines) + "\n"


#: The published-vs-measured tables, in reading order.
CONTENDERS_TITLE = "torchvision contenders: published vs measured"
PUBLISHED_TABLES = ("Parameters", "mIoU", "SegNet Table 6", "Decoder storage",
                    "FC-DenseNet memory-efficient mode", CONTENDERS_TITLE)


def headline_markdown(table: Headline) -> str:
    groups = "\n".join(f"## {markdown_text(title)}\n\n{to_markdown(lines)}" for title, lines in table.groups)
    return f"# Headline\n\n{markdown_text(table.caption)}\n\n{groups}"


def write_markdown(tables: dict[str, pd.DataFrame], top: Headline, picks: list[Answer], claims: list[ClaimResult],
                   out_dir: Path, notes: dict[str, str], accuracy_heading: str = "Accuracy") -> list[Path]:
    """answer.md (which model), headline.md, deployment.md, accuracy.md, failures.md and
    published.md (published vs measured, claims).

    ``notes``: the paragraph shown below a published table, by its title.
    """
    published = "\n".join(f"## {title}\n\n{to_markdown(tables[title])}"
                          + (f"\n{markdown_text(notes[title])}\n" if title in notes else "")
                          for title in PUBLISHED_TABLES)
    texts = {
        "answer.md": answer_markdown(picks),
        "headline.md": headline_markdown(top),
        "deployment.md": f"# Best deployment\n\n{to_markdown(tables['Best deployment'])}",
        "accuracy.md": f"# {markdown_text(accuracy_heading)}\n\n{to_markdown(tables['Accuracy'])}",
        "failures.md": f"# Failures\n\n{to_markdown(tables['Failures'])}",
        "published.md": f"# Published vs measured\n\n{published}\n## Claims\n\n{_claims_markdown(claims)}",
    }
    for name, text in texts.items():
        (out_dir / name).write_text(text)
    return [out_dir / name for name in texts]


def _counts_html(everything: pd.DataFrame, current: pd.DataFrame) -> str:
    history = len(everything) - len(current)
    failed = int((current["status"] != "ok").sum())
    return (f"<p>{len(everything)} rows: {len(current)} jobs (newest row of each shown; {failed} not ok) "
            f"and {history} history rows from earlier runs of the same jobs.</p>")


def tables_of(current: pd.DataFrame, published: dict, bar: EvidenceBar) -> tuple[dict, dict[str, str]]:
    """The report's tables by title (but the all-jobs table: ``all_jobs_html``), and the notes
    shown below some of them."""
    tables = {
        "Best deployment": best_deployment_table(current),
        "Accuracy": accuracy_table(current, bar),
        "Failures": failures_table(current),
        "Parameters": params_table(current, published),
        "mIoU": miou_table(current, published),
        "SegNet Table 6": table6(current, published),
        "Decoder storage": decoder_storage_table(current, published),
        "FC-DenseNet memory-efficient mode": densenet_memory_table(current, published),
        CONTENDERS_TITLE: contenders_table(current, published),
    }
    notes = {"Decoder storage": int64_note(current, published), CONTENDERS_TITLE: COUNTING_NOTE,
             "SegNet Table 6": table6_note(published)}
    return tables, notes


def all_jobs_html(current: pd.DataFrame) -> str:
    """The all-jobs table as its interactive HTML: the costliest table of a large page."""
    return html.interactive_table_html(jobs_table(current))


def headline_html(table: Headline) -> str:
    return (f"<p>{html.esc(table.caption)}.</p>" if table.caption else "") + "".join(
        f"<h3>{html.esc(title)}</h3>" + html.table_html(lines) for title, lines in table.groups)


def report_body(everything, current, unreadable, tables, top, picks, config, claims, figures, notes,
                table_notes, all_jobs) -> str:
    """The HTML page's sections, in reading order; ``table_notes`` as for ``write_markdown``."""
    sections = [
        html.unreadable_notice(unreadable),
        "<h2>Which model?</h2>" + answer_html(picks, config),
        "<h2>Headline</h2><p>One line per configuration, fastest first within each device and "
        "resolution. Latency per batch: one job's median with the median's distribution-free 95% "
        "interval and the number of timed calls, <i>median [low, high] n=calls</i>; several jobs "
        "(repeats): the mean of their medians with its 95% t interval and <i>n=jobs</i>. <i>short of "
        "±3%</i>: the loop stopped at <code>measure.max_run_time</code> before its interval was "
        "within <code>measure.rel_ci</code>; <i>UNDER LOAD</i>: other processes took over 10% of "
        "the CPU while it was timed: read neither as a ranking. Three significant figures. Every job "
        "is in <a href=\"#all-jobs\">All jobs</a>.</p>" + headline_html(top),
        "<h2>Best deployment</h2><p>Per model, device, resolution and batch measured on more than "
        "one backend, precision or layout: the fastest whose logits passed the parity check "
        "against eager (argmax agreement at least <code>parity.min_argmax_agreement</code>), and "
        "its speed-up over eager fp32, the ratio of medians with a 95% percentile-bootstrap interval "
        "from both rows' raw per-call times (as <code>python -m bench.compare</code> gives it). "
        "GFLOP/s is the model's FLOPs over the median latency; the percentage is of the machine's measured matmul peak.</p>"
        + html.table_html(tables["Best deployment"]),
        f"<h2>{html.esc(accuracy_heading(current))}</h2><p>One line per configuration: its seeds' "
        "mean ± standard deviation, the 95% t interval of the mean and n; the training budget and "
        "the steps it gave; the best validation point of each seed and the training time to the "
        "target mIoU (<code>train.target_miou</code>).</p>" + html.table_html(tables["Accuracy"]),
        "<h2>Failures</h2><p>Jobs whose newest row is not ok, with the cause; and ok jobs one of whose "
        "optional instruments (forward memory, training step, energy, efficiency) could not run "
        "(<i>ok, partly</i>): their other figures stand.</p>" + html.interactive_table_html(tables["Failures"]),
        "<h2 id=\"all-jobs\">All jobs</h2>" + _counts_html(everything, current)
        + "<p>The newest row of every job; sort by any column, filter with the search box.</p>"
        + all_jobs,
        "<h2>Published vs measured</h2><h3>Parameters</h3>" + html.table_html(tables["Parameters"])
        + "<h3>mIoU</h3>" + html.table_html(tables["mIoU"])
        + "<h3>SegNet Table 6 (Caffe, GPU)</h3>" + html.table_html(tables["SegNet Table 6"])
        + f"<p>{html.esc(table_notes['SegNet Table 6'])}</p>"
        + "<h3>Decoder storage per image (SegNet sec. 3.1, Table 1)</h3>"
        + html.table_html(tables["Decoder storage"]) + f"<p>{html.esc(table_notes['Decoder storage'])}</p>"
        + "<h3>FC-DenseNet memory-efficient mode</h3>"
        + html.table_html(tables["FC-DenseNet memory-efficient mode"])
        + f"<h3>{html.esc(CONTENDERS_TITLE)}</h3>" + html.table_html(tables[CONTENDERS_TITLE])
        + f"<p>{html.esc(table_notes[CONTENDERS_TITLE])}</p>",
        "<h2>Claims</h2>" + html.claims_html(claims),
        "<h2>Figures</h2>" + "".join(html.image_html(p, c) for p, c in figures)
        + "".join(f"<p><small>{html.esc(n)}</small></p>" for n in notes),
        "<h2>How each figure was measured</h2>" + html.methods_html(current),
        "<h2>Environment</h2>" + html.table_html(environment_table(everything)),
    ]
    return "\n".join(sections)


def write_outputs(results_dir: str | Path, config: ReportConfig = ReportConfig()) -> list[Path]:
    """Write every report file for the rows under ``results_dir``; index.html comes last."""
    results_dir = Path(results_dir)
    out_dir = results_dir / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    everything, current, loaded = load_frame(results_dir)
    unreadable = loaded.unreadable
    for line in loaded.warning_lines():  # on the console too: a page is easy not to read
        log.warning(line)
    index = out_dir / "index.html"
    if current.empty:
        index.write_text(html.empty_page(results_dir, unreadable))
        return [*write_tidy(everything, results_dir), index]

    # In other processes (``run_tasks``), while this one builds the tables: the all-jobs table,
    # the tidy files, the figures and the data-set sample, which the rest of the page does not wait
    # for. The first two start at once: they need no drawing modules, which this process imports
    # meanwhile (matplotlib and scipy's t quantile, about a second of CPU on a 2-core machine),
    # so that the figure workers, forked after it, inherit them rather than import them each.
    tabulating = run_tasks([functools.partial(all_jobs_html, current),
                            functools.partial(write_tidy, everything, results_dir)])
    import scipy.special  # noqa: F401, PLC0415  (the error bars' and the headline's t quantile)

    from bench.report.plots import SAVE, figure_work  # noqa: PLC0415
    from bench.report.sample import CAPTION, write_sample  # noqa: PLC0415
    figure_tasks, figures_of = figure_work(current, out_dir, results_dir / "cache")
    drawing = run_tasks([*figure_tasks,
                         functools.partial(write_sample, current, results_dir / "cache", out_dir, SAVE)])
    published = load_published()
    bar = EvidenceBar.from_published(published)
    top, picks = headline(current, bar), answers(current, published, config)
    tables, table_notes = tables_of(current, published, bar)
    claims = evaluate_claims(current, published, picks)
    written = write_markdown(tables, top, picks, claims, out_dir, table_notes, accuracy_heading(current))
    all_jobs, tidy = tabulating.result()
    *drawings, (sample_path, why_not) = drawing.result()
    figures, notes = figures_of(drawings)
    if sample_path is None:
        notes.append(f"No data-set sample figure: {why_not}.")
    else:
        figures.append((sample_path, CAPTION))
    written += [*tidy, *(path for path, _ in figures)]
    body = report_body(everything, current, unreadable, tables, top, picks, config, claims, figures, notes,
                       table_notes, all_jobs)
    index.write_text(html.page("segbench report", html.interactive_assets() + body))
    return [*written, index]


def write_report(results_dir: str | Path, config: ReportConfig = ReportConfig()) -> Path:
    """Regenerate the summaries, tables, plots and ``report/index.html``; returns index.html."""
    return write_outputs(results_dir, config)[-1]
