"""Drawing to PNG files with matplotlib's object API: a :class:`~matplotlib.figure.Figure`
with its own Agg canvas, never ``pyplot`` and never a switch of the global backend, so a
program that uses mgnet keeps its own matplotlib set-up.

matplotlib is optional (``pip install 'torch-mgnet[plot]'``); this module imports it only
when a figure is made.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mgnet.errors import MissingDependency, quote

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["check_png_path", "figure", "save_png"]

INSTALL_HINT = "pip install 'torch-mgnet[plot]'"


def check_png_path(path: str | os.PathLike, name: str = "out") -> Path:
    """``path`` as a PNG file to write, or a one-line ValueError naming ``name``: it must end
    in ``.png``, must not be a folder, and its folder must exist. Cheap: call it before the
    work whose result is drawn."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{name}: {quote(str(path))} is a folder; expected a .png file name")
    if p.suffix.lower() != ".png":
        raise ValueError(f"{name}: expected a .png file name, got {quote(str(path))}")
    if not p.parent.is_dir():
        raise ValueError(f"{name}: the folder of {quote(str(path))} does not exist")
    return p


def figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A new figure of ``width`` x ``height`` inches on its own Agg canvas.

    Raises :class:`~mgnet.errors.MissingDependency` (an ImportError that names the install
    command) when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingDependency(f"drawing needs matplotlib ({INSTALL_HINT})") from e
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | os.PathLike, name: str = "out") -> Path:
    """Write ``fig`` to ``path`` (checked by :func:`check_png_path`) and return the path."""
    p = check_png_path(path, name)
    fig.savefig(p)
    return p
