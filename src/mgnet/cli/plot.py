"""``mgnet plot``: the training curves of a run folder, drawn to a PNG."""

from __future__ import annotations

import argparse

from mgnet.cli import emit

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="draw a run's training curves (loss, accuracy, learning rate) to a PNG",
        description="Read RUN_DIR/metrics.jsonl, written by `mgnet train` after every "
        "epoch, and draw the training and validation loss, the training and validation "
        "accuracy (the best validation epoch marked) and the learning rate per epoch.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder of `mgnet train`")
    p.add_argument(
        "-o", "--out", metavar="OUT.png", help="PNG to write (default: RUN_DIR/curves.png)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mgnet.curves import best_epoch, plot_curves, read_metrics

    rows = read_metrics(args.run_dir)
    path = plot_curves(args.run_dir, args.out, rows=rows)
    best = best_epoch(rows) or {}
    summary = {
        "out": str(path),
        "epochs": len(rows),
        "last_epoch": rows[-1]["epoch"],
        "best_epoch": best.get("epoch"),
        "best_val_accuracy": best.get("val_accuracy"),
    }
    text = f"saved {path}: {len(rows)} epochs"
    if isinstance(summary["best_val_accuracy"], (int, float)):
        text += f", best validation accuracy {summary['best_val_accuracy']:.2f}% at epoch "
        text += f"{summary['best_epoch']}"
    emit(summary, [text], args.json)
    return 0
