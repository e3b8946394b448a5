"""Each claim in one line: its verdict, what was tested, what was not, and the command that would
test the rest; the evidence folded under it. Rows built by hand, conf/published.yaml as shipped."""
from __future__ import annotations

import copy
import itertools
import re
import shlex

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from bench.report import html
from bench.report.build import _claims_markdown
from bench.report.evidence import ACCURACY_QUANTITIES, EvidenceBar
from bench.report.frame import rows_to_frame
from bench.report.published import HOLDS, PARTLY, evaluate_claims, load_published, table6, table6_note
from tests.conftest import ROOT
from tests.test_report import make_row

PUBLISHED = load_published()
_keys = itertools.count()
PARAMS = {"fcn8s": 134_500_000, "fcdensenet103": 9_400_000, "dilated8": 140_800_000}


def row(model: str, **fields):
    return make_row(model, job_key=f"job{next(_keys)}", **fields)


def profile_rows() -> list:
    """What make bench gives the claims: parameter counts and decoder storage, no accuracy rows of
    the compared models and no 360x480 rows."""
    rows = [row(m, params_total=p) for m, p in PARAMS.items()]
    rows += [row("segnet_basic", decoder_storage_mib=0.5, decoder_storage_paper_mib=0.0156,
                 decoder_storage_multiplier=1.0, decoder_storage_multiplier_pytorch=32.0),
             row("fcn_basic", decoder_storage_mib=0.0425, decoder_storage_paper_mib=0.0425,
                 decoder_storage_multiplier=11.0, decoder_storage_multiplier_pytorch=11.0)]
    return rows


def claims(rows, published=PUBLISHED) -> dict:
    return {c.claim["id"]: c for c in evaluate_claims(rows_to_frame(rows), published)}


def test_a_claim_tested_in_part_says_what_was_not_tested_and_how_to_test_it():
    result = claims(profile_rows())["fcdensenet_fewer_params"]
    assert result.verdict == PARTLY                        # never plainly "holds"
    line = result.line
    assert line.startswith("holds where tested: FC-DenseNet103 reaches state of the art")
    assert ("Tested: 'far fewer parameters' (params_total): holds, 14.3x fewer parameters than fcn8s, "
            "15.0x fewer parameters than dilated8.") in line
    assert ("Not tested: 'reaches state of the art' (accuracy on CamVid): no ok miou rows for "
            "fcdensenet103, fcn8s and dilated8.") in line
    assert "python -m bench sweep=camvid_cpu model=fcdensenet103,fcn8s,dilated8 seed=0,1,2" in line
    assert "\n" not in line


def test_segnet_table6_without_rows_names_its_command():
    line = claims(profile_rows())["segnet_decoder_memory"].line
    assert line.startswith("mixed: SegNet saves decoder memory")
    assert ("decoder storage in the paper's accounting, SegNet-Basic vs FCN-Basic: holds, 11.0x less per "
            "pixel (Table 1's multiplier), 2.72x less in bytes") in line
    assert "as PyTorch stores it (int64 indices): does not hold, 2.91x more per pixel" in line
    assert "Not tested: Table 6 memory, SegNet vs FCN-8s at 360x480: no ok peak_memory_mib and " in line
    assert line.endswith("To test: `python -m bench sweep=segnet_table6`.")


def test_an_accuracy_claim_without_rows_and_one_short_of_the_evidence_bar():
    result = claims(profile_rows())["frontend_beats_fcn8s"]
    assert result.verdict == "not tested yet" and not result.tested
    assert ("accuracy (mIoU) on the rows' data: no ok miou rows for dilated_frontend, fcn8s and deeplab_largefov"
            in result.line)
    assert "python -m bench sweep=default model=dilated_frontend,dilated8,fcn8s,deeplab_largefov seed=0,1,2" in result.line

    rows = profile_rows() + [row("fcn8s", miou=0.40, train_steps=3, seed=0),
                             row("dilated_frontend", miou=0.45, train_steps=4, seed=0)]
    line = claims(rows)["frontend_beats_fcn8s"].line
    assert line.startswith("inconclusive: ")
    assert ("accuracy (mIoU) on the rows' data: inconclusive, dilated_frontend 45.0 vs fcn8s 40.0 mIoU, "
            "1 paired seed, synthetic val 96x128 cpu, short of the evidence bar: dilated_frontend and "
            "fcn8s: 1 seed (needs 3)") in line
    assert "Not tested: accuracy on Pascal VOC 2012 (the published data)" in line
    assert "n=1" not in line and "no interval" not in line


def test_a_claims_own_untested_part_keeps_it_from_reading_holds():
    published = copy.deepcopy(PUBLISHED)
    [claim] = [c for c in published["claims"] if c["id"] == "fcdensenet_fewer_params"]
    claim["tests"] = claim["tests"][:2]                    # parameters only: both hold
    assert claims(profile_rows(), published)["fcdensenet_fewer_params"].verdict == HOLDS
    claim.update(untested="'reaches state of the art' (accuracy on CamVid)", command="python -m bench x=1")
    result = claims(profile_rows(), published)["fcdensenet_fewer_params"]
    assert result.verdict == PARTLY
    assert "Not tested: 'reaches state of the art' (accuracy on CamVid)." in result.line
    assert result.line.endswith("To test: `python -m bench x=1`.")


def test_html_shows_one_line_per_claim_with_the_evidence_folded_and_everything_escaped():
    published = copy.deepcopy(PUBLISHED)
    published["claims"][0].update(claim="<b>bold</b> & claim", untested="<i>x</i>",
                                  command="python -m bench model=<script>")
    results = evaluate_claims(rows_to_frame(profile_rows()), published)
    page = html.claims_html(results)
    assert page.count('<p class="claim">') == len(results) == page.count("<details>")
    line = page.split('<p class="claim">')[1].split("</p>")[0]
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; claim" in line and "&lt;i&gt;x&lt;/i&gt;" in line
    assert "<code>python -m bench model=&lt;script&gt;</code>" in line
    assert "<script>" not in page and "<b>bold" not in page
    # The tests' evidence stays on the page, under the line.
    evidence = page.split("<details>")[1]
    assert "holds: 14.3x fewer parameters" in evidence and "fcdensenet103 9.40M vs fcn8s 134.50M" in evidence


def test_markdown_gives_one_bullet_per_claim_and_fences_commands():
    published = copy.deepcopy(PUBLISHED)
    published["claims"][0].update(claim="a [link](x) | `tick`", untested="y", command="echo `date` | cat")
    results = evaluate_claims(rows_to_frame(profile_rows()), published)
    text = _claims_markdown(results)
    bullets = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(bullets) == len(results)
    assert r"a \[link\](x) \| \`tick\`" in bullets[0]
    assert "``echo `date` | cat``" in bullets[0]           # a code span shows its text as is
    assert all(line.startswith(("- ", "  - ", "    - ")) for line in text.splitlines() if line)


# --- the commands the claims name produce the rows their tests select -----------------------

def _jobs(command: str) -> list:
    """Each job's config of ``command`` (``[ENV=...] python -m bench [-m] overrides``, or several
    joined by ``&&``), as the basic sweeper launches them: a named grid's params, then the command
    line's (which win)."""
    return [job for part in command.split("&&") for job in _jobs_of_one(part)]


def _jobs_of_one(command: str) -> list:
    words = shlex.split(command)
    start = words.index("python")
    assert words[start:start + 3] == ["python", "-m", "bench"], command
    assert all(re.fullmatch(r"[A-Z_]+=\S+", w) for w in words[:start]), command
    overrides = [w for w in words[start + 3:] if w != "-m"]
    grid = [o for o in overrides if o.startswith("sweep=")]
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        base = compose("config", grid, return_hydra_config=True)
        params = [f"{k}={v}" for k, v in (base.hydra.sweeper.get("params") or {}).items()]
        [jobs] = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides([*params, *overrides]), None)
        return [compose("config", job) for job in jobs]


def _commanded_tests():
    for claim in PUBLISHED["claims"]:
        for test in claim["tests"]:
            assert test.get("command"), f"{claim['id']}: a test without the command that runs it"
            yield pytest.param(test, id=f"{claim['id']}-{test.get('quantity', 'size')}-{test.get('other', 'all')}")


_composed: dict[str, list] = {}


@pytest.mark.parametrize("test", list(_commanded_tests()))
def test_each_tests_command_produces_the_rows_it_selects(test):
    if test["command"] not in _composed:
        _composed[test["command"]] = _jobs(test["command"])
    jobs = _composed[test["command"]]
    if test["compare"] == "every_size":     # each model at each size, profiled
        pairs = {(job.model.name, job.resolution) for job in jobs if job.mode == "profile"}
        assert {(m, s) for m in test["models"] for s in test["sizes"]} <= pairs
        return
    if test["compare"] == "growth":         # any profile row of the model
        assert any(job.model.name == test["model"] and job.mode == "profile" for job in jobs)
        return
    if test["compare"] == "front":          # one of the models profiled beside another, at one size
        profiled = [job for job in jobs if job.mode == "profile"]
        assert any(job.model.name in test["models"] and any(
            other.model.name not in test["models"] and other.resolution == job.resolution for other in profiled)
            for job in profiled)
        return
    bar = EvidenceBar.from_published(PUBLISHED)
    for model in (test["subject"], test["other"]):
        mine = [job for job in jobs if job.model.name == model]
        for column, value in (test.get("where") or {}).items():
            shown = {"resolution": lambda j: j.resolution, "batch_size": lambda j: j.batch_size,
                     "dataset": lambda j: j.dataset.name}[column]
            mine = [job for job in mine if shown(job) == value]
        assert mine, f"{test['command']} runs no {model} job at {test.get('where')}"
        if test["quantity"] in ACCURACY_QUANTITIES:
            assert all(job.mode == "accuracy" for job in mine)
            assert len({job.seed for job in mine}) >= bar.min_seeds
        if test["quantity"].startswith("train_"):
            assert all(job.measure.train_step for job in mine)


def test_table6_shows_the_papers_mb_in_mib_with_the_assumption_stated():
    table = table6(rows_to_frame(profile_rows()), PUBLISHED).set_index("model (SegNet Table 6)")
    # 1052 x 10^6 / 2^20 = 1003.3; 6803 x 10^6 / 2^20 = 6487.9.
    assert table.loc["SegNet", "published inference, b1"] == "1052 MB = 1003 MiB"
    assert table.loc["SegNet", "published training, b4"] == "6803 MB = 6488 MiB"
    note = table6_note(PUBLISHED)
    assert "10^6 bytes" in note and "1052 MB = 1003 MiB" in note and "4.9%" in note


def _size_claim(rows):
    [result] = [r for r in evaluate_claims(rows_to_frame(rows), PUBLISHED) if r.claim["id"] == "arbitrary_input_sizes"]
    return result


SIZE_TEST = next(c for c in PUBLISHED["claims"] if c["id"] == "arbitrary_input_sizes")["tests"][0]


def _sized(model: str, size: str, **fields):
    height, width = map(int, size.split("x"))
    return row(model, height=height, width=width, **fields)


def test_the_input_size_claim_reads_every_model_at_every_awkward_size():
    models, sizes = SIZE_TEST["models"], SIZE_TEST["sizes"]
    untested = _size_claim(profile_rows())                      # make bench's sizes are not awkward
    assert untested.verdict == "not tested yet" and "python -m bench sweep=input_sizes" in untested.line

    every = [_sized(m, s) for m in models for s in sizes]
    assert _size_claim(every).verdict == HOLDS
    assert f"{len(every)} of {len(every)} model and size pairs kept the input's size" in _size_claim(every).line

    some = [r for r in every if r.height != 375]                 # KITTI's size not run yet
    assert _size_claim(some).verdict == PARTLY and "To test: `python -m bench sweep=input_sizes`" in _size_claim(some).line

    broken = _sized("segnet", "97x131", status="error")
    broken.error = "RuntimeError: segnet returned logits of shape (1, 11, 96, 128), expected (1, 11, 97, 131)"
    result = _size_claim([r for r in every if not (r.model == "segnet" and r.height == 97)] + [broken])
    assert result.verdict == "does not hold" and "segnet at 97x131 did not" in result.line
    [test] = result.tests
    assert any("returned logits of shape (1, 11, 96, 128)" in line for line in test.evidence)
    assert f"output size: {len(models)} models at 97x131" in html.claims_html([result])


def test_the_skip_connection_claim_compares_detail_on_boundary_iou_behind_the_evidence_bar():
    """FCN's skips "improve segmentation detail" (Fig. 4): tested on Boundary IoU, paired over seeds
    as mIoU is; a ladder step that holds on mIoU need not on the boundaries."""
    curve = [{"step": s, "train_seconds": s, "miou": 0.5} for s in (50, 100, 150, 200)]

    def trained(model, miou, boundary, steps=200):
        return [row(model, miou=miou + 0.001 * seed, boundary_miou=boundary + 0.001 * seed, seed=seed,
                    train_steps=steps, learning_curve=curve) for seed in range(3)]
    rows = trained("fcn32s", 0.40, 0.20) + trained("fcn16s", 0.45, 0.20) + trained("fcn8s", 0.46, 0.30)
    line = claims(rows)["fcn_skip_connections"].line
    assert "detail (Boundary IoU) on the rows' data: holds, fcn8s 30.1 vs fcn32s 20.1 Boundary IoU, 3 paired seeds" in line
    assert "accuracy (mIoU) on the rows' data: holds, fcn16s 45.1 vs fcn32s 40.1 mIoU" in line

    short = trained("fcn8s", 0.46, 0.30, steps=5) + trained("fcn32s", 0.40, 0.20, steps=5)
    line = claims(short)["fcn_skip_connections"].line
    assert ("detail (Boundary IoU) on the rows' data: inconclusive, fcn8s 30.1 vs fcn32s 20.1 Boundary IoU, "
            "3 paired seeds, synthetic val 96x128 cpu, short of the evidence bar") in line


def test_figures_equal_as_shown_across_settings_read_once():
    # The dimensionality-reduction claim at two sizes: 5.818x and 5.8181x less, both "5.82x less".
    rows = [row(model, height=size, width=size, decoder_storage_multiplier=maps, decoder_storage_paper_mib=mib)
            for size, scale in ((97, 1.0), (181, 1.00001))
            for model, maps, mib in (("fcn_basic", 11.0, 0.171 * scale), ("fcn_basic_no_dim_reduction", 64.0, 0.995))]
    line = claims(rows)["fcn_dim_reduction"].line
    assert "decoder memory (Table 1's storage multiplier): holds, 5.82x less per pixel (in 2 settings)" in line
    assert "5.82x less in bytes (in 2 settings)" in line and "x less to" not in line
