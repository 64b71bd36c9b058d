"""Optional metric writers of a run: TensorBoard scalars (``--tensorboard``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["tensorboard_writer"]


def tensorboard_writer(log_dir: str | Path) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` writing to ``log_dir``; a one-line
    ``ValueError`` when the tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError(
            "tensorboard: writing TensorBoard scalars needs the tensorboard package "
            "(pip install tensorboard); or leave --tensorboard out"
        ) from None
    return SummaryWriter(log_dir=str(log_dir))
