"""``mgnet data``: generate data sets with this library's solvers (``mgnet data darcy``)."""

from __future__ import annotations

import argparse

from mgnet.cli import UserError, emit, use_threads

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="generate data sets (darcy: the Darcy benchmark of operator learning)",
        description="Generate data sets with this library's solvers.",
    )
    data_sub = p.add_subparsers(dest="dataset", metavar="DATASET")
    data_sub.required = True
    d = data_sub.add_parser(
        "darcy",
        help="-div(a grad u) = 1 with a piecewise-constant random coefficient",
        description="Generate the Darcy benchmark of Li et al. (FNO): -div(a grad u) = 1 on "
        "the unit square, u = 0 on the boundary, a = --high where a Gaussian random field "
        "psi ~ N(0, (-Laplacian + tau^2)^-alpha) is >= 0 and --low elsewhere, solved to a "
        "relative residual of 1e-10 by multigrid-preconditioned CG. Writes DIR/train.mat "
        "and DIR/test.mat (keys coeff and sol, (N, s, s) float32, MATLAB v5) and "
        "DIR/darcy.json.",
    )
    d.add_argument(
        "--resolution",
        type=int,
        default=65,
        help="s, nodes per side including the boundary: 33, 65, 129, 257 or 513 (default 65)",
    )
    d.add_argument("--train", type=int, default=1000, help="training samples (default 1000)")
    d.add_argument("--test", type=int, default=100, help="test samples (default 100)")
    d.add_argument("--seed", type=int, default=0, help="(default 0)")
    d.add_argument("-o", "--output-dir", required=True, metavar="DIR", help="folder to write")
    d.add_argument(
        "--test-resolutions",
        default=None,
        metavar="R1,R2",
        help="also write test_R.mat for each R: the test set subsampled from the same solves",
    )
    d.add_argument(
        "--train-resolution",
        type=int,
        default=None,
        help="write train.mat subsampled to this resolution (default: --resolution)",
    )
    d.add_argument("--high", type=float, default=12.0, help="a where psi >= 0 (default 12)")
    d.add_argument("--low", type=float, default=3.0, help="a where psi < 0 (default 3)")
    d.add_argument("--alpha", type=float, default=2.0, help="field smoothness (default 2)")
    d.add_argument("--tau", type=float, default=3.0, help="inverse length scale (default 3)")
    d.add_argument(
        "--neuralop",
        action="store_true",
        help="also write darcy_train_R.pt / darcy_test_R.pt (keys x, y), the neuraloperator "
        "library's layout",
    )
    d.add_argument("--force", action="store_true", help="overwrite existing files")
    d.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    d.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    d.add_argument("--json", action="store_true", help="print the summary as JSON")
    d.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:

    from mgnet.data.darcy import DarcyParams, write_darcy

    use_threads(args.threads)
    tests: list[int] = []
    if args.test_resolutions:
        try:
            tests = [int(x) for x in args.test_resolutions.split(",") if x.strip()]
        except ValueError:
            raise UserError(
                f"--test-resolutions: expected comma-separated integers, e.g. 33,65; got "
                f"{args.test_resolutions[:100]!r}"
            ) from None
    params = DarcyParams(
        resolution=args.resolution,
        high=args.high,
        low=args.low,
        alpha=args.alpha,
        tau=args.tau,
        seed=args.seed,
    )
    report = write_darcy(
        args.output_dir,
        params,
        args.train,
        args.test,
        train_resolution=args.train_resolution,
        test_resolutions=tests,
        neuralop=args.neuralop,
        force=args.force,
        progress=args.progress,
    )
    summary = {
        "output_dir": str(report.out_dir),
        "files": {k: list(v) for k, v in report.files.items()},
        "samples": report.samples,
        "seconds": report.seconds,
        "samples_per_second": report.samples_per_second,
        "threads": args.threads,
        "max_relative_residual": report.max_residual,
    }
    lines = [
        f"wrote {report.out_dir / name}  {' x '.join(map(str, shape))}"
        for name, shape in report.files.items()
    ]
    lines.append(
        f"{report.samples} samples at {args.resolution}x{args.resolution} in "
        f"{report.seconds:.1f} s: {report.samples_per_second:.1f} samples/s on "
        f"{args.threads} thread(s); largest relative residual {report.max_residual:.1e}"
    )
    emit(summary, lines, args.json)
    return 0
