"""torchvision's semantic-segmentation models (``torchvision.models.segmentation``) as segbench entries.

The light models a user would pick today, registered under torchvision's own names so they are
measured beside the classics: FCN and DeepLabV3 on ResNet-50/101, DeepLabV3 and LR-ASPP on
MobileNetV3-Large. Each is torchvision's builder called with ``weights=None, weights_backbone=None``
(nothing is downloaded) and ``num_classes`` passed through. torchvision's forward returns
``{"out": logits at the input size, "aux": ...}``; ``create_model`` unwraps ``"out"`` for every
model, so nothing here does.

Model options (``+model.KEY=VALUE`` on the command line, or in ``conf/model/<name>.yaml``):

* ``aux`` (default false): torchvision's auxiliary FCNHead on an earlier backbone stage (layer3 of
  the ResNets; FCN and DeepLabV3 only, LR-ASPP has none). It adds that head's parameters and, since
  torchvision runs it in every forward pass, its FLOPs and memory; segbench's loss and metrics use ``"out"`` alone, so
  it changes no accuracy figure. torchvision's published ``num_params`` and ``_ops`` include it.
* ``pretrained`` (default false): torchvision's COCO-with-VOC-labels weights (21 classes, hence
  ``num_classes=21``), read from the local torch hub cache only, as for the VGG backbones.

``CONTENDERS`` also names each model's weights, whose metadata (``num_params``, ``_ops``,
``_metrics``) the report shows beside the measured figures (``bench/report/contenders.py``).
"""
from __future__ import annotations

import inspect
from functools import partial
from typing import Callable

from torch import nn
from torchvision.models import WeightsEnum
from torchvision.models import segmentation as tv

from models.common import load_cached_weights
from models.registry import register_model

#: segbench name -> (torchvision builder, the weights whose metadata and state dict segbench uses).
CONTENDERS: dict[str, tuple[Callable[..., nn.Module], WeightsEnum]] = {
    "fcn_resnet50": (tv.fcn_resnet50, tv.FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1),
    "fcn_resnet101": (tv.fcn_resnet101, tv.FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1),
    "deeplabv3_resnet50": (tv.deeplabv3_resnet50, tv.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1),
    "deeplabv3_resnet101": (tv.deeplabv3_resnet101, tv.DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1),
    "deeplabv3_mobilenet_v3_large": (
        tv.deeplabv3_mobilenet_v3_large, tv.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1),
    "lraspp_mobilenet_v3_large": (
        tv.lraspp_mobilenet_v3_large, tv.LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1),
}


def has_aux_head(name: str) -> bool:
    """Whether torchvision's builder for ``name`` offers the auxiliary head (its ``aux_loss``)."""
    return "aux_loss" in inspect.signature(CONTENDERS[name][0]).parameters


def build_contender(name: str, num_classes: int, in_channels: int = 3, aux: bool = False,
                    pretrained: bool = False) -> nn.Module:
    """torchvision's ``name`` with ``num_classes`` outputs, no weights downloaded."""
    builder, weights = CONTENDERS[name]
    if in_channels != 3:
        raise ValueError(f"{name} takes RGB input (in_channels=3), got in_channels={in_channels}")
    if aux and not has_aux_head(name):
        raise ValueError(f"{name} has no auxiliary head; use aux=false (only the FCN and DeepLabV3 "
                         f"models have one)")
    num_weight_classes = len(weights.meta["categories"])
    if pretrained and num_classes != num_weight_classes:
        raise ValueError(f"pretrained=true loads {weights}, trained for {num_weight_classes} classes "
                         f"(VOC's labels); use a data set with {num_weight_classes} classes "
                         f"(e.g. dataset=voc) or pretrained=false")
    state = load_cached_weights(weights, "pretrained") if pretrained else None  # fail before the build
    options = {"aux_loss": aux} if has_aux_head(name) else {}
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes, **options)
    if state is not None:
        if not aux:  # the published weights carry the auxiliary head; the model without it has no place for it
            state = {key: value for key, value in state.items() if not key.startswith("aux_classifier.")}
        model.load_state_dict(state)
    return model


for _name in CONTENDERS:
    register_model(partial(build_contender, _name), name=_name)
