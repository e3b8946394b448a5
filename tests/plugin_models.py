"""Models for testing the harness itself, loaded into a job with ``plugins=[tests.plugin_models]``.

``tiny_segmenter`` is a real (small, fast) segmentation net. ``fault_injector`` is the same
net, except that it fails the way real models do (an exception, an out-of-memory error) at the
input widths or batch sizes it is told to, so one sweep can hold both healthy and failing jobs.
Its out-of-memory error is CUDA's, injected, or with ``real_cpu_oom`` a real failure of torch's
CPU allocator (a tensor of a petabyte).
``slow_trainer`` is the same net taking ``delay`` seconds per training forward pass, so a test can
kill a training job part-way.
``dict_segmenter`` is the same net returning ``{"out": logits, "aux": ...}`` as torchvision's
segmentation models do, registered with the name given positionally, as users write it.
``tiny_segmenter`` is also registered under names that are not file names (``smp/unet``, one with
``../..``), as plugins may name their models.
"""
import time

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


class FaultInjector(TinySegmenter):
    def __init__(self, error_at_width: int | None, oom_at_width: int | None,
                 oom_above_batch: int | None, real_cpu_oom: bool, **kwargs):
        super().__init__(**kwargs)
        self.real_cpu_oom = real_cpu_oom
        self.error_at_width = error_at_width
        self.oom_at_width = oom_at_width
        self.oom_above_batch = oom_above_batch

    def forward(self, x):
        if x.shape[-1] == self.error_at_width:
            raise ValueError(f"injected failure at width {self.error_at_width}")
        too_big = self.oom_above_batch is not None and x.shape[0] > self.oom_above_batch
        if (x.shape[-1] == self.oom_at_width or too_big) and self.real_cpu_oom:
            torch.empty(1 << 50, dtype=torch.uint8)
        if x.shape[-1] == self.oom_at_width or too_big:
            raise torch.OutOfMemoryError("injected: CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().forward(x)


@register_model(aliases=("smp/unet", "../../escaped"))
def tiny_segmenter(num_classes: int, in_channels: int = 3, width: int = 8):
    return TinySegmenter(num_classes, in_channels, width)


@register_model
def fault_injector(num_classes: int, in_channels: int = 3, error_at_width: int | None = None,
                   oom_at_width: int | None = None, oom_above_batch: int | None = None,
                   real_cpu_oom: bool = False):
    return FaultInjector(error_at_width, oom_at_width, oom_above_batch, real_cpu_oom,
                         num_classes=num_classes, in_channels=in_channels)


class SlowTrainer(TinySegmenter):
    def __init__(self, delay: float, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def forward(self, x):
        if self.training:
            time.sleep(self.delay)
        return super().forward(x)


@register_model
def slow_trainer(num_classes: int, in_channels: int = 3, delay: float = 0.05):
    return SlowTrainer(delay, num_classes=num_classes, in_channels=in_channels)


class DictSegmenter(TinySegmenter):
    def forward(self, x):
        logits = super().forward(x)
        return {"out": logits, "aux": logits.detach() * 0}  # the harness must use "out" only


@register_model("dict_segmenter")
def build_dict_segmenter(num_classes: int, in_channels: int = 3):
    return DictSegmenter(num_classes, in_channels)
