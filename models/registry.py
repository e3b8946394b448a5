"""Model registry: builders registered by name, one factory that lists the options on a typo.

Follows timm/torchvision: each architecture module decorates a small builder function with
``@register_model``; ``create_model(name, num_classes=..., **kwargs)`` builds it.
"""
from __future__ import annotations

import difflib
from typing import Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_ALIASES: dict[str, str] = {}


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered; the message lists the known ones."""


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None,
                   aliases: tuple[str, ...] = ()):
    """Register ``fn`` under ``name`` (default: the function's name) and any ``aliases``."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
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
    """Build the registered model ``name`` returning N x num_classes x H x W logits."""
    return _BUILDERS[resolve_name(name)](num_classes=num_classes, in_channels=in_channels, **kwargs)
