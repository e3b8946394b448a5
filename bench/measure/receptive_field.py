"""Receptive fields by a gradient probe, layer by layer, beside the parameters each layer adds.

Dilation (Yu & Koltun, ICLR 2016, arXiv:1511.07122v3) sec. 2-3 and Table 1: stacking 3x3
convolutions with dilations 1, 1, 2, 4, 8, 16 grows the receptive field exponentially (3, 5, 9,
17, 33, 65) while the parameters grow linearly (each layer adds the same count). A model declares
the stack whose growth it claims with the attribute ``growth_layers``: the qualified name
(``model.named_modules()``) of an ``nn.Sequential``; each of its convolutions is a layer of the
table.

The probe (``receptive_field``) measures the theoretical receptive field: the input pixels on
which the middle output location depends, read from the support of its gradient with respect to
the input. It runs a float64 copy of the layers in which every convolution's weights are one
positive value, every ReLU is the identity and every max-pool an average pool of the same window
and stride, so that no path can cancel or die (an identity-initialised context module, as the
paper initialises it, would otherwise show one pixel, and a max-pool passes gradient to one pixel
of its window); kernel sizes, dilations, strides and padding are the layers' own.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from bench.records import column


@dataclass(frozen=True)
class Growth:
    """The receptive field (pixels, square) and cumulative parameter count after each convolution."""
    module: str
    receptive_fields: list[int]
    cumulative_params: list[int] = column("params")


def _probe_copy(stack: nn.Sequential) -> nn.Sequential:
    layers = []
    for layer in copy.deepcopy(stack).double().cpu():
        if isinstance(layer, nn.ReLU):
            layer = nn.Identity()
        elif isinstance(layer, nn.MaxPool2d):
            layer = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode)
        elif isinstance(layer, nn.Conv2d):
            with torch.no_grad():
                layer.weight.fill_(1.0 / layer.weight[0].numel())   # positive, and sums stay near 1
                if layer.bias is not None:
                    layer.bias.zero_()
        layers.append(layer)
    return nn.Sequential(*layers)


def receptive_field(stack: nn.Sequential, in_channels: int, size: int) -> int:
    """The side (pixels) of the square of input pixels the middle output location of ``stack``
    depends on, probed on a ``size`` x ``size`` input (large enough that the field stays inside it)."""
    inputs = torch.rand(1, in_channels, size, size, dtype=torch.float64, requires_grad=True)
    outputs = _probe_copy(stack)(inputs)
    outputs[0, :, outputs.shape[-2] // 2, outputs.shape[-1] // 2].sum().backward()
    rows, cols = inputs.grad.abs().sum(dim=(0, 1)).nonzero(as_tuple=True)
    height, width = int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1
    if height != width:
        raise ValueError(f"a {height}x{width} receptive field: the probe expects square kernels")
    return height


def layer_receptive_fields(stack: nn.Sequential, in_channels: int) -> list[int]:
    """The receptive field after each convolution of ``stack``, a stack of stride-1 convolutions
    (and layers that keep the size), probed on an input a pixel wider than the widest field on each side."""
    convs = [index for index, layer in enumerate(stack) if isinstance(layer, nn.Conv2d)]
    widest = 1 + sum(stack[i].dilation[0] * (stack[i].kernel_size[0] - 1) for i in convs)
    return [receptive_field(stack[:last + 1], in_channels, widest + 2) for last in convs]


def growth(model: nn.Module) -> Growth | None:
    """The receptive field and cumulative parameters after each convolution of the stack named by
    ``model.growth_layers``; None for a model that declares none."""
    name = getattr(model, "growth_layers", None)
    if name is None:
        return None
    stack = model.get_submodule(name)
    convs = [layer for layer in stack if isinstance(layer, nn.Conv2d)]
    params, cumulative = 0, []
    for conv in convs:
        params += sum(p.numel() for p in conv.parameters())
        cumulative.append(params)
    return Growth(name, layer_receptive_fields(stack, convs[0].in_channels), cumulative)
