"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer, Darrell, CVPR 2015, arXiv:1411.4038v2).

Layers as in the reference voc-fcn32s/16s/8s nets (shelhamer/fcn.berkeleyvision.org): VGG16's 13
convolutions and 5 max-pools; fc6 a valid 7x7 conv 512->4096 and fc7 a 1x1 conv 4096->4096, each with
ReLU and dropout 0.5; score_fr 1x1 4096->C. FCN-16s adds score_pool4 (1x1 512->C) fused after a learned
2x upsampling (upscore2), FCN-8s also score_pool3 (1x1 256->C) after another (upscore_pool4). The 2x
upsamplings are ConvTranspose2d(k=4, s=2, no bias) initialised to bilinear and trained; the final
upsampling (k=64 s=32 / k=32 s=16 / k=16 s=8) is bilinear and fixed (lr_mult 0 in the reference).
The scoring layers start at zero, as in the paper (sec. 4.3: "we zero-initialize the class scoring
layer"), so the backbone's first gradient is zero and flows from the second step on.

Parameter counting: the fixed final upsampling is a *buffer* (``FixedBilinearUpsample.weight``), so it
is not trainable and not in ``parameters()``; it is depthwise (the reference's C x C kernel is zero off
the diagonal, so C x 1 x k x k computes the same). Caffe's model files store it as a dense
C x C x k x k blob, which adds C^2 k^2 to their totals: 1,806,336 (FCN-32s), 451,584 (FCN-16s) and
112,896 (FCN-8s) at C = 21.

Input padding, instead of Caffe's pad-100 trick: fc6 is a valid 7x7 conv at 1/32 resolution and the
reference geometry is kept exactly (valid fc6, unpadded transposed convs, skip crops at offsets 5 and
9). Tracking coordinates as Caffe's ``coord_map`` does, the final upsampling's output pixel o sits at
pixel o + m of the padded input, with m = 80 (32s), 72 (16s), 68 (8s); Caffe pads 99 px more than
a same-padded conv1_1 does and crops at 99 - m = 19, 27, 31. Here the input is zero-padded (zeros,
as Caffe pads) by just enough: at least m px on every side, so every input pixel gets a logit
computed from fc6's full 7x7 window, plus < 32 px so the padded size is a multiple of 32 (every pool
halves exactly, skips align with constant offsets) and at least 7 x 32 (fc6 needs 7 pool5 cells). The
slack is split evenly between the two sides. That is 160 + (<32) px per axis instead of Caffe's 198
plus its ceil-mode overhang (500x500: 672x672 for FCN-32s, 640x640 for FCN-8s, vs 698x698). Interior
logits see exactly the reference computation; they may differ from Caffe's only through the zero
border's extent and the position of the 32 px pooling grid relative to the image.

Minimum input: 32x32 (one pool5 cell of image content; smaller inputs would be scored from padding
alone). Any size from 32 up works, odd sizes included; logits come back at exactly the input H x W.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.common import check_input_size
from models.registry import register_model
from models.vgg import FC6_KERNEL, convolutionalised_head, vgg16_backbone, vgg16_stages

POOL5_STRIDE = 32
# Final-upsampling output pixel 0 sits at padded-input pixel MARGIN[stride] (derivation above).
MARGIN = {32: 80, 16: 72, 8: 68}
# score_pool4 / score_pool3 pixel matching pixel 0 of upscore2 / upscore_pool4 (Caffe's crop offsets).
POOL4_OFFSET, POOL3_OFFSET = 5, 9


def bilinear_kernel(size: int) -> torch.Tensor:
    """size x size bilinear interpolation kernel (fcn.berkeleyvision.org ``surgery.upsample_filt``)."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor
    return taps[:, None] * taps[None, :]


def bilinear_conv_transpose(channels: int, factor: int = 2, padding: int = 0) -> nn.ConvTranspose2d:
    """Learnable ``factor``x upsampling (kernel 2*factor, no bias), initialised to bilinear per channel."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=padding, bias=False)
    with torch.no_grad():
        up.weight.zero_()
        diagonal = torch.arange(channels)
        up.weight[diagonal, diagonal] = bilinear_kernel(2 * factor).to(up.weight.device)
    return up


class FixedBilinearUpsample(nn.Module):
    """Bilinear ``factor``x upsampling, kernel 2*factor, stride ``factor``, no padding: never trained.

    The kernel is a buffer (not a parameter, not in the parameter count). The output is
    (n - 1) * factor + 2 * factor pixels long; callers crop.
    """

    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.factor = factor
        kernel = bilinear_kernel(2 * factor).expand(channels, 1, -1, -1).clone()
        self.register_buffer("weight", kernel, persistent=False)  # rebuilt on construction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight, stride=self.factor, groups=self.weight.shape[0])


def _score_layer(in_channels: int, num_classes: int) -> nn.Conv2d:
    score = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(score.weight)
    nn.init.zeros_(score.bias)
    return score


def _crop_like(x: torch.Tensor, offset: int, like: torch.Tensor) -> torch.Tensor:
    height, width = like.shape[-2:]
    return x[..., offset:offset + height, offset:offset + width]


class FCN(nn.Module):
    """FCN-``stride``s on VGG16; see the module docstring for layers, padding and counting."""

    min_input_size = POOL5_STRIDE

    def __init__(self, num_classes: int, in_channels: int = 3, stride: int = 32,
                 pretrained_backbone: bool = False):
        super().__init__()
        if stride not in MARGIN:
            raise ValueError(f"FCN output stride must be one of {sorted(MARGIN)}, got {stride}")
        self.arch = f"fcn{stride}s"
        self.stride = stride
        vgg = vgg16_backbone(batch_norm=False, pretrained=pretrained_backbone, in_channels=in_channels)
        stage1, stage2, stage3, stage4, stage5 = vgg16_stages(vgg)
        pool = nn.MaxPool2d(2, 2)  # parameter-free, shared by the five stages
        self.to_pool3 = nn.Sequential(stage1, pool, stage2, pool, stage3, pool)
        self.to_pool4 = nn.Sequential(stage4, pool)
        self.to_pool5 = nn.Sequential(stage5, pool)
        self.fc = convolutionalised_head(vgg)
        self.score_fr = _score_layer(4096, num_classes)
        if stride <= 16:
            self.upscore2 = bilinear_conv_transpose(num_classes)
            self.score_pool4 = _score_layer(512, num_classes)
        if stride == 8:
            self.upscore_pool4 = bilinear_conv_transpose(num_classes)
            self.score_pool3 = _score_layer(256, num_classes)
        self.upscore = FixedBilinearUpsample(num_classes, stride)
        # What the decoder keeps from the encoder (bench/measure/decoder.py): pool4 (and pool3)
        # whole, 512 (256) channels, since forward scores them only when the decoder reaches them.
        # FCN-32s keeps nothing: its decoder is one upsampling of score_fr.
        self.decoder_keeps = {"to_pool4": "maps", "to_pool3": "maps"} if stride == 8 else (
            {"to_pool4": "maps"} if stride == 16 else {})

    def _padding(self, size: int) -> tuple[int, int]:
        """(before, after) zero padding of one axis of ``size`` pixels; see the module docstring."""
        margin = MARGIN[self.stride]
        padded = -(-(size + 2 * margin) // POOL5_STRIDE) * POOL5_STRIDE
        padded = max(padded, FC6_KERNEL * POOL5_STRIDE)
        before = margin + (padded - size - 2 * margin) // 2
        return before, padded - size - before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, self.arch)
        height, width = x.shape[-2:]
        top, bottom = self._padding(height)
        left, right = self._padding(width)
        pool3 = self.to_pool3(F.pad(x, (left, right, top, bottom)))
        pool4 = self.to_pool4(pool3)
        score = self.score_fr(self.fc(self.to_pool5(pool4)))
        if self.stride <= 16:
            score = self.upscore2(score)
            score = score + _crop_like(self.score_pool4(pool4), POOL4_OFFSET, score)
        if self.stride == 8:
            score = self.upscore_pool4(score)
            score = score + _crop_like(self.score_pool3(pool3), POOL3_OFFSET, score)
        margin = MARGIN[self.stride]
        return self.upscore(score)[..., top - margin:top - margin + height,
                                   left - margin:left - margin + width]


@register_model
def fcn32s(num_classes: int, in_channels: int = 3, pretrained_backbone: bool = False) -> FCN:
    """FCN-32s: score_fr upsampled 32x (FCN Table 2: 59.4 mIoU on a VOC2011 val subset)."""
    return FCN(num_classes, in_channels, stride=32, pretrained_backbone=pretrained_backbone)


@register_model
def fcn16s(num_classes: int, in_channels: int = 3, pretrained_backbone: bool = False) -> FCN:
    """FCN-16s: + pool4 skip, upsampled 16x (FCN Table 2: 62.4)."""
    return FCN(num_classes, in_channels, stride=16, pretrained_backbone=pretrained_backbone)


@register_model
def fcn8s(num_classes: int, in_channels: int = 3, pretrained_backbone: bool = False) -> FCN:
    """FCN-8s: + pool3 skip, upsampled 8x (FCN Table 2: 62.7; Table 3: 62.2 on VOC2012 test)."""
    return FCN(num_classes, in_channels, stride=8, pretrained_backbone=pretrained_backbone)
