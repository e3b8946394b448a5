"""Pieces every architecture shares."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import WeightsEnum


def cached_weights_path(weights: WeightsEnum) -> Path:
    """Where ``torch.hub`` keeps ``weights``: ``<torch.hub.get_dir()>/checkpoints/<its URL's file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def load_cached_weights(weights: WeightsEnum, option: str) -> dict[str, torch.Tensor]:
    """State dict of torchvision's ``weights`` from the local hub cache (segbench never downloads).

    ``option`` is the model option that asked for them, named in the FileNotFoundError (with the
    path and where to get the file) raised when the file is absent.
    """
    path = cached_weights_path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"{option}=True needs torchvision's {weights} weights at {path}, which does not exist "
            f"(segbench never downloads). Copy the file from {weights.url} to {path} (the directory "
            f"follows $TORCH_HOME / torch.hub.set_dir), or use {option}=False.")
    return torch.load(path, map_location="cpu", weights_only=True)


class InputTooSmallError(ValueError):
    """The input is smaller than the architecture's documented minimum."""


def check_input_size(x: torch.Tensor, minimum: int, model: str) -> None:
    """Fail clearly when H or W is below ``minimum`` (the model's total downsampling, usually)."""
    height, width = x.shape[-2:]
    if height < minimum or width < minimum:
        raise InputTooSmallError(
            f"{model} needs inputs of at least {minimum}x{minimum} pixels, got {height}x{width}; "
            f"choose a larger resolution (e.g. resolution={max(minimum, 64)}x{max(minimum, 64)})")


class UnfoldConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose CPU training pass runs as im2col + matrix multiply.

    Same parameters and same result as the plain convolution. On CPU, PyTorch's weight gradient
    for DilatedNet's fc6 (7x7, dilation 4, 512->4096) takes minutes per step (oneDNN picks a
    pathological path; a 1x4096 matmul of the unfolded input takes about a second), so when
    gradients are on and the input is on the CPU the convolution is computed as
    ``weight @ unfold(x)``. Inference, and every other device, use the native convolution, so
    latency and memory are measured on the ordinary path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or not torch.is_grad_enabled() or self.groups != 1:
            return super().forward(x)
        batch, _, height, width = x.shape
        out_h, out_w = (
            (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
            for size, pad, dil, k, stride in zip((height, width), self.padding, self.dilation,
                                                 self.kernel_size, self.stride))
        columns = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding,
                           stride=self.stride)
        out = self.weight.flatten(1) @ columns
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.view(batch, self.out_channels, out_h, out_w)


def encode_decode(x: torch.Tensor, encoder: nn.ModuleList, decoder: nn.ModuleList, pool: nn.MaxPool2d,
                  unpool: nn.MaxUnpool2d, bottleneck: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  add_encoder_maps: bool = False) -> torch.Tensor:
    """The pass of the nets that unpool with their encoder's max-pooling switches (SegNet,
    DeconvNet): encoder stages, each followed by ``pool`` keeping its indices; ``bottleneck``
    between the last pool and the first unpooling, where there is one (DeconvNet's fc6, fc7 and
    fc6-deconv); then, deepest first, ``unpool`` with those indices to the stage's size and the
    decoder stage (its output plus the encoder stage's maps, with ``add_encoder_maps``)."""
    indices, maps = [], []
    for stage in encoder:
        x = stage(x)
        maps.append(x)
        x, index = pool(x)
        indices.append(index)
    if bottleneck is not None:
        x = bottleneck(x)
    for stage in decoder:
        skip = maps.pop()
        x = stage(unpool(x, indices.pop(), output_size=skip.shape[-2:]))
        if add_encoder_maps:
            x = x + skip
    return x
