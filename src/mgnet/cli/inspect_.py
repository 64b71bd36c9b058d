"""``mgnet inspect``: pictures of the cycle, for a classifier or a multigrid solver.

(The module's name ends in ``_`` so that it never shadows the standard library's
``inspect``.)
"""

from __future__ import annotations

import argparse

from mgnet.cli import UserError, emit
from mgnet.cli.solve import _parse_nu
from mgnet.constants import CYCLES, DIMS, PROBLEMS, SMOOTHERS
from mgnet.plotting import check_png_path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="picture the cycle: a classifier's u^l, f^l per step, or a solver's V-cycle",
        description="Classifier (--model and/or --checkpoint): record the data f^l and "
        "feature u^l on every level and smoothing step for one image and save a PNG grid "
        "with ||f - A u|| per step. Solver (--solver): one cycle of geometric multigrid on a "
        "model problem from a random initial guess; save the residual on every level and "
        "the error before and after each coarse correction.",
    )
    p.add_argument("--model", help="registry name or spec string (default: the checkpoint's)")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="weights: best.pt or checkpoint.pt "
        "of `mgnet train`, or a bare state dict (default: untrained weights)",
    )
    p.add_argument(
        "--image",
        metavar="PATH",
        help=".png/.jpg/.npy/.pt image (standardized per image); default: a test image of --data",
    )
    p.add_argument(
        "--data",
        default=None,
        help="registered dataset for the image (default: the checkpoint's, else digits)",
    )
    p.add_argument("--data-dir", default=None, help="folder of the dataset files")
    p.add_argument("--index", type=int, default=0, help="test-split index of the image")
    p.add_argument("--channels", type=int, default=4, help="channels drawn per tensor")
    p.add_argument("--solver", action="store_true", help="inspect the multigrid solver")
    p.add_argument("--problem", default="poisson", choices=PROBLEMS, help="solver: model problem")
    p.add_argument("--dim", type=int, default=2, choices=DIMS, help="solver: dimension")
    p.add_argument("--n", type=int, default=63, help="solver: interior nodes per axis")
    p.add_argument("--smoother", default="jacobi", choices=SMOOTHERS)
    p.add_argument(
        "--nu", default="2,2", help="solver: pre,post sweeps, or one count for both (default 2,2)"
    )
    p.add_argument("--cycle", default="V", choices=CYCLES)
    p.add_argument("--seed", type=int, default=0, help="solver: seed of the initial guess")
    p.add_argument("--out", default="inspect.png", metavar="OUT.png", help="PNG to write")
    p.add_argument("--json", action="store_true", help="print the recorded numbers as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_png_path(args.out, "--out")
    if args.solver:
        if args.model or args.checkpoint or args.image:
            raise UserError(
                "--solver: inspects the multigrid solver; leave out --model, "
                "--checkpoint and --image"
            )
        summary, lines = _inspect_solver(args)
    else:
        if not args.model and not args.checkpoint:
            raise UserError("pass --model and/or --checkpoint for a classifier, or --solver")
        summary, lines = _inspect_classifier(args)
    emit(summary, [*lines, f"saved {summary['out']}"], args.json)
    return 0


def _inspect_solver(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """One cycle of geometric multigrid from a random guess: its figures and lines."""
    import torch

    from mgnet import visualize as mi
    from mgnet.multigrid import MultigridSolver, make_problem

    nu = _parse_nu(args.nu, args.smoother)
    prob = make_problem(args.problem, args.dim, args.n)
    solver = MultigridSolver(prob.A, smoother=args.smoother, nu=nu, device="cpu")
    gen = torch.Generator().manual_seed(args.seed)
    x0 = torch.rand(tuple(prob.f.shape), generator=gen, dtype=torch.float64)
    report = mi.inspect_solver(solver, prob.f, x0=x0, out=args.out, cycle=args.cycle)
    summary = {
        "levels": len(solver.levels),
        "corrections": report.corrections,
        "events": report.events,
        "out": str(report.path),
    }
    lines = [
        f"{args.problem} {args.dim}D n={args.n}, one {args.cycle}-cycle "
        f"({args.smoother}, nu={nu}); error ||u* - u|| per level:",
        f"{'level':>5}  {'start':>10}  {'pre-smoothed':>12}  {'corrected':>10}  "
        f"{'post-smoothed':>13}",
    ]
    lines += [
        f"{c['level']:>5}  {c['start']:>10.3e}  {c['before']:>12.3e}  "
        f"{c['after']:>10.3e}  {c['post']:>13.3e}"
        for c in report.corrections
    ]
    return summary, lines


def _inspect_classifier(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """One image through a classifier's cycle: its figures and lines."""
    from mgnet import visualize as mi

    _refuse_operator(args)
    if args.checkpoint:
        model, config = mi.model_from_checkpoint(args.checkpoint, args.model)
    else:
        from mgnet.models import create_model

        model, config = create_model(args.model).eval(), {}
    label = None
    if args.image:
        from mgnet.models import model_info

        size = model_info(args.model or config["model"]).input_size
        image = mi.load_image(args.image, model.in_channels, size)
    else:
        from mgnet.data import get_dataset

        data = args.data or config.get("data") or "digits"
        own = data == config.get("data")  # the run's own normalization for its own data
        test = get_dataset(
            data,
            root=args.data_dir or config.get("data_dir"),
            augment=False,
            mean=config.get("mean") if own else None,
            std=config.get("std") if own else None,
        ).test
        if not 0 <= args.index < len(test):
            raise UserError(
                f"--index: must lie in 0..{len(test) - 1} for the {data!r} test "
                f"split, got {args.index}"
            )
        image, label = test[args.index]
        label = int(label)
    report = mi.inspect_classifier(model, image, out=args.out, channels=args.channels)
    summary = {
        "prediction": report.prediction,
        "label": label,
        "events": report.events,
        "out": str(report.path),
    }
    lines = [
        f"{getattr(model, 'spec', type(model).__name__)}: predicted {report.prediction}"
        + ("" if label is None else f" (label {label})")
    ]
    for e in report.events:
        what = "start" if e["phase"] == "start" else f"step {e['step']}"
        lines.append(f"  level {e['level']} {what:<7} ||f - A u|| = {e['residual']:.4g}")
    return summary, lines


def _refuse_operator(args: argparse.Namespace) -> None:
    """A neural operator (by name, or a run on operator data) has no image and no classes
    to inspect: one line, before anything is loaded."""
    from mgnet.models import model_info

    name = args.model
    if name is None:
        from mgnet.train.checkpoint import load_checkpoint

        config = load_checkpoint(args.checkpoint, strict=False).get("config")
        name = config.get("model") if isinstance(config, dict) else None
    if isinstance(name, str) and model_info(name).is_operator:
        flag = "--model" if args.model else "--checkpoint"
        raise UserError(
            f"{flag}: {name!r} is a neural operator (a field to a field); inspect shows a "
            "classifier's cycle on an image; evaluate an operator with mgnet eval"
        )
