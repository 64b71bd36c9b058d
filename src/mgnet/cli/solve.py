"""``mgnet solve``: a model PDE solved by the MgNet cycle as a geometric multigrid solver,
or a sparse matrix (a file or a finite-element problem) by algebraic multigrid."""

from __future__ import annotations

import argparse
import logging
import sys

from mgnet.cli import UserError, emit, use_threads
from mgnet.constants import (
    AMG_METHODS,
    COARSE,
    CYCLES,
    DEVICE_KINDS,
    DIMS,
    INTERPOLATIONS,
    MATRIX_PROBLEMS,
    PRECISIONS,
    PROBLEMS,
    SMOOTHERS,
)
from mgnet.errors import quote
from mgnet.plotting import check_png_path, figure, save_png

__all__ = ["add_eps", "add_parser", "check_eps", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solve",
        help="solve a model PDE with the MgNet cycle as a multigrid solver",
        description="Solve a model problem with a manufactured exact solution by geometric "
        "multigrid on the MgNet cycle (sigma = identity; Pi = 0, or injection for the "
        "nonlinear problem, which is solved by FAS). Reports residuals and the error "
        "against the exact solution.",
    )
    p.add_argument(
        "--problem",
        default="poisson",
        choices=[*PROBLEMS, *MATRIX_PROBLEMS],
        help="a model problem on a grid (geometric multigrid), or a sparse-matrix problem "
        "(algebraic multigrid): fem-poisson, fem-jump, fem-elasticity (scikit-fem), darcy, "
        "rotated-anisotropy",
    )
    add_eps(p)
    p.add_argument("--dim", type=int, default=2, choices=DIMS)
    p.add_argument(
        "--n",
        type=int,
        default=255,
        help="interior nodes per axis; 2^k - 1 coarsens fully (default 255)",
    )
    p.add_argument("--cycle", default="V", choices=[*CYCLES, "fmg", "pcg"])
    p.add_argument(
        "--smoother",
        default="rbgs",
        metavar="{" + ",".join(SMOOTHERS) + ",FILE}",
        help="a smoother's name (line: zebra line Gauss-Seidel) or a file written by "
        "mgnet learn-smoother",
    )
    p.add_argument(
        "--nu",
        default=None,
        help="pre,post sweeps (default 1,1 for rbgs, line and a learned smoother, 2,2 otherwise)",
    )
    p.add_argument(
        "--coarse",
        default=None,
        choices=COARSE,
        help="coarse operators: galerkin (R A P) with --interpolation operator, "
        "rediscretize otherwise (default)",
    )
    p.add_argument(
        "--interpolation",
        default="linear",
        choices=INTERPOLATIONS,
        help="P: linear, or operator (built from A on each level, for jumping "
        "coefficients; 1D and 2D grids)",
    )
    p.add_argument("--tol", type=float, default=1e-8, help="relative residual (default 1e-8)")
    p.add_argument(
        "--maxiter",
        type=int,
        default=None,
        help="most cycles (default 100); with --cycle fmg, cycles after the FMG pass (default 0)",
    )
    p.add_argument(
        "--dtype",
        default="float64",
        choices=PRECISIONS,
        help="mixed: float32 cycles, float64 residuals (iterative refinement)",
    )
    p.add_argument(
        "--device", default=None, choices=DEVICE_KINDS, help="default: cuda when available"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads (default 0: torch's choice; 1 avoids slowdowns when "
        "other jobs share the cores)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument(
        "--plot",
        default=None,
        metavar="OUT.png",
        help="save the residual history and the solution as a PNG (matplotlib)",
    )
    _add_solve_matrix(p)
    p.set_defaults(run=run)


def _parse_nu(text: str | None, smoother: str) -> tuple[int, int]:
    if text is None:
        return (2, 2) if smoother in ("jacobi", "chebyshev") else (1, 1)
    try:
        parts = tuple(int(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 0:
        raise UserError(f"--nu: expected 'pre,post' with integers >= 0, e.g. 2,2; got {text!r}")
    return parts


def run(args: argparse.Namespace) -> int:
    # the command says itself how the solve ended (and exits 1 when --tol was not met);
    # the solver's own log line about it would only repeat that
    solver_log = logging.getLogger("mgnet.multigrid")
    level = solver_log.level
    solver_log.setLevel(logging.ERROR)
    try:
        return _run(args)
    finally:
        solver_log.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    from mgnet.multigrid import MultigridSolver, make_problem

    if args.matrix is not None or args.problem in MATRIX_PROBLEMS:
        return _run_solve_matrix(args)
    nu = _parse_nu(args.nu, args.smoother)
    maxiter = _check_common(args, default_maxiter=0 if args.cycle == "fmg" else 100)
    if args.plot is not None:
        check_png_path(args.plot, "--plot")
    smoother = _solve_smoother(args)
    prob = make_problem(args.problem, args.dim, args.n, eps=args.eps)
    ml, setup_s = _timed(
        lambda: MultigridSolver(
            prob.A,
            smoother=smoother,
            nu=nu,
            coarse=args.coarse,
            interpolation=args.interpolation,
            precision=args.dtype,
            device=args.device,
        )
    )
    f = prob.f.to(ml.device)
    history: list[float] = []

    def solve():
        if args.cycle == "fmg":
            return ml.fmg(f, tol=args.tol, maxiter=maxiter, residuals=history)
        if args.cycle == "pcg":
            return ml.pcg(f, tol=args.tol, maxiter=maxiter, residuals=history)
        return ml.solve(f, tol=args.tol, maxiter=maxiter, cycle=args.cycle, residuals=history)

    u, solve_s = _timed(solve)
    out = {
        "problem": args.problem,
        "dim": args.dim,
        "n": args.n,
        "unknowns": args.n**args.dim,
        "levels": len(ml.levels),
        "cycle": args.cycle,
        "smoother": args.smoother if isinstance(smoother, str) else smoother.name,
        "coarse": ml.coarse,
        "interpolation": ml.interpolation,
        **_outcome(args, ml, nu, history, setup_s, solve_s),
        "error_vs_exact": prob.error(u),
    }
    if args.plot is not None:
        _plot_solve(args.plot, history, u.detach().cpu().double().reshape(prob.A.shape), out)
        out["plot"] = args.plot
    lines = [
        f"{args.problem} {args.dim}D, {out['unknowns']:,} unknowns, {args.cycle}-cycle: "
        + _iterations_line(out),
        f"setup {setup_s:.3f} s, solve {solve_s:.3f} s, "
        f"max error vs exact solution {out['error_vs_exact']:.3e}",
    ]
    saved = [f"saved {args.plot}"] if args.plot is not None else []
    emit(out, [str(ml), *lines, *saved], args.json)
    if ml.reason == "diverged" and not isinstance(smoother, str):
        raise UserError(
            f"--smoother: the learned smoother in {quote(args.smoother)} diverges on this "
            f"problem (residual {out['relative_residual']:.2e} of the initial after "
            f"{out['iterations']} cycles); train one for it with mgnet learn-smoother"
        )
    return _exit_status(args, out)


# ------------------------------------------------ what the grid and matrix paths share
def _check_common(args: argparse.Namespace, default_maxiter: int) -> int:
    """Check --tol, --maxiter and --threads (and apply --threads); the cycles to run."""
    if args.tol <= 0:
        raise UserError(f"--tol: must be positive, got {args.tol}")
    maxiter = default_maxiter if args.maxiter is None else args.maxiter
    if maxiter < 0:
        raise UserError(f"--maxiter: must be >= 0, got {maxiter}")
    use_threads(args.threads, zero_is_torchs=True)
    return maxiter


def _timed(work):
    """(work(), its wall time in seconds), with the device synchronized at both ends."""
    import time

    import torch

    def sync() -> None:
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()

    sync()
    t0 = time.perf_counter()
    result = work()
    sync()
    return result, time.perf_counter() - t0


def _outcome(args, ml, nu, history: list[float], setup_s: float, solve_s: float) -> dict:
    """The fields of the JSON that say how a solve went (the same for grids and matrices)."""
    return {
        "nu": list(nu),
        "dtype": args.dtype,
        "device": str(ml.device),
        "iterations": ml.iterations,
        "converged": ml.converged,
        "reason": ml.reason,
        "residuals": history,
        "relative_residual": history[-1] / history[0] if history and history[0] > 0 else 0.0,
        "convergence_factor": ml.convergence_factor(history),
        "setup_s": setup_s,
        "solve_s": solve_s,
    }


def _iterations_line(out: dict) -> str:
    return (
        f"{out['iterations']} iterations, relative residual {out['relative_residual']:.2e}, "
        f"mean factor {out['convergence_factor']:.3f}"
    )


def _exit_status(args: argparse.Namespace, out: dict) -> int:
    """0 when the solve met --tol; else one line on stderr and 1."""
    if out["converged"]:
        return 0
    print(
        f"mgnet solve: did not reach --tol {args.tol:g} ({out['reason']} after "
        f"{out['iterations']} iterations, relative residual {out['relative_residual']:.2e})",
        file=sys.stderr,
    )
    return 1


def add_eps(p: argparse.ArgumentParser) -> None:
    """--eps, the anisotropy (of solve and learn-smoother); checked by :func:`check_eps`."""
    p.add_argument(
        "--eps",
        type=float,
        default=None,
        help="anisotropic: the weak coefficient, A = -u_xx - eps u_yy (default 0.1)",
    )


def check_eps(args: argparse.Namespace) -> None:
    """--eps (of solve and learn-smoother): positive, and only for --problem anisotropic."""
    if args.eps is not None:
        if not 0 < args.eps < float("inf"):
            raise UserError(f"--eps: the anisotropy must be a positive number, got {args.eps}")
        if args.problem != "anisotropic":
            raise UserError(f"--eps: only --problem anisotropic has one, not {args.problem!r}")


def _solve_smoother(args: argparse.Namespace):
    """--smoother (a name, or a file of mgnet learn-smoother) and --eps of mgnet solve."""
    check_eps(args)
    if args.smoother in SMOOTHERS:
        return args.smoother
    from pathlib import Path

    if not Path(args.smoother).is_file():
        raise UserError(
            f"--smoother: {quote(args.smoother)} is not one of {', '.join(SMOOTHERS)} "
            "nor a file written by mgnet learn-smoother"
        )
    if args.problem == "nonlinear":
        raise UserError("--smoother: a learned smoother is linear; not for --problem nonlinear")
    from mgnet.multigrid import LearnedSmoother

    try:
        return LearnedSmoother.load(args.smoother, dim=args.dim)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"--smoother: {str(e).removeprefix('smoother: ')}") from None


def _plot_solve(path: str, history: list[float], u, info: dict) -> None:
    fig = figure(10, 4)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.semilogy(range(len(history)), [h / history[0] for h in history], "o-")
    ax1.set_xlabel("cycle" if info["cycle"] != "pcg" else "CG iteration")
    ax1.set_ylabel("||f - A u|| / ||f||")
    ax1.set_title(
        f"{info['cycle']}-cycle, {info['smoother']} {tuple(info['nu'])}: "
        f"factor {info['convergence_factor']:.3f}"
    )
    ax1.grid(True, which="both", alpha=0.3)
    if u.dim() == 1:
        ax2.plot(u.numpy())
    else:
        img = u if u.dim() == 2 else u[u.shape[0] // 2]
        im = ax2.imshow(img.numpy().T, origin="lower", extent=(0, 1, 0, 1))
        fig.colorbar(im, ax=ax2)
    ax2.set_title(f"solution ({info['problem']}, {info['dim']}D, n={info['n']})")
    fig.tight_layout()
    save_png(fig, path, "--plot")


# ------------------------------------------------------- solve: sparse matrices (AMG)
# rbgs (the grid solver's Gauss-Seidel) is the algebraic solver's default Gauss-Seidel:
# lexicographic sweeps on the CPU, multicolour on CUDA
_AMG_SMOOTHER = {"rbgs": None, "jacobi": "jacobi", "chebyshev": "chebyshev"}


def _add_solve_matrix(p: argparse.ArgumentParser) -> None:
    """The algebraic flags of ``mgnet solve``: a matrix from a file or a sparse problem."""
    p.add_argument(
        "--matrix",
        default=None,
        metavar="FILE",
        help="solve A x = b for a sparse matrix from a Matrix Market (.mtx) or SciPy (.npz) "
        "file by algebraic multigrid",
    )
    p.add_argument(
        "--rhs",
        default=None,
        metavar="FILE",
        help="b for --matrix (.mtx, .npy, text); default ones",
    )
    p.add_argument(
        "--method",
        default=None,
        choices=AMG_METHODS,
        help="sa: smoothed aggregation (default for matrices), rs: Ruge-Stueben (PyAMG's "
        "hierarchy on our cycle), gmg: geometric (default for grid problems)",
    )
    p.add_argument(
        "--refine", type=int, default=4, help="mesh refinements of the fem-* problems (default 4)"
    )
    p.add_argument(
        "--contrast", type=float, default=1e4, help="coefficient jump of fem-jump and darcy"
    )


def _run_solve_matrix(args: argparse.Namespace) -> int:
    """``mgnet solve --matrix FILE`` or a sparse problem: algebraic multigrid on the cycle."""
    import numpy as np
    import torch

    from mgnet.multigrid import from_pyamg, smoothed_aggregation_solver
    from mgnet.multigrid.matrices import make_matrix_problem, read_matrix, read_vector

    method = args.method or "sa"
    if method == "gmg":
        raise UserError(
            "--method: gmg needs a structured grid problem (--problem poisson, diffusion, ...); "
            "use sa or rs for a matrix"
        )
    if args.cycle == "fmg":
        raise UserError("--cycle: fmg is for grid problems; use V, W, F or pcg with a matrix")
    if args.plot is not None:
        raise UserError("--plot: draws grid problems only; leave it out with a matrix")
    maxiter = _check_common(args, default_maxiter=100)
    check_eps(args)
    nu = _parse_nu(args.nu, args.smoother)
    if args.matrix is not None:
        A = read_matrix(args.matrix)
        name, B, blocksize = args.matrix, None, 1
        b = read_vector(args.rhs, A.shape[0]) if args.rhs else np.ones(A.shape[0])
    else:
        if args.rhs is not None:
            raise UserError("--rhs: only with --matrix (the problems bring their own)")
        prob = make_matrix_problem(args.problem, args.refine, args.n, args.contrast)
        name, A, b, B, blocksize = prob.name, prob.A, prob.b, prob.B, prob.blocksize
    dtype = {"float64": torch.float64, "float32": torch.float32}.get(args.dtype)
    if dtype is None:
        raise UserError("--dtype: mixed is for grid problems; use float64 or float32")
    if args.smoother not in _AMG_SMOOTHER:
        raise UserError(
            f"--smoother: {quote(args.smoother)} is for grid problems; with a matrix use one "
            f"of {', '.join(_AMG_SMOOTHER)}"
        )
    options = dict(smoother=_AMG_SMOOTHER[args.smoother], nu=nu, device=args.device, dtype=dtype)
    if method == "sa":
        ml, setup_s = _timed(
            lambda: smoothed_aggregation_solver(A, B, blocksize=blocksize, **options)
        )
    else:
        try:
            import pyamg
        except ImportError as e:
            raise UserError("--method: rs needs PyAMG (pip install pyamg)") from e
        from mgnet.multigrid.algebraic import check_matrix

        ml, setup_s = _timed(
            lambda: from_pyamg(pyamg.ruge_stuben_solver(check_matrix(A)), **options)
        )
    history: list[float] = []
    accel = "cg" if args.cycle == "pcg" else None
    cycle = "V" if args.cycle == "pcg" else args.cycle
    x, solve_s = _timed(
        lambda: ml.solve(
            b, tol=args.tol, maxiter=maxiter, cycle=cycle, accel=accel, residuals=history
        )
    )
    out = {
        "problem": name,
        "method": method,
        "unknowns": int(A.shape[0]),
        "nonzeros": int(A.nnz),
        "levels": len(ml.levels),
        "operator_complexity": ml.operator_complexity(),
        "cycle": args.cycle,
        "smoother": ml.smoother,
        **_outcome(args, ml, nu, history, setup_s, solve_s),
        "error_vs_exact": None,
        "solution_norm": float(np.linalg.norm(x)),
    }
    pcg = args.cycle == "pcg"
    lines = [
        f"{name}: {out['unknowns']:,} unknowns, {args.cycle}{'' if pcg else '-cycle'}: "
        + _iterations_line(out),
        f"setup {setup_s:.3f} s, solve {solve_s:.3f} s",
    ]
    emit(out, [str(ml), *lines], args.json)
    return _exit_status(args, out)
