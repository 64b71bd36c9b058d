"""``mgnet export``: a trained classifier or neural operator as ONNX or TorchScript, checked
against PyTorch."""

from __future__ import annotations

import argparse

from mgnet.cli import UserError
from mgnet.constants import EXPORT_FORMATS

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained classifier or neural operator to ONNX or TorchScript",
        description="Rebuild the model of a `mgnet train` checkpoint, write it as ONNX or "
        "TorchScript (dynamic batch, the dataset's image size; an operator: the grid it "
        "was trained on, with its normalisers, raw coefficient in, solution out), then run "
        "the written file (onnxruntime / torch.jit) and compare its outputs with PyTorch's. "
        "FNO's spectral convolution (torch.fft) does not export to ONNX: use torchscript.",
    )
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="best.pt or checkpoint.pt")
    p.add_argument("--format", default="onnx", choices=EXPORT_FORMATS)
    p.add_argument(
        "-o",
        "--out",
        metavar="PATH",
        help="output file (default: next to the checkpoint, .onnx or .torchscript.pt)",
    )
    p.add_argument("--input-size", type=int, help="image side (default: the dataset's)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest accepted logit difference")
    p.add_argument(
        "--no-check", dest="check", action="store_false", help="do not run the exported file"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite the output even when it is a run's file (best.pt, checkpoint.pt, ...)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mgnet.errors import quote
    from mgnet.export import export_model, model_from_checkpoint
    from mgnet.train.rundir import check_output

    if args.input_size is not None and args.input_size < 1:
        raise UserError(f"--input-size: must be a positive integer, got {args.input_size}")
    suffix = ".onnx" if args.format == "onnx" else ".torchscript.pt"
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(suffix)
    if out.resolve() == Path(args.checkpoint).resolve() and not args.force:
        raise UserError(
            f"--out: {quote(str(out))} is the checkpoint being exported; choose another "
            "file, or add --force to overwrite it"
        )
    check_output(out, args.force, flag="--out")  # before the model is built
    model, shape, cfg = model_from_checkpoint(args.checkpoint)
    if args.input_size is not None:
        shape = (*shape[:2], args.input_size, args.input_size)
    result = export_model(model, out, args.format, shape, check=args.check, atol=args.atol)
    what = "output" if getattr(model, "resolution", None) else "logit"  # operator | classifier
    check = (
        "not checked"
        if result.max_abs_diff is None
        else f"max |{what} difference| {result.max_abs_diff:.2e} vs PyTorch"
    )
    print(
        f"exported {cfg['model']} ({cfg['data']}, input {shape}) to {str(result.path)!r} "
        f"as {args.format}; {check}"
    )
    return 0
