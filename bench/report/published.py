"""Published figures (``conf/published.yaml``) beside the measured rows, and the claims tested.

Every verdict is computed from the current ``ok`` rows alone. Where the rows needed are missing,
the verdict says which rows would test the claim instead of falling back on a published figure.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import yaml

from bench.report.evidence import (ACCURACY_QUANTITIES, INCONCLUSIVE, PERCENT, EvidenceBar, combine, compare_setting,
                                   shortfalls)
from bench.report.frame import json_value
from bench.report.pareto import dominates
from bench.report.repeats import repeat_groups, spread_text
from bench.report.tables import fmt
from bench.schema import LOGITS_SHAPE_ERROR

PUBLISHED_YAML = Path(__file__).resolve().parents[2] / "conf" / "published.yaml"

#: How each claim quantity is shown: (factor applied to the stored value, format).
QUANTITY_FORMAT = {
    "params_total": (1e-6, "{:.2f}M"),
    "flops_per_image": (1e-9, "{:.2f} GFLOP"),
    "activation_peak_mib": (1.0, "{:.1f} MiB"),
    "peak_memory_mib": (1.0, "{:.1f} MiB"),
    "miou": (100.0, "{:.1f}"),
    "boundary_miou": (100.0, "{:.1f}"),
    "train_peak_memory_mib": (1.0, "{:.1f} MiB"),
    "decoder_storage_mib": (1.0, "{:.3f} MiB"),
    "decoder_storage_paper_mib": (1.0, "{:.3f} MiB"),
    "decoder_storage_multiplier": (1.0, "{:.2f} maps"),
    "decoder_storage_multiplier_pytorch": (1.0, "{:.2f} maps"),
}
#: Verdicts from worst to best: a claim takes the worst verdict of its tests.
NOT_HOLD, MIXED, NOT_TESTED, PARTLY, HOLDS = (
    "does not hold", "mixed", "not tested yet", "holds where tested", "holds")


def load_published(path: str | Path = PUBLISHED_YAML) -> dict:
    # libyaml's safe loader where PyYAML has it: five times faster on this file, read on every report.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(Path(path).read_text(), Loader=loader)  # noqa: S506 (a safe loader)


def with_model_key(frame: pd.DataFrame, aliases: dict[str, str]) -> pd.DataFrame:
    """``frame`` plus ``model_key``: the model name with registry aliases resolved."""
    return frame.assign(model_key=frame["model"].map(lambda m: aliases.get(m, m)))


def ok_values(current: pd.DataFrame, quantity: str, aliases: dict[str, str],
              models: list[str] | None = None) -> pd.DataFrame:
    """Current ``ok`` rows holding ``quantity`` (of ``models`` only, when given), with ``model_key``.
    The rows are chosen before anything is copied: a claim reads a few of many thousand."""
    keep = (current["status"] == "ok") & current[quantity].notna()
    if models is not None:   # the row names that resolve to them: one look-up per distinct name
        keep &= current["model"].isin([m for m in current["model"].unique() if aliases.get(m, m) in models])
    return with_model_key(current[keep], aliases)


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
    short: str = ""       # the claim line's form: the figures measured, or what is missing
    missing: list[str] = field(default_factory=list)   # models without the rows the test needs

    @property
    def compared(self) -> str:
        """What the test compared, e.g. "params_total: fcdensenet103 vs fcn8s"."""
        test = self.test
        if test["compare"] == "every_size":
            return f"output size: {len(test['models'])} models at {_and(test['sizes'])}"
        if test["compare"] == "growth":
            return f"receptive field and parameters per layer: {test['model']}"
        if test["compare"] == "front":
            return f"place on the front of latency against accuracy: {_and(test['models'])}"
        return f"{test['quantity']}: {test['subject']} vs {test['other']}"


@dataclass
class ClaimResult:
    """A claim's verdict and, for its one line (``line``): the parts tested with their figures,
    the parts not tested and why, and the commands that would test them."""
    claim: dict
    verdict: str
    tests: list[TestResult]
    tested: list[str] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        """The claim in one line of plain text, e.g. "holds where tested: <claim> Tested: ...
        Not tested: ... To test: `python -m bench ...`."."""
        pieces = [f"{self.verdict}: {self.claim['claim']}"]
        if self.tested:
            pieces.append(f"Tested: {'; '.join(self.tested)}.")
        if self.untested:
            pieces.append(f"Not tested: {'; '.join(self.untested)}.")
        if self.commands:
            pieces.append(f"To test: {', '.join(f'`{c}`' for c in self.commands)}.")
        return " ".join(pieces)


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
    named = "" if test.get("label") else f" {test['quantity']}"  # a label names it already
    return f"{1 / advantage:.2f}x more{named}"


def _needs(test: dict) -> str:
    if test["compare"] == "ratio":
        return f"the claim needs {test['other']}/{test['subject']} above {test['threshold']:g}"
    return f"the claim needs a difference above {test['threshold']:g}"


def _setting(keys: list[str], values) -> str:
    values = values if isinstance(values, tuple) else (values,)
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values))


def _and(names) -> str:
    """Names joined in words: a; a and b; a, b and c."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _qualifier(test: dict) -> str:
    """What follows the figure on the claim line: the test's ``short``, else "than <other>"."""
    return test.get("short") or f"than {test['other']}"


def evaluate_test(current: pd.DataFrame, test: dict, aliases: dict[str, str],
                  bar: EvidenceBar = EvidenceBar(), fronts: list | None = None) -> TestResult:
    """Compare ``test['subject']`` with ``test['other']`` in every setting both were measured in.

    Deterministic quantities (parameters, memory) compare one value per model and setting;
    accuracy (``miou``) is compared over paired seeds and only on sufficient evidence
    (:mod:`bench.report.evidence`). ``fronts``: the page's answers (``bench.report.answer``),
    which a ``front`` test reads.
    """
    if test["compare"] == "front":
        return _front_test(test, fronts or [])
    if test["compare"] == "every_size":
        return _size_test(current, test, aliases)
    if test["compare"] == "growth":
        return _growth_test(current, test, aliases)
    quantity, subject, other, same = test["quantity"], test["subject"], test["other"], test["same"]
    rows = where(ok_values(current, quantity, aliases, [subject, other]), test.get("where"))
    missing = [m for m in (subject, other) if m not in set(rows["model_key"])]
    if missing:
        at = f" at {_setting(list(test['where']), tuple(test['where'].values()))}" if test.get("where") else ""
        return TestResult(test, NOT_TESTED,
                          f"{NOT_TESTED}: needs ok rows with {quantity} for {' and '.join(missing)}",
                          short=f"no ok {quantity} rows for {_and(missing)}{at}", missing=missing)
    if quantity in ACCURACY_QUANTITIES:
        return _accuracy_test(rows, test, bar)
    # Median over a model's rows in one setting (they differ only in axes outside `same`).
    table = (rows.groupby(same + ["model_key"], dropna=False)[quantity].median()
             .unstack("model_key").reindex(columns=[subject, other]).dropna())
    if table.empty:
        return TestResult(test, NOT_TESTED,
                          f"{NOT_TESTED}: needs {quantity} rows for {subject} and {other} "
                          f"with the same {', '.join(same)}",
                          short=f"no {quantity} rows of {subject} and {other} with the same {', '.join(same)}")
    advantages = [_advantage(test, s, o) for s, o in zip(table[subject], table[other])]
    held = [a > test["threshold"] for a in advantages]
    evidence = [
        f"{_setting(same, key)}: {subject} {show(quantity, s)} vs {other} {show(quantity, o)}"
        f" → {_show_advantage(test, a)}"
        for key, s, o, a in zip(table.index, table[subject], table[other], advantages)]
    verdict, text = _summarise(test, advantages, held)
    return TestResult(test, verdict, text, evidence, short=_short(test, advantages, held))


def _size_test(current: pd.DataFrame, test: dict, aliases: dict[str, str]) -> TestResult:
    """Every model of ``test['models']`` at every size of ``test['sizes']``: an ok row is a size
    whose logits were N x classes x input H x W (``bench.profile`` checks it), an error row saying
    the model returned another shape is a counterexample; sizes not run are untested."""
    models, sizes = test["models"], test["sizes"]
    rows = with_model_key(current[current["resolution"].isin(sizes)], aliases)
    rows = rows[rows["model_key"].isin(models)]
    kept = set(zip(rows.loc[rows["status"] == "ok", "model_key"], rows.loc[rows["status"] == "ok", "resolution"]))
    wrong = rows[rows["error"].fillna("").str.contains(LOGITS_SHAPE_ERROR, regex=False)]
    pairs = [(model, size) for model in models for size in sizes]
    if not kept and wrong.empty:
        return TestResult(test, NOT_TESTED, f"{NOT_TESTED}: needs profile rows at {_and(sizes)}",
                          short=f"no profile rows at {_and(sizes)}")
    kept_by = {size: [m for m in models if (m, size) in kept] for size in sizes}
    evidence = [f"{size}: output size kept by {_and(names) if names else 'no model run'}"
                for size, names in kept_by.items()]
    wrong = wrong[["model", "resolution", "error"]]   # itertuples of every column costs 40 ms a call
    evidence += [f"{row.model} at {row.resolution}: {row.error}" for row in wrong.itertuples()]
    measured = sum(pair in kept for pair in pairs)
    short = f"{measured} of {len(pairs)} model and size pairs kept the input's size"
    if not wrong.empty:
        short += f"; {_and(sorted(set(f'{r.model} at {r.resolution}' for r in wrong.itertuples())))} did not"
        return TestResult(test, NOT_HOLD, f"{NOT_HOLD}: {short}", evidence, short=short)
    verdict = HOLDS if measured == len(pairs) else PARTLY
    return TestResult(test, verdict, f"{verdict}: {short}", evidence, short=short)


def _front_test(test: dict, fronts: list) -> TestResult:
    """Where ``test['models']`` stand in each setting of the page's "Which model?" answers
    (``bench.report.answer``: a front of latency against accuracy, with intervals; accuracy
    measured where the runs meet the evidence bar, else published, labelled). It holds where one
    of them is on the front of every setting it was measured in with measured accuracy; a setting
    read on published accuracy (trained as the papers did, not these rows) makes it inconclusive."""
    models, evidence, placed, published_basis = test["models"], [], [], False
    for answer in fronts:
        mine = [c for c in answer.candidates if c.model in models]
        if not mine:
            continue
        published_basis |= not answer.measured_basis
        front_ids = {id(f) for f in answer.front}
        placed.append(any(id(c) in front_ids for c in mine))
        for c in mine:
            if id(c) in front_ids:
                where_ = f"on the front ({c.latency_text}, mIoU {_accuracy_words(c)})"
            elif c.accuracy is None:
                where_ = "not placed: accuracy unknown on this setting's basis"
            else:
                ahead = [f.model for f in answer.front
                         if f.accuracy is not None and dominates((f.latency, f.accuracy.miou),
                                                                 (c.latency, c.accuracy.miou))]
                where_ = f"dominated by {_and(ahead) if ahead else 'a model on the front'}"
            evidence.append(f"{answer.title}: {c.model} {where_}")
        evidence.append(f"{answer.title}: accuracy basis: {answer.basis}")
    if not placed:
        short = f"no setting measured {_and(models)} beside another model"
        return TestResult(test, NOT_TESTED, f"{NOT_TESTED}: {short}", short=short)
    short = f"on the front in {sum(placed)} of {len(placed)} settings"
    if published_basis:
        short += " by published accuracy (the papers' training, not these rows)"
        return TestResult(test, INCONCLUSIVE, f"{INCONCLUSIVE}: {short}", evidence, short=short)
    verdict = HOLDS if all(placed) else NOT_HOLD if not any(placed) else PARTLY
    return TestResult(test, verdict, f"{verdict}: {short}", evidence, short=short)


def _accuracy_words(candidate) -> str:
    miou = candidate.accuracy.miou
    return f"{miou.value:.3g} ({candidate.accuracy.label})"


def _growth_test(current: pd.DataFrame, test: dict, aliases: dict[str, str]) -> TestResult:
    """``test['model']``'s declared stack layer by layer (``growth_*``, bench/measure/receptive_field.py):
    its receptive fields equal to ``test['expected']`` (the paper's table), and over ``test['layers']``
    (the first and last layer, counted from 1) the field growing exponentially, each layer doubling
    it less one (3, 5, 9, 17: 2, 4, 8, 16 plus one), while each layer adds the same parameters.
    ``test['model_kwargs']``: the model options the rows must have been built with (the newest such
    row is read)."""
    model, options = test["model"], test.get("model_kwargs") or {}
    rows = with_model_key(current[current["status"] == "ok"], aliases)
    rows = rows[(rows["model_key"] == model) & (rows["growth_module"].fillna("") != "")]
    rows = rows[[options.items() <= json_value(kwargs, {}).items() for kwargs in rows["model_kwargs"]]]
    if rows.empty:
        return TestResult(test, NOT_TESTED, f"{NOT_TESTED}: needs an ok profile row of {model} with its "
                          "per-layer growth (rows of schema 6 or later)",
                          short=f"no ok {model} row with its per-layer growth", missing=[model])
    row = rows.iloc[-1]
    fields, params = json.loads(row["growth_receptive_fields"]), json.loads(row["growth_params"])
    first, last = test["layers"]
    span = range(first - 1, last)
    added = sorted({params[i] - (params[i - 1] if i else 0) for i in span})
    linear = len(added) == 1
    doubling = all(fields[i] - 1 == 2 * (fields[i - 1] - 1) for i in span if i > first - 1)
    as_printed = fields == test["expected"]

    def listed(values) -> str:
        return ", ".join(f"{v:,}" for v in values)
    evidence = [f"{model} {row['growth_module']}: receptive field after each layer {listed(fields)} px "
                f"(published: {listed(test['expected'])})",
                f"{model} {row['growth_module']}: parameters after each layer {listed(params)}"]
    short = "; ".join([
        f"receptive field {listed(fields)} px" + (" as published" if as_printed else
                                                   f", published {listed(test['expected'])}"),
        f"{'doubling' if doubling else 'not doubling'} over layers {first} to {last}",
        f"each of which adds {added[0]:,} parameters" if linear else f"whose parameters grow by {listed(added)}"])
    verdict = HOLDS if as_printed and doubling and linear else NOT_HOLD
    return TestResult(test, verdict, f"{verdict}: {short}", evidence, short=short)


def _short(test: dict, advantages: list[float], held: list[bool]) -> str:
    """The claim line's figure, e.g. "14.3x fewer parameters than fcn8s", "2.91x more per pixel"."""
    low, high = (_show_advantage(test, a) for a in (min(advantages), max(advantages)))
    shown = low if low == high else f"{low} to {high}"   # equal as shown: one figure
    where = ""
    if len(held) > 1:
        where = f" (in {len(held)} settings)" if all(held) or not any(held) else \
            f" (holds in {sum(held)} of {len(held)} settings)"
    return f"{shown} {_qualifier(test)}{where}"


def _paired(mine: pd.DataFrame, subject: str, other: str) -> dict[str, pd.DataFrame]:
    """Each model's rows of one setting by seed, the seeds both ran only (as ``compare_setting`` pairs them)."""
    mine = mine.dropna(subset=["seed"])
    runs = {m: mine[mine["model_key"] == m].drop_duplicates("seed", keep="last").set_index("seed")
            for m in (subject, other)}
    seeds = runs[subject].index.intersection(runs[other].index)
    return {m: runs[m].loc[seeds] for m in runs}


def _gaps(paired: dict[str, pd.DataFrame], bar: EvidenceBar) -> list[str]:
    """Why the paired runs fall short of the evidence bar, one clause per shortfall naming the
    models it applies to, e.g. "dilated_frontend and fcn8s: 1 seed (needs 3)"."""
    models_by_gap: dict[str, list[str]] = {}
    for model, runs in paired.items():
        for reason in shortfalls(model, runs, bar):
            gap = reason[len(model):].lstrip(": ") if reason.startswith(model) else reason
            models_by_gap.setdefault(gap, []).append(model)
    return [f"{_and(models)}: {gap}" for gap, models in models_by_gap.items()]


def _accuracy_short(test: dict, key, mine: pd.DataFrame, verdict: str, bar: EvidenceBar) -> str:
    """One setting's accuracy comparison on the claim line, e.g. "dilated_frontend 45.0 vs fcn8s 40.0
    mIoU, 1 paired seed, synthetic val 96x128 cpu, short of the evidence bar: ..."."""
    subject, other = test["subject"], test["other"]
    paired = _paired(mine, subject, other)
    n = len(paired[subject])
    values = dict(zip(test["same"], key if isinstance(key, tuple) else (key,)))
    place = " ".join(str(values[k]) for k in ("dataset", "split") if k in values)
    if "height" in values and "width" in values:
        place += f" {values['height']}x{values['width']}"
    if "device" in values:
        place += f" {values['device']}"
    if not n:
        return f"no seed run for both {subject} and {other} ({place.strip()})"
    quantity = test["quantity"]
    means = {m: paired[m][quantity].mean() * PERCENT for m in paired}
    text = (f"{subject} {means[subject]:.1f} vs {other} {means[other]:.1f} {ACCURACY_QUANTITIES[quantity]}, {n} paired "
            f"seed{'s' if n != 1 else ''}, {place.strip()}")
    if verdict != INCONCLUSIVE:
        return text
    gaps = _gaps(paired, bar)
    return (f"{text}, short of the evidence bar: {', '.join(gaps)}" if gaps
            else f"{text}, the interval of the difference includes {test['threshold']:g}")


def _accuracy_test(rows: pd.DataFrame, test: dict, bar: EvidenceBar) -> TestResult:
    """One paired-over-seeds verdict per setting, combined; inconclusive settings decide nothing."""
    same = test["same"]
    settings = [(key, mine) for key, mine in rows.groupby(same, dropna=False)
                if mine["model_key"].nunique() == 2]
    if not settings:
        quantity = test["quantity"]
        return TestResult(test, NOT_TESTED, f"{NOT_TESTED}: needs {quantity} rows for {test['subject']} and "
                                            f"{test['other']} with the same {', '.join(same)}",
                          short=f"no {quantity} rows of {test['subject']} and {test['other']} with the same "
                                f"{', '.join(same)}")
    verdicts = [compare_setting(mine, test["subject"], test["other"], test["threshold"], bar, test["quantity"])
                for _, mine in settings]
    verdict = combine([v.verdict for v in verdicts], HOLDS, NOT_HOLD, PARTLY, MIXED)
    evidence = ([f"{_setting(same, key)}: {v.text}" for (key, _), v in zip(settings, verdicts)]
                if len(verdicts) > 1 else [f"compared at {_setting(same, settings[0][0])}"])
    counts = {v: sum(x.verdict == v for x in verdicts) for v in dict.fromkeys(x.verdict for x in verdicts)}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items()) if len(verdicts) > 1 else verdicts[0].text
    short = (f"{summary} over {len(verdicts)} settings" if len(verdicts) > 1
             else _accuracy_short(test, settings[0][0], settings[0][1], verdicts[0].verdict, bar))
    return TestResult(test, verdict, f"{verdict}: {summary}" if len(verdicts) > 1 else summary, evidence,
                      short=short)


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
    """A claim's verdict from its tests': tests that disagree make it mixed (the SegNet claim holds
    in the paper's accounting and not as PyTorch stores indices), not the worst of them; tests
    that are inconclusive or not run decide nothing, and a test that holds where it ran (some
    settings not run) leaves the claim holding where tested."""
    if all(v in (NOT_TESTED, INCONCLUSIVE) for v in verdicts):
        return INCONCLUSIVE if INCONCLUSIVE in verdicts else NOT_TESTED
    verdicts = [NOT_TESTED if v == INCONCLUSIVE else v for v in verdicts]
    held = any(v in (HOLDS, PARTLY) for v in verdicts)
    if MIXED in verdicts or (NOT_HOLD in verdicts and held):
        return MIXED
    if NOT_HOLD in verdicts:
        return NOT_HOLD
    return PARTLY if NOT_TESTED in verdicts or PARTLY in verdicts else HOLDS


def where(rows: pd.DataFrame, setting: dict | None) -> pd.DataFrame:
    """The rows in ``setting`` (a test's ``where``, e.g. {resolution: 360x480, batch_size: 4})."""
    for column, value in (setting or {}).items():
        if column not in rows.columns:
            raise ValueError(f"conf/published.yaml: `where` names {column!r}, which is not a row "
                             f"column; use a ResultRow field or resolution")
        rows = rows[rows[column] == value]
    return rows


def _labelled(result: TestResult) -> TestResult:
    """The verdict prefixed with the test's ``label``: which quantity it compared, and where."""
    label = result.test.get("label")
    return replace(result, text=f"{label}: {result.text}") if label else result


def _part(test: dict) -> str:
    """Which part of the claim a test tests (its ``part``; else its label or quantity)."""
    return test.get("part") or test.get("label") or test["quantity"]


def _not_run(results: list[TestResult]) -> str:
    """Why none of a part's tests ran, e.g. "no ok miou rows for fcdensenet103, fcn8s and dilated8"."""
    if all(r.missing for r in results):
        quantities = dict.fromkeys(r.test["quantity"] for r in results)
        models = dict.fromkeys(m for r in results for m in r.missing)
        return f"no ok {_and(quantities)} rows for {_and(models)}"
    return ", ".join(dict.fromkeys(r.short for r in results))


def claim_parts(claim: dict, tests: list[TestResult]) -> tuple[list[str], list[str], list[str]]:
    """(tested, untested, commands) for the claim's line.

    Tests are grouped by ``part``; a part with a test that ran (a verdict, or inconclusive) is
    tested: "<part>: <verdict>, <figures>"; a part none of whose tests ran is untested, with why.
    The claim's own ``untested`` names what no test covers. ``command``s: those of the tests not
    run, inconclusive or run in part, and the claim's own where it has an untested part.
    """
    groups: dict[str, list[TestResult]] = {}
    for result in tests:
        groups.setdefault(_part(result.test), []).append(result)
    tested, untested, commands = [], [], []
    for part, results in groups.items():
        ran = [r for r in results if r.verdict != NOT_TESTED]
        if not ran:
            untested.append(f"{part}: {_not_run(results)}")
        else:
            agree = len({r.verdict for r in ran}) == 1
            figures = [r.short if agree else f"{r.short} ({r.verdict})" for r in ran]
            figures += [f"not tested yet: {r.short}" for r in results if r.verdict == NOT_TESTED]
            tested.append(f"{part}: {_claim_verdict([r.verdict for r in results])}, {', '.join(figures)}")
        commands += [r.test["command"] for r in results
                     if r.verdict in (NOT_TESTED, INCONCLUSIVE, PARTLY) and r.test.get("command")]
    if claim.get("untested"):
        untested.append(claim["untested"])
        if claim.get("command"):
            commands.append(claim["command"])
    return tested, untested, list(dict.fromkeys(commands))


def evaluate_claims(current: pd.DataFrame, published: dict, fronts: list | None = None) -> list[ClaimResult]:
    """Every claim's tests, its verdict and its one line. A claim with a part no test covers
    (its ``untested``) never reads plainly "holds": at best "holds where tested". ``fronts``: the
    page's answers (``bench.report.answer.answers``), for the claims read against them."""
    aliases = published.get("aliases") or {}
    bar = EvidenceBar.from_published(published)
    results = []
    for claim in published.get("claims") or []:
        tests = [_labelled(evaluate_test(current, test, aliases, bar, fronts)) for test in claim["tests"]]
        verdict = _claim_verdict([t.verdict for t in tests])
        if verdict == HOLDS and claim.get("untested"):
            verdict = PARTLY
        results.append(ClaimResult(claim, verdict, tests, *claim_parts(claim, tests)))
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
    """Each matching configuration's mIoU over its seeds (mean, interval, n) and its setting."""
    matching = rows[rows["dataset"].map(lambda d: dataset_matches(d, dataset)).astype(bool)]
    return "; ".join(f"{spread_text(mine['miou'])} ({mine.iloc[0]['dataset']} {mine.iloc[0]['split']}, "
                     f"{mine.iloc[0]['resolution']})"
                     for _, mine in matching.groupby(repeat_groups(matching), sort=False))


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


def _measured(rows: pd.DataFrame, quantity: str, batch_size: int, unit: str) -> str:
    """Each of a model's rows at ``batch_size`` holding ``quantity``: "value unit (device, precision)"."""
    mine = rows[(rows["batch_size"] == batch_size) & rows[quantity].notna()]
    return "; ".join(f"{value:.{1 if unit == 'ms' else 0}f} {unit} ({device}, {precision})"
                     for value, device, precision in mine[[quantity, "device", "precision"]].itertuples(index=False))


#: SegNet's Table 6 prints GPU memory in "MB" and does not say which: segbench reads it as 10**6
#: bytes (the SI megabyte) and shows it in MiB (2**20 bytes), the unit it measures in.
PAPER_MB_BYTES = 10**6
MIB_BYTES = 2**20


def paper_memory(mb: float) -> str:
    """A Table 6 figure in the paper's MB and in MiB, e.g. "1052 MB = 1003 MiB"."""
    return f"{mb:g} MB = {mb * PAPER_MB_BYTES / MIB_BYTES:.0f} MiB"


def table6_note(published: dict) -> str:
    """The unit assumption behind ``table6``'s published memory columns (the note shown below the
    "SegNet Table 6" table)."""
    entries = published.get("segnet_table6") or []
    example = f" ({paper_memory(entries[0]['inference_mb'])})" if entries else ""
    return ("SegNet Table 6 prints GPU memory in MB without saying which megabyte. segbench takes its "
            f"MB as 10^6 bytes and converts it to MiB (2^20 bytes, the unit of the measured columns): "
            f"1 MB = {PAPER_MB_BYTES / MIB_BYTES:.3f} MiB{example}. Were the figures read from "
            "nvidia-smi, which counts 2^20 bytes (its older versions label them MB), they would be MiB "
            f"already, {MIB_BYTES / PAPER_MB_BYTES - 1:.1%} above the MiB shown. The measured peaks come from "
            "the device named beside each, which may not be a GPU: the claim compares segnet with fcn8s "
            "measured alike, never a measured figure with a published one.")


def table6(current: pd.DataFrame, published: dict) -> pd.DataFrame:
    """SegNet Table 6 (Caffe, GPU MB, shown in MiB too: ``table6_note``) beside the measured rows at
    360x480 (``sweep=segnet_table6``): forward latency and inference peak at batch 1, training-step
    peak at batch 4."""
    rows = with_model_key(current[(current["status"] == "ok") & (current["resolution"] == "360x480")],
                          published.get("aliases") or {})
    records = []
    for entry in published.get("segnet_table6") or []:
        mine = rows[rows["model_key"] == entry["model"]] if entry["model"] else rows.iloc[0:0]
        absent = "no rows" if entry["model"] else ""
        records.append({
            "model (SegNet Table 6)": entry["name"], "segbench model": entry["model"] or "",
            "forward ms": entry["forward_ms"],
            "measured forward, b1": _measured(mine, "latency_ms_median", 1, "ms") or absent,
            "published inference, b1": paper_memory(entry["inference_mb"]),
            "measured inference peak, b1": _measured(mine, "peak_memory_mib", 1, "MiB") or absent,
            "published training, b4": paper_memory(entry["train_mb"]),
            "measured training peak, b4": _measured(mine, "train_peak_memory_mib", 4, "MiB") or absent,
        })
    return pd.DataFrame.from_records(records)


# --- decoder storage (SegNet sec. 3.1, Table 1) ---------------------------------------------

DECODER_COLUMNS = ["decoder_storage_mib", "decoder_storage_paper_mib", "decoder_storage_multiplier",
                   "decoder_storage_multiplier_pytorch"]


def _published_multiplier(published: dict, model: str) -> float | None:
    """Table 1's storage multiplier for ``model``, where conf/published.yaml records one."""
    for figure in (published["models"].get(model) or {}).get("memory") or []:
        if "storage multiplier" in figure["figure"]:
            return figure["value"]
    return None


def decoder_storage_table(current: pd.DataFrame, published: dict) -> pd.DataFrame:
    """What each model's decoder keeps per image, in both accountings (bench/measure/decoder.py)."""
    rows = ok_values(current, "decoder_storage_mib", published.get("aliases") or {})
    keys = ["model_key", "resolution", "precision"]
    medians = rows.groupby(keys)[DECODER_COLUMNS].median().reset_index()
    notes = rows.groupby(keys)["decoder_storage_note"].first().reset_index(drop=True)
    return pd.DataFrame({
        "model": medians["model_key"], "resolution": medians["resolution"],
        "precision": medians["precision"],
        "PyTorch MiB": medians["decoder_storage_mib"].map(lambda v: f"{v:.3f}"),
        "paper MiB": medians["decoder_storage_paper_mib"].map(lambda v: f"{v:.3f}"),
        "multiplier, paper": medians["decoder_storage_multiplier"].map(lambda v: f"{v:.2f}"),
        "multiplier, PyTorch": medians["decoder_storage_multiplier_pytorch"].map(lambda v: f"{v:.2f}"),
        "published multiplier (SegNet Table 1)": medians["model_key"].map(
            lambda m: fmt(_published_multiplier(published, m), "{:g}")),
        "what the decoder keeps": notes,
    })


def int64_note(current: pd.DataFrame, published: dict, subject: str = "segnet_basic",
               other: str = "fcn_basic") -> str:
    """What PyTorch's int64 pooling indices do to Table 1's ratio, from the rows of both models at
    one resolution and precision, or which rows would tell."""
    rows = ok_values(current, "decoder_storage_mib", published.get("aliases") or {})
    both = (rows[rows["model_key"].isin([subject, other])]
            .groupby(["resolution", "precision", "model_key"])[DECODER_COLUMNS].median()
            .unstack("model_key")
            .reindex(columns=pd.MultiIndex.from_product([DECODER_COLUMNS, [subject, other]]))
            .dropna())
    if both.empty:
        return (f"PyTorch's int64 pooling indices: needs decoder-storage rows for {subject} and "
                f"{other} at the same resolution (python -m bench -m model={subject},{other} "
                f"resolution=360x480).")
    (resolution, precision), value = both.index[0], both.iloc[0]

    def times(column: str) -> float:
        return value[(column, other)] / value[(column, subject)]

    return (f"PyTorch's int64 pooling indices ({resolution}, {precision}): SegNet-Basic's decoder "
            f"storage multiplier is {value[('decoder_storage_multiplier', subject)]:.2f} in the paper's "
            f"accounting (2 bits per 2x2 window) and "
            f"{value[('decoder_storage_multiplier_pytorch', subject)]:.2f} as PyTorch stores it "
            f"(64 bits per window and channel), so FCN-Basic's multiplier goes from "
            f"{times('decoder_storage_multiplier'):.1f}x SegNet-Basic's to "
            f"{times('decoder_storage_multiplier_pytorch'):.2f}x. In bytes FCN-Basic keeps "
            f"{times('decoder_storage_paper_mib'):.2f}x what SegNet-Basic keeps in the paper's "
            f"accounting (its maps sit at the pooled resolution, a quarter of the pixels Table 1 "
            f"counts SegNet's indices over) and {times('decoder_storage_mib'):.2f}x as stored.")


# --- FC-DenseNet's memory-efficient mode ----------------------------------------------------

FIXED_TRAIN_COLUMNS = ["train_weights_mib", "train_gradients_mib", "train_optimizer_state_mib"]


def _memory_efficient(model_kwargs: str) -> bool:
    return bool(json_value(model_kwargs, {}).get("memory_efficient", False))


def densenet_memory_table(current: pd.DataFrame, published: dict) -> pd.DataFrame:
    """Training-step peak of the plain model beside the memory-efficient one (``sweep=densenet_memory``),
    with the ratio against the target and what the saved-for-backward figures say about it."""
    entry = published.get("fcdensenet_memory_efficient")
    if not entry:
        return pd.DataFrame()
    rows = where(ok_values(current, "train_peak_memory_mib", published.get("aliases") or {}),
                 entry["where"])
    rows = rows[rows["model_key"] == entry["model"]]
    rows = rows.assign(memory_efficient=rows["model_kwargs"].map(_memory_efficient).astype(bool))
    columns = ["train_peak_memory_mib", "saved_for_backward_mib", *FIXED_TRAIN_COLUMNS]
    setting = ["device", "precision", "resolution", "batch_size"]
    plain = rows[~rows["memory_efficient"]].groupby(setting)[columns].median()
    efficient = rows[rows["memory_efficient"]].groupby(setting)[columns].median()
    records = []
    for key in plain.index.intersection(efficient.index):
        ratio = plain.loc[key, "train_peak_memory_mib"] / efficient.loc[key, "train_peak_memory_mib"]
        records.append({
            **dict(zip(setting, key)), "model": entry["model"],
            "plain train peak MiB": f"{plain.loc[key, 'train_peak_memory_mib']:.0f}",
            "memory-efficient train peak MiB": f"{efficient.loc[key, 'train_peak_memory_mib']:.0f}",
            "plain / memory-efficient": f"{ratio:.2f}x",
            "verdict": (f"at least {entry['target_ratio']:g}x lower" if ratio >= entry["target_ratio"]
                        else f"below the {entry['target_ratio']:g}x target"),
            "why": _why(plain.loc[key], efficient.loc[key]),
        })
    if not records:
        return pd.DataFrame([{"model": entry["model"], "verdict": (
            f"not measured yet: needs training-peak rows with memory_efficient true and false at "
            f"{entry['where']} ({entry['command']})")}])
    return pd.DataFrame.from_records(records)


def _why(plain: pd.Series, efficient: pd.Series) -> str:
    """Why the training peak falls by what it does: how much of it checkpointing can reach."""
    parts = []
    if pd.notna(plain["saved_for_backward_mib"]) and pd.notna(efficient["saved_for_backward_mib"]):
        parts.append(f"saved-for-backward falls from {plain['saved_for_backward_mib']:.0f} to "
                     f"{efficient['saved_for_backward_mib']:.0f} MiB "
                     f"({plain['saved_for_backward_mib'] / efficient['saved_for_backward_mib']:.2f}x): "
                     "only the dense layers' concatenation, BN and ReLU outputs are recomputed")
    fixed = plain[FIXED_TRAIN_COLUMNS].sum(min_count=len(FIXED_TRAIN_COLUMNS))
    if pd.notna(fixed):
        parts.append(f"{fixed:.0f} MiB of the peak is weights, gradients and optimizer state, "
                     "which checkpointing leaves as they are")
    parts.append("the backward pass still holds one recomputed layer's concatenation and the "
                 "activation gradients at a time")
    return "; ".join(parts)
