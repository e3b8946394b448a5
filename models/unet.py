"""U-Net: Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015 (arXiv:1505.04597), Figure 1.

Contracting path: per level two 3x3 convolutions with ReLU, then a 2x2 max-pool; 64, 128, 256,
512, 1024 channels. Expansive path: a 2x2 up-convolution halving the channels, concatenation with
the (cropped) contracting-path map, two 3x3 convolutions with ReLU. A final 1x1 convolution maps to
the classes: 23 convolution layers in all (10 + 8 3x3, 4 up-convolutions, 1 1x1).

``padding="valid"`` (default, as in the paper): unpadded convolutions, so a tile of size T yields a
valid output of T - 184 (572 -> 388, Figure 1). Arbitrary H x W inputs use the paper's overlap-tile
strategy (Figure 2): the input is mirror-extended to the smallest tile whose valid output covers
it, and the output is cropped back to exactly H x W.

``padding="same"``: padded 3x3 convolutions (a common variant); the input is mirror-extended to a
multiple of 16 (four 2x2 poolings) and the output cropped back.

Minimum input size: 16 x 16 in both modes (``UNet.min_input_size``), the total downsampling.
Mirroring supplies the context border, so the valid network's own smallest tile (188 x 188, giving a
4 x 4 output) does not limit the input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.common import check_input_size
from models.registry import register_model

_DEPTH = 4                                   # number of 2x2 poolings
_VALID_SHRINK = 2 * sum(4 * 2 ** level for level in range(_DEPTH)) + 4 * 2 ** _DEPTH  # 184


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the centre ``height`` x ``width`` window (Lasagne's 'center' cropping: extra row low)."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top:top + height, left:left + width]


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Mirror-extend ``x`` by the given amounts, reflecting again where one reflection is too short.

    ``F.pad(mode="reflect")`` needs each pad smaller than the side it reflects; small inputs need
    more border than that (the valid U-Net adds 92 pixels a side), so reflect repeatedly.
    """
    while top or bottom or left or right:
        height, width = x.shape[-2:]
        step = [min(left, width - 1), min(right, width - 1), min(top, height - 1), min(bottom, height - 1)]
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
    return x


def valid_output_size(tile: int) -> int:
    """Side of the valid output for a ``tile``-sized input (paper: 572 -> 388)."""
    return tile - _VALID_SHRINK


def smallest_valid_tile(size: int) -> int:
    """Smallest tile whose valid output covers ``size`` pixels.

    Every map entering a 2x2 pooling must have an even side, so tiles are 16 * b + 124 where b >= 4
    is the side of the bottom (1024-channel) map; smaller b leaves the expansive path empty.
    """
    bottom = max(4, -(-(size + _VALID_SHRINK - 124) // 2 ** _DEPTH))
    return 2 ** _DEPTH * bottom + 124


def _double_conv(in_channels: int, out_channels: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=padding), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=padding), nn.ReLU(inplace=True))


class UNetBody(nn.Module):
    """The network of Figure 1; with ``padding=0`` it maps a valid tile to its valid output."""

    def __init__(self, in_channels: int, num_classes: int, base_channels: int, padding: int):
        super().__init__()
        widths = [base_channels * 2 ** level for level in range(_DEPTH + 1)]   # 64 ... 1024
        self.down = nn.ModuleList(
            _double_conv(c_in, c_out, padding) for c_in, c_out in zip([in_channels] + widths, widths))
        self.pool = nn.MaxPool2d(2)
        self.upconvs = nn.ModuleList(
            nn.ConvTranspose2d(wide, wide // 2, kernel_size=2, stride=2) for wide in reversed(widths[1:]))
        self.up = nn.ModuleList(_double_conv(wide, wide // 2, padding) for wide in reversed(widths[1:]))
        self.classifier = nn.Conv2d(base_channels, num_classes, 1)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                # Paper sec. 3: Gaussian weights with standard deviation sqrt(2/N), N = k*k*fan-in.
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else self.pool(x))
            skips.append(x)
        skips.pop()                                   # the bottom map is not a skip
        for upconv, block, skip in zip(self.upconvs, self.up, reversed(skips)):
            x = upconv(x)
            x = block(torch.cat([center_crop(skip, *x.shape[-2:]), x], dim=1))
        return self.classifier(x)


class UNet(nn.Module):
    """U-Net returning N x num_classes x H x W logits for any input of at least 16 x 16."""

    min_input_size = 2 ** _DEPTH
    # The contracting path's maps at each level but the bottom, concatenated in the expansive path
    # (bench/measure/decoder.py); kept whole although valid padding crops them there.
    decoder_keeps = {f"network.down.{level}": "maps" for level in range(_DEPTH)}

    def __init__(self, num_classes: int, in_channels: int = 3, base_channels: int = 64,
                 padding: str = "valid"):
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding
        self.network = UNetBody(in_channels, num_classes, base_channels, padding=0 if padding == "valid" else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, f"unet (padding={self.padding!r})")
        height, width = x.shape[-2:]
        if self.padding == "valid":
            # Overlap-tile: output pixel i sees tile pixels i .. i+184, centred on i+92, so a
            # 92-pixel mirror border on the top/left aligns the output with the input.
            border = _VALID_SHRINK // 2
            x = mirror_pad(x, border, smallest_valid_tile(height) - height - border,
                           border, smallest_valid_tile(width) - width - border)
        else:
            multiple = 2 ** _DEPTH
            x = mirror_pad(x, 0, -height % multiple, 0, -width % multiple)
        return self.network(x)[..., :height, :width]


@register_model
def unet(num_classes: int, in_channels: int = 3, base_channels: int = 64, padding: str = "valid") -> UNet:
    """U-Net (Ronneberger et al. 2015, Fig. 1); ``padding`` is "valid" (paper) or "same"."""
    return UNet(num_classes, in_channels, base_channels, padding)
