"""Poisson on structured grids: the MgNet cycle as a multigrid solver against PyAMG and SciPy.

For 2D Poisson (5-point, n^2 = 255^2 .. 2047^2) and 3D Poisson (7-point, 63^3, 127^3) this
prints, from one run on one machine, the time to a relative residual of 1e-8 (setup +
solve), iterations and mean convergence factor of

* mgnet: ``MultigridSolver`` (red-black Gauss-Seidel V(1,1), rediscretized coarse grids);
* PyAMG Ruge-Stuben and smoothed aggregation (``pyamg.ruge_stuben_solver``,
  ``pyamg.smoothed_aggregation_solver``, default options, ``solve(tol=1e-8)``);
* ``scipy.sparse.linalg.spsolve`` (skipped where it would take over a minute);

and the ratios, our time per unknown, FMG time to discretization accuracy, and the
distance of one V-cycle from this machine's memory-bandwidth bound (the bytes a V(1,1)
cycle has to move at least, divided by the measured copy bandwidth).

Run (never two benchmarks at once on a small machine)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/poisson_vs_pyamg.py --threads 1
    python benchmarks/poisson_vs_pyamg.py              # default threads
    python benchmarks/poisson_vs_pyamg.py --quick      # 255^2, 511^2 and 63^3 only

Measured with ``--threads 1`` (2-core Xeon VM, float64, torch 2.14.1 CPU, PyAMG 5.4.1,
SciPy 1.17.1). Other heavy jobs shared the machine during this run, so absolute times are
inflated and noisy (PyAMG Ruge-Stuben at 1023^2 took 5.6 s here, about 1.4 s on a quiet
machine); ratios come from the same run::

    grid        mgnet s  its  factor | RS s (x)      | SA s (x)       | spsolve s (x) | ns/unknown
    255^2        0.063    9   0.125  | 0.194 (3.1)   | 0.406 (6.5)    | 0.381 (6.1)   |   964
    511^2        0.161    9   0.125  | 0.588 (3.7)   | 2.657 (16.5)   | 4.086 (25.4)  |   616
    1023^2       1.100    9   0.125  | 5.592 (5.1)   | 17.60 (16.0)   | 38.06 (34.6)  |  1051
    2047^2       7.258    9   0.125  | 23.47 (3.2)   | 103.9 (14.3)   | skipped       |  1732
    63^3         0.627   13   0.241  | 2.348 (3.7)   | 4.997 (8.0)    | skipped       |  2508
    127^3        4.767   14   0.247  | 53.08 (11.1)  | 68.60 (14.4)   | skipped       |  2327

    FMG (2 V(1,1) per level) to 0.83-0.86x (2D) and 0.41-0.45x (3D) of the
    discretization error: 0.09 s (255^2), 0.65 s (1023^2), 2.29 s (2047^2), 0.96 s (127^3).
    One V(1,1) cycle is 6-21x slower than the copy-bandwidth bound (12.0 GB/s measured):
    6.4x at 511^2, 17x at 1023^2, 21x at 2047^2, 17-18x in 3D.

Against the targets: at 1023^2 5.1x faster than Ruge-Stuben (target 5x, met in this run
only; 3.1-3.7x at the other 2D sizes), 16x faster than smoothed aggregation (target 20x,
not met), and the time per unknown grows 2.8x from 511^2 to 2047^2 (target 1.5x, not
met): the cycle is a sequence of separate in-place passes (one per stencil offset, plus
one allocation per smoothing step for u + du), so large grids pay memory traffic and page
faults that a fused kernel would not. Default-thread figures were not recorded.

How stencils are applied (1023^2, float64, one thread, same machine):

* ``torch.nn.functional.conv2d`` single channel: about 28 ms per 5-point application;
* ``scipy.ndimage.correlate``: about 14 ms;
* slicing with temporaries (``f - 4*u[c] + u[n] + ...``): about 37 ms, dominated by
  allocating (page-faulting) fresh 8 MB tensors;
* slicing into a preallocated buffer with in-place fused multiply-adds (what
  ``StencilOperator.residual`` does): about 6 ms;
* ``torch.compile`` of the same expression: about 3 ms, but 40+ s to compile per grid
  size on a cold cache, so it is not used.
"""

from __future__ import annotations

import argparse
import os
import sys

if "--threads" in sys.argv:  # must happen before NumPy/SciPy load their BLAS
    _t = sys.argv[sys.argv.index("--threads") + 1]
    if _t != "0":
        os.environ["OPENBLAS_NUM_THREADS"] = _t
        os.environ["OMP_NUM_THREADS"] = _t
        os.environ["MKL_NUM_THREADS"] = _t

import math  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from mgnet.multigrid import MultigridSolver, make_problem  # noqa: E402

TOL = 1e-8


def factor(res: list[float]) -> float:
    k = len(res) - 1
    return (res[-1] / res[0]) ** (1 / k) if k > 0 and res[0] > 0 else float("nan")


def copy_bandwidth() -> float:
    """Bytes per second of a large float64 copy (read + write counted)."""
    a = torch.empty(32 * 2**20 // 8 * 4, dtype=torch.float64).fill_(1.0)
    b = torch.empty_like(a)
    b.copy_(a)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        b.copy_(a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.numel() * 8 / best


def ours(prob, smoother="rbgs", nu=(1, 1)):
    t0 = time.perf_counter()
    ml = MultigridSolver(prob.A, smoother=smoother, nu=nu, device="cpu")
    t1 = time.perf_counter()
    res: list[float] = []
    u = ml.solve(prob.f, tol=TOL, residuals=res)
    t2 = time.perf_counter()
    return ml, u, t1 - t0, t2 - t1, len(res) - 1, factor(res)


def run_size(shape, args, bw):
    dim, n = len(shape), shape[0]
    N = math.prod(shape)
    prob = make_problem("poisson", dim, n)
    ours(make_problem("poisson", dim, 15))  # warm-up of torch's kernels
    ml, u, setup, solve, its, rho = ours(prob)
    total = setup + solve
    rows = [("mgnet V(1,1) RBGS", total, setup, its, rho)]
    # one V-cycle from the converged state: time per cycle and the bandwidth bound
    with torch.no_grad():
        t = time.perf_counter()
        for _ in range(3):
            ml.cycle(prob.f, u)
        cycle_s = (time.perf_counter() - t) / 3
    # at least: 2 RB sweeps read u, f and write u (3 arrays each), residual + restriction
    # read u, f (2), interpolation + correction read and write u (2): 10 arrays of N
    # doubles on the fine grid, times 1 + 1/2^d + 1/4^d + ... for the coarse grids
    bytes_min = 10 * 8 * N / (1 - 2.0**-dim)
    bound_s = bytes_min / bw
    # FMG: time to discretization accuracy
    t = time.perf_counter()
    ml2 = MultigridSolver(prob.A, device="cpu")
    uf = ml2.fmg(prob.f, cycles=2)
    fmg_s = time.perf_counter() - t
    disc = prob.error(u)
    fmg_ratio = prob.error(uf) / disc
    try:
        import pyamg
    except ImportError:
        pyamg = None
    A = prob.A.to_sparse()
    b = prob.f.numpy().ravel()
    if pyamg is not None:
        for label, build in (
            ("PyAMG Ruge-Stuben", pyamg.ruge_stuben_solver),
            ("PyAMG smoothed aggr.", pyamg.smoothed_aggregation_solver),
        ):
            t0 = time.perf_counter()
            amg = build(A)
            t1 = time.perf_counter()
            res: list[float] = []
            amg.solve(b, tol=TOL, residuals=res, maxiter=500)
            t2 = time.perf_counter()
            rows.append((label, t2 - t0, t1 - t0, len(res) - 1, factor(res)))
    limit = 1_100_000 if dim == 2 else 40_000
    if limit >= N and not args.no_spsolve:
        import scipy.sparse.linalg as spla

        t0 = time.perf_counter()
        spla.spsolve(A.tocsc(), b)
        rows.append(("scipy spsolve", time.perf_counter() - t0, float("nan"), 0, float("nan")))
    else:
        rows.append(("scipy spsolve", float("nan"), float("nan"), -1, float("nan")))
    label = "x".join(map(str, shape))
    print(f"\n{dim}D Poisson {label} ({N:,} unknowns), tol {TOL:g}")
    print(f"  {'solver':<22}{'total s':>9}{'setup s':>9}{'iters':>7}{'factor':>8}{'vs mgnet':>10}")
    for name, tot, st, it, f in rows:
        if it < 0:
            print(f"  {name:<22}  skipped (over a minute expected)")
            continue
        print(f"  {name:<22}{tot:>9.3f}{st:>9.3f}{it:>7}{f:>8.3f}{tot / total:>9.1f}x")
    print(
        f"  mgnet time per unknown: {total / N * 1e9:.0f} ns (solve only "
        f"{solve / N * 1e9:.0f} ns); one V-cycle {cycle_s * 1e3:.1f} ms"
    )
    print(
        f"  FMG (2 V(1,1) per level): {fmg_s:.3f} s, error {fmg_ratio:.2f}x the "
        f"discretization error"
    )
    print(
        f"  V-cycle vs bandwidth bound: {cycle_s * 1e3:.1f} ms / {bound_s * 1e3:.1f} ms = "
        f"{cycle_s / bound_s:.1f}x (copy bandwidth {bw / 1e9:.1f} GB/s)"
    )
    return {"shape": shape, "total": total, "per_unknown": total / N, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="torch/BLAS threads (0: default)")
    p.add_argument("--quick", action="store_true", help="only 255^2, 511^2 and 63^3")
    p.add_argument("--no-spsolve", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"threads: torch {torch.get_num_threads()}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}"
    )
    bw = copy_bandwidth()
    sizes = [(255, 255), (511, 511), (1023, 1023), (2047, 2047), (63,) * 3, (127,) * 3]
    if args.quick:
        sizes = [(255, 255), (511, 511), (63,) * 3]
    results = [run_size(s, args, bw) for s in sizes]
    per = [r["per_unknown"] for r in results if len(r["shape"]) == 2]
    if len(per) > 1:
        print(
            f"\n2D time per unknown, largest / smallest: {max(per) / min(per):.2f} "
            f"(target: within 1.5)"
        )


if __name__ == "__main__":
    main()
