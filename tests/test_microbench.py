"""pytest-benchmark microbenchmarks: one forward pass per architecture at a small resolution.

``make microbench`` times them (grouped by model); ``make test`` runs each once as a plain
test (``--benchmark-disable``), which checks every registered model builds and runs.
"""
import pytest
import torch

import models

SIZE = 64


#: 256 M and 252 M parameters, 1 GB each to build (DeconvNet also runs every input at 224x224 or
#: more); their shapes are checked on the meta device in the default run.
SLOW = {"fcdensenet103_upsample_all", "deconvnet"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
                                  for name in models.list_models()])
def test_forward(benchmark, name):
    torch.manual_seed(0)
    model = models.create_model(name, num_classes=11).eval()
    size = max(SIZE, getattr(model, "min_input_size", SIZE))
    x = torch.randn(1, 3, size, size)
    benchmark.group = name
    benchmark.extra_info["input"] = f"1x3x{size}x{size}"
    with torch.inference_mode():
        logits = benchmark(model, x)
    assert logits.shape == (1, 11, size, size)
