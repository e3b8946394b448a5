"""Does the harness's CPU memory figure agree with the operating system's count of the same pass?

    .venv/bin/python benchmarks/memory_agreement.py [--models fcn8s dilated8] [--resolution 192x256]

For each model, in a fresh process: warm the pass up, reset the process's peak resident set
(``/proc/self/clear_refs``, value 5: Linux's VmHWM), run one pass, and compare the rise of the
peak resident set above the resident set before the pass with the harness's allocator-level
figure (``activation_peak_mib`` for inference, ``train_activation_peak_mib`` for a training
step; ``--train``) and with the tensor-level one.

The two counts are independent: the harness reads the allocator's own records through
torch.profiler; the kernel counts touched pages. They differ where glibc keeps freed small
blocks (the resident set rises less) or where a buffer is allocated but not fully written (less
again), so agreement within a few percent on large passes is the check. Linux only.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

import models
from bench.jobspec import parse_resolution
from bench.measure.latency import TimingConfig
from bench.measure.memory import forward_peak_memory, resident_peak_rise
from bench.measure.size import MIB
from bench.measure.training import measure_training_step, training_batch, training_update

CPU = torch.device("cpu")
TRAIN_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "train" / "default.yaml"


def resident_rise_mib(run) -> float:
    """MiB the peak resident set rose above the resident set before ``run()``."""
    return resident_peak_rise(run) / MIB


def measure_one(model_name: str, resolution: str, train: bool) -> str:
    torch.set_num_threads(2)
    height, width = parse_resolution(resolution)
    model = models.create_model(model_name, num_classes=11)
    if train:
        batch = training_batch(1, 3, height, width, 11, 11, CPU)
        train_cfg = OmegaConf.load(TRAIN_CONFIG)
        fields = measure_training_step(model, train_cfg, batch, 11, 11, CPU,
                                       TimingConfig(warmup_iters=1, min_run_time=0.0, min_iters=2, max_iters=2))
        # The same step again, now watched by the kernel, from the same state between steps.
        model.train()
        update = training_update(model, train_cfg, torch.nn.CrossEntropyLoss(ignore_index=11), 11, 11)
        update(*batch, 0)   # gradients and optimizer state exist before the watched step

        def step():
            update(*batch, 0)

        rise = resident_rise_mib(step)
        harness, tensors = fields["train_activation_peak_mib"], None
    else:
        model.eval()
        x = torch.randn(1, 3, height, width)
        with torch.inference_mode():
            model(x)
        reading = forward_peak_memory(model, x, CPU)

        def forward():
            with torch.inference_mode():
                model(x)

        rise = resident_rise_mib(forward)
        harness, tensors = reading.activation_mib, reading.tensor_activation_mib
    tensor_text = f", tensor-level {tensors:.1f} MiB" if tensors is not None else ""
    return (f"{model_name} {resolution} {'training step' if train else 'inference'}: harness "
            f"(allocator) {harness:.1f} MiB, peak resident-set rise {rise:.1f} MiB "
            f"({(harness - rise) / rise:+.1%}){tensor_text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fcn8s", "dilated8"])
    parser.add_argument("--resolution", default="192x256")
    parser.add_argument("--train", action="store_true", help="a training step instead of inference")
    parser.add_argument("--one", help=argparse.SUPPRESS)   # the per-model child process
    args = parser.parse_args()
    if args.one:
        print(measure_one(args.one, args.resolution, args.train), flush=True)
        return
    for name in args.models:   # a fresh process each: no allocator cache from the previous model
        command = [sys.executable, __file__, "--one", name, "--resolution", args.resolution]
        subprocess.run(command + (["--train"] if args.train else []), check=True)


if __name__ == "__main__":
    main()
