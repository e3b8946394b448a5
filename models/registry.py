"""Model registry: builders registered by name, one factory that lists the options on a typo.

Follows timm/torchvision: each architecture module decorates a small builder function with
``@register_model``; ``create_model(name, num_classes=..., **kwargs)`` builds it.
"""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_ALIASES: dict[str, str] = {}


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered; the message lists the known ones."""


def register_model(fn: Callable[..., nn.Module] | str | None = None, *, name: str | None = None,
                   aliases: tuple[str, ...] = ()):
    """Register a builder under ``name`` (default: the function's name) and any ``aliases``.

    Every spelling users write works: bare ``@register_model``, ``@register_model("name")`` and
    ``@register_model(name="name")``; a builder may return N x C x H x W logits or a dict holding
    them under ``"out"`` (torchvision's segmentation models do; ``create_model`` unwraps it).
    """
    if isinstance(fn, str):  # @register_model("name"): the name came positionally
        if name is not None:
            raise TypeError(f"register_model got a name twice ({fn!r} and name={name!r}); give one")
        fn, name = None, fn
    if fn is not None and not callable(fn):
        raise TypeError(f"register_model takes a builder function or a model name (str), got "
                        f"{type(fn).__name__} {fn!r}; write @register_model, @register_model(\"name\") "
                        f"or @register_model(name=\"name\")")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"register_model's name must be a str, got {type(name).__name__} {name!r}")

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if not callable(builder):
            raise TypeError(f"@register_model({name!r}) decorates a builder function, "
                            f"not {type(builder).__name__} {builder!r}")
        key = name or builder.__name__
        if key in _BUILDERS or key in _ALIASES:
            raise ValueError(f"model {key!r} is registered twice")
        _BUILDERS[key] = builder
        for alias in aliases:
            _ALIASES[alias] = key
        return builder

    return decorate(fn) if fn is not None else decorate


def list_models(include_aliases: bool = False) -> list[str]:
    names = list(_BUILDERS) + (list(_ALIASES) if include_aliases else [])
    return sorted(names)


def import_plugins(modules) -> None:
    """Import the ``plugins`` modules: importing one registers its models (``@register_model``)."""
    for module in modules or ():
        importlib.import_module(module)


def resolve_name(name: str) -> str:
    """Canonical name for ``name`` (aliases resolved); UnknownModelError if there is none."""
    if name in _BUILDERS:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    known = list_models(include_aliases=True)
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(f"unknown model {name!r}.{hint} Known models: {', '.join(known)}")


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build the registered model ``name`` returning N x num_classes x H x W logits.

    A model whose forward returns a dict (``{"out": logits, ...}``, as torchvision's do) gets a
    forward hook that returns ``out`` alone, so profiling, training, evaluation, ``torch.compile``
    and the ONNX exporter all see a tensor. A hook rather than a wrapper module keeps the model's
    class and state-dict keys (checkpoints) unchanged.
    """
    model = _BUILDERS[resolve_name(name)](num_classes=num_classes, in_channels=in_channels, **kwargs)
    model.register_forward_hook(_logits_only)
    return model


def _logits_only(module: nn.Module, args, output):
    """Forward hook: ``output["out"]`` for a dict output (other entries, e.g. "aux", are dropped)."""
    if not isinstance(output, Mapping):
        return None  # a tensor already: keep it
    if "out" not in output:
        raise TypeError(f"{type(module).__name__} returned a dict with keys {list(output)}; segbench "
                        f"takes the logits from its \"out\" entry: return a tensor or {{\"out\": logits}}")
    return output["out"]
