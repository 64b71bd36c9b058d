"""``mgnet eval``: top-1/top-5 accuracy and the confusion matrix of a trained checkpoint, or
the relative L2 and H1 errors of a trained neural operator."""

from __future__ import annotations

import argparse

from mgnet.cli import emit
from mgnet.cli.train import key_value
from mgnet.constants import SPLITS

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="top-1/top-5 accuracy (classifier) or relative L2/H1 error (operator) of a "
        "trained checkpoint",
        description="Rebuild the model of a `mgnet train` checkpoint (best.pt or "
        "checkpoint.pt), evaluate it on a split of a dataset, print top-1 and top-5 "
        "accuracy, and write the figures with the confusion matrix as JSON and as a PNG; "
        "for a neural operator print and write its mean relative L2 and H1 errors.",
    )
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="best.pt or checkpoint.pt")
    p.add_argument("--data", help="registered dataset (default: the one trained on)")
    p.add_argument("--data-dir", help="folder of the dataset files (default: the run's)")
    p.add_argument(
        "--data-kwargs",
        dest="data_args",
        nargs="+",
        type=key_value,
        metavar="KEY=VALUE",
        help="the dataset's options over the run's, e.g. test_resolution=129 (darcy)",
    )
    p.add_argument("--split", default="test", choices=SPLITS, help="(default: test)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("-b", "--batch-size", type=int, default=256, help="(default: 256)")
    p.add_argument(
        "-o", "--out", metavar="OUT.json",
        help="JSON to write, PNG next to it (default: eval-<data>-<split>.json beside the "
        "checkpoint)",
    )  # fmt: skip
    p.add_argument("--no-plot", dest="plot", action="store_false", help="no PNG")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite the output even when it is a run's file (results.json, ...)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mgnet.train.evaluation import OperatorEvalResult, evaluate_checkpoint

    r = evaluate_checkpoint(
        args.checkpoint,
        data=args.data,
        data_dir=args.data_dir,
        split=args.split,
        device=args.device,
        batch_size=args.batch_size,
        out=args.out,
        plot=args.plot,
        force=args.force,
        data_args=dict(args.data_args or []),
    )
    if isinstance(r, OperatorEvalResult):
        lines = [
            f"{r.model} on {r.data} {r.split} ({r.count} samples, {r.resolution}x"
            f"{r.resolution}): relative L2 {r.rel_l2:.4g}  relative H1 {r.rel_h1:.4g}",
            f"wrote {r.json_path}",
        ]
        emit(r.to_dict(), lines, args.json)
        return 0
    png = "" if r.png_path else " (no PNG: matplotlib is not installed)" if args.plot else ""
    lines = [
        f"{r.model} on {r.data} {r.split} ({r.count} images): top-1 {r.top1:.2f}%  "
        f"top-{r.topk} {r.top5:.2f}%  loss {r.loss:.4f}",
        f"wrote {r.json_path}" + (f" and {r.png_path}" if r.png_path else png),
    ]
    emit(r.to_dict(), lines, args.json)
    return 0
