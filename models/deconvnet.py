"""DeconvNet (Noh, Hong, Han, ICCV 2015, arXiv:1505.04366).

Layers as in the reference net (HyeonwooNoh/DeconvNet ``model/DeconvNet/DeconvNet_inference_deploy.prototxt``;
layer names in comments): VGG16's 13 convolutions, each followed by BN and ReLU, with 2x2 max-pools
that keep their switches (``pool1_mask``...); fc6 a valid 7x7 conv 512->4096 and fc7 a 1x1 conv
4096->4096, each followed by BN and ReLU (no dropout). The mirror: fc6-deconv, a 7x7 transposed conv
4096->512 with BN and ReLU, then five stages of unpooling with the switches and 3x3 transposed convs
(pad 1), each with BN and ReLU, of 512, 512, 512 / 512, 512, 256 / 256, 256, 128 / 128, 64 / 64, 64
channels (deconv5_1 ... deconv1_2); seg-score, a 1x1 conv 64->C. Every conv and transposed conv has
a bias. 251,805,653 parameters at C = 21.

BN is the reference's: a per-channel scale and shift after every conv layer, normalising with batch
statistics in training and with stored ones at inference ("bn_mode: INFERENCE", the means and
variances its BN_make_INFERENCE_script.py computes), i.e. BatchNorm2d's train and eval modes. The
layers DeconvNet adds start from the prototxt's fillers: N(0, 0.01) weights, zero biases, BN scale 1
and shift 0.001. The 13 convolutions and fc6/fc7 are torchvision's VGG16-BN (its ImageNet weights
with ``pretrained_backbone``; the reference starts them from VGG16's, which has no BN).

Input size: the reference runs on 224x224 proposals, where pool5 is 7x7, fc6 reduces it to 1x1 and
fc6-deconv restores the 7x7. Its layers are convolutional, so an input whose pool5 is at least 7x7,
i.e. at least 224 px on each side, runs as it is: fc6 slides over pool5 and fc6-deconv gives back
pool5's size; odd sizes pool by flooring (Caffe would round up; at 224 the two agree) and unpool to
the size each pool was given, as SegNet here. A side shorter than 224 px is zero-padded to 224 (zero
is Caffe's mean-subtracted mean colour, as FCN here pads), the padding split evenly between its two
ends, and the logits are cropped back to the input's H x W. Minimum input: 32x32 (one pool5 cell of
image content, as FCN). A training step at batch 1 also needs one side of at least 256 px: below
that fc6's output is 1x1 and its BN sees one value per channel (the reference trains at batch 64).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.common import check_input_size, encode_decode
from models.registry import register_model
from models.vgg import FC6_KERNEL, convolutionalised_head, vgg16_backbone, vgg16_stages

POOL5_STRIDE = 32
REFERENCE_SIZE = FC6_KERNEL * POOL5_STRIDE  # 224: the smallest side whose pool5 fills fc6's 7x7
# Output channels of the transposed convs of each unpooling stage, deepest first (deconv5_1 ... deconv1_2).
DECONV_WIDTHS = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64, 64))


def _bn(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    nn.init.constant_(bn.bias, 0.001)  # the prototxt's shift_filler; its scale_filler (1) is the default
    return bn


def _deconv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, padding: int) -> list[nn.Module]:
    deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, padding=padding)
    nn.init.normal_(deconv.weight, std=0.01)  # the prototxt's gaussian filler
    nn.init.zeros_(deconv.bias)
    return [deconv, _bn(out_channels), nn.ReLU(inplace=True)]


def _padding(size: int) -> tuple[int, int]:
    """(before, after) zero padding of an axis of ``size`` px: up to 224, split evenly; none above."""
    extra = max(0, REFERENCE_SIZE - size)
    return extra // 2, extra - extra // 2


class DeconvNet(nn.Module):
    """DeconvNet on VGG16-BN; see the module docstring."""

    min_input_size = POOL5_STRIDE
    # What the decoder keeps from the encoder (bench/measure/decoder.py): the switches of every
    # call of the shared ``pool`` (five), used to unpool.
    decoder_keeps = {"pool": "indices"}

    def __init__(self, num_classes: int, in_channels: int = 3, pretrained_backbone: bool = False):
        super().__init__()
        vgg = vgg16_backbone(batch_norm=True, pretrained=pretrained_backbone, in_channels=in_channels)
        self.encoder = nn.ModuleList(vgg16_stages(vgg))
        head = convolutionalised_head(vgg)  # fc6, ReLU, dropout, fc7, ReLU, dropout
        # fc6, bnfc6, relu6, fc7, bnfc7, relu7: BN before each ReLU and no dropout.
        self.fc = nn.Sequential(head[0], _bn(4096), nn.ReLU(inplace=True),
                                head[3], _bn(4096), nn.ReLU(inplace=True))
        self.fc6_deconv = nn.Sequential(*_deconv_bn_relu(4096, 512, FC6_KERNEL, padding=0))
        stages, channels = [], 512
        for widths in DECONV_WIDTHS:
            layers = []
            for width in widths:
                layers += _deconv_bn_relu(channels, width, 3, padding=1)
                channels = width
            stages.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList(stages)
        self.classifier = nn.Conv2d(channels, num_classes, 1)  # seg-score
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)

    def _bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """fc6 and fc7 on pool5, then fc6-deconv back to pool5's size."""
        return self.fc6_deconv(self.fc(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, "deconvnet")
        height, width = x.shape[-2:]
        top, bottom = _padding(height)
        left, right = _padding(width)
        x = encode_decode(F.pad(x, (left, right, top, bottom)), self.encoder, self.decoder, self.pool,
                          self.unpool, bottleneck=self._bottleneck)  # unpool5 + deconv5_x first
        return self.classifier(x)[..., top:top + height, left:left + width]


@register_model
def deconvnet(num_classes: int, in_channels: int = 3, pretrained_backbone: bool = False) -> DeconvNet:
    """DeconvNet (SegNet Table 6's timings; its 877 MB model is 13% below this net's 1007 MB in fp32)."""
    return DeconvNet(num_classes, in_channels, pretrained_backbone=pretrained_backbone)
