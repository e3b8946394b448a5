"""FC-DenseNet ("Tiramisu"): Jegou, Drozdzal, Vazquez, Romero, Bengio, "The One Hundred Layers
Tiramisu: Fully Convolutional DenseNets for Semantic Segmentation", 2016 (arXiv:1611.09326v3),
Tables 1-2; layer details checked against the reference code SimJeg/FC-DenseNet.

- first layer: 3x3 convolution, in -> 48 maps;
- dense layer (Table 1): BN, ReLU, 3x3 convolution with k (growth rate) outputs, dropout 0.2;
- transition down (Table 1): BN, ReLU, 1x1 convolution m -> m, dropout 0.2, 2x2 max-pool;
- transition up (Table 1): 3x3 transposed convolution, stride 2, applied only to the maps produced
  by the preceding dense block (not to its input, which keeps the up path from exploding), then
  concatenated with the skip connection of the same resolution;
- last layer: 1x1 convolution to the classes.

``upsample="all"`` builds the counterfactual of sec. 3.2 (``fcdensenet103_upsample_all``): each
dense block of the up path keeps its input stacked with its new maps, and each transition up
upsamples all of them, its transposed convolution keeping their number (as the reference code's
does for the maps it upsamples). The paper upsamples the new maps only "to avoid excessive
computational load": the claim in conf/published.yaml sets the two nets' parameters, FLOPs and
memory side by side.

Table 2 layouts: FC-DenseNet56 k=12, 4 layers in each of the 11 blocks; FC-DenseNet67 k=16, 5 per
block; FC-DenseNet103 k=16, blocks 4, 5, 7, 10, 12, 15 (bottleneck), 12, 10, 7, 5, 4.

Five 2x2 poolings: inputs must be at least 32 x 32 (``FCDenseNet.min_input_size``). Any larger
size works: the transposed convolution yields 2n + 1 maps for n inputs, which is never smaller than
the skip (2n or 2n + 1 after floor pooling), so cropping to the skip suffices.

``memory_efficient=True`` recomputes each dense layer's concatenation + BN + ReLU + convolution in
the backward pass (``torch.utils.checkpoint``), as in Pleiss et al., "Memory-Efficient
Implementation of DenseNets" (2017) and torchvision's DenseNet: only the individual feature maps
are kept for backward, not the quadratically many concatenations. Outputs and gradients are
unchanged, and BN running statistics are updated once per step, as without checkpointing.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.common import check_input_size
from models.registry import register_model
from models.unet import center_crop

_STEM_CHANNELS = 48
_DROPOUT = 0.2
#: FC-DenseNet103's dense-block lengths and growth rate (Table 2), shared by its counterfactual.
FCDENSENET103 = ((4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4), 16)
#: What a transition up upsamples: the preceding block's new maps (the paper) or all its maps.
UPSAMPLE = ("new", "all")


@contextmanager
def _running_stats_restored(norm: nn.BatchNorm2d):
    """Recomputation runs BN's forward a second time (in training mode it normalises with the batch
    statistics, exactly as the first pass did); restore the running statistics afterwards so each
    batch counts once. BN must still receive them: the recomputation has to save the same tensors."""
    kept = [buffer.clone() for buffer in norm.buffers()]
    try:
        yield
    finally:
        for buffer, value in zip(norm.buffers(), kept):
            buffer.copy_(value)


class DenseLayer(nn.Module):
    """BN, ReLU, 3x3 conv (k maps), dropout 0.2 on the concatenation of all earlier maps."""

    def __init__(self, in_channels: int, growth_rate: int, memory_efficient: bool):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, growth_rate, 3, padding=1)
        # Element-wise dropout, as Lasagne's DropoutLayer in the reference code.
        self.drop = nn.Dropout(_DROPOUT)
        self.memory_efficient = memory_efficient

    def _concat_norm_relu_conv(self, *features: torch.Tensor) -> torch.Tensor:
        return self.conv(self.relu(self.norm(torch.cat(features, dim=1))))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and torch.is_grad_enabled():
            new = checkpoint(self._concat_norm_relu_conv, *features, use_reentrant=False,
                             context_fn=lambda: (nullcontext(), _running_stats_restored(self.norm)))
        else:
            new = self._concat_norm_relu_conv(*features)
        return self.drop(new)


class DenseBlock(nn.Module):
    """``num_layers`` dense layers; returns the input stacked with all new maps."""

    def __init__(self, in_channels: int, growth_rate: int, num_layers: int, memory_efficient: bool):
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth_rate, growth_rate, memory_efficient) for i in range(num_layers))
        self.new_channels = num_layers * growth_rate
        self.out_channels = in_channels + self.new_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, dim=1)


def _transition_down(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1),
                         nn.Dropout(_DROPOUT), nn.MaxPool2d(2))


class FCDenseNet(nn.Module):
    """FC-DenseNet with ``blocks`` = dense-block lengths, down path, bottleneck, up path (Table 2)."""

    min_input_size = 32   # five 2x2 poolings

    def __init__(self, num_classes: int, blocks: tuple[int, ...], growth_rate: int, in_channels: int = 3,
                 memory_efficient: bool = False, name: str = "fcdensenet", upsample: str = "new"):
        super().__init__()
        if len(blocks) % 2 != 1:
            raise ValueError(f"blocks must be down path + bottleneck + up path, got {blocks}")
        if upsample not in UPSAMPLE:
            raise ValueError(f"upsample must be one of {UPSAMPLE}, got {upsample!r}")
        self.name, self.upsample = name, upsample
        depth = len(blocks) // 2
        self.stem = nn.Conv2d(in_channels, _STEM_CHANNELS, 3, padding=1)

        channels, skip_channels = _STEM_CHANNELS, []
        self.down_blocks, self.transitions_down = nn.ModuleList(), nn.ModuleList()
        for num_layers in blocks[:depth]:
            block = DenseBlock(channels, growth_rate, num_layers, memory_efficient)
            channels = block.out_channels
            skip_channels.append(channels)
            self.down_blocks.append(block)
            self.transitions_down.append(_transition_down(channels))

        self.bottleneck = DenseBlock(channels, growth_rate, blocks[depth], memory_efficient)
        previous = self.bottleneck
        self.transitions_up, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for num_layers, skip in zip(blocks[depth + 1:], reversed(skip_channels)):
            # Only the preceding block's new maps are upsampled (Table 1, Figure 1), or all its maps.
            upsampled = previous.new_channels if upsample == "new" else previous.out_channels
            self.transitions_up.append(nn.ConvTranspose2d(upsampled, upsampled, 3, stride=2))
            previous = DenseBlock(upsampled + skip, growth_rate, num_layers, memory_efficient)
            self.up_blocks.append(previous)
        self.classifier = nn.Conv2d(previous.out_channels, num_classes, 1)
        # What the decoder keeps from the encoder (bench/measure/decoder.py): each down block's
        # output, the skip concatenated in the up path.
        self.decoder_keeps = {f"down_blocks.{i}": "maps" for i in range(depth)}

        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                # HeUniform weights and zero biases, as the reference code.
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, self.name)
        x = self.stem(x)
        skips = []
        for block, down in zip(self.down_blocks, self.transitions_down):
            x = block(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        previous = self.bottleneck
        for up, block, skip in zip(self.transitions_up, self.up_blocks, reversed(skips)):
            upsampled = up(x[:, -previous.new_channels:] if self.upsample == "new" else x)
            x = block(torch.cat([center_crop(upsampled, *skip.shape[-2:]), skip], dim=1))
            previous = block
        return self.classifier(x)


@register_model
def fcdensenet56(num_classes: int, in_channels: int = 3, memory_efficient: bool = False) -> FCDenseNet:
    """FC-DenseNet56 (Tiramisu Table 2): k=12, 4 layers in each of the 11 dense blocks."""
    return FCDenseNet(num_classes, (4,) * 11, 12, in_channels, memory_efficient, name="fcdensenet56")


@register_model
def fcdensenet67(num_classes: int, in_channels: int = 3, memory_efficient: bool = False) -> FCDenseNet:
    """FC-DenseNet67 (Tiramisu Table 2): k=16, 5 layers in each of the 11 dense blocks."""
    return FCDenseNet(num_classes, (5,) * 11, 16, in_channels, memory_efficient, name="fcdensenet67")


@register_model(aliases=("tiramisu",))
def fcdensenet103(num_classes: int, in_channels: int = 3, memory_efficient: bool = False) -> FCDenseNet:
    """FC-DenseNet103 (Tiramisu Table 2): k=16, blocks 4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4."""
    return FCDenseNet(num_classes, *FCDENSENET103, in_channels, memory_efficient, name="fcdensenet103")


@register_model
def fcdensenet103_upsample_all(num_classes: int, in_channels: int = 3, memory_efficient: bool = False) -> FCDenseNet:
    """The counterfactual of Tiramisu sec. 3.2: FC-DenseNet103 whose transitions up upsample every map
    of the preceding block, not only its new ones (``upsample="all"``), for the claim that the
    paper's choice avoids excessive computation."""
    return FCDenseNet(num_classes, *FCDENSENET103, in_channels, memory_efficient, name="fcdensenet103_upsample_all",
                      upsample="all")
