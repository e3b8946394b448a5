"""Adversarial training for segmentation: Luc, Couprie, Chintala, Verbeek, "Semantic Segmentation
using Adversarial Networks", NIPS 2016 Workshop on Adversarial Training (arXiv:1611.08408).

A segmentor s(x) is trained with multi-class cross-entropy plus lambda times a binary
cross-entropy from an adversary a(x, y) that tells ground-truth label maps (one-hot) from the
segmentor's class probabilities, given the image; adversary and segmentor are updated in turn.
``create_model("adversarial", ...)`` returns an :class:`AdversarialSegmentor` whose ``forward`` is
the segmentor's (so the harness profiles it like any segmentor); training code uses its
``.segmentor`` and ``.adversary``.

What rests on what (the paper's full text could not be consulted while writing this module; the
sources read were its abstract, the shortscience.org summary of arXiv:1611.08408 and the public
re-implementations named below):

- The three input encodings of a label map y (sec. 3.2): "basic" (the C-channel map itself),
  "product" (each class map multiplied with each RGB channel: 3C channels) and "scaling" (the
  ground-truth one-hot map softened: the true class's value raised to at least tau = 0.9, the other
  classes scaled down). Implemented as y_il = max(tau, s_il) for the true class l and
  y_ij = s_ij (1 - y_il) / (1 - s_il) for j != l, with s the segmentor's own probabilities for the
  same image, so each pixel still sums to 1; predicted maps are used as they are (this exact
  formula is the paper's as recalled and as specified for segbench, not re-read in the text). The
  summary adds that for "basic" the paper found leaving the RGB image out did not change the results.
- The four Pascal VOC adversaries, LargeFOV, LargeFOV-light, SmallFOV and SmallFOV-light
  (``field_of_view`` large | small, ``light`` true for the narrower ones): the layer lists in
  ``_LAYERS`` are those of the Chainer re-implementation
  https://github.com/oyam/Semantic-Segmentation-using-Adversarial-Networks, files
  models/discriminators/largefov.py, largefov_light.py, smallfov.py and smallfov_light.py, whose
  product-encoding input (3C channels), convolution widths and kernels, 2x2 stride-2 max-pools,
  ReLU after every convolution but the last and average over locations are followed here. The
  PyTorch re-implementation https://github.com/nexus-kgp/adsemseg (models/discriminator.py) has
  only LargeFOV, with the same layers. The light variants keep the kernels and halve the widths
  after the first pool, so they keep the fields of view. The fields of view, 34 x 34 (LargeFOV)
  and 18 x 18 (SmallFOV) label-map pixels, are the figures recalled from the paper's text and
  follow from the layer lists (tests/test_models_dense_unet.py checks all four by a gradient probe).

What is assumed (the nearest faithful reading where the paper could not be checked):

- The image path for "basic" and "scaling": the RGB image is concatenated with the encoded label
  map as extra input channels. That equals an image branch and a label-map branch, each one
  first-layer convolution, fused by addition, and keeps the fields of view above; the paper's
  Stanford Background adversary (per a third-party re-implementation, albertbou's
  AdversarialSemanticSegmentation, not re-read for this version) instead fuses a 5x5 label
  branch (C -> 64) with a two-layer 5x5 image branch (3 -> 16 -> 64). "product" already contains
  the image, so it has no image path. ``use_image=False`` drops the path (the finding for "basic").
- The last convolution has one output, a logit, where the re-implementations' have two (real /
  fake; a two-way softmax is a sigmoid of the logit difference), and the per-location logits are
  averaged into one logit per image. No normalisation layers. Convolutions are padded by
  kernel // 2, so a 1x1 convolution keeps the grid (oyam's pads its 1x1 convolutions by 1, which
  grows each map by a zero-input border that then enters the average) and any input of at least
  4 x 4 (two poolings) works.
- In "scaling", s is detached: the softened ground truth is a fixed input to the adversary, so the
  real-pair term stays independent of the segmentor's parameters, as the paper's segmentor
  objective treats it (recalled: only the fake-pair term is kept for the segmentor update).
"""
from __future__ import annotations

import torch
from torch import nn

from models.common import check_input_size
from models.registry import create_model, register_model

ENCODINGS = ("basic", "product", "scaling")

# (kernel, output channels) per convolution, "M" a 2x2 max-pool; the last convolution gives the logit.
# Keyed by (field_of_view, light): LargeFOV, LargeFOV-light, SmallFOV, SmallFOV-light.
_LAYERS = {
    ("large", False): [(3, 96), (3, 128), (3, 128), "M", (3, 256), (3, 256), "M", (3, 512), (3, 1)],
    ("large", True): [(3, 96), (3, 128), (3, 128), "M", (3, 128), (3, 128), "M", (3, 256), (3, 1)],
    ("small", False): [(3, 96), (1, 128), "M", (3, 256), (1, 256), "M", (3, 512), (1, 1)],
    ("small", True): [(3, 96), (1, 128), "M", (3, 128), (1, 128), "M", (3, 256), (1, 1)],
}
FIELDS_OF_VIEW = ("large", "small")


def encoded_channels(encoding: str, num_classes: int, image_channels: int = 3) -> int:
    """Channels of :func:`encode`'s output: C for "basic" and "scaling", 3C for "product"."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    return num_classes * image_channels if encoding == "product" else num_classes


def encode(image: torch.Tensor, probs_or_onehot: torch.Tensor, encoding: str, tau: float = 0.9,
           segmentor_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Encode an N x C x H x W label map (class probabilities or one-hot) for the adversary.

    ``segmentor_probs`` marks ``probs_or_onehot`` as ground truth to soften under "scaling": pass
    the segmentor's probabilities s for the same images. Predictions are never rescaled.
    """
    encoded_channels(encoding, probs_or_onehot.shape[1])          # validates the name
    if image.shape[-2:] != probs_or_onehot.shape[-2:]:
        raise ValueError(f"image {tuple(image.shape[-2:])} and label map "
                         f"{tuple(probs_or_onehot.shape[-2:])} must have the same size")
    if encoding == "product":
        # Channel c * image_channels + k holds class map c times image channel k.
        return (probs_or_onehot.unsqueeze(2) * image.unsqueeze(1)).flatten(1, 2)
    if encoding == "scaling" and segmentor_probs is not None:
        return _scale_ground_truth(probs_or_onehot, segmentor_probs.detach(), tau)
    return probs_or_onehot


def _scale_ground_truth(onehot: torch.Tensor, s: torch.Tensor, tau: float) -> torch.Tensor:
    """y_il = max(tau, s_il) for the true class l; y_ij = s_ij (1 - y_il) / (1 - s_il) otherwise."""
    s_true = (s * onehot).sum(dim=1, keepdim=True)
    y_true = s_true.clamp_min(tau)
    # Where s_il = 1 the other s_ij are 0 and so are the y_ij; the clamp only avoids 0 / 0.
    others = s * (1 - y_true) / (1 - s_true).clamp_min(torch.finfo(s.dtype).tiny)
    return onehot * y_true + (1 - onehot) * others


class Adversary(nn.Module):
    """Luc et al.'s Pascal VOC adversary: ``forward(image, label_map)`` gives N real/fake logits.

    ``field_of_view`` "large" or "small" and ``light`` pick LargeFOV, LargeFOV-light, SmallFOV or
    SmallFOV-light.
    """

    min_input_size = 4   # two 2x2 max-pools

    def __init__(self, num_classes: int, encoding: str = "product", field_of_view: str = "large",
                 tau: float = 0.9, image_channels: int = 3, use_image: bool | None = None,
                 light: bool = False):
        super().__init__()
        if field_of_view not in FIELDS_OF_VIEW:
            raise ValueError(f"field_of_view must be one of {FIELDS_OF_VIEW}, got {field_of_view!r}")
        if not isinstance(light, bool):   # bool("false") would silently pick the light widths
            raise TypeError(f"light must be true or false, got {light!r}")
        self.encoding, self.tau = encoding, tau
        self.use_image = encoding != "product" if use_image is None else use_image
        channels = encoded_channels(encoding, num_classes, image_channels) + (image_channels if self.use_image else 0)
        layers: list[nn.Module] = []
        for spec in _LAYERS[field_of_view, light]:
            if spec == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            kernel, width = spec
            layers += [nn.Conv2d(channels, width, kernel, padding=kernel // 2), nn.ReLU(inplace=True)]
            channels = width
        self.layers = nn.Sequential(*layers[:-1])    # no ReLU on the logit

    def score_map(self, image: torch.Tensor, label_map: torch.Tensor,
                  segmentor_probs: torch.Tensor | None = None) -> torch.Tensor:
        """Per-location logits N x 1 x H/4 x W/4, each seeing one field of view of the label map."""
        check_input_size(image, self.min_input_size, "adversary")
        x = encode(image, label_map, self.encoding, self.tau, segmentor_probs)
        if self.use_image:
            x = torch.cat([x, image], dim=1)
        return self.layers(x)

    def forward(self, image: torch.Tensor, label_map: torch.Tensor,
                segmentor_probs: torch.Tensor | None = None) -> torch.Tensor:
        """One logit per image (N,): positive means "ground truth". ``label_map`` is the
        segmentor's softmax or a one-hot ground truth; see :func:`encode` for ``segmentor_probs``."""
        return self.score_map(image, label_map, segmentor_probs).mean(dim=(1, 2, 3))


class AdversarialSegmentor(nn.Module):
    """A segmentor with its adversary; ``forward`` is the segmentor's, for profiling and inference."""

    def __init__(self, segmentor: nn.Module, adversary: Adversary):
        super().__init__()
        self.segmentor = segmentor
        self.adversary = adversary
        self.min_input_size = max(getattr(segmentor, "min_input_size", 1), adversary.min_input_size)
        if hasattr(segmentor, "decoder_keeps"):  # bench/measure/decoder.py: the segmentor's decoder
            self.decoder_keeps = {f"segmentor.{name}": kind for name, kind in segmentor.decoder_keeps.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, "adversarial")
        return self.segmentor(x)


@register_model
def adversarial(num_classes: int, in_channels: int = 3, segmentor: str = "dilated_frontend",
                encoding: str = "product", field_of_view: str = "large", tau: float = 0.9,
                light: bool = False, **segmentor_kwargs) -> AdversarialSegmentor:
    """Luc et al. 2016: ``segmentor`` (any registered model, built now by name) plus its adversary
    (``field_of_view`` and ``light``: LargeFOV, LargeFOV-light, SmallFOV or SmallFOV-light)."""
    return AdversarialSegmentor(
        create_model(segmentor, num_classes=num_classes, in_channels=in_channels, **segmentor_kwargs),
        Adversary(num_classes, encoding, field_of_view, tau, image_channels=in_channels, light=light))
