"""Models for testing the harness itself, loaded into a job with ``plugins=[tests.plugin_models]``.

``tiny_segmenter`` is a real (small, fast) segmentation net; ``raising_model`` and
``oom_model`` fail in their forward pass the way real models do, so tests can check that a
sweep records the failure and goes on.
"""
import torch
from torch import nn

from models import register_model


class TinySegmenter(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, num_classes, 1))

    def forward(self, x):
        return self.body(x)


class FailingForward(TinySegmenter):
    def __init__(self, error: Exception, **kwargs):
        super().__init__(**kwargs)
        self.error = error

    def forward(self, x):
        raise self.error


@register_model
def tiny_segmenter(num_classes: int, in_channels: int = 3, width: int = 8):
    return TinySegmenter(num_classes, in_channels, width)


@register_model
def raising_model(num_classes: int, in_channels: int = 3):
    return FailingForward(ValueError("injected failure in forward"),
                          num_classes=num_classes, in_channels=in_channels)


@register_model
def oom_model(num_classes: int, in_channels: int = 3):
    return FailingForward(torch.OutOfMemoryError("injected: CUDA out of memory. Tried to allocate 20.00 GiB"),
                          num_classes=num_classes, in_channels=in_channels)
