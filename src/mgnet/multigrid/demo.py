"""The multigrid face of the demo: 2D Poisson solved by the same cycle as the classifier."""

from __future__ import annotations

import time

from mgnet.multigrid.problems import make_problem
from mgnet.multigrid.solver import MultigridSolver

__all__ = ["demo_poisson"]


def demo_poisson(n: int = 511, tol: float = 1e-8, print_fn=print) -> dict:
    """Solve 2D Poisson on n x n nodes with the MgNet cycle (sigma = identity, red-black
    Gauss-Seidel V(1,1)); print iterations, convergence factor and time, and PyAMG's
    Ruge-Stuben figures from the same run when PyAMG is installed. Returns the figures."""
    prob = make_problem("poisson", 2, n)
    t0 = time.perf_counter()
    ml = MultigridSolver(prob.A, smoother="rbgs", nu=(1, 1), device="cpu")
    t1 = time.perf_counter()
    u = ml.solve(prob.f, tol=tol)
    t2 = time.perf_counter()
    out = {
        "unknowns": n * n,
        "levels": len(ml.levels),
        "iterations": ml.iterations,
        "factor": ml.convergence_factor(),
        "setup_s": t1 - t0,
        "solve_s": t2 - t1,
        "error_vs_exact": prob.error(u),
    }
    print_fn(
        f"2D Poisson, {n}x{n} = {n * n:,} unknowns, the MgNet cycle as a V(1,1) multigrid "
        f"solver (sigma = identity, Pi = 0, red-black Gauss-Seidel B):"
    )
    print_fn(
        f"  mgnet:          {out['iterations']:>3} cycles, factor {out['factor']:.3f}, "
        f"{out['setup_s'] + out['solve_s']:.3f} s (setup {out['setup_s']:.3f} s), "
        f"error vs exact {out['error_vs_exact']:.2e}"
    )
    try:
        import pyamg
    except ImportError:
        print_fn("  (PyAMG is not installed: pip install pyamg for its figures)")
        return out
    A = prob.A.to_sparse()
    b = prob.f.numpy().ravel()
    t0 = time.perf_counter()
    amg = pyamg.ruge_stuben_solver(A)
    res: list[float] = []
    amg.solve(b, tol=tol, residuals=res, maxiter=200)
    t = time.perf_counter() - t0
    k = len(res) - 1
    factor = (res[-1] / res[0]) ** (1 / k) if k else 0.0
    out["pyamg"] = {"iterations": k, "factor": factor, "time_s": t}
    print_fn(
        f"  PyAMG (RS):     {k:>3} cycles, factor {factor:.3f}, {t:.3f} s "
        f"(same run; ratio {t / (out['setup_s'] + out['solve_s']):.1f}x)"
    )
    return out
