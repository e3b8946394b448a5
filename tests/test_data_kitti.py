"""dataset=kitti on a small fake copy of data_semantics.zip's layout: Cityscapes label ids mapped
to train ids, the sorted-name split of training/, the missing-data message, and one job."""
import numpy as np
import pytest
from PIL import Image

from bench.data import DatasetNotFoundError, build_dataset, dataset_info
from tests.conftest import InProcess
from tests.test_data import random_image, save_png

SHAPE = (24, 80)  # height, width: KITTI's wide aspect, small
# Cityscapes label id -> train id, written out by hand from cityscapesScripts' labels.py rather
# than read from the lookup table under test.
ROAD, CAR, UNLABELED, EGO_VEHICLE = 7, 26, 0, 1
TRAIN_ID = {ROAD: 0, CAR: 13, UNLABELED: 255, EGO_VEHICLE: 255}
TINY = ["model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]"]


def kitti_name(index: int) -> str:
    return f"{index:06d}_10.png"


def make_kitti(root, count=10):
    """training/{image_2,semantic,semantic_rgb}/ and testing/image_2/ as in data_semantics.zip.

    Files are written in reverse name order so that only sorting puts them in order. Each mask
    has a known corner: road, car, unlabeled, ego vehicle in four 4x4 blocks.
    """
    rng = np.random.default_rng(4)
    for index in reversed(range(count)):
        name = kitti_name(index)
        save_png(root / "training" / "image_2" / name, random_image(rng, SHAPE))
        labels = rng.choice(list(TRAIN_ID), size=SHAPE).astype(np.uint8)
        labels[:4, 0:4], labels[:4, 4:8], labels[:4, 8:12], labels[:4, 12:16] = ROAD, CAR, UNLABELED, EGO_VEHICLE
        save_png(root / "training" / "semantic" / name, labels)
        save_png(root / "training" / "semantic_rgb" / name, random_image(rng, SHAPE))  # not read
    for index in range(2):  # unlabelled: must never appear in a split
        save_png(root / "testing" / "image_2" / kitti_name(index), random_image(rng, SHAPE))
    return root


def kitti_cfg(root, **extra):
    return {"name": "kitti", "root": str(root), **extra}


def split_names(cfg, split):
    return [image.name for image, _ in build_dataset(cfg, split, SHAPE).pairs]


def test_kitti_has_cityscapes_train_classes():
    info, cityscapes = dataset_info({"name": "kitti"}), dataset_info({"name": "cityscapes"})
    assert (info.name, info.num_classes, info.ignore_index) == ("kitti", 19, 255)
    assert info.class_names == cityscapes.class_names and info.class_names[13] == "car"
    assert info.palette == cityscapes.palette
    with pytest.raises(ValueError, match="'kitti' has num_classes=19"):
        dataset_info({"name": "kitti", "num_classes": 20})


def test_kitti_masks_come_out_as_cityscapes_train_ids(tmp_path):
    root = make_kitti(tmp_path / "kitti")
    dataset = build_dataset(kitti_cfg(root), "train", SHAPE)
    _, mask = dataset[0]
    assert mask.shape == SHAPE
    assert (mask[:4, 0:4] == 0).all() and (mask[:4, 4:8] == 13).all()  # road, car
    assert (mask[:4, 8:16] == 255).all()                                # unlabeled, ego vehicle: ignored
    stored = np.asarray(Image.open(dataset.pairs[0][1]))
    expected = np.vectorize(TRAIN_ID.get)(stored)
    assert np.array_equal(mask.numpy(), expected)


def test_kitti_splits_partition_the_sorted_training_names(tmp_path):
    root = make_kitti(tmp_path / "kitti")
    names = [kitti_name(i) for i in range(10)]
    default = {split: split_names(kitti_cfg(root), split) for split in ("train", "val", "test")}
    assert default == {"train": names[:8], "val": names[8:9], "test": names[9:]}
    cfg = kitti_cfg(root, val_fraction=0.2, test_fraction=0.3)
    wider = {split: split_names(cfg, split) for split in ("train", "val", "test")}
    assert wider == {"train": names[:5], "val": names[5:7], "test": names[7:]}


def test_missing_kitti_says_where_it_looked_and_how_to_fix_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="dataset.root is null") as unset:
        build_dataset({"name": "kitti", "root": None}, "train", SHAPE)
    assert "KITTI_ROOT" in str(unset.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError) as missing:
        build_dataset(kitti_cfg(empty), "train", SHAPE)
    message = str(missing.value)
    assert str(empty) in message and "'training/image_2' does not exist" in message
    assert "KITTI_ROOT" in message and "training/semantic/<name>.png" in message
    assert "data_semantics.zip" in message

    root = make_kitti(tmp_path / "kitti", count=3)
    orphan = root / "training" / "semantic" / kitti_name(1)
    orphan.unlink()
    with pytest.raises(DatasetNotFoundError, match="1 image.s. have no semantic mask") as unlabelled:
        build_dataset(kitti_cfg(root), "val", SHAPE)
    assert str(orphan) in str(unlabelled.value)


def test_kitti_accuracy_job_trains_scores_and_profiles(in_process: InProcess, tmp_path):
    root = make_kitti(tmp_path / "kitti")
    outcome = in_process(*TINY, "dataset=kitti", f"dataset.root={root}", "mode=accuracy", "resolution=16x32",
                         "eval_split=test", "threads=1", "train.max_steps=2", "train.batch_size=2",
                         "train.save_checkpoint=false", "measure.train_step=false", "measure.energy=false")
    assert outcome.status == "ok", outcome.error
    [row] = in_process.rows().rows
    assert row.status == "ok" and row.dataset == "kitti" and row.split == "test"
    assert row.miou is not None and 0 <= row.miou <= 1
    assert (row.eval_height, row.eval_width) == SHAPE  # scored at the label maps' own size
    assert row.train_steps == 2 and row.latency_ms_median > 0
