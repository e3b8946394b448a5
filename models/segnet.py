"""SegNet, SegNet-Basic, FCN-Basic and Table 1's decoder variants (Badrinarayanan, Kendall, Cipolla,
TPAMI, arXiv:1511.00561v3).

SegNet (sec. 3; reference: alexgkendall/SegNet-Tutorial ``Models/segnet_train.prototxt``): the
encoder is VGG16-BN's 13 convs (conv, BN, ReLU) with 2x2 max-pools that keep their argmax indices.
The decoder mirrors it: each stage max-unpools with the stored indices (``output_size`` restores odd
sizes) and applies the encoder stage's convs in reverse order with swapped channels, each with BN and
ReLU. Its 13th conv, conv1_1_D, is the classifier: 3x3 64->C, no BN/ReLU. This is the layout that
gives the published counts: encoder 14.72M (14.7M printed), total 29.45M at C = 11 (Tiramisu Table 3
prints 29.5M, whose Lasagne count also includes BN running statistics: +15,872 -> 29.47M). A 13th
conv+BN+ReLU followed by a separate 1x1 classifier would count 29.48M instead, but the prototxt has
no such layer.

SegNet-Basic (sec. 3.1): 4 encoder stages of 7x7 conv (64 channels, no bias), BN, ReLU, 2x2 max-pool
with indices; 4 decoder stages of max-unpool, 7x7 conv (64, no bias) and BN with no ReLU; a 1x1
classifier. (The Tutorial prototxt adds conv biases, redundant before BN, and an LRN on the input;
the paper's description is followed.)

FCN-Basic (sec. 3.1): SegNet-Basic's encoder; the decoder reduces each stored (pooled) encoder map
to C channels with a 1x1 conv and, from the deepest up, upsamples 2x with a learned transposed conv
(k=4, s=2, pad 1, bilinear-initialised) and adds the next reduced map; a last such upsampling gives
logits at the input size. Only C-channel maps are stored for the decoder (the paper's decoder
storage multiplier of 11 at C = 11).

Table 1's other decoders on SegNet-Basic's encoder (sec. 3.1-3.3), as the text describes them (no
reference code for them was published):
- Bilinear-Interpolation (``segnet_basic_bilinear``): no learned decoder; the 64 maps are upsampled
  by fixed bilinear interpolation back through the four pooled sizes, then the 1x1 classifier. It
  keeps nothing from the encoder (Table 1's storage multiplier 0).
- SegNet-Basic-EncoderAddition (``segnet_basic_encoder_addition``): SegNet-Basic whose decoder adds
  the 64 encoder maps of each stage (before pooling) to its stage's output; the same parameters,
  but it keeps those maps beside the indices.
- FCN-Basic-NoDimReduction (``fcn_basic_no_dim_reduction``): FCN-Basic without the 1x1 reductions:
  the decoder keeps, upsamples (64-channel transposed convs) and adds the 64-channel pooled maps,
  and a 1x1 classifier at the input size gives the logits (Table 1's multiplier 64, not 11).

Minimum input: 32 for SegNet (five pools), 16 for SegNet-Basic and FCN-Basic (four pools).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.common import check_input_size, encode_decode
from models.fcn import bilinear_conv_transpose
from models.registry import register_model
from models.vgg import vgg16_backbone, vgg16_stages

BASIC_WIDTH, BASIC_KERNEL, BASIC_DEPTH = 64, 7, 4


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, *, bias: bool,
             relu: bool) -> list[nn.Module]:
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias),
              nn.BatchNorm2d(out_channels)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


def _mirror(stage: nn.Sequential) -> nn.Sequential:
    """Decoder stage for an encoder stage: its convs reversed, channels swapped, with BN and ReLU."""
    convs = [layer for layer in stage if isinstance(layer, nn.Conv2d)][::-1]
    layers = [layer for conv in convs
              for layer in _conv_bn(conv.out_channels, conv.in_channels, 3, bias=True, relu=True)]
    for layer in layers:
        if isinstance(layer, nn.Conv2d):  # the reference's "msra" filler
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class SegNet(nn.Module):
    """SegNet on VGG16-BN; see the module docstring."""

    min_input_size = 32
    # What the decoder keeps from the encoder (bench/measure/decoder.py): the indices of every
    # call of the shared ``pool`` (five), used to unpool.
    decoder_keeps = {"pool": "indices"}

    def __init__(self, num_classes: int, in_channels: int = 3, pretrained_backbone: bool = False):
        super().__init__()
        vgg = vgg16_backbone(batch_norm=True, pretrained=pretrained_backbone, in_channels=in_channels,
                             classifier=False)
        self.encoder = nn.ModuleList(vgg16_stages(vgg))
        decoder = [_mirror(stage) for stage in self.encoder]
        decoder[0] = decoder[0][:-3]  # conv1_1_D (64 -> in_channels) gives way to the classifier
        self.decoder = nn.ModuleList(decoder[::-1])  # deepest stage first
        self.classifier = nn.Conv2d(64, num_classes, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, "segnet")
        return self.classifier(encode_decode(x, self.encoder, self.decoder, self.pool, self.unpool))


class SegNetBasic(nn.Module):
    """SegNet-Basic, or with ``encoder_addition`` SegNet-Basic-EncoderAddition; see the module
    docstring."""

    min_input_size = 2**BASIC_DEPTH

    def __init__(self, num_classes: int, in_channels: int = 3, encoder_addition: bool = False):
        super().__init__()
        self.encoder_addition = encoder_addition
        self.model_name = "segnet_basic_encoder_addition" if encoder_addition else "segnet_basic"
        # What the decoder keeps (bench/measure/decoder.py): the four pools' indices, and with
        # encoder_addition each encoder stage's 64 maps too.
        self.decoder_keeps = {"pool": "indices",
                              **{f"encoder.{i}": "maps" for i in range(BASIC_DEPTH) if encoder_addition}}
        self.encoder = _basic_encoder(in_channels)
        self.decoder = nn.ModuleList(
            nn.Sequential(*_conv_bn(BASIC_WIDTH, BASIC_WIDTH, BASIC_KERNEL, bias=False, relu=False))
            for _ in range(BASIC_DEPTH))
        self.classifier = nn.Conv2d(BASIC_WIDTH, num_classes, 1)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, self.model_name)
        return self.classifier(encode_decode(x, self.encoder, self.decoder, self.pool, self.unpool,
                                              add_encoder_maps=self.encoder_addition))


class BilinearBasic(nn.Module):
    """Bilinear-Interpolation (SegNet Table 1); see the module docstring."""

    min_input_size = 2**BASIC_DEPTH
    decoder_keeps: dict[str, str] = {}  # only the encoder's sizes, to interpolate back to

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.encoder = _basic_encoder(in_channels)
        self.classifier = nn.Conv2d(BASIC_WIDTH, num_classes, 1)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, "segnet_basic_bilinear")
        sizes = []
        for stage in self.encoder:
            x = stage(x)
            sizes.append(x.shape[-2:])
            x = self.pool(x)
        for size in reversed(sizes):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.classifier(x)


class FCNBasic(nn.Module):
    """FCN-Basic, or without ``dim_reduction`` FCN-Basic-NoDimReduction; see the module docstring."""

    min_input_size = 2**BASIC_DEPTH
    # The (reduced) first three pooled maps, added in the decoder (bench/measure/decoder.py); the
    # deepest one is the decoder's input, not kept beside it.
    decoder_keeps = {f"reduce.{i}": "maps" for i in range(BASIC_DEPTH - 1)}

    def __init__(self, num_classes: int, in_channels: int = 3, dim_reduction: bool = True):
        super().__init__()
        self.model_name = "fcn_basic" if dim_reduction else "fcn_basic_no_dim_reduction"
        width = num_classes if dim_reduction else BASIC_WIDTH
        self.encoder = _basic_encoder(in_channels)
        # Without the reduction the maps pass as they are: Identity keeps the names decoder_keeps uses.
        self.reduce = nn.ModuleList(nn.Conv2d(BASIC_WIDTH, num_classes, 1) if dim_reduction
                                    else nn.Identity() for _ in range(BASIC_DEPTH))
        self.upsample = nn.ModuleList(bilinear_conv_transpose(width, padding=1) for _ in range(BASIC_DEPTH))
        self.classifier = nn.Identity() if dim_reduction else nn.Conv2d(BASIC_WIDTH, num_classes, 1)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, self.model_name)
        sizes, reduced = [], []
        for stage, reduce in zip(self.encoder, self.reduce):
            sizes.append(x.shape[-2:])
            x = self.pool(stage(x))
            reduced.append(reduce(x))
        scores = reduced.pop()
        for upsample, size in zip(self.upsample, reversed(sizes)):
            scores = upsample(scores, output_size=size)
            if reduced:
                scores = scores + reduced.pop()
        return self.classifier(scores)


def _basic_encoder(in_channels: int) -> nn.ModuleList:
    """SegNet-Basic's encoder stages: 7x7 conv (64, no bias), BN, ReLU; pooling is the caller's."""
    return nn.ModuleList(
        nn.Sequential(*_conv_bn(in_channels if i == 0 else BASIC_WIDTH, BASIC_WIDTH, BASIC_KERNEL,
                                bias=False, relu=True))
        for i in range(BASIC_DEPTH))


@register_model
def segnet(num_classes: int, in_channels: int = 3, pretrained_backbone: bool = False) -> SegNet:
    """SegNet (Tiramisu Table 3: 29.5M parameters, CamVid 46.4 mIoU; SegNet Table 6 timings)."""
    return SegNet(num_classes, in_channels, pretrained_backbone=pretrained_backbone)


@register_model
def segnet_basic(num_classes: int, in_channels: int = 3) -> SegNetBasic:
    """SegNet-Basic (SegNet Table 1: 1.425M parameters, CamVid 47.7 mIoU)."""
    return SegNetBasic(num_classes, in_channels)


@register_model
def fcn_basic(num_classes: int, in_channels: int = 3) -> FCNBasic:
    """FCN-Basic (SegNet Table 1: 0.65M parameters, decoder storage x11, CamVid 47.3 mIoU)."""
    return FCNBasic(num_classes, in_channels)


@register_model
def segnet_basic_bilinear(num_classes: int, in_channels: int = 3) -> BilinearBasic:
    """Bilinear-Interpolation (SegNet Table 1: 0.625M parameters, storage x0, CamVid 43.3 mIoU)."""
    return BilinearBasic(num_classes, in_channels)


@register_model
def segnet_basic_encoder_addition(num_classes: int, in_channels: int = 3) -> SegNetBasic:
    """SegNet-Basic-EncoderAddition (SegNet Table 1: 1.425M parameters, storage x64, CamVid 48.5 mIoU)."""
    return SegNetBasic(num_classes, in_channels, encoder_addition=True)


@register_model
def fcn_basic_no_dim_reduction(num_classes: int, in_channels: int = 3) -> FCNBasic:
    """FCN-Basic-NoDimReduction (SegNet Table 1: 1.625M parameters, storage x64, CamVid 50.1 mIoU)."""
    return FCNBasic(num_classes, in_channels, dim_reduction=False)
