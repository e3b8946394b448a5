"""A toy instrument, registered on import (``plugins=[tests.plugin_instrument]``): the range of
the deployed model's logits on the probe's input. It shows that an instrument is one module and
its registration: nothing else in segbench names it."""
from dataclasses import dataclass

import torch

from bench.instruments import Instrument, register_instrument


@dataclass(frozen=True)
class LogitRange:
    low: float
    high: float


class OutputRange(Instrument):
    name, record, prefix = "output_range", LogitRange, "toy_logit_"
    help = "the smallest and largest logit of the deployed model on the probe's input"

    def measure(self, probe):
        with torch.inference_mode():
            logits = probe.deployment.run()
        return LogitRange(logits.min().item(), logits.max().item())


register_instrument(OutputRange())
