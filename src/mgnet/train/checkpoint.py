"""Checkpoints: written atomically, read with ``torch.load(..., weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts only, so the
safe loader accepts it: ``model``, ``optimizer``, ``scheduler`` (state dicts), ``epoch``
(epochs completed), ``model_ema`` (the averaged weights, or None), ``num_classes``
(the classes the model was built for; they can differ from the dataset table, e.g. for
an image folder), ``rng`` (python, numpy, torch and CUDA generator states), ``config``
(the :class:`~mgnet.train.config.TrainConfig` as a dict), ``best`` (best validation
accuracy so far and its epoch), ``partial`` (where an interrupted epoch stopped, or None)
and ``format`` (a tag that tells a checkpoint of this package from any other file).
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (safe loader only).

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` (a
    ``ValueError``) with a one-line message for a truncated, corrupt or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no such file {str(path)!r}")
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
        text = str(failure).strip()
        name = type(failure).__name__
        reason = f"{name}: {text.splitlines()[0]}" if text else name
        raise CheckpointError(
            f"checkpoint: {str(path)!r} is truncated or not a checkpoint "
            f"of this package ({reason[:160]})"
        ) from None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint: {str(path)!r} is not a checkpoint of this "
            f"package (expected format {CHECKPOINT_FORMAT!r})"
        )
    return state


def rng_state() -> dict[str, Any]:
    """Every generator a run draws from, as safe-loadable values."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
