"""Files a training run writes: the weights checkpoint, and the training state it resumes from.

Both hold tensors and plain values only, so ``torch.load(path, weights_only=True)`` reads them and
loading one never runs code from the file. Both are written atomically (bench/atomic.py), so a crash
leaves either the previous file or the new one, never half a file.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.atomic import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
STATE_NAME = "train_state.pt"
STATE_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, not a weights file, or does not fit the model."""


def atomic_save(payload: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically (bench/atomic.py): nothing partial survives a failure."""
    return atomic_write(path, lambda partial: torch.save(payload, partial))


def cpu_state(module_or_dict: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a state dict (so a saved or kept state never aliases live weights)."""
    state = module_or_dict.state_dict() if isinstance(module_or_dict, nn.Module) else module_or_dict
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def save_checkpoint(model: nn.Module, path: str | Path, **metadata: str | int | float) -> Path:
    """Write the weights as ``{"format", "model_class", "state_dict", "metadata"}``."""
    return atomic_save({"format": CHECKPOINT_FORMAT, "model_class": type(model).__name__,
                        "state_dict": cpu_state(model), "metadata": dict(metadata)}, path)


def _read(path: Path, what: str, remedy: str) -> Any:
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist; {remedy}")
    if not path.is_file():
        raise CheckpointError(f"{what} {path} is a directory, not a file; {remedy}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (truncated zip, pickle refused by weights_only, ...)
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"{what} {path} cannot be read as a weights-only file "
                              f"({type(exc).__name__}: {first_line}); it is corrupt or not written by "
                              f"segbench: {remedy}") from exc


def load_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model``; returns its metadata.

    Raises CheckpointError (naming the file and what to do) when the file is missing, corrupt,
    not a weights-only file, or holds weights of another model.
    """
    path = Path(path)
    remedy = (f"pass the {CHECKPOINT_NAME} written by a mode=accuracy run (in its run directory), "
              f"or re-run the training (mode=accuracy) to write one")
    payload = _read(path, "checkpoint", remedy)
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} holds no state_dict; it was not written by "
                              f"segbench: re-run the training (mode=accuracy) to write one")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} (a {payload.get('model_class', 'model')}) does not "
                              f"match this {type(model).__name__}: use the model, model options and "
                              f"num_classes it was trained with. {exc}") from exc
    return dict(payload.get("metadata", {}))


# ---- training state ------------------------------------------------------------------------

def rng_states() -> dict[str, Any]:
    """Every random generator a training step draws from (augmentation, dropout, shuffling)."""
    python_state = random.getstate()
    _, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "python": [python_state[0], list(python_state[1]), python_state[2]],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = states["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    """Write a training state (see ``bench.train``) with the format number it is read back with."""
    return atomic_save({"format": STATE_FORMAT, **state}, path)


def load_state(path: str | Path) -> dict[str, Any] | None:
    """The training state at ``path``, or None when there is none to resume from."""
    path = Path(path)
    if not path.exists():
        return None
    state = _read(path, "training state", "delete it to start the training from step 0")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"training state {path} has an unknown format; delete it to start the "
                              f"training from step 0")
    return state
