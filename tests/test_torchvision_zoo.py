"""torchvision's segmentation models as registry entries, dict-returning plugins, register_model's
spellings, and the report's published-vs-measured table of the torchvision models."""
from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest
import torch
import torchvision
from torchvision.models import segmentation as tv

from bench.report.contenders import contenders_table
from bench.report.frame import rows_to_frame
from bench.report.published import load_published
from bench.schema import ResultRow
from models import create_model, list_models, register_model
from models.registry import _BUILDERS
from bench.report.contenders import TORCHVISION_MODELS
from models.torchvision_zoo import CONTENDERS, has_aux_head
from tests.conftest import InProcess, meta_model, param_count

VOC = 21
MOBILE = ["deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"]
RESNET = ["fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101"]
WITH_AUX = [name for name in CONTENDERS if has_aux_head(name)]


def test_every_torchvision_segmentation_model_is_registered():
    assert sorted(CONTENDERS) == torchvision.models.list_models(module=tv)
    assert set(CONTENDERS) <= set(list_models())
    assert set(CONTENDERS) == set(TORCHVISION_MODELS)  # the report's torch-free copy of the names
    assert WITH_AUX == ["fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
                        "deeplabv3_mobilenet_v3_large"]


@pytest.mark.parametrize("name", MOBILE)
def test_mobile_models_return_input_size_logits(name):
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 72))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 5, 64, 72)


@pytest.mark.parametrize("name", RESNET)
def test_resnet_models_build_with_num_classes(name):
    """No forward pass (seconds on CPU): the classifier's last conv has num_classes outputs."""
    model = meta_model(name, num_classes=5)
    assert model.classifier[-1].out_channels == 5 and model.aux_classifier is None


@pytest.mark.parametrize("name", WITH_AUX)
def test_aux_adds_exactly_the_aux_head(name):
    without, with_aux = meta_model(name, num_classes=7), meta_model(name, num_classes=7, aux=True)
    assert param_count(with_aux) - param_count(without) == param_count(with_aux.aux_classifier) > 0


@pytest.mark.parametrize("name", [*WITH_AUX, "lraspp_mobilenet_v3_large"])
def test_params_equal_the_metadata_num_params_at_21_classes(name):
    model = meta_model(name, num_classes=VOC, aux=has_aux_head(name))
    assert param_count(model) == CONTENDERS[name][1].meta["num_params"]


def test_aux_output_is_computed_but_only_out_returned():
    model = create_model("deeplabv3_mobilenet_v3_large", num_classes=4, aux=True).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4, 64, 64)


def test_lraspp_with_aux_is_a_clear_error():
    with pytest.raises(ValueError, match="lraspp_mobilenet_v3_large has no auxiliary head; use aux=false"):
        create_model("lraspp_mobilenet_v3_large", num_classes=VOC, aux=True)


def test_pretrained_without_the_cached_file_names_path_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = tv.LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1
    expected = tmp_path / "hub" / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    with pytest.raises(FileNotFoundError) as error:
        create_model("lraspp_mobilenet_v3_large", num_classes=VOC, pretrained=True)
    message = str(error.value)
    assert str(expected) in message and weights.url in message and "pretrained=False" in message


def test_pretrained_needs_21_classes():
    with pytest.raises(ValueError, match="21 classes"):
        create_model("lraspp_mobilenet_v3_large", num_classes=11, pretrained=True)


def test_pretrained_loads_the_cached_weights_without_the_aux_head(tmp_path, monkeypatch):
    """The file's aux_classifier tensors are dropped for aux=false; everything else is loaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = tv.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1
    path = tmp_path / "hub" / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    path.parent.mkdir(parents=True)
    state = {k: torch.full_like(v, 0.25) for k, v in
             create_model("deeplabv3_mobilenet_v3_large", num_classes=VOC, aux=True).state_dict().items()}
    torch.save(state, path)
    model = create_model("deeplabv3_mobilenet_v3_large", num_classes=VOC, pretrained=True)
    assert model.aux_classifier is None
    assert (model.classifier[-1].weight == 0.25).all()


# --- plugins as users write them -------------------------------------------------------------

DICT_PLUGIN = ["model=custom", "model.name=dict_segmenter", "plugins=[tests.plugin_models]"]


def test_dict_returning_plugin_is_profiled_end_to_end(in_process: InProcess):
    """Registered with a positional name; profiled, its training step timed, exported to ONNX."""
    result = in_process(*DICT_PLUGIN, "resolution=40x56", "threads=1")
    assert result.status == "ok", result.error
    onnx = in_process(*DICT_PLUGIN, "resolution=40x56", "threads=1", "backend=onnxruntime",
                      "measure.train_step=false")
    assert onnx.status == "ok", onnx.error
    eager, exported = sorted(in_process.rows().rows, key=lambda r: r.backend != "eager")
    assert eager.status == exported.status == "ok", (eager.error, exported.error)
    # The same convs as tiny_segmenter: the "aux" entry is dropped, "out" is the logits.
    assert eager.flops_per_image == 2 * 40 * 56 * (8 * 27 + 11 * 8)
    assert eager.train_latency_ms_median > 0 and exported.latency_ms_median > 0


def test_dict_without_out_is_a_clear_error():
    @register_model(name="test_dict_without_out")
    def build(num_classes, in_channels=3):
        class NoOut(torch.nn.Module):
            def forward(self, x):
                return {"logits": x}
        return NoOut()

    try:
        with pytest.raises(TypeError, match='"out" entry'):
            create_model("test_dict_without_out", num_classes=3)(torch.zeros(1, 3, 4, 4))
    finally:
        del _BUILDERS["test_dict_without_out"]


@pytest.mark.parametrize("decorator", [
    lambda: register_model("test_positional"),
    lambda: register_model(name="test_positional"),
])
def test_register_model_takes_the_name_positionally_or_by_keyword(decorator):
    try:
        @decorator()
        def build(num_classes, in_channels=3):
            return torch.nn.Conv2d(in_channels, num_classes, 1)
        assert create_model("test_positional", num_classes=2).out_channels == 2
    finally:
        del _BUILDERS["test_positional"]


def test_bare_register_model_uses_the_function_name():
    try:
        @register_model
        def test_bare(num_classes, in_channels=3):
            return torch.nn.Conv2d(in_channels, num_classes, 1)
        assert "test_bare" in list_models()
    finally:
        del _BUILDERS["test_bare"]


@pytest.mark.parametrize("call,problem", [
    (lambda: register_model(3), "got int 3"),
    (lambda: register_model(name=3), "name must be a str, got int 3"),
    (lambda: register_model("a", name="b"), "got a name twice"),
    (lambda: register_model("test_not_callable")(42), "decorates a builder function, not int 42"),
])
def test_register_model_misuse_names_the_problem(call, problem):
    with pytest.raises(TypeError, match=problem):
        call()
    assert "test_not_callable" not in list_models()


# --- the report's table ----------------------------------------------------------------------

def contender_row(model: str, height: int, width: int, params: int, flops: float, aux: bool,
                  num_classes: int = VOC) -> ResultRow:
    return ResultRow(
        job_key=f"{model}-{height}x{width}", run_id=f"{model}{height}", status="ok", model=model,
        dataset="voc", num_classes=num_classes, device="cpu", height=height, width=width,
        batch_size=1, precision="fp32", finished_at="2026-01-01T00:00:00.000+00:00",
        params_total=params, flops_per_image=flops, model_kwargs={"aux": aux, "pretrained": False})


def test_published_figures_equal_the_installed_torchvision_metadata():
    published = load_published()["torchvision_weights"]
    assert set(published) == set(CONTENDERS)
    for name, (_, weights) in CONTENDERS.items():
        meta = weights.meta
        metrics = meta["_metrics"]["COCO-val2017-VOC-labels"]  # COCO val2017, the 20 VOC categories
        assert published[name] == {
            "weights": f"{type(weights).__name__}.{weights.name}", "num_params": meta["num_params"],
            "ops": meta["_ops"], "file_size": meta["_file_size"], "categories": len(meta["categories"]),
            "miou": metrics["miou"], "pixel_acc": metrics["pixel_acc"], "aux_head": has_aux_head(name)}, name


def test_report_table_shows_the_metadata_figures_and_their_source():
    lraspp = CONTENDERS["lraspp_mobilenet_v3_large"][1]
    deeplab = CONTENDERS["deeplabv3_mobilenet_v3_large"][1]
    frame = rows_to_frame([
        contender_row("lraspp_mobilenet_v3_large", 520, 520, lraspp.meta["num_params"],
                      2e9 * lraspp.meta["_ops"], aux=False),
        contender_row("deeplabv3_mobilenet_v3_large", 192, 256, 11_000_000, 3e9, aux=False, num_classes=11),
        contender_row("fcn8s", 192, 256, 134_000_000, 1e11, aux=False),  # a classic: not in this table
    ])
    table = contenders_table(frame, load_published()).set_index("model")
    assert list(table.index) == ["deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"]
    row = table.loc["lraspp_mobilenet_v3_large"]
    assert row["source"] == "torchvision weights metadata: LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1"
    assert row["num_params (M)"] == f"{lraspp.meta['num_params'] / 1e6:.3f}"
    assert row["2 x _ops GFLOP/img (520x520)"] == f"{2 * lraspp.meta['_ops']:.3f}"
    assert row["measured / num_params"] == row["measured / 2 x _ops"] == "1.000"
    metrics = lraspp.meta["_metrics"]["COCO-val2017-VOC-labels"]
    assert (row["published mIoU (%)"], row["published pixel acc (%)"]) == (metrics["miou"], metrics["pixel_acc"])
    assert row["weights file (MB)"] == lraspp.meta["_file_size"]
    other = table.loc["deeplabv3_mobilenet_v3_large"]
    assert other["measured / 2 x _ops"] == ""  # not at 520x520: no ratio
    assert other["2 x _ops GFLOP/img (520x520)"] == f"{2 * deeplab.meta['_ops']:.3f}"
    for reason in ("aux=false", "11 classes; num_params counts 21", "measured at 192x256"):
        assert reason in other["counting notes"]


def test_report_table_is_empty_without_contender_rows():
    frame = rows_to_frame([contender_row("fcn8s", 192, 256, 134_000_000, 1e11, aux=False)])
    assert contenders_table(frame, load_published()).empty


def test_written_report_has_the_table_and_its_note(tmp_path):
    from bench.report import write_report
    from bench.store import ResultStore
    from tests.test_report import make_row
    weights = CONTENDERS["lraspp_mobilenet_v3_large"][1]
    store = ResultStore(tmp_path)
    store.write(make_row("fcn8s"))
    store.write(make_row("lraspp_mobilenet_v3_large", 520, 520, num_classes=VOC, model_kwargs={"aux": False},
                         params_total=weights.meta["num_params"], flops_per_image=2e9 * weights.meta["_ops"]))
    index = write_report(tmp_path).read_text()
    published = (tmp_path / "report" / "published.md").read_text()
    for text in (index, published):
        assert "torchvision contenders: published vs measured" in text
        assert "LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1" in text
        assert "so the published FLOP figure shown is 2 x _ops" in text
