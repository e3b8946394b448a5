"""One training update: the optimizers, mixed precision, and the two kinds of step.

``SupervisedStep`` is one cross-entropy update of the whole model; ``AdversarialStep`` is Luc et
al. 2016's alternating update of an adversary and a segmentor. Both run their forward passes
under the job's precision (``Precision``: autocast, and gradient scaling for fp16) and are used
unchanged by the training loop (``bench.train``) and by the training-step instrument
(``bench.measure.training``), so what is measured is what is trained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

OPTIMIZERS = ("adam", "sgd", "rmsprop")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message gives the step and the value."""


@dataclass(frozen=True)
class Precision:
    """How a step computes: autocast to ``dtype`` (None: fp32), with gradient scaling for fp16,
    whose narrow range would flush small gradients to zero (torch.amp's recipe)."""

    device_type: str = "cpu"
    dtype: torch.dtype | None = None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)


def make_optimizer(model: nn.Module, train_cfg: Mapping[str, Any], lr: float) -> torch.optim.Optimizer:
    """The train config's optimizer over ``model``'s parameters.

    With ``bias_lr_factor`` != 1 biases get their own parameter group whose ``lr_scale`` the
    schedule multiplies in (FCN's solvers double the biases' learning rate).
    """
    name = train_cfg.get("optimizer", "adam")
    weight_decay = float(train_cfg.get("weight_decay") or 0.0)
    bias_factor = float(train_cfg.get("bias_lr_factor") or 1.0)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for _, p in named], "lr_scale": 1.0}]
    if bias_factor != 1.0:
        biases = [p for n, p in named if n.endswith("bias")]
        groups = [{"params": [p for n, p in named if not n.endswith("bias")], "lr_scale": 1.0},
                  {"params": biases, "lr_scale": bias_factor}]
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    optional = {key: float(train_cfg[key]) for key in ("eps",) if train_cfg.get(key) is not None}
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, **optional)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(train_cfg.get("momentum") or 0.0),
                               weight_decay=weight_decay)
    if name == "rmsprop":
        if train_cfg.get("alpha") is not None:
            optional["alpha"] = float(train_cfg.alpha)
        return torch.optim.RMSprop(groups, lr=lr, momentum=float(train_cfg.get("momentum") or 0.0),
                                   weight_decay=weight_decay, **optional)
    raise ValueError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def check_finite(loss: torch.Tensor, step: int, what: str = "loss") -> float:
    """The loss as a float; NonFiniteLossError when it is NaN or infinite."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(f"{what} became {value} at step {step}; lower train.lr or check "
                                 f"the model and data for NaN/inf values")
    return value


class Optimized:
    """An optimizer, the base learning rate the schedule scales, and its gradient scaler."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, precision: Precision):
        self.optimizer, self.base_lr, self.scaler = optimizer, base_lr, precision.scaler()

    def set_lr(self, factor: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * factor * group.get("lr_scale", 1.0)

    def apply(self, loss: torch.Tensor) -> None:
        """Backward from ``loss`` and one optimizer step (the scaler skips steps with inf/NaN
        gradients under fp16 and adjusts its scale; disabled, it is a plain backward and step)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])


class SupervisedStep:
    """One cross-entropy update of the whole model."""

    def __init__(self, model: nn.Module, train_cfg: Mapping[str, Any], criterion: nn.Module,
                 precision: Precision = Precision()):
        self.model, self.criterion, self.precision = model, criterion, precision
        lr = float(train_cfg.lr)
        self.optimizers = [Optimized(make_optimizer(model, train_cfg, lr), lr, precision)]

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, step: int) -> dict[str, float]:
        with self.precision.autocast():
            loss = self.criterion(self.model(image), mask)
        value = check_finite(loss, step)
        self.optimizers[0].apply(loss)
        return {"loss": value}


class _Frozen:
    """Within the block, ``module``'s parameters get no gradients (the segmentor's update does
    not need the adversary's)."""

    def __init__(self, module: nn.Module):
        self.parameters = [p for p in module.parameters() if p.requires_grad]

    def __enter__(self):
        for parameter in self.parameters:
            parameter.requires_grad_(False)

    def __exit__(self, *exc):
        for parameter in self.parameters:
            parameter.requires_grad_(True)


class AdversarialStep:
    """Luc et al. 2016: ``adversary_steps`` adversary updates, then one segmentor update.

    Adversary: BCE(a(x, onehot(y)), 1) + BCE(a(x, s(x)), 0), with s(x) detached.
    Segmentor: CE(s(x), y) + lambda_adv * BCE(a(x, s(x)), 1) -- the "flipped" target, which gives
    stronger gradients than minimising -BCE(a(x, s(x)), 0) while the adversary is winning.

    Ignored pixels are zeroed in both the one-hot ground truth and the probabilities: the ground
    truth is unknown there, so neither map may carry information the adversary could use to tell
    them apart (an all-zero pixel never occurs elsewhere in a one-hot map, but it occurs in both).
    One segmentor forward pass serves both updates, as in pix2pix; the adversary is re-run after
    its own update for the segmentor's term. Each network has its own gradient scaler, as each
    has its own backward pass.
    """

    def __init__(self, model: nn.Module, train_cfg: Mapping[str, Any], criterion: nn.Module,
                 num_classes: int, ignore_index: int, precision: Precision = Precision()):
        adversarial = train_cfg.adversarial
        self.segmentor, self.adversary, self.criterion = model.segmentor, model.adversary, criterion
        self.num_classes, self.ignore_index, self.precision = num_classes, ignore_index, precision
        encoding = adversarial.get("encoding")
        if encoding is not None and getattr(self.adversary, "encoding", encoding) != encoding:
            raise ValueError(f"train.adversarial.encoding={encoding!r} but the model's adversary uses "
                             f"{self.adversary.encoding!r}: set model.encoding to match (or the reverse)")
        self.lambda_adv = float(adversarial.lambda_adv)
        self.adversary_steps = int(adversarial.get("adversary_steps", 1))
        lr = float(train_cfg.lr)
        adversary_lr = float(adversarial.get("adversary_lr") or lr)
        self.optimizers = [Optimized(make_optimizer(self.segmentor, train_cfg, lr), lr, precision),
                           Optimized(make_optimizer(self.adversary, train_cfg, adversary_lr), adversary_lr,
                                     precision)]

    def _labelled(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(one-hot N x C x H x W with ignored pixels zeroed, N x 1 x H x W labelled-pixel mask)."""
        valid = (mask != self.ignore_index) & (mask >= 0) & (mask < self.num_classes)
        onehot = F.one_hot(torch.where(valid, mask, 0), self.num_classes).permute(0, 3, 1, 2)
        valid = valid.unsqueeze(1)
        return onehot.float() * valid, valid

    def _bce(self, logits: torch.Tensor, target: float) -> torch.Tensor:
        logits = logits.reshape(-1).float()   # adversaries give (N,) or (N, 1)
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, step: int) -> dict[str, float]:
        segmentor, adversary = self.optimizers
        onehot, valid = self._labelled(mask)
        with self.precision.autocast():
            logits = self.segmentor(image)
            probs = F.softmax(logits.float(), dim=1) * valid
        fake = probs.detach()

        for _ in range(self.adversary_steps):
            with self.precision.autocast():
                # segmentor_probs: the "scaling" encoding softens the ground truth with them.
                adversary_loss = (self._bce(self.adversary(image, onehot, segmentor_probs=fake), 1.0)
                                  + self._bce(self.adversary(image, fake), 0.0))
            adversary_value = check_finite(adversary_loss, step, "adversary loss")
            adversary.apply(adversary_loss)

        with _Frozen(self.adversary):
            with self.precision.autocast():
                loss = (self.criterion(logits, mask)
                        + self.lambda_adv * self._bce(self.adversary(image, probs), 1.0))
            value = check_finite(loss, step)
            segmentor.apply(loss)
        return {"loss": value, "adversary_loss": adversary_value}


def is_adversarial(model: nn.Module, train_cfg: Mapping[str, Any]) -> bool:
    """True for a model with ``.segmentor`` and ``.adversary`` under a config with ``adversarial``;
    one without the other is a configuration mistake."""
    model_has = hasattr(model, "segmentor") and hasattr(model, "adversary")
    config_has = train_cfg.get("adversarial") is not None
    if model_has and not config_has:
        raise ValueError(f"{type(model).__name__} has an adversary: train it with train=adversarial "
                         f"(the train config needs an `adversarial` section; a profile job trains one "
                         f"step too, which measure.train_step=false leaves out)")
    if config_has and not model_has:
        raise ValueError(f"train=adversarial needs a model with .segmentor and .adversary "
                         f"(model=adversarial), got {type(model).__name__}")
    return model_has


def make_update(model: nn.Module, train_cfg: Mapping[str, Any], criterion: nn.Module, num_classes: int,
                ignore_index: int, precision: Precision = Precision()) -> SupervisedStep | AdversarialStep:
    """The update ``model`` trains with: Luc et al.'s alternating one when it has an adversary."""
    if is_adversarial(model, train_cfg):
        return AdversarialStep(model, train_cfg, criterion, num_classes, ignore_index, precision)
    return SupervisedStep(model, train_cfg, criterion, precision)
