"""bench.data.check: every file of a job's splits is checked before training, all bad files are
reported at once, and files found good are not decoded again while unchanged."""
from pathlib import Path

import numpy as np
import pytest

import bench.data.files
from bench.data import DatasetNotFoundError
from bench.data.check import CACHE_NAME, check_split_files
from bench.data.errors import BadDataFilesError
from bench.data.synthetic import SyntheticStreetScenes
from tests.conftest import InProcess
from tests.test_bad_input import QUICK_TRAINING, TINY
from tests.test_data import RES, SYNTHETIC, make_folder, save_png

SPLITS = {"train", "val", "test"}


def folder_cfg(root: Path) -> dict:
    return {"name": "folder", "root": str(root), "num_classes": 3, "ignore_index": 255}


def break_four(root: Path) -> list[Path]:
    """Spoil four files of a ``make_folder`` tree with split folders, none of them a split's first."""
    empty = root / "train" / "images" / "img_01.png"
    empty.write_bytes(b"")
    truncated = root / "train" / "images" / "img_02.png"
    truncated.write_bytes(truncated.read_bytes()[:100])
    out_of_range = save_png(root / "test" / "masks" / "img_01.png", np.full(RES, 7))
    wrong_size = save_png(root / "test" / "masks" / "img_02.png", np.zeros((RES[0] // 2, RES[1])))
    return [empty, truncated, out_of_range, wrong_size]


@pytest.fixture
def decoded(monkeypatch) -> list[Path]:
    """The paths the image/mask decoder opens, in order."""
    calls: list[Path] = []
    real = bench.data.files._decode

    def counting(path, what):
        calls.append(Path(path))
        return real(path, what)

    monkeypatch.setattr(bench.data.files, "_decode", counting)
    return calls


def test_every_bad_file_of_every_split_is_named_in_one_error(tmp_path):
    root = make_folder(tmp_path / "data", count=4, splits=SPLITS)
    bad = break_four(root)
    with pytest.raises(BadDataFilesError) as raised:
        check_split_files(folder_cfg(root), SPLITS, RES, tmp_path / "cache")
    message = str(raised.value)
    assert all(str(path) in message for path in bad), message
    assert "4 image/mask pair(s)" in message and "To fix" in message
    assert "truncated or corrupt" in message and "outside [0, 3)" in message and "is 64x24" in message


def test_a_missing_file_is_named_before_anything_is_decoded(tmp_path, decoded):
    root = make_folder(tmp_path / "data", count=4, splits=SPLITS)
    (root / "val" / "masks" / "img_03.png").unlink()
    with pytest.raises(DatasetNotFoundError, match="img_03.png"):
        check_split_files(folder_cfg(root), SPLITS, RES, tmp_path / "cache")
    assert decoded == []


def test_a_second_check_decodes_only_the_files_not_found_good(tmp_path, decoded):
    root = make_folder(tmp_path / "data", count=4, splits=SPLITS)
    bad = break_four(root)
    every_file = set(root.glob("*/*/*.png"))
    unread = {root / "train" / "masks" / name for name in ("img_01.png", "img_02.png")}  # image failed first
    for attempt in range(2):
        decoded.clear()
        with pytest.raises(BadDataFilesError) as raised:
            check_split_files(folder_cfg(root), SPLITS, RES, tmp_path / "cache")
        assert all(str(path) in str(raised.value) for path in bad)
        if attempt == 0:
            assert set(decoded) == every_file - unread
    # The second pass opened only the four bad pairs' files: bad files are never cached as good.
    bad_pairs = {root / split / kind / name for split in ("train", "test") for kind in ("images", "masks")
                 for name in ("img_01.png", "img_02.png")}
    assert set(decoded) == bad_pairs - unread

    for path in bad:  # repaired: one more check of those pairs, then nothing is decoded
        save_png(path, np.zeros((*RES, 3)) if path.parent.name == "images" else np.zeros(RES))
    check_split_files(folder_cfg(root), SPLITS, RES, tmp_path / "cache")
    decoded.clear()
    check_split_files(folder_cfg(root), SPLITS, RES, tmp_path / "cache")
    assert decoded == []


def test_a_file_changed_after_a_good_check_is_checked_again(tmp_path, decoded):
    root = make_folder(tmp_path / "data", count=4, splits=SPLITS)
    check_split_files(folder_cfg(root), SPLITS, RES, tmp_path / "cache")
    changed = save_png(root / "val" / "masks" / "img_03.png", np.full(RES, 9))
    decoded.clear()
    with pytest.raises(BadDataFilesError, match="1 image/mask pair") as raised:
        check_split_files(folder_cfg(root), SPLITS, RES, tmp_path / "cache")
    assert str(changed) in str(raised.value)
    assert set(decoded) == {changed, root / "val" / "images" / "img_03.png"}


def test_the_cache_is_per_label_space(tmp_path, decoded):
    root = make_folder(tmp_path / "data", count=2, splits=SPLITS)
    check_split_files(folder_cfg(root), SPLITS, RES, tmp_path / "cache")
    decoded.clear()
    with pytest.raises(BadDataFilesError, match="outside \\[0, 2\\)"):  # labels 0-2 with 2 classes
        check_split_files({**folder_cfg(root), "num_classes": 2}, SPLITS, RES, tmp_path / "cache")
    assert decoded


def test_a_cache_that_cannot_be_written_is_skipped(tmp_path, decoded):
    root = make_folder(tmp_path / "data", count=2, splits=SPLITS)
    (tmp_path / "not_a_folder").write_text("")
    for _ in range(2):
        decoded.clear()
        check_split_files(folder_cfg(root), SPLITS, RES, tmp_path / "not_a_folder" / "cache")
        assert len(decoded) == 12  # nothing remembered: every file decoded each time


def test_generated_data_sets_read_only_their_first_sample(tmp_path, monkeypatch):
    loaded = []
    real = SyntheticStreetScenes.load
    monkeypatch.setattr(SyntheticStreetScenes, "load",
                        lambda self, index: loaded.append((self.split, index)) or real(self, index))
    check_split_files(SYNTHETIC, SPLITS, (32, 32), tmp_path / "cache")
    assert sorted(loaded) == [("test", 0), ("train", 0), ("val", 0)]


def test_an_accuracy_job_names_all_bad_files_before_training(in_process: InProcess, tmp_path):
    root = make_folder(tmp_path / "data", count=4, splits=SPLITS)
    bad = break_four(root)
    outcome = in_process(*TINY, *QUICK_TRAINING, f"resolution={RES[0]}x{RES[1]}", "dataset=folder",
                         f"dataset.root={root}", "dataset.num_classes=3", "eval_split=test")
    assert outcome.status == "error", outcome
    [row] = in_process.rows().rows
    assert row.status == "error" and "BadDataFilesError" in row.error
    assert all(str(path) in row.error for path in bad), row.error
    trace = Path(row.traceback_file).read_text()
    assert "check_split_files" in trace and "train_model" not in trace  # failed before any training
    assert (in_process.results / "cache" / CACHE_NAME).is_file()  # the good files were remembered
