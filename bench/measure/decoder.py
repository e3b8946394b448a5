"""Decoder storage: what an encoder-decoder model's decoder keeps from its encoder, per image.

SegNet's memory claim (Badrinarayanan et al., TPAMI, arXiv:1511.00561v3, sec. 3.1 and 3.3, Table 1)
is about these bytes, not about a whole forward pass: SegNet keeps only the max-pooling indices,
which it counts at 2 bits per 2x2 window; FCN-Basic keeps encoder maps (reduced to C = 11 by a 1x1
convolution), which it counts as float32.

What a model keeps is declared by the model and measured here, never declared as a number: the
class or instance attribute ``decoder_keeps`` maps the qualified name of a submodule
(``model.named_modules()``) to what the decoder keeps of its output, on every call:

- ``"indices"``: the module is a ``MaxPool2d(return_indices=True)``; the decoder keeps the indices
  and unpools with them to the pool's input size;
- ``"maps"``: the decoder keeps the module's output tensor whole (a skip connection);
- ``{}``: the decoder keeps nothing from the encoder (no decoder, or upsampling alone);
- no attribute: unknown (custom models); every figure is left empty.

One forward pass of one image (the first of ``inputs``) runs with forward hooks on those modules,
and every kept tensor is counted in two accountings:

- **PyTorch** (``decoder_storage_mib``): the bytes as stored, numel x element size (int64 indices:
  8 bytes per pooled element and channel; maps in the dtype the pass produced).
- **Paper** (``decoder_storage_paper_mib``): indices at log2(window area) bits per pooling window
  and channel (2 bits for 2x2), maps at 32 bits (float32) per element.

The **storage multiplier** (``decoder_storage_multiplier``) is Table 1's unit, one float32 map at
the resolution at which the decoder uses what it keeps: indices at the resolution they unpool to
(the pool's input), maps at their own. A kept tensor's multiplier is its bits per pixel of that
resolution over 32, so SegNet-Basic's 64 channels x 2 bits per 2x2 window give 64 x 2 / 4 / 32 = 1
and FCN-Basic's 11 reduced maps give 11 x 32 / 32 = 11, as Table 1 prints (and its 64-map variants,
64). Layers are combined weighted by their pixels: total bits / (32 x the sum of the pixels of the
resolutions the decoder uses them at, each resolution once), i.e. how many float32 maps' worth the
decoder keeps per pixel, averaged over its layers; where every layer has the same multiplier
(SegNet-Basic, FCN-Basic) that is the multiplier (SegNet-Basic at 360x480 measures 0.9997: floor
pooling of 45x60 leaves a row no window covers). Tensors used at one resolution add up:
SegNet-Basic-EncoderAddition keeps 64 maps and the indices at each, 65 (Table 1 prints 64, the
maps alone).
``decoder_storage_multiplier_pytorch`` is the same ratio with PyTorch's bits: int64 indices make
SegNet-Basic's 32 (64 bits per window and channel, 32x the paper's 2).

The unit is per pixel, not per byte: FCN-Basic's reduced maps sit at the pooled resolution, a
quarter of the pixels SegNet's indices are counted over, so in bytes (paper accounting) FCN-Basic
keeps 11 x 32 / (64 x 2) = 2.75x what SegNet-Basic keeps per layer, not 11x.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from bench.measure.size import MIB

KINDS = ("indices", "maps")
FLOAT32_BITS = 32


@dataclass(frozen=True)
class Kept:
    """One tensor the decoder keeps (one image)."""
    module: str            # the declaring submodule's name
    kind: str              # "indices" | "maps"
    channels: int
    elements: int          # numel for one image
    element_bytes: int     # as PyTorch stores it
    paper_bits_per_element: int
    resolution: tuple[int, int]  # H x W the decoder uses it at (see module docstring)
    dtype: str

    @property
    def pytorch_bits(self) -> int:
        return self.elements * self.element_bytes * 8

    @property
    def paper_bits(self) -> int:
        return self.elements * self.paper_bits_per_element


def _window_bits(pool: nn.Module) -> int:
    """Bits that address one element of a pooling window (SegNet sec. 3.1: 2 for 2x2)."""
    size = pool.kernel_size if isinstance(pool.kernel_size, tuple) else (pool.kernel_size,) * 2
    return math.ceil(math.log2(size[0] * size[1]))


def _kept(name: str, kind: str, module: nn.Module, args: tuple, output) -> Kept:
    if kind == "indices":
        if not (isinstance(output, tuple) and len(output) == 2 and not output[1].is_floating_point()):
            raise TypeError(f"decoder_keeps marks {name!r} as 'indices', but it does not return "
                            "(values, indices): use MaxPool2d(return_indices=True) or mark it 'maps'")
        tensor, bits, resolution = output[1], _window_bits(module), args[0].shape[-2:]
    else:
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"decoder_keeps marks {name!r} as 'maps', but it returns "
                            f"{type(output).__name__}, not a tensor: name the submodule whose output is kept")
        tensor = output
        bits, resolution = FLOAT32_BITS, output.shape[-2:]
    return Kept(name, kind, channels=tensor.shape[1], elements=tensor[0].numel(),
                element_bytes=tensor.element_size(), paper_bits_per_element=bits, resolution=tuple(resolution),
                dtype=str(tensor.dtype).removeprefix("torch."))


@contextmanager
def recording_kept(model: nn.Module) -> Iterator[list[Kept] | None]:
    """While open, every forward pass of ``model`` appends what its decoder keeps (per image) to
    the list it yields, in the order produced; yields None when the model declares nothing (see
    the module docstring). The profile stage records during its FLOP-counting pass."""
    keeps = getattr(model, "decoder_keeps", None)
    if keeps is None:
        yield None
        return
    modules = dict(model.named_modules())
    for name, kind in keeps.items():
        if name not in modules:
            raise ValueError(f"{type(model).__name__}.decoder_keeps names {name!r}, which is not a "
                             f"submodule; use a name from model.named_modules()")
        if kind not in KINDS:
            raise ValueError(f"{type(model).__name__}.decoder_keeps[{name!r}] is {kind!r}; "
                             f"use one of {KINDS}")
    kept: list[Kept] = []

    def hook(name: str, kind: str):
        return lambda module, args, output: kept.append(_kept(name, kind, module, args, output))

    handles = [modules[name].register_forward_hook(hook(name, kind)) for name, kind in keeps.items()]
    try:
        yield kept
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class DecoderStorage:
    """What the decoder keeps per image (module docstring); the figures are None when the model
    declares nothing, and ``note`` says why. Row columns ``decoder_storage_*``."""
    note: str
    mib: float | None = None                 # PyTorch's accounting
    paper_mib: float | None = None           # the paper's
    multiplier: float | None = None          # Table 1's unit, paper bits
    multiplier_pytorch: float | None = None  # the same unit, PyTorch's bits


def storage_figures(kept: list[Kept]) -> DecoderStorage:
    """MiB in both accountings and the storage multiplier in both (module docstring)."""
    pixels = sum(height * width for height, width in {k.resolution for k in kept})
    pytorch_bits = sum(k.pytorch_bits for k in kept)
    paper_bits = sum(k.paper_bits for k in kept)
    return DecoderStorage(
        note=describe(kept),
        mib=pytorch_bits / 8 / MIB,
        paper_mib=paper_bits / 8 / MIB,
        multiplier=paper_bits / FLOAT32_BITS / pixels if pixels else 0.0,
        multiplier_pytorch=pytorch_bits / FLOAT32_BITS / pixels if pixels else 0.0,
    )


def describe(kept: list[Kept]) -> str:
    """E.g. "pool: 4 x indices (64, 64, 64, 64 channels, int64)"; one clause per declared module."""
    if not kept:
        return "nothing: the decoder keeps no encoder tensor"
    clauses = []
    for module in dict.fromkeys(k.module for k in kept):
        mine = [k for k in kept if k.module == module]
        channels = ", ".join(str(k.channels) for k in mine)
        dtypes = "/".join(dict.fromkeys(k.dtype for k in mine))
        count = f"{len(mine)} x " if len(mine) > 1 else ""
        clauses.append(f"{module}: {count}{mine[0].kind} ({channels} channels, {dtypes})")
    return "; ".join(clauses)


def storage_record(model: nn.Module, kept: list[Kept] | None) -> DecoderStorage:
    """What ``model``'s decoder kept in one forward pass (``recording_kept``)."""
    if kept is None:
        return DecoderStorage(note=f"not measured: {type(model).__name__} declares no "
                                   "decoder_keeps (see bench/measure/decoder.py)")
    return storage_figures(kept)


def decoder_storage(model: nn.Module, inputs: torch.Tensor) -> DecoderStorage:
    """What ``model``'s decoder keeps, per image, from one forward pass.

    Call it under the job's autocast so the PyTorch accounting sees the dtype the job runs in.
    """
    with recording_kept(model) as kept, torch.inference_mode():
        model(inputs)
    return storage_record(model, kept)
