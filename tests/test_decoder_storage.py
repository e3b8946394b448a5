"""Decoder storage (bench/measure/decoder.py) against figures worked by hand from each architecture."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import models  # noqa: F401  (registers the architectures)
from bench.measure.decoder import decoder_storage
from bench.measure.size import MIB
from bench.records import flatten
from models.registry import create_model

CLASSES = 11
# SegNet-Basic at 64x64: four pools of 64 channels, pooled to 32x32, 16x16, 8x8 and 4x4, which the
# decoder unpools back to 64x64, 32x32, 16x16 and 8x8.
POOLED = 32 * 32 + 16 * 16 + 8 * 8 + 4 * 4          # 1360 windows per channel
UNPOOLED = 64 * 64 + 32 * 32 + 16 * 16 + 8 * 8       # 5440 pixels


def figures_of(model: nn.Module, inputs: torch.Tensor) -> dict:
    """``decoder_storage``'s record as the row's columns."""
    return flatten(decoder_storage(model, inputs), "decoder_storage_")


def storage(name: str, size: int, batch: int = 1, **kwargs) -> dict:
    torch.manual_seed(0)
    model = create_model(name, num_classes=CLASSES, **kwargs).eval()
    return figures_of(model, torch.randn(batch, 3, size, size))


def test_segnet_basic_keeps_int64_indices_paper_counts_two_bits():
    figures = storage("segnet_basic", 64, batch=2)  # per image: the batch does not change it
    assert figures["decoder_storage_mib"] == pytest.approx(64 * POOLED * 8 / MIB)
    assert figures["decoder_storage_paper_mib"] == pytest.approx(64 * POOLED * 2 / 8 / MIB)
    # 64 channels x 2 bits over the 4 pixels of a window = 32 bits per pixel: one float32 map.
    assert figures["decoder_storage_multiplier"] == pytest.approx(1.0)
    assert figures["decoder_storage_multiplier_pytorch"] == pytest.approx(32.0)
    assert figures["decoder_storage_note"] == "pool: 4 x indices (64, 64, 64, 64 channels, int64)"


def test_fcn_basic_keeps_three_reduced_maps_multiplier_eleven():
    figures = storage("fcn_basic", 64)
    # reduce.0-2: 11 channels at 32x32, 16x16, 8x8 (the deepest, 4x4, is the decoder's input).
    kept_bytes = CLASSES * (32 * 32 + 16 * 16 + 8 * 8) * 4
    assert figures["decoder_storage_mib"] == pytest.approx(kept_bytes / MIB)
    assert figures["decoder_storage_paper_mib"] == pytest.approx(kept_bytes / MIB)
    assert figures["decoder_storage_multiplier"] == pytest.approx(11.0)
    assert figures["decoder_storage_multiplier_pytorch"] == pytest.approx(11.0)
    assert "reduce.2: maps (11 channels, float32)" in figures["decoder_storage_note"]


# SegNet Table 1's other decoders. Table 1 prints multipliers 0 (Bilinear-Interpolation), 64
# (SegNet-Basic-EncoderAddition) and 64 (FCN-Basic-NoDimReduction).
def test_bilinear_interpolation_keeps_nothing():
    figures = storage("segnet_basic_bilinear", 64)
    assert figures["decoder_storage_mib"] == 0.0
    assert figures["decoder_storage_multiplier"] == 0.0
    assert figures["decoder_storage_note"] == "nothing: the decoder keeps no encoder tensor"


def test_encoder_addition_keeps_the_maps_and_the_indices_at_each_resolution():
    figures = storage("segnet_basic_encoder_addition", 64)
    # Per decoder resolution (64x64 ... 8x8): 64 float32 maps (64 x 32 bits per pixel) plus the
    # indices (64 x 2 bits per 2x2 window: 32 bits per pixel), 65 maps' worth; Table 1's 64 counts
    # the maps alone.
    paper_bits = 64 * 32 * UNPOOLED + 64 * 2 * POOLED
    assert figures["decoder_storage_paper_mib"] == pytest.approx(paper_bits / 8 / MIB)
    assert figures["decoder_storage_multiplier"] == pytest.approx(65.0)
    assert figures["decoder_storage_mib"] == pytest.approx((64 * 4 * UNPOOLED + 64 * 8 * POOLED) / MIB)


def test_fcn_basic_without_dim_reduction_keeps_64_maps():
    figures = storage("fcn_basic_no_dim_reduction", 64)
    kept_bytes = 64 * (32 * 32 + 16 * 16 + 8 * 8) * 4   # the first three pooled maps, unreduced
    assert figures["decoder_storage_mib"] == pytest.approx(kept_bytes / MIB)
    assert figures["decoder_storage_multiplier"] == pytest.approx(64.0)


def test_bf16_maps_are_counted_as_stored_and_as_float32_in_the_paper():
    torch.manual_seed(0)
    model = create_model("fcn_basic", num_classes=CLASSES).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        figures = figures_of(model, torch.randn(1, 3, 64, 64))
    assert figures["decoder_storage_mib"] == pytest.approx(figures["decoder_storage_paper_mib"] / 2)
    assert figures["decoder_storage_multiplier"] == pytest.approx(11.0)
    assert figures["decoder_storage_multiplier_pytorch"] == pytest.approx(5.5)


def test_unet_keeps_four_skip_maps():
    figures = storage("unet", 64, base_channels=8, padding="same")
    # Levels 0-3: 8, 16, 32, 64 channels at 64x64, 32x32, 16x16, 8x8 (the 128-channel bottom is not a skip).
    elements = 8 * 64 * 64 + 16 * 32 * 32 + 32 * 16 * 16 + 64 * 8 * 8
    assert figures["decoder_storage_mib"] == pytest.approx(elements * 4 / MIB)
    assert figures["decoder_storage_multiplier"] == pytest.approx(elements / UNPOOLED)


def test_fcdensenet56_keeps_each_down_block_output():
    figures = storage("fcdensenet56", 32)
    # Down blocks: 48 + 4 x 12 = 96 maps, then +48 each, at 32x32 down to 2x2.
    elements = 96 * 32 * 32 + 144 * 16 * 16 + 192 * 8 * 8 + 240 * 4 * 4 + 288 * 2 * 2
    assert figures["decoder_storage_mib"] == pytest.approx(elements * 4 / MIB)
    assert figures["decoder_storage_multiplier"] == pytest.approx(
        elements / (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2))


class _Pool3(nn.Module):
    """A 3x3 pool keeping indices: log2(9) rounds up to 4 bits per window."""
    decoder_keeps = {"pool": "indices"}

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(3, 3, return_indices=True)

    def forward(self, x):
        return self.pool(x)[0]


def test_window_bits_follow_the_window_area():
    figures = figures_of(_Pool3(), torch.randn(1, 2, 9, 9))
    assert figures["decoder_storage_paper_mib"] == pytest.approx(2 * 3 * 3 * 4 / 8 / MIB)
    assert figures["decoder_storage_multiplier"] == pytest.approx(2 * 9 * 4 / 32 / 81)


def test_nothing_kept_is_zero_and_undeclared_is_left_empty():
    kept_nothing = nn.Sequential(nn.Conv2d(3, 3, 1))
    kept_nothing.decoder_keeps = {}
    figures = figures_of(kept_nothing, torch.randn(1, 3, 8, 8))
    assert figures["decoder_storage_mib"] == figures["decoder_storage_multiplier"] == 0.0
    undeclared = figures_of(nn.Conv2d(3, 3, 1), torch.randn(1, 3, 8, 8))
    assert {name for name, value in undeclared.items() if value is not None} == {"decoder_storage_note"}
    assert "declares no decoder_keeps" in undeclared["decoder_storage_note"]


@pytest.mark.parametrize("keeps,error,match", [
    ({"missing": "maps"}, ValueError, "not a submodule"),
    ({"0": "bits"}, ValueError, "use one of"),
    ({"0": "indices"}, TypeError, "return_indices=True"),
    ({"1": "maps"}, TypeError, "returns tuple, not a tensor"),
])
def test_bad_declarations_say_what_to_fix(keeps, error, match):
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.MaxPool2d(2, return_indices=True))
    model.decoder_keeps = keeps
    with pytest.raises(error, match=match):
        decoder_storage(model, torch.randn(1, 3, 8, 8))
