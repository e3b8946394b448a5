"""Bad input: each failure names the thing and what to do, and stored rows survive. Each job runs
in-process (the CLI's exit code for a failed job: test_sweeps_at_scale.py's OOM test)."""

import pytest
import torch
from PIL import Image

from tests.conftest import InProcess

TINY = ["model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]"]
QUICK_TRAINING = ["mode=accuracy", "train.max_steps=1", "train.batch_size=1"]


@pytest.fixture
def seeded(in_process: InProcess) -> InProcess:
    """A results directory that already holds one measured row."""
    assert in_process(*TINY, "resolution=16x16").status == "ok"
    in_process.before = {p: p.read_bytes() for p in in_process.results.glob("rows/*/*.json")}
    return in_process


def _failed_row(jobs: InProcess, outcome):
    """The one new row, which must be an error; and the earlier rows, untouched."""
    assert outcome.status == "error", outcome
    assert all(path.read_bytes() == data for path, data in jobs.before.items())
    loaded = jobs.rows()
    assert loaded.unreadable == []
    [failed] = [row for row in loaded.rows if row.status != "ok"]
    assert failed.status == "error"
    return failed


def _png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def test_missing_data_set_says_where_it_looked(seeded: InProcess, tmp_path):
    missing = tmp_path / "no" / "CamVid"
    row = _failed_row(seeded, seeded(*TINY, *QUICK_TRAINING, "dataset=camvid", f"dataset.root={missing}"))
    assert str(missing) in row.error and "trainannot" in row.error and "CAMVID_ROOT" in row.error


def test_truncated_image_is_named(seeded: InProcess, tmp_path):
    root = tmp_path / "folder"
    for split in ("train", "val"):
        _png(root / split / "images" / "a.png", Image.new("RGB", (16, 16), (90, 120, 30)))
        _png(root / split / "masks" / "a.png", Image.new("L", (16, 16), 1))
    broken = root / "train" / "images" / "a.png"
    broken.write_bytes(broken.read_bytes()[:40])
    row = _failed_row(seeded, seeded(*TINY, *QUICK_TRAINING, "resolution=16x16", "dataset=folder",
                                     f"dataset.root={root}"))
    assert str(broken) in row.error


def test_corrupt_checkpoint_is_named(seeded: InProcess, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"not a checkpoint at all")
    row = _failed_row(seeded, seeded(*TINY, "mode=eval", f"checkpoint={checkpoint}", "resolution=16x16"))
    assert str(checkpoint) in row.error


class NotWeights:
    """A pickled object: torch.load(weights_only=True) must refuse to run its code."""


def test_checkpoint_that_is_not_a_weights_file_is_refused(seeded: InProcess, tmp_path):
    checkpoint = tmp_path / "pickled.pt"
    torch.save({"state_dict": NotWeights()}, checkpoint)
    row = _failed_row(seeded, seeded(*TINY, "mode=eval", f"checkpoint={checkpoint}", "resolution=16x16"))
    assert str(checkpoint) in row.error and "weights" in row.error.lower()


def test_eval_mode_reproduces_the_trained_score(in_process: InProcess):
    trained = in_process(*TINY, "mode=accuracy", "train.max_steps=5", "resolution=32x32",
                         "dataset.sizes.train=8", "dataset.sizes.val=4")
    assert trained.status == "ok", trained.error
    [row] = in_process.rows().rows
    assert row.train_steps == 5 and row.checkpoint
    scored = in_process(*TINY, "mode=eval", f"checkpoint={row.checkpoint}", "resolution=32x32",
                        "dataset.sizes.train=8", "dataset.sizes.val=4")
    assert scored.status == "ok", scored.error
    evaluated = [r for r in in_process.rows().rows if r.mode == "eval"][0]
    assert evaluated.miou == pytest.approx(row.miou) and evaluated.split == "val"
    # Boundary IoU in every accuracy row: the band is 2% of the 32x32 diagonal, 1 pixel.
    assert 0 <= row.boundary_miou <= 1 and row.boundary_band_px == 1 and "Cheng" in row.boundary_method
    assert evaluated.boundary_miou == pytest.approx(row.boundary_miou)


def test_oom_policy_halve_records_the_batch_size_used(in_process: InProcess):
    outcome = in_process("model=custom", "model.name=fault_injector", "plugins=[tests.plugin_models]",
                         "+model.oom_above_batch=1", "batch_size=4", "oom_policy=halve", "resolution=16x16")
    assert outcome.status == "ok", outcome.error
    [row] = in_process.rows().rows
    assert row.status == "ok" and row.batch_size == 4 and row.batch_size_used == 1


def test_without_oom_policy_the_oom_is_recorded(in_process: InProcess):
    outcome = in_process("model=custom", "model.name=fault_injector", "plugins=[tests.plugin_models]",
                         "+model.oom_above_batch=1", "batch_size=4", "resolution=16x16")
    assert outcome.status == "oom"
    [row] = in_process.rows().rows
    assert row.status == "oom" and row.batch_size == 4
