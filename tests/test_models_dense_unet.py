"""FC-DenseNet (Jegou et al. 2016), U-Net (Ronneberger et al. 2015) and Luc et al.'s adversary.

Parameter counts are worked out here by arithmetic from the papers' layer tables (Tiramisu,
Jegou et al. 2016, Tables 2 and 3; U-Net, Ronneberger et al. 2015, Fig. 1) and, for the
adversaries, from the layer lists of the public re-implementation
https://github.com/oyam/Semantic-Segmentation-using-Adversarial-Networks
(models/discriminators/*.py), independently of the model code, and compared with the published
figures.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import nn
from torch.autograd.graph import saved_tensors_hooks

from bench.jobspec import JobSpec
from bench.measure.receptive_field import receptive_field
from models import create_model, list_models
from models.adversarial import Adversary, encode, encoded_channels
from models.common import InputTooSmallError
from models.unet import UNetBody, smallest_valid_tile, valid_output_size
from tests.conftest import ROOT, meta_model, param_count

CAMVID_CLASSES = 11
TIRAMISU = {  # Tiramisu Table 2 (layout, growth rate) and Table 3 (published parameters)
    "fcdensenet56": ((4,) * 11, 12, 1.5e6),
    "fcdensenet67": ((5,) * 11, 16, 3.5e6),
    "fcdensenet103": ((4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4), 16, 9.4e6),
}


def n_params(name: str, **kwargs) -> int:
    """Parameters of a registered model, built on the meta device (no memory, no initialisation)."""
    return param_count(meta_model(name, **kwargs))


def tiramisu_param_count(blocks, k, classes, bn_per_channel, in_channels=3, stem=48, upsample="new"):
    """Parameters of an FC-DenseNet from Tables 1-2; convolutions carry biases (Lasagne default).
    ``upsample="all"``: sec. 3.2's counterfactual, each transition up on every map of its block."""

    def dense_block(m, layers):          # each layer: BN(m) + 3x3 conv m -> k
        count = 0
        for _ in range(layers):
            count += bn_per_channel * m + 9 * m * k + k
            m += k
        return count, m

    total, m = 9 * in_channels * stem + stem, stem
    depth = len(blocks) // 2
    skips = []
    for layers in blocks[:depth]:
        count, m = dense_block(m, layers)
        skips.append(m)
        total += count + bn_per_channel * m + m * m + m          # + transition down: BN, 1x1 conv m -> m
    count, m = dense_block(m, blocks[depth])
    total += count
    new = blocks[depth] * k
    for layers, skip in zip(blocks[depth + 1:], reversed(skips)):
        up = new if upsample == "new" else m                        # transition up: 3x3 deconv, maps kept
        total += 9 * up * up + up
        count, m = dense_block(up + skip, layers)
        total += count
        new = layers * k
    return total + m * classes + classes                            # 1x1 classifier


@pytest.mark.parametrize("name", TIRAMISU)
def test_fcdensenet_parameter_count(name):
    blocks, k, published = TIRAMISU[name]
    pytorch_count = tiramisu_param_count(blocks, k, CAMVID_CLASSES, bn_per_channel=2)
    # Lasagne's count (used for Table 3) includes BN's running mean and inverse std.
    lasagne_count = tiramisu_param_count(blocks, k, CAMVID_CLASSES, bn_per_channel=4)
    assert n_params(name, num_classes=CAMVID_CLASSES) == pytorch_count
    if name == "fcdensenet56":
        # Neither convention lands within 2% of Table 3's 1.5M: the Table 2 layout gives 1,376,795
        # (PyTorch) / 1,397,963 (Lasagne), i.e. 1.4M, 7% below. The same arithmetic matches the
        # paper's 67 and 103 within 0.3%, so the layout is kept as Table 2 states it and the test
        # pins the table arithmetic; where the printed 1.5M comes from is not known.
        assert (pytorch_count, lasagne_count) == (1_376_795, 1_397_963)
    else:
        assert abs(lasagne_count - published) / published < 0.02


def unet_param_count(in_channels, classes, base=64):
    """U-Net Figure 1: 18 3x3 convs, 4 2x2 up-convs, one 1x1 conv, all with biases."""
    widths = [base * 2 ** i for i in range(5)]

    def conv3(c_in, c_out):
        return 9 * c_in * c_out + c_out

    total = 0
    for c_in, c_out in zip([in_channels] + widths[:-1], widths):          # contracting path + bottom
        total += conv3(c_in, c_out) + conv3(c_out, c_out)
    for wide in reversed(widths[1:]):                                       # expansive path
        half = wide // 2
        total += 4 * wide * half + half                                     # 2x2 up-conv halves channels
        total += conv3(wide, half) + conv3(half, half)                      # after concat: half + half in
    return total + base * classes + classes


def test_unet_parameter_count_and_layers():
    # The paper's setting: 1-channel EM images, 2 classes. 31,030,658 by the arithmetic above; RGB
    # input adds 2 * 9 * 64 = 1,152 (31,031,810). The often-quoted 31,031,685 matches neither.
    assert n_params("unet", num_classes=2, in_channels=1) == unet_param_count(1, 2) == 31_030_658
    assert n_params("unet", num_classes=2) == unet_param_count(3, 2) == 31_031_810
    with torch.device("meta"):
        model = create_model("unet", num_classes=2)
    assert sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules()) == 23


def test_unet_valid_tile_572_gives_388():
    body = UNetBody(in_channels=1, num_classes=2, base_channels=4, padding=0)   # sizes don't depend on width
    with torch.no_grad():
        assert body(torch.zeros(1, 1, 572, 572)).shape[-2:] == (388, 388)
    assert valid_output_size(572) == 388 and smallest_valid_tile(388) == 572
    assert smallest_valid_tile(1) == 188 and valid_output_size(188) == 4    # smallest usable tile


SHAPE_CASES = [("fcdensenet56", {}), ("fcdensenet67", {}), ("fcdensenet103", {}), ("unet", {"padding": "same"}),
               # Narrower valid U-Net: the overlap-tile padding and cropping do not depend on the width.
               ("unet", {"padding": "valid", "base_channels": 16})]


@pytest.mark.parametrize("name,kwargs", SHAPE_CASES)
def test_odd_size_output_and_gradient_reaches_first_layer(name, kwargs):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, **kwargs)
    logits = model(torch.randn(1, 3, 97, 131))
    assert logits.shape == (1, 5, 97, 131)
    logits.square().mean().backward()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name,kwargs", [
    ("fcdensenet56", {}),
    ("unet", {"padding": "same"}),
    ("unet", {"padding": "valid", "base_channels": 16}),
    # Covered by fcdensenet56 here and by their own odd-size test above.
    pytest.param("fcdensenet67", {}, marks=pytest.mark.slow),
    pytest.param("fcdensenet103", {}, marks=pytest.mark.slow),
])
def test_camvid_size_output(name, kwargs):
    model = create_model(name, num_classes=CAMVID_CLASSES, **kwargs).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 360, 480)).shape == (1, CAMVID_CLASSES, 360, 480)


def test_fcdensenet103_feature_map_counts():
    model = create_model("tiramisu", num_classes=CAMVID_CLASSES).eval()
    blocks = [model.stem, *model.down_blocks, model.bottleneck, *model.up_blocks]
    counts = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: counts.append(out.shape[1])) for b in blocks]
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert counts == [48, 112, 192, 304, 464, 656, 896, 1088, 816, 576, 384, 256]


def test_fcdensenet103_upsample_all_upsamples_every_map_of_each_block():
    """Tiramisu sec. 3.2's counterfactual: the up path's blocks keep their input, so the maps grow
    linearly up to the classifier (counted on the meta device: 256M parameters, no memory)."""
    blocks, k, _ = TIRAMISU["fcdensenet103"]
    expected = tiramisu_param_count(blocks, k, CAMVID_CLASSES, bn_per_channel=2, upsample="all")
    assert n_params("fcdensenet103_upsample_all", num_classes=CAMVID_CLASSES) == expected == 256_348_283
    with torch.device("meta"):
        model = create_model("fcdensenet103_upsample_all", num_classes=CAMVID_CLASSES).eval()
        counts = []
        for block in [model.bottleneck, *model.up_blocks]:
            block.register_forward_hook(lambda _m, _i, out: counts.append(out.shape[1]))
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, CAMVID_CLASSES, 32, 32)
    # bottleneck 656 + 240; then each block: upsampled maps + skip + its new maps
    assert counts == [896, 896 + 656 + 192, 1744 + 464 + 160, 2368 + 304 + 112, 2784 + 192 + 80, 3056 + 112 + 64]


def saved_for_backward_bytes(model: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Bytes of the distinct storages autograd keeps for backward during ``model(x)``."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    return sum(storages.values()), out


def test_memory_efficient_fcdensenet_same_results_less_saved_memory():
    torch.manual_seed(0)
    plain = create_model("fcdensenet56", num_classes=CAMVID_CLASSES).train()
    efficient = create_model("fcdensenet56", num_classes=CAMVID_CLASSES, memory_efficient=True).train()
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    results = []
    for model in (plain, efficient):
        torch.manual_seed(1)                       # same dropout masks
        saved, out = saved_for_backward_bytes(model, x)
        out.square().mean().backward()
        results.append((saved, out, [p.grad for p in model.parameters()], list(model.buffers())))
    (plain_saved, *plain_rest), (efficient_saved, *efficient_rest) = results
    torch.testing.assert_close(efficient_rest, plain_rest)   # outputs, gradients, BN running stats
    assert efficient_saved < 0.5 * plain_saved


@pytest.mark.parametrize("name,minimum", [("fcdensenet56", 32), ("unet", 16), ("adversarial", 16)])
def test_below_minimum_names_the_minimum(name, minimum):
    kwargs = {"segmentor": "unet", "base_channels": 4} if name == "adversarial" else {}
    model = create_model(name, num_classes=3, **kwargs)
    assert model.min_input_size == minimum
    with pytest.raises(InputTooSmallError, match=f"{minimum}x{minimum}"):
        model(torch.randn(1, 3, minimum - 1, 64))


# --- Luc et al.'s adversary -------------------------------------------------------------------

@pytest.mark.parametrize("encoding,channels,with_image", [("basic", 5, 3), ("product", 15, 0), ("scaling", 5, 3)])
@pytest.mark.parametrize("field_of_view", ["large", "small"])
def test_adversary_encodings_channels_and_output_shape(encoding, channels, with_image, field_of_view):
    image, probs = torch.randn(2, 3, 24, 40), torch.softmax(torch.randn(2, 5, 24, 40), dim=1)
    assert encoded_channels(encoding, 5) == channels
    assert encode(image, probs, encoding).shape == (2, channels, 24, 40)
    adversary = Adversary(5, encoding, field_of_view)
    assert adversary.layers[0].in_channels == channels + with_image
    assert adversary(image, probs).shape == (2,)


# Luc et al.'s four adversaries as (kernel, width) per convolution, written out from oyam's
# models/discriminators/{largefov,largefov_light,smallfov,smallfov_light}.py (pools left out: they
# have no parameters), with segbench's single-logit output in place of their two outputs.
ADVERSARY_CONVS = {
    ("large", False): [(3, 96), (3, 128), (3, 128), (3, 256), (3, 256), (3, 512), (3, 1)],
    ("large", True): [(3, 96), (3, 128), (3, 128), (3, 128), (3, 128), (3, 256), (3, 1)],
    ("small", False): [(3, 96), (1, 128), (3, 256), (1, 256), (3, 512), (1, 1)],
    ("small", True): [(3, 96), (1, 128), (3, 128), (1, 128), (3, 256), (1, 1)],
}
# The fields of view the paper reports for LargeFOV and SmallFOV; the light variants share the
# kernels and pools of their full-width counterparts.
ADVERSARY_FIELD = {("large", False): 34, ("large", True): 34, ("small", False): 18, ("small", True): 18}


@pytest.mark.parametrize("variant", list(ADVERSARY_CONVS))
def test_adversary_parameters_follow_the_layer_lists(variant):
    classes = 21                         # Pascal VOC, the paper's adversaries' data set
    channels, expected = 3 * classes, 0  # product encoding: 3C input channels, no image path
    for kernel, width in ADVERSARY_CONVS[variant]:
        expected += kernel * kernel * channels * width + width
        channels = width
    field_of_view, light = variant
    adversary = Adversary(classes, "product", field_of_view, light=light)
    assert sum(p.numel() for p in adversary.parameters()) == expected


@pytest.mark.parametrize("variant", list(ADVERSARY_FIELD))
def test_adversary_field_of_view(variant):
    """The label-map pixels one central output location depends on (bench/measure/receptive_field.py:
    a gradient probe, max-pools probed as windows)."""
    field_of_view, light = variant
    adversary = Adversary(3, "basic", field_of_view, use_image=False, light=light)
    assert receptive_field(nn.Sequential(*adversary.layers), 3, 64) == ADVERSARY_FIELD[variant]


def test_adversary_variant_from_the_model_config():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", ["model=adversarial", "model.segmentor=unet", "model.field_of_view=small",
                                 "model.light=true"])
    spec = JobSpec.from_config(cfg)
    assert spec.model_kwargs["light"] is True
    with torch.device("meta"):
        model = create_model(spec.model, num_classes=5, **spec.model_kwargs)
    convs = [(m.kernel_size[0], m.out_channels) for m in model.adversary.layers if isinstance(m, nn.Conv2d)]
    assert convs == ADVERSARY_CONVS["small", True]


def test_adversary_rejects_unknown_variants():
    with pytest.raises(ValueError, match="field_of_view"):
        Adversary(5, "product", "medium")
    with pytest.raises(TypeError, match="light"):
        Adversary(5, "product", "small", light="false")   # a string, not a YAML false


def test_scaling_encoding_softens_ground_truth():
    torch.manual_seed(0)
    s = torch.softmax(3 * torch.randn(2, 4, 8, 8), dim=1)
    s[0, 2, 0, 0], s[0, :2, 0, 0], s[0, 3, 0, 0] = 1.0, 0.0, 0.0        # a saturated pixel
    labels = torch.randint(0, 4, (2, 8, 8))
    labels[0, 0, 0] = 2
    onehot = F.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    y = encode(torch.randn(2, 3, 8, 8), onehot, "scaling", tau=0.9, segmentor_probs=s)
    true = y.gather(1, labels.unsqueeze(1))
    assert (true >= 0.9).all()
    torch.testing.assert_close(true, torch.maximum(s.gather(1, labels.unsqueeze(1)), torch.tensor(0.9)))
    torch.testing.assert_close(y.sum(dim=1), torch.ones(2, 8, 8))
    # Predictions pass through unchanged.
    assert torch.equal(encode(torch.randn(2, 3, 8, 8), s, "scaling"), s)


def test_adversarial_gradient_reaches_segmentor_through_product():
    torch.manual_seed(0)
    model = create_model("adversarial", num_classes=3, segmentor="unet", padding="same", base_channels=4,
                         encoding="product", field_of_view="small")
    x = torch.randn(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 3, 32, 32)
    fake = model.adversary(x, torch.softmax(logits, dim=1))
    F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake)).backward()   # segmentor's adversarial term
    first = model.segmentor.network.down[0][0]
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


def test_adversarial_with_dilated_frontend():
    if "dilated_frontend" not in list_models():
        pytest.skip("dilated_frontend (models/dilated.py) is not registered yet")
    model = create_model("adversarial", num_classes=21).eval()
    size = max(getattr(model.segmentor, "min_input_size", 1), 64)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (1, 21, size, size)
        assert model.adversary(x, torch.softmax(logits, dim=1)).shape == (1,)
