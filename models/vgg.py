"""VGG16 pieces shared by FCN, DilatedNet and SegNet, built from torchvision's ``vgg16`` / ``vgg16_bn``.

Simonyan & Zisserman's VGG16 (configuration D): 13 3x3 convolutions in five stages of 2, 2, 3, 3, 3
layers (64, 128, 256, 512, 512 channels), each stage closed by a 2x2 max-pool, then fc6 (25088->4096),
fc7 (4096->4096) and fc8 (4096->1000). The segmentation models reuse torchvision's conv layers (so the
ImageNet weights fit them unchanged) and pool each in their own way, which is why ``vgg16_stages``
drops the pools. FCN and DilatedNet keep fc6/fc7 as convolutions ("convolutionalised",
Long et al. 2015, sec. 3.1): ``convolutionalised_head`` is the one place that does it.

ImageNet weights are read from the local torch hub cache only; nothing is ever downloaded.
"""
from __future__ import annotations

import torch
from torch import nn
from models.common import UnfoldConv2d, load_cached_weights
from torchvision.models import VGG, VGG16_BN_Weights, VGG16_Weights, vgg16, vgg16_bn

FC6_KERNEL = 7  # fc6 sees the 7x7x512 pool5 map of a 224x224 ImageNet crop


def vgg16_backbone(*, batch_norm: bool, pretrained: bool, in_channels: int = 3,
                   classifier: bool = True) -> VGG:
    """torchvision's VGG16 (``batch_norm``: VGG16-BN), ImageNet weights from the cache if ``pretrained``.

    ``in_channels != 3`` replaces the first convolution with a freshly initialised one (the ImageNet
    filters are RGB-only). ``classifier=False`` (SegNet) leaves fc6-fc8 unmaterialised (meta device)
    when no weights are loaded.
    """
    weights = VGG16_BN_Weights.IMAGENET1K_V1 if batch_norm else VGG16_Weights.IMAGENET1K_V1
    state = load_cached_weights(weights, "pretrained_backbone") if pretrained else None  # fail before the costly build
    # torchvision's constructor initialises its 138M parameters twice (nn defaults, then its own
    # scheme), which dominates building a model on CPU: build the shapes only, then fill them once.
    with torch.device("meta"):
        vgg = (vgg16_bn if batch_norm else vgg16)(weights=None)
    if state is not None:
        vgg.load_state_dict(state, assign=True)  # the loaded tensors become the parameters
    else:
        kept = vgg if classifier else vgg.features
        _init_like_torchvision(kept.to_empty(device=torch.get_default_device()))
    if in_channels != 3:
        first = vgg.features[0]
        vgg.features[0] = nn.Conv2d(in_channels, first.out_channels, first.kernel_size, padding=first.padding)
        _init_like_torchvision(vgg.features[0])
    return vgg


def _init_like_torchvision(module: nn.Module) -> None:
    """torchvision's VGG initialisation (``VGG.__init__``): He (fan-out) convs, N(0, 0.01) linears."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            layer.reset_parameters()  # also resets the running statistics to_empty left unset
        elif isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0, 0.01)
            nn.init.zeros_(layer.bias)


def vgg16_stages(vgg: VGG) -> list[nn.Sequential]:
    """The five conv stages of ``vgg.features`` (conv[, BN], ReLU layers), max-pools left out."""
    stages, layers = [], []
    for layer in vgg.features:
        if isinstance(layer, nn.MaxPool2d):
            stages.append(nn.Sequential(*layers))
            layers = []
        else:
            layers.append(layer)
    return stages


def convolutionalised_head(vgg: VGG, dilation: int = 1, padding: int = 0) -> nn.Sequential:
    """fc6 and fc7 of ``vgg`` as convolutions: 7x7 512->4096 (``dilation``, ``padding``), 1x1 4096->4096.

    Each is followed by ReLU and Dropout(0.5), as in VGG16 and in the FCN / Dilation reference nets.
    The convolutions take the Linear layers' weights (reshaped), so ImageNet weights carry over. fc6 is
    valid by default (FCN pads its input instead); DilatedNet same-pads it.
    """
    fc6, fc7 = vgg.classifier[0], vgg.classifier[3]
    return nn.Sequential(
        _conv_from_linear(fc6, FC6_KERNEL, dilation, padding), nn.ReLU(inplace=True), nn.Dropout(0.5),
        _conv_from_linear(fc7, 1), nn.ReLU(inplace=True), nn.Dropout(0.5))


def _conv_from_linear(linear: nn.Linear, kernel_size: int, dilation: int = 1, padding: int = 0) -> nn.Conv2d:
    in_channels = linear.in_features // kernel_size**2
    # DilatedNet's fc6 trains minutes per step on CPU as a native dilated conv (see UnfoldConv2d).
    conv_class = UnfoldConv2d if dilation > 1 else nn.Conv2d
    with torch.device("meta"):  # the parameters are taken from ``linear`` right below
        conv = conv_class(in_channels, linear.out_features, kernel_size, dilation=dilation, padding=padding)
    # The Linear's tensors, reshaped (a view: no copy); the Linear itself is discarded with the VGG.
    conv.weight = nn.Parameter(linear.weight.detach().view(conv.weight.shape))
    conv.bias = nn.Parameter(linear.bias.detach())
    return conv
