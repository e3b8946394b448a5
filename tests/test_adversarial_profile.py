"""An adversarial model's inference figures are its segmentor's alone; the adversary is counted apart,
and the training-step record says it covers both networks' alternating updates."""
import pytest
import torch

from bench.jobspec import JobSpec
from bench.measure.latency import TimingConfig
from bench.measure.size import model_size
from bench.profile import WindowOptions, inference_part, profile_model
from bench.schema import SCHEMA_VERSION, ResultRow
from models.adversarial import Adversary, AdversarialSegmentor
from tests.test_train import CLASSES, IGNORE, TinySegmenter, job_config, one_thread  # noqa: F401 (autouse)

FAST = TimingConfig(warmup_iters=0, min_run_time=0.0, min_iters=2, max_iters=2)
CPU = torch.device("cpu")
NO_ENERGY = WindowOptions(energy=False)   # a 10-second energy window would measure nothing here


ADVERSARIAL = ("model=adversarial", "resolution=16x16", "train=adversarial")


def tiny_adversarial() -> AdversarialSegmentor:
    torch.manual_seed(0)
    return AdversarialSegmentor(TinySegmenter(), Adversary(CLASSES, "product", field_of_view="small", light=True))


def test_inference_part_is_the_segmentor_and_other_models_are_whole():
    model = tiny_adversarial()
    assert inference_part(model) is model.segmentor
    plain = TinySegmenter()
    assert inference_part(plain) is plain


def test_profile_counts_the_segmentor_and_records_the_adversary_apart(tmp_path):
    model = tiny_adversarial()
    segmentor, adversary = model_size(model.segmentor), model_size(model.adversary)
    cfg = job_config(*ADVERSARIAL)
    fields = profile_model(model, JobSpec.from_config(cfg), CLASSES, 3, CPU, FAST, 1, train_cfg=cfg.train,
                           ignore_index=IGNORE, cache_dir=tmp_path, peak_flops=False, windows=NO_ENERGY)
    assert "status" not in fields
    assert fields["params_total"] == segmentor.params_total == sum(p.numel() for p in model.segmentor.parameters())
    assert fields["model_size_mib"] == segmentor.size_mib
    assert fields["adversary_params_total"] == adversary.params_total > 0
    assert fields["adversary_size_mib"] == adversary.size_mib
    # The forward pass's memory holds the segmentor's weights and the input, not the adversary's.
    weights_mib = segmentor.size_mib + 3 * 16 * 16 * 4 / 2**20
    assert fields["peak_memory_mib"] == pytest.approx(weights_mib + fields["activation_peak_mib"])
    # The training step trains both networks, and its record says so.
    both = segmentor.size_mib + adversary.size_mib
    assert fields["train_weights_mib"] == pytest.approx(both)
    assert "alternating" in fields["train_step_covers"] and "adversary" in fields["train_step_covers"]
    assert "0.1 x the adversary's binary cross-entropy" in fields["train_step_covers"]
    # The fields are ResultRow columns, and a row from before them still reads.
    row = ResultRow.from_dict({"job_key": "k", "run_id": "r", "status": "ok", "finished_at": "t", **fields})
    assert row.adversary_params_total == adversary.params_total
    old = ResultRow.from_dict({"job_key": "k", "run_id": "r", "status": "ok", "finished_at": "t",
                               "schema_version": SCHEMA_VERSION - 1, "params_total": 5})
    assert old.adversary_params_total is None and old.train_step_covers == ""


def test_a_plain_model_says_its_training_step_is_the_whole_models(tmp_path):
    cfg = job_config(*ADVERSARIAL, "model=unet", "train=default")
    fields = profile_model(TinySegmenter(), JobSpec.from_config(cfg), CLASSES, 3, CPU, FAST, 1,
                           train_cfg=cfg.train, ignore_index=IGNORE, cache_dir=tmp_path, peak_flops=False,
                           windows=NO_ENERGY)
    assert "adversary_params_total" not in fields
    assert fields["train_step_covers"].startswith("the whole model")


@pytest.mark.cuda
def test_on_cuda_the_forward_peak_leaves_the_adversary_off_the_device(tmp_path):
    # A LargeFOV adversary (megabytes of weights) beside a segmentor of a few hundred parameters at
    # 16x16: the allocator's forward peak would hold the adversary's weights were it on the device.
    torch.manual_seed(0)
    model = AdversarialSegmentor(TinySegmenter(), Adversary(CLASSES, "product", field_of_view="large"))
    adversary = model_size(model.adversary)
    cfg = job_config(*ADVERSARIAL, "device=cuda")
    device = torch.device("cuda")
    fields = profile_model(model, JobSpec.from_config(cfg), CLASSES, 3, device, FAST, 1, train_cfg=cfg.train,
                           ignore_index=IGNORE, cache_dir=tmp_path, peak_flops=False, windows=NO_ENERGY)
    assert adversary.size_mib > 1 and fields["peak_memory_mib"] < adversary.size_mib / 2
    assert fields["train_weights_mib"] == pytest.approx(model_size(model.segmentor).size_mib + adversary.size_mib)
    assert next(model.adversary.parameters()).device.type == "cuda"   # it trained there
