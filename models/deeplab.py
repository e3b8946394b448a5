"""DeepLab-LargeFOV (Chen, Papandreou, Kokkinos, Murphy, Yuille, ICLR 2015, arXiv:1412.7062).

Layers as in the reference net, deeplab-public's ``DeepLab-LargeFOV`` train.prototxt and test.prototxt
(read in the copy TheLegendAli/DeepLab-Context ``config/DeepLab-LargeFOV/``; layer names in
comments): VGG16's 13 convolutions with ReLU; pool1-3 3x3 max-pools, stride 2, pad 1; pool4 and pool5
3x3 max-pools with stride 1, pad 1, so the output stride is 8; conv5_1-3 dilated by 2 ("hole: 2",
pad 2); pool5a, a 3x3 average pool, stride 1, pad 1; fc6 a 3x3 conv dilated by 12 (pad 12),
512->1024, and fc7 a 1x1 conv 1024->1024, each followed by ReLU and dropout 0.5; fc8 a 1x1 conv to C
(N(0, 0.01) weights, zero bias, the prototxt's fillers). 20,505,429 parameters at C = 21 (DeepLab
Table 2 prints 20.5M).

Pooling: Caffe rounds pooled sizes up, so pool1-3 run with ``ceil_mode=True``: n px pool to
floor(n/2) + 1 and cell i of every level is centred on input pixel 8i (the prototxt's 321x321 crop:
161, 81, 41). Caffe's average pooling divides by 9 at the border too (the padding counts), as
``AvgPool2d`` does by default.

Upsampling: the reference's test net interpolates fc8 by 8 (its INTERP layer, zoom_factor 8: n
cells give 8(n - 1) + 1 px with the corners aligned, so cell i lands on pixel 8i) and scores the
image inside its 513x513 padded input. Here the same interpolation (``align_corners=True``) runs on
the cells of the unpadded input and is cropped to its H x W: the last cell is centred at or beyond
the last pixel, so 8(n - 1) + 1 >= H. (The reference trains on the 1/8 grid, shrinking the labels
instead, "label_shrink"; segbench's loss takes logits at the input size. The layers are the same.)

ImageNet weights: ``pretrained_backbone`` loads torchvision's VGG16 weights into the 13 convolutions.
The reference also starts fc6 and fc7 from VGG16's, subsampled to LargeFOV's shapes; that is not
reproduced: they start as torchvision initialises VGG's convolutions.

Minimum input: 8x8, one output stride, as DilatedNet. Any size from 8 up works, odd sizes included.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.common import check_input_size
from models.registry import register_model
from models.vgg import vgg16_backbone, vgg16_stages

OUTPUT_STRIDE = 8
CONV5_DILATION, FC6_DILATION = 2, 12
FC_WIDTH = 1024  # fc6 and fc7: VGG16's 4096 cut to 1024 (the "LargeFOV" variant's width)


def _fc_conv(in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2),
                     dilation=dilation)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # torchvision's VGG conv init
    nn.init.zeros_(conv.bias)
    return conv


class DeepLabLargeFOV(nn.Module):
    """DeepLab-LargeFOV on VGG16; see the module docstring."""

    min_input_size = OUTPUT_STRIDE
    # No decoder: the bilinear upsampling keeps nothing from the encoder (bench/measure/decoder.py).
    decoder_keeps: dict[str, str] = {}

    def __init__(self, num_classes: int, in_channels: int = 3, pretrained_backbone: bool = False):
        super().__init__()
        vgg = vgg16_backbone(batch_norm=False, pretrained=pretrained_backbone, in_channels=in_channels,
                             classifier=False)
        stages = vgg16_stages(vgg)
        for conv in stages[4]:
            if isinstance(conv, nn.Conv2d):  # conv5_x: "hole: 2", pad 2
                conv.dilation, conv.padding = (CONV5_DILATION,) * 2, (CONV5_DILATION,) * 2
        halve = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)  # pool1-3 (Caffe rounds up); shared
        keep = nn.MaxPool2d(3, 1, padding=1)  # pool4, pool5
        self.features = nn.Sequential(stages[0], halve, stages[1], halve, stages[2], halve, stages[3], keep,
                                      stages[4], keep, nn.AvgPool2d(3, 1, padding=1))  # ..., pool5a
        self.fc = nn.Sequential(
            _fc_conv(512, FC_WIDTH, 3, dilation=FC6_DILATION), nn.ReLU(inplace=True), nn.Dropout(0.5),
            _fc_conv(FC_WIDTH, FC_WIDTH, 1), nn.ReLU(inplace=True), nn.Dropout(0.5))
        self.fc8 = nn.Conv2d(FC_WIDTH, num_classes, 1)
        nn.init.normal_(self.fc8.weight, std=0.01)
        nn.init.zeros_(self.fc8.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, "deeplab_largefov")
        height, width = x.shape[-2:]
        scores = self.fc8(self.fc(self.features(x)))
        cells_h, cells_w = scores.shape[-2:]
        size = (OUTPUT_STRIDE * (cells_h - 1) + 1, OUTPUT_STRIDE * (cells_w - 1) + 1)
        scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=True)  # INTERP, zoom_factor 8
        return scores[..., :height, :width]


@register_model
def deeplab_largefov(num_classes: int, in_channels: int = 3,
                     pretrained_backbone: bool = False) -> DeepLabLargeFOV:
    """DeepLab-LargeFOV (DeepLab Table 2: 20.5M parameters; SegNet Table 6 timings)."""
    return DeepLabLargeFOV(num_classes, in_channels, pretrained_backbone=pretrained_backbone)
