"""The gradient probe of receptive fields (bench/measure/receptive_field.py), the growth a model
declares recorded in its profile row, and the claim that dilated convolutions grow the receptive
field exponentially while the parameters grow linearly (Dilation sec. 2, Table 1)."""
import pytest
from torch import nn

from bench.jobspec import JobSpec
from bench.measure.receptive_field import growth, layer_receptive_fields, receptive_field
from bench.profile import profile_model
from bench.report.frame import rows_to_frame
from bench.report.published import HOLDS, NOT_HOLD, NOT_TESTED, evaluate_claims, load_published
from models.dilated import context_module
from tests.test_adversarial_profile import CPU, FAST, NO_ENERGY
from tests.test_report import make_row
from tests.test_train import CLASSES, IGNORE, job_config, one_thread  # noqa: F401 (autouse)

TABLE_1 = [3, 5, 9, 17, 33, 65, 67, 67]   # Dilation Table 1: after each layer of the context module


class WithContext(nn.Module):
    """Dilated8's basic context module as a model of its own, declaring its growth."""
    growth_layers = "context"

    def __init__(self, classes: int = CLASSES):
        super().__init__()
        self.context = context_module(classes, "basic")

    def forward(self, x):
        return self.context(x)


def test_the_probe_counts_kernels_and_dilations_by_hand():
    def conv(kernel, dilation):
        return nn.Conv2d(2, 2, kernel, padding=dilation * (kernel // 2), dilation=dilation)
    stack = nn.Sequential(conv(3, 1), nn.ReLU(), conv(3, 2), nn.ReLU(), conv(5, 1), conv(1, 1))
    # 3; 3 + 2x2 = 7; 7 + 4 = 11; a 1x1 adds nothing
    assert layer_receptive_fields(stack, 2) == [3, 7, 11, 11]


def test_a_max_pool_is_probed_as_a_window_not_as_the_pixel_it_picked():
    stack = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3))
    assert receptive_field(stack, 1, 40) == 3 + 1 + 2 * 2     # 3, a 2x2 window: 4, a 3x3 at stride 2: 8


def test_the_identity_initialised_context_module_grows_as_table_1_says():
    found = growth(WithContext())
    assert found.module == "context" and found.receptive_fields == TABLE_1
    per_layer = 9 * CLASSES * CLASSES + CLASSES               # each 3x3 layer: C x C x 3 x 3 + C biases
    assert found.cumulative_params == [per_layer * i for i in range(1, 8)] + [7 * per_layer + CLASSES * CLASSES + CLASSES]


def test_a_model_that_declares_no_growth_has_none():
    assert growth(nn.Conv2d(3, 3, 3)) is None


def test_the_profile_row_records_the_growth_and_a_failed_probe_keeps_the_row(tmp_path):
    spec = JobSpec.from_config(job_config("model=unet", "resolution=16x16"))

    def run(model):
        return profile_model(model, spec, CLASSES, CLASSES, CPU, FAST, 1, ignore_index=IGNORE, cache_dir=tmp_path,
                             peak_flops=False, windows=NO_ENERGY)
    fields = run(WithContext())
    assert fields["growth_receptive_fields"] == TABLE_1 and fields["growth_module"] == "context"
    broken = WithContext()
    broken.growth_layers = "no_such_layer"
    fields = run(broken)
    assert fields["instrument_errors"]["growth"].startswith("AttributeError")
    assert "growth_receptive_fields" not in fields and fields["latency_ms_median"] > 0


CLAIM = "dilated_receptive_field"


def _claim(rows):
    [result] = [r for r in evaluate_claims(rows_to_frame(rows), load_published()) if r.claim["id"] == CLAIM]
    return result


def _dilated8(fields, params, context="basic"):
    return make_row("dilated8", growth_module="context", growth_receptive_fields=fields, growth_params=params,
                    model_kwargs={"context": context, "pretrained_backbone": False})


LINEAR = [1100 * i for i in range(1, 8)] + [7832]


def test_the_claim_holds_on_table_1s_fields_and_equal_parameter_steps():
    result = _claim([_dilated8(TABLE_1, LINEAR)])
    assert result.verdict == HOLDS
    assert "doubling over layers 1 to 6; each of which adds 1,100 parameters" in result.line
    assert "3, 5, 9, 17, 33, 65, 67, 67 px as published" in result.line


@pytest.mark.parametrize("fields, params, why", [
    ([3, 5, 7, 9, 11, 13, 15, 15], LINEAR, "not doubling"),                       # undilated: linear
    (TABLE_1, [1100, 2200, 4400, 8800, 17600, 35200, 36300, 36432], "grow by 1,100, 2,200"),   # widening
])
def test_the_claim_does_not_hold_when_either_law_fails(fields, params, why):
    result = _claim([_dilated8(fields, params)])
    assert result.verdict == NOT_HOLD and why in result.line


def test_the_claim_reads_the_basic_context_module_not_the_widening_large_one():
    large = _dilated8(TABLE_1, [2200, 6578, 15334, 50270, 189838, 747758, 1863246, 1867129], context="large")
    assert _claim([_dilated8(TABLE_1, LINEAR), large]).verdict == HOLDS     # the large row is newer
    assert _claim([large]).verdict == NOT_TESTED


def test_without_growth_rows_the_claim_names_its_command():
    result = _claim([make_row("dilated8")])      # a row written before schema 6: no growth figures
    assert result.verdict == NOT_TESTED
    assert "`python -m bench model=dilated8 resolution=64x64`" in result.line
