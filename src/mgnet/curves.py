"""Training curves of a run folder written by ``mgnet train``: loss, accuracy and learning
rate per epoch, read from its ``metrics.jsonl`` and drawn to a PNG (``mgnet plot``).

Needs no torch; drawing needs matplotlib (``pip install 'torch-mgnet[plot]'``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from mgnet.errors import quote
from mgnet.plotting import check_png_path, figure, save_png

__all__ = ["best_epoch", "plot_curves", "read_metrics"]

METRICS = "metrics.jsonl"


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch rows of ``run_dir/metrics.jsonl``, in order.

    A missing folder or file, an empty file, or a line that is not a complete JSON object
    with an ``epoch`` (a run stopped while writing it) is a one-line error that names the
    file and the line."""
    folder = Path(run_dir)
    if not folder.is_dir():
        error = NotADirectoryError if folder.exists() else FileNotFoundError
        what = "is not a folder" if folder.exists() else "does not exist"
        raise error(f"run: {quote(str(run_dir))} {what}; expected a run folder")
    path = folder / METRICS
    name = quote(str(path))
    if not path.is_file():
        raise FileNotFoundError(f"run: no {METRICS} in {quote(str(run_dir))}; not a run folder")
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            raise ValueError(
                f"run: line {number} of {name} is not a complete epoch record (a run "
                "stopped while writing it?)"
            )
        rows.append(row)
    if not rows:
        raise ValueError(f"run: {name} is empty: the run has not finished an epoch yet")
    return rows


def best_epoch(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row of the epoch whose weights ``best.pt`` holds (the last one marked best:
    ties go to the later epoch), or None when no row is marked."""
    marked = [row for row in rows if row.get("best")]
    return marked[-1] if marked else None


def _series(rows: list[dict[str, Any]], key: str) -> list[float]:
    values = [row.get(key) for row in rows]
    return [float(v) if isinstance(v, (int, float)) else math.nan for v in values]


def plot_curves(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    rows: list[dict[str, Any]] | None = None,
) -> Path:
    """Draw the loss, the accuracy and the learning rate per epoch of the run in
    ``run_dir`` to ``out`` (default ``run_dir/curves.png``); returns the path written.

    ``rows``: the run's :func:`read_metrics`, when already read. The best validation
    epoch (the model ``best.pt`` holds) is marked."""
    out = Path(run_dir) / "curves.png" if out is None else out
    check_png_path(out)
    rows = read_metrics(run_dir) if rows is None else rows
    epochs = [row["epoch"] for row in rows]
    best = best_epoch(rows)
    config_path = Path(run_dir) / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        config = {}
    title = f"{Path(run_dir).resolve().name}"
    if isinstance(config, dict) and "model" in config:
        title += f": {config.get('model')} on {config.get('data')}"

    fig = figure(13, 3.8)
    loss, acc, lr = fig.subplots(1, 3)
    for ax, keys, label in (
        (loss, ("train_loss", "val_loss"), "loss"),
        (acc, ("train_accuracy", "val_accuracy"), "accuracy %"),
        (lr, ("lr",), "learning rate"),
    ):
        for key in keys:
            ax.plot(epochs, _series(rows, key), "o-", ms=3, label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    if best is not None:
        val = _series([best], "val_accuracy")
        acc.plot([best["epoch"]], val, "*", ms=12, color="black",
                 label=f"best val (epoch {best['epoch']})")  # fmt: skip
    loss.legend(fontsize=8)
    acc.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, out)
