"""The one place that turns a device request into a :class:`torch.device`.

``resolve_device(None)`` and ``resolve_device("auto")`` pick CUDA when it is available and
the CPU otherwise; an explicit CUDA device that this machine lacks is a one-line
``ValueError`` naming the argument and what is accepted here.
"""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or ``None``) is ``cuda`` when available, else ``cpu``; ``cpu``, ``cuda`` and
    ``cuda:N`` are checked against this machine."""
    if isinstance(name, torch.device):
        name = str(name)
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str):
        raise TypeError(f"device: expected a string or torch.device, got {type(name).__name__}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device: {name!r} requested but no CUDA device is available; "
                "accepted here: auto, cpu"
            )
        index = name[5:] if name.startswith("cuda:") else ""
        if name not in ("cuda",) and not index.isdigit():
            raise ValueError(f"device: {name[:200]!r} is not one of auto, cpu, cuda, cuda:N")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(
                f"device: {name!r} does not exist; this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device(name)
    if name != "cpu":
        raise ValueError(f"device: {name[:200]!r} is not one of auto, cpu, cuda, cuda:N")
    return torch.device(name)
