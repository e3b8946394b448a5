"""The report, from rows written through ResultStore: summaries, history, plots, HTML, claims."""
from __future__ import annotations

import itertools
import os

import pandas as pd
import pytest

from bench.report import load_frame, write_report
from bench.report.pareto import Interval, front
from bench.schema import ResultRow
from bench.store import ResultStore

# Parameter counts chosen so the claim's ratio is known: 134.5M / 9.4M = 14.3x.
PARAMS = {"fcn8s": 134_500_000, "fcdensenet103": 9_400_000, "segnet_basic": 1_425_000,
          "fcn_basic": 650_000, "dilated_frontend": 134_300_000}
CLASSES = ["sky", "road", "car"]
_stamps = itertools.count()


def make_row(model: str, height: int = 96, width: int = 128, device: str = "cpu", status: str = "ok",
             host: str = "alpha", miou: float | None = None, run: str = "a", **extra) -> ResultRow:
    """A measured (or failed) row; ``finished_at`` increases with every call."""
    stamp = next(_stamps)
    row = ResultRow(
        job_key=f"{model}-{device}-{height}x{width}-{'acc' if miou is not None else 'prof'}",
        run_id=f"{run}{stamp:05d}", status=status, host=host,
        finished_at=f"2025-01-01T00:{stamp // 60 % 60:02d}:{stamp % 60:02d}.000+00:00",
        mode="accuracy" if miou is not None else "profile", model=model, dataset="synthetic",
        num_classes=11, device=device, height=height, width=width, batch_size=1, precision="fp32",
        threads=2, torch_version="2.14.1", device_name=f"{device} device", git_commit="abc123",
        config={"measure": {"min_run_time": 1.0}}, model_kwargs={"pretrained_backbone": False})
    if status != "ok":
        row.error = "RuntimeError: out of memory"
        return row
    scale = height * width / (96 * 128)
    row.params_total = PARAMS.get(model, 2_000_000)
    row.flops_per_image = row.params_total * 50 * scale
    row.latency_ms_median, row.latency_ms_iqr, row.latency_ms_p90 = 10 * scale, 0.5, 11 * scale
    row.throughput_ips = 1000 / row.latency_ms_median
    row.latency_iters, row.warmup_iters, row.timer = 20, 3, "time.perf_counter per iteration"
    row.peak_memory_mib, row.activation_peak_mib = 100 * scale, 60 * scale
    row.memory_counter = "tensor storages"
    if miou is not None:
        row.miou, row.split = miou, "val"
        row.per_class_iou = {c: miou + 0.05 * i for i, c in enumerate(CLASSES)}
    for name, value in extra.items():
        setattr(row, name, value)
    return row


@pytest.fixture()
def results(tmp_path):
    store = ResultStore(tmp_path)
    rows = [make_row(m, h, w, device) for m in PARAMS for h, w in [(96, 128), (192, 256)]
            for device in ("cpu", "cuda")]
    rows += [make_row("fcn8s", miou=0.40, host="beta", train_steps=3, seed=0),
             make_row("dilated_frontend", miou=0.45, host="beta", train_steps=4, seed=0),
             make_row("unet", 384, 512, status="oom")]
    # A forced re-run: the job's newest row replaces the older one in the summary.
    rows.append(make_row("fcn8s", run="b", latency_ms_median=7.0))
    for row in rows:
        store.write(row)
    (tmp_path / "rows" / "broken").mkdir()
    (tmp_path / "rows" / "broken" / "truncated.json").write_text('{"job_key": "x", "stat')
    return tmp_path, rows


def test_write_report(results):
    root, rows = results
    index = write_report(root)
    summary = pd.read_csv(root / "summary.csv")
    history = pd.read_csv(root / "history.csv")
    assert len(history) == len(rows)
    assert len(summary) == summary["job_key"].nunique() == len(rows) - 1
    rerun = summary[summary["job_key"] == "fcn8s-cpu-96x128-prof"].iloc[0]
    assert rerun["latency_ms_median"] == 7.0 and rerun["run_id"].startswith("b")
    assert pd.read_parquet(root / "summary.parquet").shape[0] == len(summary)
    assert {"resolution", "pixels", "gflops_per_image", "params_m", "iou.car", "host"} <= set(summary.columns)

    report = root / "report"
    for name in ("latency_vs_resolution.png", "memory_vs_resolution.png", "params_vs_flops.png",
                 "accuracy_vs_latency.png", "per_class_iou_synthetic.png", "headline.md",
                 "failures.md", "published.md"):
        assert (report / name).stat().st_size > 0, name
    page = index.read_text()
    assert "data:image/png;base64," in page and "<link" not in page
    assert "134.50" in page and "9.40" in page             # headline params (M)
    assert "RuntimeError: out of memory" in page           # the failure's cause
    assert "1 incomplete or corrupt row files were skipped" in page and "truncated.json" in page
    assert "holds: 14.3x fewer parameters" in page         # 134.5 / 9.4, from the rows
    # 45 vs 40 mIoU from one seed of 4 and 3 steps: a difference, but no verdict, and why.
    assert ("inconclusive (dilated_frontend: 1 seed (needs 3); dilated_frontend: 4 training steps "
            "(needs 100); dilated_frontend: no learning curve") in page
    assert "fcn8s: 3 training steps (needs 100)" in page and "dilated_frontend 45.0 vs fcn8s 40.0" in page
    assert "not tested yet: needs ok rows with params_total for dilated8" in page
    assert "not tested yet: needs ok rows with miou for dilated8" in page
    assert "alpha, beta" in page                           # both hosts in the environment
    assert "1 history rows" in page


def test_load_frame_current_and_history(results):
    root, rows = results
    everything, current, loaded = load_frame(root)
    assert len(everything) == len(rows) and everything["is_current"].sum() == len(current)
    assert [p.name for p in loaded.unreadable] == ["truncated.json"]
    assert current["job_key"].is_unique
    acc = current[current["model"] == "fcn8s"].dropna(subset=["miou"]).iloc[0]
    assert acc["iou.road"] == pytest.approx(0.45) and acc["resolution"] == "96x128"


def test_load_frame_many_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not under test; speed is
    store = ResultStore(tmp_path)
    for i in range(3000):
        store.write(make_row("fcn8s", 96 + i, 128, miou=0.5 if i % 2 else None))
    everything, current, _ = load_frame(tmp_path)
    assert len(everything) == len(current) == 3000


def test_empty_results_dir(tmp_path):
    page = write_report(tmp_path).read_text()
    assert "No result rows" in page and "make bench" in page


def test_pareto_front_counts_a_difference_only_where_intervals_do_not_overlap():
    def point(low, high, miou, miou_low=None, miou_high=None):
        accuracy = Interval.exact(miou) if miou_low is None else Interval(miou, miou_low, miou_high)
        return Interval((low + high) / 2, low, high), accuracy

    points = [point(9, 11, 50),        # 0: fastest and most accurate
              point(10, 12, 40),       # 1: latency tie with 0, clearly less accurate: dominated
              point(20, 22, 40),       # 2: clearly slower and less accurate: dominated
              point(12, 13, 50),       # 3: as accurate as 0, which is clearly faster: dominated
              point(10, 12, 45, 38, 52),  # 4: ties 0 on latency and on accuracy (intervals): stays
              point(25, 26, 60)]       # 5: the most accurate
    assert front(points) == [0, 4, 5]
    assert front([]) == []
    assert front([point(5, 5, 30), point(5, 5, 30)]) == [0, 1]   # equal points dominate nothing
    # Exact values (no intervals) give the classic front.
    classic = [point(10, 10, 50), point(20, 20, 60), point(15, 15, 40), point(30, 30, 60), point(5, 5, 30)]
    assert front(classic) == [4, 0, 1]
