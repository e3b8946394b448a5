"""The page's first section: which model to pick for each device and resolution, under a budget,
with the evidence beside each pick.

One *setting* is a device, thread count, resolution, batch size, precision, layout and backend.
In each, every model with an ok latency row is a candidate with:

* **latency**: the median per batch and its 95% interval (one job: the median's distribution-free
  interval over its timed calls; several jobs: the t interval of their medians);
* **accuracy**, on one basis for the whole setting, so figures are only ranked against their own
  kind: *measured* mIoU (mean and t interval over seeds) when at least two candidates' runs meet
  the evidence bar (``conf/published.yaml`` ``evidence``); otherwise the *published* mIoU on one
  data set (the rows' own, else the one most candidates have a figure for), labelled with its
  paper; a model with neither has unknown accuracy and is never ranked on it.

A model is *dominated* when another is clearly better on one axis and not clearly worse on the
other ("clearly": the intervals do not overlap; published figures have no interval and are taken
as printed). The undominated models, fastest first, answer the question at every budget: each is
the pick for budgets from the upper end of its latency interval up to the next one's. Models
whose latency intervals overlap are ties, never ranked.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bench.formatting import significant
from bench.report.config import ReportConfig
from bench.report.evidence import EvidenceBar, evidence_gaps, seed_runs
from bench.report.html import esc, table_html
from bench.report.neutral import markdown_text
from bench.report.pareto import Interval, front as undominated, overlap
from bench.report.published import dataset_matches
from bench.report.repeats import spread
from bench.report.tables import latency_cell, memory_method, to_markdown

#: What one answer is about: everything that changes a latency besides the model.
SETTING = ["device", "threads", "resolution", "batch_size", "precision", "channels_last", "backend"]
PERCENT = 100.0
#: torchvision's published accuracy (conf/published.yaml ``torchvision_weights``): COCO val2017
#: images with the 20 VOC categories.
TORCHVISION_DATASET = "COCO val2017 (VOC labels)"


@dataclass(frozen=True)
class Accuracy:
    miou: Interval     # percent
    label: str         # e.g. "published: camvid test, Tiramisu Table 3" or "measured: 3 seeds"


@dataclass
class Candidate:
    model: str
    latency: Interval
    latency_text: str
    peak_mib: float
    memory_method: str
    params_m: float
    accuracy: Accuracy | None = None
    caveat: str = ""              # why the measured mIoU was not used ('' when none was measured)
    measured_text: str = ""       # the measured mIoU that was not used, e.g. "12.3 (1 seed)"
    elsewhere: str = ""           # a published figure on another data set, not comparable here

    def fits(self, config: ReportConfig) -> bool:
        return ((config.latency_budget_ms is None or self.latency.high <= config.latency_budget_ms)
                and (config.memory_budget_mib is None or self.peak_mib <= config.memory_budget_mib))


@dataclass
class Answer:
    title: str
    candidates: list[Candidate]   # fastest first
    basis: str                    # how accuracy was compared in this setting
    measured_basis: bool = False  # on measured mIoU (every run meeting the evidence bar), not published
    front: list[Candidate] = field(default_factory=list)
    picks: list[Candidate] = field(default_factory=list)   # under the configured budget
    pick_text: str = ""

    @property
    def thin_evidence(self) -> list[Candidate]:
        return [c for c in self.candidates if c.caveat]


def _latency(rows: pd.DataFrame) -> Interval:
    if len(rows) == 1:
        row = rows.iloc[0]
        median = float(row["latency_ms_median"])
        low, high = row.get("latency_ms_ci_low"), row.get("latency_ms_ci_high")
        if pd.isna(low) or pd.isna(high):
            return Interval.exact(median)
        return Interval(median, float(low), float(high))
    folded = spread(rows["latency_ms_median"])
    return Interval(folded.mean, folded.low, folded.high)


def _measured_accuracy(rows: pd.DataFrame, bar: EvidenceBar) -> tuple[Accuracy | None, str, str]:
    """(accuracy if the runs meet the bar, the reasons they do not, the measured figure in words)."""
    runs = seed_runs(rows)
    if runs.empty:
        return None, "", ""
    folded = spread(runs["miou"] * PERCENT)
    seeds = f"{len(runs)} seed{'s' if len(runs) != 1 else ''}"
    text = f"{significant(folded.mean)} ({seeds})"
    gaps = evidence_gaps(runs, bar)
    if gaps:
        return None, ", ".join(gaps), text
    miou = Interval(folded.mean, folded.low, folded.high)
    return Accuracy(miou, f"measured: {seeds}, {runs['dataset'].iloc[0]} {runs['split'].iloc[0]}"), "", text


def published_miou(published: dict) -> dict[str, list[dict]]:
    """Each model's published mIoU figures: dataset, split, value (percent) and source."""
    figures = {model: [dict(f) for f in entry.get("miou") or []]
               for model, entry in (published.get("models") or {}).items()}
    for model, weights in (published.get("torchvision_weights") or {}).items():
        figures.setdefault(model, []).append({
            "dataset": TORCHVISION_DATASET, "split": "val", "value": weights["miou"],
            "source": f"torchvision {weights['weights']}"})
    return figures


def _published_dataset(datasets: set[str], figures: dict[str, list[dict]], models: list[str]) -> str | None:
    """The rows' own data set where a paper printed figures for it, else the data set most of
    ``models`` have a published figure on."""
    printed = [f["dataset"] for m in models for f in figures.get(m, [])]
    for dataset in sorted(datasets):
        own = [name for name in printed if dataset_matches(dataset, name)]
        if own:
            return own[0]
    return max(sorted(set(printed)), key=printed.count) if printed else None


def _use_published(candidates: list[Candidate], keys: dict[str, str], figures: dict[str, list[dict]],
                   dataset: str | None) -> str:
    for candidate in candidates:
        mine = figures.get(keys[candidate.model], [])
        on_basis = [f for f in mine if f["dataset"] == dataset]
        if on_basis:
            f = on_basis[0]
            candidate.accuracy = Accuracy(Interval.exact(f["value"]),
                                          f"published: {f['dataset']} {f['split']}, {f['source']}")
        elif mine:
            f = mine[0]
            candidate.elsewhere = f"{f['value']:g} on {f['dataset']} {f['split']} ({f['source']})"
    if dataset is None:
        return "no model has a measured accuracy that meets the evidence bar or a published one"
    return (f"published mIoU on {dataset}, as each paper printed it (different training recipes, no "
            "interval): what the architecture reached when trained as its paper did, not a measurement "
            "of these rows")


def front(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates with known accuracy that no other candidate dominates (``bench.report.pareto``),
    fastest first; with no accuracy known at all, the fastest (and those tied with it): the pick
    by cost alone."""
    known = [c for c in candidates if c.accuracy is not None]
    if not known:
        return _ties(candidates[0], candidates, lambda c: c.latency)
    return [known[i] for i in undominated([(c.latency, c.accuracy.miou) for c in known])]


def _names(candidates: list[Candidate]) -> str:
    return ", ".join(c.model for c in candidates)


def _ties(best: Candidate, others: list[Candidate], key) -> list[Candidate]:
    """``best`` and the ``others`` whose interval of ``key`` overlaps it."""
    return [c for c in others if c is best or overlap(key(c), key(best))]


def pick(candidates: list[Candidate], config: ReportConfig) -> tuple[list[Candidate], str]:
    """The models to pick under ``config``'s budgets, and why, in words."""
    limits = [f"{significant(config.latency_budget_ms)} ms per batch" if config.latency_budget_ms else "",
              f"{significant(config.memory_budget_mib)} MiB" if config.memory_budget_mib else ""]
    budget = " and ".join(x for x in limits if x)
    fitting = [c for c in candidates if c.fits(config)]
    if not fitting:
        fastest = _ties(candidates[0], candidates, lambda c: c.latency)
        return [], (f"No model fits {budget}. The fastest: {_names(fastest)} "
                    f"({fastest[0].latency_text}, peak {significant(fastest[0].peak_mib)} MiB).")
    known = [c for c in fitting if c.accuracy is not None]
    if not known:
        fastest = _ties(fitting[0], fitting, lambda c: c.latency)
        return fastest, (f"Under {budget}, {len(fitting)} of {len(candidates)} models fit, none with a "
                         f"known accuracy: by cost alone, {_names(fastest)} "
                         f"{'tie as the fastest' if len(fastest) > 1 else 'is the fastest'}.")
    best = max(known, key=lambda c: c.accuracy.miou.value)
    chosen = _ties(best, known, lambda c: c.accuracy.miou)
    tie = (f"tie as the most accurate ({'; '.join(_accuracy_text(c) for c in chosen)})" if len(chosen) > 1
           else f"is the most accurate: mIoU {_accuracy_text(best)}")
    return chosen, (f"Under {budget}, {len(fitting)} of {len(candidates)} models fit (the upper end of the "
                    f"latency interval within the budget); {_names(chosen)} {tie}.")


def _candidates(rows: pd.DataFrame, keys: dict[str, str], bar: EvidenceBar) -> list[Candidate]:
    candidates = []
    for model, mine in rows.groupby("model", sort=True):
        timed = mine[mine["latency_ms_median"].notna()]
        accuracy, caveat, measured = _measured_accuracy(mine, bar)
        candidates.append(Candidate(
            model=model, latency=_latency(timed), latency_text=latency_cell(timed),
            peak_mib=float(timed["peak_memory_mib"].median()),
            memory_method=memory_method(timed["memory_counter"].dropna().iloc[0]
                                        if timed["memory_counter"].notna().any() else ""),
            params_m=float(timed["params_m"].median()), accuracy=accuracy, caveat=caveat,
            measured_text=measured))
    return sorted(candidates, key=lambda c: (c.latency.value, c.model))


def setting_title(setting: dict) -> str:
    threads = f" ({setting['threads']:.0f} threads)" if pd.notna(setting["threads"]) else ""
    layout = ", channels_last" if setting["channels_last"] else ""
    return (f"{str(setting['device']).upper()}{threads}, {setting['resolution']}, batch "
            f"{setting['batch_size']:.0f}, {setting['precision']}{layout}, {setting['backend']}")


def _order(setting: dict, pixels: float) -> tuple:
    """Devices in name order; within one, the largest resolution first, eager fp32 before variants."""
    return (str(setting["device"]), -pixels, setting["backend"] != "eager", setting["precision"] != "fp32",
            bool(setting["channels_last"]), setting["batch_size"], str(setting["threads"]))


def answers(current: pd.DataFrame, published: dict, config: ReportConfig = ReportConfig()) -> list[Answer]:
    """One Answer per setting measured with at least two models, in reading order."""
    aliases = published.get("aliases") or {}
    bar = EvidenceBar.from_published(published)
    figures = published_miou(published)
    rows = current[current["status"] == "ok"].fillna({"channels_last": False})
    found = []
    for key, mine in rows.groupby(SETTING, sort=False, dropna=False):
        mine = mine[mine["model"].isin(mine.loc[mine["latency_ms_median"].notna(), "model"])]
        if mine["model"].nunique() < 2:
            continue
        setting = dict(zip(SETTING, key))
        keys = {m: aliases.get(m, m) for m in mine["model"].unique()}
        candidates = _candidates(mine, keys, bar)
        measured = sum(c.accuracy is not None for c in candidates) >= 2
        if measured:
            for c in candidates:
                if c.accuracy is None and c.measured_text and not c.caveat:
                    c.caveat = "no measured accuracy"
            basis = "measured mIoU over seeds, every run meeting the evidence bar"
        else:
            for c in candidates:
                c.accuracy = None
            dataset = _published_dataset(set(mine["dataset"]), figures, list(keys.values()))
            basis = _use_published(candidates, keys, figures, dataset)
        answer = Answer(setting_title(setting), candidates, basis, measured_basis=measured,
                        front=front(candidates))
        if config.latency_budget_ms is not None or config.memory_budget_mib is not None:
            answer.picks, answer.pick_text = pick(candidates, config)
        found.append((_order(setting, float(mine["pixels"].iloc[0])), answer))
    return [answer for _, answer in sorted(found, key=lambda pair: pair[0])]


# --- rendering --------------------------------------------------------------------------------

def _accuracy_text(c: Candidate) -> str:
    if c.accuracy is None:
        return "unknown" + (f" here (published {c.elsewhere})" if c.elsewhere else "")
    miou = c.accuracy.miou
    interval = f" [{significant(miou.low)}, {significant(miou.high)}]" if miou.high > miou.low else ""
    return f"{significant(miou.value)}{interval} ({c.accuracy.label})"


def front_table(answer: Answer) -> pd.DataFrame:
    """The undominated models, fastest first: the budget from which each is the pick, its costs
    and the accuracy it was picked on; ties marked."""
    records = []
    for c in answer.front:
        tied = [o.model for o in answer.front if o is not c and overlap(o.latency, c.latency)]
        records.append({
            "latency budget per batch": f"≥ {significant(c.latency.high)} ms",
            "pick": c.model + (f" (tie on latency with {', '.join(tied)})" if tied else ""),
            "latency/batch ms, median [95% CI] n": c.latency_text,
            f"peak MiB ({c.memory_method})": significant(c.peak_mib),
            "params (M)": significant(c.params_m),
            "mIoU (%)": _accuracy_text(c),
            "measured mIoU here (not used: thin evidence)": (f"{c.measured_text}: {c.caveat}" if c.caveat else ""),
        })
    frame = pd.DataFrame.from_records(records)
    if not frame.empty and not frame.iloc[:, -1].any():
        frame = frame.iloc[:, :-1]
    return frame


def _summary_lines(answer: Answer) -> list[str]:
    """The lines under the front table: the accuracy basis, the models not placed, the dominated."""
    lines = [f"Accuracy basis: {answer.basis}."]
    placed = set(id(c) for c in answer.front)
    unknown = [c for c in answer.candidates if c.accuracy is None and id(c) not in placed]
    if unknown:
        lines.append("Accuracy unknown on this basis, so not placed (median latency; published elsewhere): "
                     + "; ".join(f"{c.model} {significant(c.latency.value)} ms"
                                 + (f" ({c.elsewhere})" if c.elsewhere else "") for c in unknown) + ".")
    dominated = [c for c in answer.candidates if c.accuracy is not None and id(c) not in placed]
    if dominated:
        lines.append("Dominated by a model above (less accurate and not clearly faster, or clearly slower "
                     "and no more accurate): " + _names(dominated) + ".")
    return lines


def caveat_text(answer: Answer) -> str:
    thin = answer.thin_evidence
    if not thin:
        return ""
    return (f"Measured accuracy is not decision-grade here: the mIoU of {len(thin)} model"
            f"{'s' if len(thin) != 1 else ''} fell short of the evidence bar "
            f"({'; '.join(f'{c.model}: {c.caveat}' for c in thin)}). "
            "No pick or ranking is drawn from it.")


def _parts(answer: Answer) -> list[tuple[str, object]]:
    """One setting's answer as (kind, content) parts, in reading order, for either renderer."""
    parts: list[tuple[str, object]] = [("heading", answer.title)]
    if answer.pick_text:
        parts.append(("pick", answer.pick_text))
    if caveat_text(answer):
        parts.append(("caveat", caveat_text(answer)))
    return parts + [("table", front_table(answer)), ("lines", _summary_lines(answer))]


HTML = {
    "heading": lambda text: f"<h3>{esc(text)}</h3>",
    "pick": lambda text: f'<p class="pick"><b>{esc(text)}</b></p>',
    "caveat": lambda text: f'<p class="notice">⚠ {esc(text)}</p>',
    "table": table_html,
    "lines": lambda lines: '<ul class="small">' + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ul>",
}
MARKDOWN = {
    "heading": lambda text: f"## {markdown_text(text)}\n",
    "pick": lambda text: f"**{markdown_text(text)}**\n",
    "caveat": lambda text: f"> ⚠ {markdown_text(text)}\n",
    "table": to_markdown,
    "lines": lambda lines: "\n".join(f"- {markdown_text(line)}" for line in lines) + "\n",
}


def answer_html(answers_: list[Answer], config: ReportConfig) -> str:
    if not answers_:
        return ("<p>No setting has ok latency rows for two or more models yet: run a grid, e.g. "
                "<code>make bench</code>.</p>")
    budget = ("" if config.latency_budget_ms is None and config.memory_budget_mib is None else
              " The budget set for this report (<code>report.latency_budget_ms</code>, "
              "<code>report.memory_budget_mib</code>) gives the pick in bold.")
    intro = ("<p>Per setting, the models worth picking: each is the pick for latency budgets from "
             "the upper end of its 95% interval up to the next line's; models whose intervals overlap "
             "are ties. Set a budget with <code>python -m bench.report report.latency_budget_ms=50</code>."
             + budget + "</p>")
    return "\n".join([intro] + [HTML[kind](content) for a in answers_ for kind, content in _parts(a)])


def answer_markdown(answers_: list[Answer]) -> str:
    return "\n".join(["# Which model?\n"] + [MARKDOWN[kind](content) for a in answers_ for kind, content in _parts(a)])
