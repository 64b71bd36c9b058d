"""Poisson on structured grids: the MgNet cycle as a multigrid solver against PyAMG and SciPy.

For 2D Poisson (5-point, n^2 = 255^2 .. 4095^2) and 3D Poisson (7-point, 63^3, 127^3) this
prints, from one run on one machine, the time to a relative residual of 1e-8 (set-up +
solve), iterations and mean convergence factor of

* mgnet: ``MultigridSolver`` (red-black Gauss-Seidel V(1,1), rediscretized coarse grids),
  the best of ``--repeat`` runs;
* PyAMG Ruge-Stuben and smoothed aggregation (``pyamg.ruge_stuben_solver``,
  ``pyamg.smoothed_aggregation_solver``, default options, ``solve(tol=1e-8)``), skipped
  above ``--pyamg-max`` unknowns (5M: 4095^2 would take minutes and gigabytes);
* ``scipy.sparse.linalg.spsolve`` (skipped where it would take over a minute);

and the ratios; our time per unknown; one V(1,1) cycle with the compiled CPU kernels
(:mod:`mgnet.stencils.kernels`) and with ``MGNET_KERNELS`` off (the PyTorch path), against
this machine's bandwidth bound (the bytes of ten grid arrays per level, see below, at the
copy bandwidth measured in the same run); FMG (one pass, on the same hierarchy) against
the V-cycle solve, with its error against the discretization error; and the kernels'
first call (compile, or load from numba's cache).

Run (never two benchmarks at once on a small machine)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/poisson_vs_pyamg.py --threads 1
    python benchmarks/poisson_vs_pyamg.py --threads 1 --clock cpu   # steadier when shared
    python benchmarks/poisson_vs_pyamg.py --quick      # 255^2, 511^2 and 63^3 only
    python benchmarks/poisson_vs_pyamg.py --threads 1 --sizes 1023,63x63x63
    MGNET_KERNELS=0 python benchmarks/poisson_vs_pyamg.py --threads 1 --sizes 1023

Measured with ``--threads 1 --clock cpu --no-spsolve`` (CPU time of this process; 2-core
Xeon VM with AVX-512, 2 MiB L2 per core, float64, torch 2.14.1, numba 0.68.1, PyAMG 5.4.1,
SciPy 1.17.1), one run while up to eight other jobs shared the machine (load 2-9 during
the session); absolute times are noisy, the ratios come from the same run::

    grid     mgnet s its factor| RS s (x)     | SA s (x)     | ns/unkn.| V-cycle ms: kernels,
                                                                         PyTorch, bound (x bound)
    255^2     0.022   9  0.125 | 0.105 (4.8)  | 0.271 (12.5) |  335    | 1.49  3.03  0.53 (2.8)
    511^2     0.045   9  0.125 | 0.532 (11.8) | 1.518 (33.5) |  173    | 4.02  11.2  2.15 (1.9)
    1023^2    0.118   9  0.125 | 2.361 (19.9) | 9.530 (80.4) |  113    | 10.3  36.1  8.60 (1.2)
    2047^2    0.605   9  0.125 | 11.11 (18.4) | 48.60 (80.3) |  144    | 54.4  154   34.4 (1.6)
    4095^2    2.350   9  0.125 | skipped      | skipped      |  140    | 205   614   138  (1.5)
    63^3      0.071  13  0.241 | 1.209 (17.0) | 1.885 (26.5) |  285    | 4.16  7.73  1.76 (2.4)
    127^3     0.571  14  0.247 | 19.40 (34.0) | 22.86 (40.1) |  279    | 34.2  67.6  14.4 (2.4)

    FMG, one pass, error / discretization error and time / V-cycle solve time:
                 1 V(1,1) per level   2 V(1,1) per level   1 V(2,1) per level
    255^2        1.51x   0.31         0.83x   0.56         0.36x   0.36
    1023^2       1.55x   0.27         0.84x   0.39         0.36x   0.30
    2047^2       1.59x   0.20         0.86x   0.32         0.37x   0.21
    4095^2       1.74x   0.24         0.93x   0.36         0.41x   0.25
    127^3       15.2x    0.11         0.45x   0.18         5.03x   0.12

    copy bandwidth 13.0 GB/s; the kernels' first call 0.55 s (loaded from numba's cache;
    a cold compile of both dtypes took 30-45 s on this machine)

Against the targets: 1023^2 set-up + solve 19.9x faster than Ruge-Stuben (target 20x; an
earlier run of the same code gave 19.9x too, and 14-17x before the last round of
Python-overhead cuts); V(1,1) within 1.2-2.8x of the bandwidth bound (target 3x; it was
5-9x); FMG reaches the discretization error in 0.21-0.30 of the V-cycle solve in 2D
(1 V(2,1) per level; target 1/4: met from 2047^2 up, missed at 1023^2 and below, where
the Python that drives each level visit weighs more) and 0.18-0.22 in 3D (2 V(1,1) per
level); 127^3 34x faster than Ruge-Stuben (target 10x); 2D time per unknown from 255^2 to
4095^2 within 2.96x (target 1.3x: missed). The large grids run near the bandwidth bound;
255^2 does not, because a level visit costs tens of microseconds of Python (eight levels,
about 20 kernel calls per V-cycle) and the set-up builds its levels in Python: half of a
255^2 V-cycle is not arithmetic. Stopping the hierarchy at 15^2 (``max_coarse=225``) makes
255^2 about 15% faster, not 2x.

The bound: a V(1,1) red-black cycle must at least read u and f and write u in each of its
two sweeps (6 arrays), read u and f for the restricted residual (2) and read and write u
for the correction (2): 10 arrays of N doubles on the fine grid, times 1 + 2^-d + 4^-d +
... for the coarse grids. The fused kernels move about 6 (u and f read and u written on
the way down, the same on the way up), which is how the cycle gets close to that bound.

After the kernels' arrays became borrowed views (no reference counting per row, no
allocation per call), one run of ``--threads 1 --clock cpu --no-spsolve --sizes
255,1023,2047`` on the same machine, loaded by three other jobs (copy bandwidth 12.9 GB/s)::

    grid     mgnet s its | RS s (x)      | ns/unkn. | V-cycle ms (x bound) | FMG 1 V(2,1)/level
    255^2     0.019   9  | 0.125 (6.7)   |  287     | 1.20 (2.24)          | 0.36x, 0.34
    1023^2    0.116   9  | 2.367 (20.4)  |  111     | 8.89 (1.03)          | 0.36x, 0.26
    2047^2    0.538   9  | 11.36 (21.1)  |  129     | 47.5 (1.38)          | 0.37x, 0.23

1023^2 now meets the 20x target (20.4x); the time per unknown (2.59x from 255^2 to
2047^2) still misses its own. A profile of 50 solves at 255^2 after this change corrects
the reason given above: 12.4 of the 15.0 ms of a solve are spent inside the compiled
sweeps (one red-black sweep costs about 4 ns per node at 63^2, 255^2 and 1023^2 alike),
Python and the kernels' dispatch the rest. At 1023^2 that rate happens to meet the memory
bound; at 255^2 the grid sits in cache and the same rate is 2.2x its (DRAM) bound. A
vectorised colour update (the residual of a whole row into contiguous scratch, then the
colour's nodes from it) was tried and left the 4 ns unchanged, so the cost lies in the
per-row work of the pipelined sweep (in 2D a "plane" is one row), not in the arithmetic.

FMG, corrected. The figures above compare the error against the exact solution with the
discretization error; that alone can hide an algebraic error of the opposite sign (V(2,1)
with linear P reads 0.36x, but is 1.36x the discretization error away from the discrete
solution). The FMG lines now print both, and "reached" needs both at most 1x. With FMG's
own cubic interpolation of each coarse solution (``CubicInterpolation``, the default of
``fmg``) one V(1,1) per level reaches it; with linear P it takes two. One run, same
options, sizes 1023,2047,63x63x63 (RS: 20.9x, 26.3x, 20.1x; V-cycle 1.06x, 1.35x, 1.87x
the bound; time per unknown 110, 118 ns)::

    FMG pass: time / V-cycle solve; error, algebraic error (x the discretization error)
                     1 V(1,1) cubic     1 V(1,1) linear    2 V(1,1) cubic     1 V(2,1) linear
    1023^2           0.28; 0.20, 0.84   0.27; 1.55, 2.55   0.45; 0.95, 0.05   0.30; 0.36, 1.36
    2047^2           0.23; 0.21, 0.83   0.25; 1.59, 2.59   0.37; 0.97, 0.03   0.29; 0.37, 1.37
    63^3             0.19; 4.40, 5.38   0.16; 12.8, 13.8   0.29; 0.62, 0.38   0.19; 4.60, 5.58

Against the FMG target (1/4 of the V-cycle solve): met at 2047^2 (0.23), missed at 1023^2
(0.28) and in 3D (0.29, two V(1,1) per level: red-black V(1,1) smooths less per cycle in
3D, factor 0.24 against 0.125).

What this round did (1023^2, CPU time, best of several, same session):

* Compiled kernels for every hot path (residual, red and black steps, Jacobi, R, P,
  residual norm), one pass over memory each instead of one per stencil offset: V-cycle
  about 40 -> 18 ms.
* A red or black step computes the residual at its own nodes only: 18 -> 12 ms.
* The cycle's fused hooks (``R.smooth_restrict_``, ``P.add_to_smooth_``): the
  pre-smoothing and the restriction of the residual, and the correction and the
  post-smoothing, each one pipelined pass; the coarse levels start that pass from zero.
* The convergence test's residual norm without storing the residual; the colour masks of
  a constant stencil built only when a grid is asked for (set-up 12 -> 3 ms); the fused
  hooks' eligibility read from the modules' registries (32 -> 3 us per level visit);
  min/max reductions instead of ``aminmax`` along a dimension and ``isfinite(x).all()``.

Before this round (wall time, load 1-2): 1023^2 0.449 s, 6.1x Ruge-Stuben, 27.7x
smoothed aggregation; V(1,1) 5.0-8.8x the bound; ns/unknown 642, 434, 429, 529 from 255^2
to 2047^2. How stencils are applied on the PyTorch path (1023^2, float64, one thread):
``conv2d`` single channel about 28 ms per 5-point application, ``scipy.ndimage.correlate``
about 14 ms, slicing into a preallocated buffer with in-place multiply-adds about 6 ms
(5 ms in cache-sized blocks of rows), and ``torch.compile`` of the same expression about
3 ms but 40+ s to compile per grid size on a cold cache, so it is not used; the compiled
kernel here takes about 1 ms and compiles once per machine.
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
from mgnet.stencils import kernels  # noqa: E402

TOL = 1e-8
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def factor(res: list[float]) -> float:
    k = len(res) - 1
    return (res[-1] / res[0]) ** (1 / k) if k > 0 and res[0] > 0 else float("nan")


def best_of(fn, repeat: int):
    """(the shortest of ``repeat`` runs of fn, fn's last result): the least disturbed run
    of a machine others share."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = clock()
        out = fn()
        best = min(best, clock() - t)
    return best, out


def copy_bandwidth() -> float:
    """Bytes per second of a large float64 copy (read + write counted), best of 5."""
    a = torch.empty(32 * 2**20 // 8 * 4, dtype=torch.float64).fill_(1.0)
    b = torch.empty_like(a)
    b.copy_(a)
    return 2 * a.numel() * 8 / best_of(lambda: b.copy_(a), 5)[0]


def progress(message: str) -> None:
    """A line on stderr before each case, so a long run shows where it is."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def cycle_time(ml, f, x, repeat: int) -> float:
    """Seconds of one in-place V(1,1) cycle (the solver's own path), best of ``repeat``."""
    with torch.no_grad():
        ml.cycle(f, x, inplace=True)
        return best_of(lambda: ml.cycle(f, x, inplace=True), repeat)[0]


def run_size(shape, args, bw):
    dim, n = len(shape), shape[0]
    nodes = math.prod(shape)
    name = "x".join(map(str, shape))
    progress(f"{name}: mgnet V(1,1)")
    prob = make_problem("poisson", dim, n)
    small = make_problem("poisson", dim, 15)
    MultigridSolver(small.A, device="cpu").solve(small.f)  # warm-up of torch's kernels

    def setup():
        return MultigridSolver(prob.A, smoother="rbgs", nu=(1, 1), device="cpu")

    def setup_and_solve():
        ml = setup()
        res: list[float] = []
        return ml, ml.solve(prob.f, tol=TOL, residuals=res), res

    total, (ml, u, res) = best_of(setup_and_solve, args.repeat)
    setup_s = best_of(setup, args.repeat)[0]
    solve_s = best_of(lambda: ml.solve(prob.f, tol=TOL), args.repeat)[0]
    rows = [("mgnet V(1,1) RBGS", total, setup_s, len(res) - 1, factor(res))]
    # one V-cycle from the converged state, with the compiled kernels and without
    f = prob.f.reshape(1, 1, *shape)
    x = u.reshape(1, 1, *shape).clone()
    cyc = cycle_time(ml, f, x, 3 * args.repeat)
    with kernels.disabled():
        cyc_torch = cycle_time(setup(), f, x.clone(), args.repeat)
    # at least: two red-black sweeps read u, f and write u (3 arrays each), residual +
    # restriction read u, f (2), interpolation + correction read and write u (2): 10
    # arrays of nodes doubles on the fine grid, times 1 + 1/2^d + 1/4^d + ... for the coarse
    # grids (the fused kernels move about 6: u and f read, u written, down and up)
    bound_s = 10 * 8 * nodes / (1 - 2.0**-dim) / bw
    # FMG: one pass of V(1,1) with 1 and 2 cycles per level (this hierarchy), and of
    # V(2,1) with one (the same hierarchy with nu = (2, 1)), each with the cubic FMG
    # interpolation (the default) or the cycle's linear P; set-up not counted. Reported:
    # the error against the exact solution and the algebraic error (against the discrete
    # solution u, solved to 1e-8 above), each over the discretization error |u - u*|
    disc = prob.error(u)
    fmg = {}
    ml21 = MultigridSolver(prob.A, smoother="rbgs", nu=(2, 1), device="cpu")
    for label, solver, cycles, interp in (
        ("V(1,1), cubic", ml, 1, "cubic"),
        ("V(1,1), linear", ml, 1, "cycle"),
        ("V(1,1), cubic", ml, 2, "cubic"),
        ("V(2,1), linear", ml21, 1, "cycle"),
    ):
        key = f"{cycles} {label}"
        progress(f"{name}: mgnet FMG, {key} per level")
        t, uf = best_of(
            lambda s=solver, c=cycles, i=interp: s.fmg(prob.f, cycles=c, interpolation=i),
            args.repeat,
        )
        algebraic = float((uf.reshape(u.shape) - u).abs().max())
        fmg[key] = (t, prob.error(uf) / disc, algebraic / disc)
    try:
        import pyamg
    except ImportError:
        pyamg = None
    A = prob.A.to_sparse()
    b = prob.f.numpy().ravel()
    if pyamg is not None and nodes <= args.pyamg_max:
        for label, build in (
            ("PyAMG Ruge-Stuben", pyamg.ruge_stuben_solver),
            ("PyAMG smoothed aggr.", pyamg.smoothed_aggregation_solver),
        ):
            progress(f"{name}: {label}")
            t0 = clock()
            amg = build(A)
            t1 = clock()
            res = []
            amg.solve(b, tol=TOL, residuals=res, maxiter=500)
            t2 = clock()
            rows.append((label, t2 - t0, t1 - t0, len(res) - 1, factor(res)))
    limit = 1_100_000 if dim == 2 else 40_000
    if limit >= nodes and not args.no_spsolve:
        import scipy.sparse.linalg as spla

        progress(f"{name}: scipy spsolve")
        t0 = clock()
        spla.spsolve(A.tocsc(), b)
        rows.append(("scipy spsolve", clock() - t0, float("nan"), 0, float("nan")))
    print(f"\n{dim}D Poisson {name} ({nodes:,} unknowns), tol {TOL:g}")
    print(f"  {'solver':<22}{'total s':>9}{'setup s':>9}{'iters':>7}{'factor':>8}{'vs mgnet':>10}")
    for label, tot, st, it, fac in rows:
        print(f"  {label:<22}{tot:>9.3f}{st:>9.3f}{it:>7}{fac:>8.3f}{tot / total:>9.1f}x")
    if nodes > args.pyamg_max:
        print(f"  PyAMG skipped above --pyamg-max {args.pyamg_max:,} unknowns")
    print(
        f"  mgnet time per unknown: {total / nodes * 1e9:.0f} ns (set-up {setup_s * 1e3:.1f} ms, "
        f"solve {solve_s * 1e3:.1f} ms)"
    )
    print(
        f"  V(1,1) cycle: {cyc * 1e3:.2f} ms compiled kernels, {cyc_torch * 1e3:.2f} ms PyTorch "
        f"path ({cyc_torch / cyc:.1f}x); bandwidth bound {bound_s * 1e3:.2f} ms: "
        f"{cyc / bound_s:.2f}x the bound"
    )
    for key, (t, err, alg) in fmg.items():
        print(
            f"  FMG, {key} per level: {t * 1e3:.1f} ms = {t / solve_s:.2f} of the V-cycle "
            f"solve; error {err:.2f}x, algebraic error {alg:.2f}x the discretization error"
        )
    ratios = {label: tot / total for label, tot, *_ in rows[1:]}
    return {
        "shape": shape,
        "total": total,
        "per_unknown": total / nodes,
        "cycle_over_bound": cyc / bound_s,
        "fmg": fmg,
        "solve": solve_s,
        "ratios": ratios,
    }


def main() -> None:
    global clock
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="torch/BLAS threads (0: default)")
    p.add_argument("--quick", action="store_true", help="only 255^2, 511^2 and 63^3")
    p.add_argument("--no-spsolve", action="store_true")
    p.add_argument(
        "--sizes",
        default=None,
        help="comma-separated grids to run instead, e.g. 1023,2047 (2D) or 63x63x63 (3D)",
    )
    p.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall time, or this process's CPU time (steadier on a shared machine; one thread)",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs of ours per figure (the best)")
    p.add_argument(
        "--pyamg-max", type=int, default=5_000_000, help="skip PyAMG above this many unknowns"
    )
    args = p.parse_args()
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"threads: torch {torch.get_num_threads()}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; "
        f"clock: {args.clock}"
    )
    t0 = time.perf_counter()
    first = kernels.warm_up()
    print(
        f"compiled CPU kernels: {'numba' if kernels.enabled() else 'off (MGNET_KERNELS=0)'}; "
        f"first call {first:.2f} s (compile on a fresh machine, else load from numba's "
        f"cache; {time.perf_counter() - t0:.2f} s with the import)"
    )
    bw = copy_bandwidth()
    print(f"copy bandwidth: {bw / 1e9:.1f} GB/s")
    sizes = [(255, 255), (511, 511), (1023, 1023), (2047, 2047), (4095, 4095)]
    sizes += [(63,) * 3, (127,) * 3]
    if args.quick:
        sizes = [(255, 255), (511, 511), (63,) * 3]
    if args.sizes:
        try:
            sizes = [
                tuple(int(x) for x in s.split("x")) if "x" in s else (int(s),) * 2
                for s in args.sizes.split(",")
            ]
        except ValueError:
            p.error(f"--sizes: expected e.g. 255,1023 or 63x63x63, got {args.sizes!r}")
        if any(len(s) not in (2, 3) or len(set(s)) != 1 for s in sizes):
            p.error(
                f"--sizes: grids must be square (n or nxn) or cubic (nxnxn), got {args.sizes!r}"
            )
    results = [run_size(s, args, bw) for s in sizes]
    print("\nAgainst the targets:")
    for r in results:
        label = "x".join(map(str, r["shape"]))
        rs = r["ratios"].get("PyAMG Ruge-Stuben")
        # reached: the error and the algebraic error both at most the discretization error
        ok = [t for t, err, alg in r["fmg"].values() if err <= 1.0 and alg <= 1.0]
        fmg = min(ok) if ok else float("nan")
        print(
            f"  {label:<12} vs Ruge-Stuben {'-' if rs is None else f'{rs:.1f}x':>7}; "
            f"V-cycle {r['cycle_over_bound']:.2f}x the bandwidth bound; FMG to the "
            f"discretization error in {fmg / r['solve']:.2f} of the V-cycle solve"
        )
    per = [r["per_unknown"] for r in results if len(r["shape"]) == 2]
    if len(per) > 1:
        print(
            f"  2D time per unknown, largest / smallest: {max(per) / min(per):.2f} "
            f"(target: within 1.3)"
        )


if __name__ == "__main__":
    main()
