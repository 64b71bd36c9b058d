"""Checkpoints: written atomically, read with ``torch.load(..., weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts only, so the
safe loader accepts it: ``model``, ``optimizer``, ``scheduler`` (state dicts), ``epoch``
(epochs completed), ``model_ema`` (the averaged weights, or None), ``num_classes``
(the classes the model was built for; they can differ from the dataset table, e.g. for
an image folder), ``rng`` (python, numpy, torch and CUDA generator states), ``config``
(the :class:`~mgnet.train.config.TrainConfig` as a dict), ``best`` (best validation
accuracy so far and its epoch), ``partial`` (where an interrupted epoch stopped, or None)
``format`` (a tag that tells a checkpoint of this package from any other file) and
``kind`` (``"run"`` for ``checkpoint.pt``, ``"weights"`` for ``best.pt``).

The generator states are stored as plain ``bytes``, so they stay on the host whatever
``map_location`` the file is read with (a state read onto a GPU could not be given back
to ``torch.set_rng_state``, which takes CPU byte tensors only).
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgnet.errors import first_line, quote
from mgnet.train.rundir import atomic_file

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
]

CHECKPOINT_FORMAT = "mgnet-train-checkpoint/1"


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of this package."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same directory,
    flushed to disk, then ``os.replace``; a crash leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as fh:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, fh)
    return path


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", strict: bool = True
) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (safe loader only).

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` (a
    ``ValueError``) with a one-line message for a truncated, corrupt or foreign file.
    ``strict=False`` accepts any dict the safe loader reads (e.g. a bare state dict), for
    callers that tell the two apart themselves.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint: {quote(str(path))} is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no such file {quote(str(path))}")
    # warnings are held back until the file has loaded: junk bytes can make the unpickler
    # warn about a "protocol" before it fails, which would only clutter the one-line error
    failure: Exception | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # junk bytes fail in many ways: struct.error, IndexError, ...
            failure = e
    if failure is not None:
        name = type(failure).__name__
        reason = f"{name}: {first_line(failure)}" if str(failure).strip() else name
        raise CheckpointError(
            f"checkpoint: {quote(str(path))} is truncated or not a checkpoint "
            f"of this package ({reason[:160]})"
        ) from None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not isinstance(state, dict) or (strict and state.get("format") != CHECKPOINT_FORMAT):
        raise CheckpointError(
            f"checkpoint: {quote(str(path))} is not a checkpoint of this "
            f"package (expected format {CHECKPOINT_FORMAT!r})"
        )
    return state


def rng_state() -> dict[str, Any]:
    """Every generator a run draws from, as safe-loadable host values (bytes, ints)."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": np_state["state"]["key"].astype("<u4").tobytes(),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": _to_bytes(torch.get_rng_state()),
        "cuda": (
            [_to_bytes(s) for s in torch.cuda.get_rng_state_all()]
            if torch.cuda.is_available()
            else []
        ),
    }


def _to_bytes(state: torch.Tensor) -> bytes:
    return state.detach().cpu().numpy().tobytes()


def _cpu_state(value: bytes | torch.Tensor) -> torch.Tensor:
    """A generator state as the CPU uint8 tensor torch takes: from bytes, or from the
    tensor an older checkpoint stored (read onto whatever device)."""
    if isinstance(value, (bytes, bytearray)):
        return torch.frombuffer(bytearray(value), dtype=torch.uint8)
    return value.detach().to("cpu", torch.uint8)


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    key = n["key"]
    key = (
        np.frombuffer(key, dtype="<u4").astype(np.uint32)
        if isinstance(key, (bytes, bytearray))
        else key.detach().cpu().numpy().astype(np.uint32)
    )
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": key, "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(_cpu_state(state["torch"]))
    if state["cuda"] and torch.cuda.is_available():
        cuda = [_cpu_state(s) for s in state["cuda"][: torch.cuda.device_count()]]
        torch.cuda.set_rng_state_all(cuda)
