"""DilatedNet front-end and Dilation8 (Yu & Koltun, ICLR 2016, arXiv:1511.07122v3).

Front-end (sec. 4; reference: fyu/dilation ``network.py``): VGG16 with pool4 and pool5 removed, the
three conv5 layers dilated by 2, fc6 a 7x7 conv dilated by 4 with 4096 channels, fc7 a 1x1 conv with
4096, each followed by ReLU and dropout 0.5, and a final 1x1 conv to C. Its output has stride 8.

Context module (Table 1): 3x3 convs with dilations 1, 1, 2, 4, 8, 16, 1, then a 1x1 conv, ReLU after
each but the last. "basic": C channels throughout; "large": 2C, 2C, 4C, 8C, 16C, 32C, 32C, then C.
Identity initialisation (sec. 3): basic, k(t, a) = 1[t=0] 1[a=b]; large, the generalised form (eq. 5)
k(t, a) = C / c_out if t = 0 and floor(a C / c_in) = floor(b C / c_out), else noise eps ~ N(0, sigma^2)
with sigma << C / c_out. Biases start at zero. With non-negative inputs (the ReLUs pass them) the
initialised module is the identity map (exactly for basic).

Padding: the reference front-end uses valid convolutions on an input reflection-padded by 186 px (so
the output covers the input exactly); here every conv is same-padded with zeros (pad = dilation, fc6
pad 12), as the reference does inside the context module. The output grid is the same (output cell i
covers input pixels 8i..8i+7); only the border context differs, and the 186 px margin, which would
more than double the cost of a 360x480 input, is saved. Inputs whose size is not a multiple of 8 are
reflection-padded at the bottom/right to one (< 8 px, reflection as in the reference), so pooling is
exact; the 1/8 logits are upsampled 8x bilinearly (the reference's fixed bilinear deconvolution,
k=16 s=8 pad 4, samples the same points) and cropped to the input size. Minimum input: 8x8, one
output cell.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.common import check_input_size
from models.registry import register_model
from models.vgg import FC6_KERNEL, convolutionalised_head, vgg16_backbone, vgg16_stages

OUTPUT_STRIDE = 8
CONV5_DILATION, FC6_DILATION = 2, 4
CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)
CONTEXT_WIDTHS = {"basic": (1, 1, 1, 1, 1, 1, 1), "large": (2, 2, 4, 8, 16, 32, 32)}  # x C, Table 1
LARGE_INIT_NOISE = 0.01  # sigma as a fraction of C / c_out ("sigma << C / c_out")


def _identity_init_(conv: nn.Conv2d, num_classes: int) -> None:
    """Yu & Koltun's (generalised) identity initialisation of ``conv`` (eq. 4 / eq. 5)."""
    c_out, c_in, k, _ = conv.weight.shape
    scale = num_classes / c_out
    groups_out = torch.arange(c_out) * num_classes // c_out
    groups_in = torch.arange(c_in) * num_classes // c_in
    noise = 0.0 if c_in == c_out == num_classes else LARGE_INIT_NOISE * scale  # basic: exact
    with torch.no_grad():
        nn.init.normal_(conv.weight, std=noise)
        centre = conv.weight[:, :, k // 2, k // 2]  # a view: writing it writes the kernel
        centre[(groups_out[:, None] == groups_in[None, :]).to(centre.device)] = scale
        nn.init.zeros_(conv.bias)


def context_module(num_classes: int, kind: str = "basic") -> nn.Sequential:
    """Table 1's context module, ``kind`` "basic" or "large", identity-initialised."""
    if kind not in CONTEXT_WIDTHS:
        raise ValueError(f"context must be one of {sorted(CONTEXT_WIDTHS)}, got {kind!r}")
    layers, channels = [], num_classes
    for dilation, width in zip(CONTEXT_DILATIONS, CONTEXT_WIDTHS[kind]):
        layers += [nn.Conv2d(channels, width * num_classes, 3, padding=dilation, dilation=dilation),
                   nn.ReLU(inplace=True)]
        channels = width * num_classes
    layers.append(nn.Conv2d(channels, num_classes, 1))
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            _identity_init_(layer, num_classes)
    return nn.Sequential(*layers)


class DilatedNet(nn.Module):
    """Front-end, optionally followed by a context module (``context``: None, "basic" or "large")."""

    min_input_size = OUTPUT_STRIDE
    # No decoder: the bilinear upsampling keeps nothing from the encoder (bench/measure/decoder.py).
    decoder_keeps: dict[str, str] = {}

    def __init__(self, num_classes: int, in_channels: int = 3, context: str | None = None,
                 pretrained_backbone: bool = False):
        super().__init__()
        self.arch = "dilated_frontend" if context is None else f"dilated8 ({context} context)"
        vgg = vgg16_backbone(batch_norm=False, pretrained=pretrained_backbone, in_channels=in_channels)
        stages = vgg16_stages(vgg)
        for conv in stages[4]:
            if isinstance(conv, nn.Conv2d):  # conv5_x: dilation 2 replaces pool4's downsampling
                conv.dilation, conv.padding = (CONV5_DILATION,) * 2, (CONV5_DILATION,) * 2
        pool = nn.MaxPool2d(2, 2)  # pool1-3 only; parameter-free, shared
        self.features = nn.Sequential(stages[0], pool, stages[1], pool, stages[2], pool, stages[3], stages[4])
        self.fc = convolutionalised_head(vgg, dilation=FC6_DILATION, padding=FC6_DILATION * (FC6_KERNEL // 2))
        self.final = nn.Conv2d(4096, num_classes, 1)
        nn.init.normal_(self.final.weight, std=0.001)  # the reference's filler for "final"
        nn.init.zeros_(self.final.bias)
        self.context = context_module(num_classes, context) if context is not None else nn.Identity()
        if context is not None:   # Table 1's layers: receptive field and parameters per layer (bench/measure/receptive_field.py)
            self.growth_layers = "context"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, self.arch)
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % OUTPUT_STRIDE, 0, -height % OUTPUT_STRIDE), mode="reflect")
        scores = self.context(self.final(self.fc(self.features(x))))
        scores = F.interpolate(scores, scale_factor=OUTPUT_STRIDE, mode="bilinear", align_corners=False)
        return scores[..., :height, :width]


@register_model
def dilated_frontend(num_classes: int, in_channels: int = 3, pretrained_backbone: bool = False) -> DilatedNet:
    """Front-end alone (Dilation Table 2: 67.6 mIoU on VOC 2012 test)."""
    return DilatedNet(num_classes, in_channels, context=None, pretrained_backbone=pretrained_backbone)


@register_model
def dilated8(num_classes: int, in_channels: int = 3, context: str = "basic",
             pretrained_backbone: bool = False) -> DilatedNet:
    """Dilation8: front-end + 8-layer context module (Table 5, CamVid, basic context: 65.3 mIoU)."""
    return DilatedNet(num_classes, in_channels, context=context, pretrained_backbone=pretrained_backbone)
