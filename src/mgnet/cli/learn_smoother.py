"""``mgnet learn-smoother``: train the multigrid smoother B^{l,i} (learned convolutions)."""

from __future__ import annotations

import argparse

from mgnet.cli import UserError, emit, use_threads
from mgnet.cli.solve import add_eps, check_eps
from mgnet.constants import DIMS, LEARN_PROBLEMS, SHARING
from mgnet.errors import quote

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "learn-smoother",
        help="train the multigrid smoother B^{l,i} (learned convolutions) for a problem",
        description="Train the smoothers B^{l,i} = K^{l,i} * D^-1 (k x k convolutions "
        "of the Jacobi-scaled residual, starting from damped Jacobi) through the solver's "
        "own V-cycle: Adam on the error reduction of a few cycles on random errors (a "
        "stochastic estimate of the spectral radius). Writes a file that mgnet solve "
        "--smoother FILE uses, and prints the asymptotic factor per cycle (power "
        "iteration) before and after, on the training grid and on --eval-n grids.",
    )
    p.add_argument("--problem", default="anisotropic", choices=LEARN_PROBLEMS)
    add_eps(p)
    p.add_argument("--dim", type=int, default=2, choices=DIMS)
    p.add_argument("--n", type=int, default=63, help="training grid, interior nodes per axis")
    p.add_argument(
        "--kernel",
        default=None,
        help="kernel sizes, odd: 3 (default), 5, or per axis, e.g. 11x3 (11 along the "
        "strong axis 0)",
    )
    # None: the defaults of mgnet.multigrid.learn_smoother (kept in one place)
    p.add_argument("--nu", type=int, default=None, help="learned steps per sweep (default 2)")
    p.add_argument("--sharing", default=None, choices=SHARING)
    p.add_argument("--steps", type=int, default=None, help="Adam steps (default 80)")
    p.add_argument("--cycles", type=int, default=None, help="cycles per loss (default 3)")
    p.add_argument("--batch", type=int, default=None, help="random errors per step (default 6)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 0.02)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--eval-n",
        default="",
        metavar="N[,N...]",
        help="also measure the factor on these grids, e.g. 255,1023",
    )
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="the smoother file")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mgnet.multigrid import MultigridSolver, asymptotic_factor, learn_smoother
    from mgnet.multigrid.learned import kernel_shape, smoother_problem
    from mgnet.multigrid.problems import ANISOTROPY

    check_eps(args)
    eps = ANISOTROPY if args.eps is None else args.eps
    use_threads(args.threads)
    try:
        if args.kernel is not None:
            kernel_shape(args.kernel, args.dim)
    except ValueError as e:
        raise UserError(f"--{e}") from None
    try:
        eval_n = [int(x) for x in args.eval_n.split(",") if x.strip()]
    except ValueError:
        raise UserError(
            f"--eval-n: expected grid sizes, e.g. 255,1023; got {args.eval_n!r}"
        ) from None
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise UserError(f"-o: {quote(args.out)} is a folder or its folder does not exist")
    log = None if args.json else print
    names = ("kernel", "nu", "sharing", "steps", "cycles", "batch", "lr", "seed")
    given = {k: getattr(args, k) for k in names}
    learned = learn_smoother(
        args.problem,
        eps=eps,
        n=args.n,
        dim=args.dim,
        log=log,
        **{k: v for k, v in given.items() if v is not None},
    )
    figures = dict(learned.training_log)
    figures["eval"] = {}
    for n in eval_n:
        A = smoother_problem(args.problem, n, args.dim, eps)
        row = {}
        for name, sm in (("rbgs", "rbgs"), ("learned", learned)):
            row[name] = asymptotic_factor(MultigridSolver(A, smoother=sm, device="cpu"))
        figures["eval"][str(n)] = row
    learned.training_log = figures
    learned.save(out)
    shape = "x".join(map(str, learned.kernel_shape))
    what = args.problem + (f" eps={eps:g}" if args.problem == "anisotropic" else "")
    lines = [
        f"{what}, {args.dim}D, {shape} kernels, nu={learned.nu} per sweep, {learned.sharing}: "
        f"asymptotic factor per V-cycle at n={args.n}: damped Jacobi {figures['factor_jacobi']:.3f}"
        f" -> learned {figures['factor']:.3f} ({figures['seconds']:.1f} s of training)"
    ]
    lines += [
        f"  n={n}: learned {row['learned']:.3f}, red-black Gauss-Seidel {row['rbgs']:.3f}"
        for n, row in figures["eval"].items()
    ]
    emit(
        {"problem": learned.problem, "file": str(out), **figures},
        [*lines, f"saved {out}"],
        args.json,
    )
    return 0
