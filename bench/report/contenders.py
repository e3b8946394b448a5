"""torchvision's segmentation models: their published figures beside the measured rows.

The published figures are the metadata of the weights each entry names
(``models.torchvision_zoo.CONTENDERS``), copied into ``conf/published.yaml``
(``torchvision_weights``) so that the report needs no torch (importing torchvision takes seconds);
a test checks them against the installed torchvision. They are counted differently from
segbench's rows; each difference is named, per row where it depends on the row (its classes, aux
head and resolution), below the table where it does not.
"""
from __future__ import annotations

import pandas as pd

from bench.report.frame import json_value
from bench.report.tables import fmt

#: The names ``models.torchvision_zoo`` registers, here without importing torch (seconds); a test
#: keeps them equal.
TORCHVISION_MODELS = ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
                      "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large")

#: Where torchvision measured ``_ops``: its eval transform (``SemanticSegmentation``) resizes to 520.
PUBLISHED_RESOLUTION = "520x520"

COUNTING_NOTE = (
    "Published figures are torchvision's weights metadata (torchvision 0.29.1, copied into "
    "conf/published.yaml and checked against the installed torchvision by the tests). num_params "
    "counts 21 classes (the COCO-with-VOC-labels weights) and the auxiliary FCNHead where the "
    "model has one (not LR-ASPP). _ops counts multiply-adds "
    "(GFLOPS in torchvision's tables) of one forward pass at 520x520, any auxiliary head "
    "included, so the published FLOP figure shown is 2 x _ops. segbench counts FLOP with "
    "torch.utils.flop_counter.FlopCounterMode (1 multiply-add = 2 FLOP) at the row's resolution. "
    "mIoU and pixel accuracy are torchvision's, on COCO val2017 with VOC labels and the pretrained "
    "weights: segbench's rows train from scratch, so no measured accuracy is comparable.")


def _row_notes(has_aux_head: bool, classes: int, aux: bool, resolution: str, categories: int) -> str:
    """The counting differences that apply to one measured row."""
    notes = []
    if has_aux_head and not aux:
        notes.append("measured without the auxiliary head (aux=false); num_params and _ops include it")
    if classes != categories:
        notes.append(f"measured with {classes} classes; num_params counts {categories}")
    if resolution != PUBLISHED_RESOLUTION:
        notes.append(f"measured at {resolution}, _ops at {PUBLISHED_RESOLUTION}: FLOPs grow with "
                     f"the pixels, so no ratio")
    return "; ".join(notes) or "same model, classes and resolution as the metadata"


def contenders_table(current: pd.DataFrame, published: dict) -> pd.DataFrame:
    """One line per measured ``ok`` row of a torchvision model, with its weights' metadata
    (``published["torchvision_weights"]``, from ``load_published``)."""
    rows = current[(current["status"] == "ok") & current["model"].isin(TORCHVISION_MODELS)
                   & current["params_total"].notna()]
    if rows.empty:
        return pd.DataFrame()
    records = []
    used = ["model", "pixels", "model_kwargs", "resolution", "num_classes", "params_total", "gflops_per_image"]
    for row in rows[used].sort_values(["model", "pixels"]).itertuples():
        meta = published["torchvision_weights"][row.model]
        aux = bool(json_value(row.model_kwargs, {}).get("aux", False))
        published_gflops = 2 * meta["ops"]
        at_published_size = row.resolution == PUBLISHED_RESOLUTION
        records.append({
            "model": row.model, "resolution": row.resolution, "classes": int(row.num_classes),
            "aux": aux,
            "measured params (M)": fmt(row.params_total / 1e6, "{:.3f}"),
            "num_params (M)": fmt(meta["num_params"] / 1e6, "{:.3f}"),
            "measured / num_params": fmt(row.params_total / meta["num_params"], "{:.3f}"),
            "measured GFLOP/img": fmt(row.gflops_per_image, "{:.3f}"),
            "2 x _ops GFLOP/img (520x520)": fmt(published_gflops, "{:.3f}"),
            "measured / 2 x _ops": fmt(row.gflops_per_image / published_gflops if at_published_size
                                       else None, "{:.3f}"),
            "published mIoU (%)": meta["miou"], "published pixel acc (%)": meta["pixel_acc"],
            "weights file (MB)": meta["file_size"],
            "source": f"torchvision weights metadata: {meta['weights']}",
            "counting notes": _row_notes(meta["aux_head"], int(row.num_classes), aux, row.resolution,
                                         meta["categories"]),
        })
    return pd.DataFrame.from_records(records)
