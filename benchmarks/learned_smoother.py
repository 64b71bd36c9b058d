"""Learned smoothers against red-black and zebra line Gauss-Seidel: factor and time per cycle.

For each problem a learned smoother (``mgnet.multigrid.learn_smoother``: B^{l,i} = K^{l,i} *
D^-1, trained through the solver's V-cycle) is trained on 63 x 63 only, with the recipe
below. Then, on grids it never saw (255^2 and 1023^2), every smoother runs in the same
geometric V-cycle (rediscretized coarse grids, direct solve on 1 x 1), one sweep before and
one after the coarse correction, and this prints

* factor: the asymptotic convergence factor per V-cycle, by power iteration on the error
  propagation operator (f = 0, normalised every cycle, geometric mean of the last 10 of
  40 ratios);
* ms/cycle: the median time of one V-cycle on the solver's in-place path;
* x rbgs: that time relative to red-black Gauss-Seidel's, from the same run;
* digit x rbgs: the time to gain one digit, ms/cycle / -log10(factor), relative to
  red-black Gauss-Seidel's (a factor >= 1 gains none: "-").

The smoothers: ``rbgs`` red-black Gauss-Seidel V(1,1) (two masked point steps per sweep),
``line`` zebra line Gauss-Seidel V(1,1) (even lines, then odd lines, along the strong
axis, tridiagonal solves by cyclic reduction), ``learned`` (nu learned convolution steps
per sweep, kernel shape in the recipe). Problems: anisotropic -u_xx - eps u_yy with eps =
0.1 and 0.01 (strong coupling along axis 0), Poisson, and ``jump``: -div(a grad u) with a =
100 on the middle square [1/4, 3/4]^2 and 1 outside.

Run (never two benchmarks at once on a small machine)::

    python benchmarks/learned_smoother.py                  # about 20 minutes on one thread
    python benchmarks/learned_smoother.py --sizes 255      # 255^2 only
    python benchmarks/learned_smoother.py --quick          # a smoke test (15^2), seconds

Measured here (2-core VM shared with other jobs, load 6-8, one thread, float64, torch
2.14.1 CPU), one run; absolute times are noisy, the ratios come from the same run.
Training on 63^2 (150 Adam steps, 4 cycles x 8 errors) took 66 s (aniso 0.1), 88 s
(aniso 0.01), 27 s (poisson) and 33 s (jump); the factor at 63^2 went from damped Jacobi's
0.731 to 0.057, 0.943 to 0.440, 0.364 to 0.106 and 0.672 to 0.642::

    problem       grid  smoother            factor   ms/cycle  x rbgs  digit x rbgs
    aniso 0.1    255^2  rbgs                 0.695       13.5    1.00         1.00
    aniso 0.1    255^2  line                 0.082       31.1    2.31         0.34
    aniso 0.1    255^2  learned 11x3x2       0.065       37.9    2.81         0.38
    aniso 0.1   1023^2  rbgs                 0.697      112.8    1.00         1.00
    aniso 0.1   1023^2  line                 0.084      288.0    2.55         0.37
    aniso 0.1   1023^2  learned 11x3x2       0.068      261.0    2.31         0.31
    aniso 0.01   255^2  rbgs                 0.951        6.8    1.00         1.00
    aniso 0.01   255^2  line                 0.093       31.1    4.56         0.10
    aniso 0.01   255^2  learned 11x3x3       0.480       37.5    5.50         0.38
    aniso 0.01  1023^2  rbgs                 0.951       76.5    1.00         1.00
    aniso 0.01  1023^2  line                 0.095      344.8    4.50         0.10
    aniso 0.01  1023^2  learned 11x3x3       0.486      443.4    5.79         0.40
    poisson      255^2  rbgs                 0.119       11.3    1.00         1.00
    poisson      255^2  line                 0.067       33.3    2.95         2.32
    poisson      255^2  learned 3x3x1        0.106       11.2    1.00         0.94
    poisson     1023^2  rbgs                 0.118       55.3    1.00         1.00
    poisson     1023^2  line                 0.067      366.0    6.62         5.23
    poisson     1023^2  learned 3x3x1        0.106      106.5    1.93         1.84
    jump         255^2  rbgs                 0.691       19.6    1.00         1.00
    jump         255^2  line                 0.704       34.9    1.78         1.88
    jump         255^2  learned 3x3x2        0.664       14.3    0.73         0.66
    jump        1023^2  rbgs                 0.700      156.5    1.00         1.00
    jump        1023^2  line                 0.710      406.5    2.60         2.70
    jump        1023^2  learned 3x3x2        0.673      267.2    1.71         1.53

Against the targets: anisotropic eps = 0.1, learned 0.065 (255^2) and 0.068 (1023^2),
target 0.25 (red-black Gauss-Seidel 0.70); eps = 0.01 with the same 11x3 kernels, 0.480 and
0.486, target 0.5 (red-black 0.95, zebra line 0.09), a thin margin; Poisson 0.106 against
red-black's 0.118, target 1.2x red-black. Per cycle the learned smoother costs 0.7-6x a
red-black cycle (11x3 kernels: 33 multiply-adds per node and step), per digit of accuracy
it is 2.5-3x faster than red-black on the anisotropic problems. Zebra line Gauss-Seidel is
the robust classical answer (0.08-0.10 at both eps, at 2-7x the time of a red-black cycle:
a Python-level cyclic reduction per colour and level). On the jump problem the coarse
grids, not the smoother, limit the cycle (point-sampled coefficients on the rediscretized
grids): no smoother gets far below 0.7. Square 3x3 kernels do not reach 0.25 at eps = 0.1
(about 0.3 with nu = 2), and one kernel set per level (``sharing="level"``) generalises
worse than shared kernels (11x3, nu = 2, eps = 0.01: 0.55 at 63^2 where it was trained,
0.87 at 255^2).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from mgnet.multigrid import MultigridSolver, asymptotic_factor, learn_smoother
from mgnet.multigrid.learned import smoother_problem

# The training recipe of each problem, on 63 x 63 (--quick: 15 x 15, three steps).
RECIPES = {
    "aniso 0.1": dict(problem="anisotropic", eps=0.1, kernel="11x3", nu=2),
    "aniso 0.01": dict(problem="anisotropic", eps=0.01, kernel="11x3", nu=3),
    "poisson": dict(problem="poisson", kernel=3, nu=1),
    "jump": dict(problem="jump", kernel=3, nu=2),
}
TRAIN = dict(n=63, steps=150, cycles=4, batch=8, lr=0.02)
QUICK = dict(n=15, steps=3, cycles=2, batch=2, lr=0.02)


def time_per_cycle(solver: MultigridSolver, repeats: int) -> float:
    """Median seconds of one V-cycle on the solver's in-place path (f = 0)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn((1, 1, *solver.shape), generator=g, dtype=torch.float64)
    f = torch.zeros_like(x)
    times = []
    with torch.no_grad():
        solver.cycle(f, x, inplace=True)  # warm-up: buffers, views
        for _ in range(repeats):
            t0 = time.perf_counter()
            solver.cycle(f, x, inplace=True)
            times.append(time.perf_counter() - t0)
            x.div_(float(x.norm()) or 1.0)
    return statistics.median(times)


def per_digit(seconds: float, factor: float) -> float:
    return seconds / -math.log10(factor) if 0 < factor < 1 else math.inf


def run(quick: bool, sizes: list[int], problems: list[str]) -> list[dict]:
    train = QUICK if quick else TRAIN
    iterations, tail, repeats = (8, 3, 1) if quick else (40, 10, 5)
    rows = []
    for name in problems:
        recipe = RECIPES[name]
        eps = recipe.get("eps", 0.1)
        t0 = time.perf_counter()
        learned = learn_smoother(**recipe, **train)
        trained_s = time.perf_counter() - t0
        log = learned.training_log
        k = "x".join(map(str, learned.kernel_shape))
        print(
            f"{name}: trained {k} x {learned.nu} steps in {trained_s:.0f} s; factor at "
            f"{train['n']}^2: damped Jacobi {log['factor_jacobi']:.3f} -> {log['factor']:.3f}",
            flush=True,
        )
        for n in sizes:
            A = smoother_problem(recipe["problem"], n, 2, eps)
            base = None
            for smoother, label in (("rbgs", "rbgs"), ("line", "line"), (learned, "learned")):
                solver = MultigridSolver(A, smoother=smoother, device="cpu")
                factor = asymptotic_factor(solver, iterations=iterations, tail=tail)
                seconds = time_per_cycle(solver, repeats)
                row = dict(problem=name, n=n, smoother=label, factor=factor, seconds=seconds)
                if label == "learned":
                    row["smoother"] = f"learned {k}x{learned.nu}"
                base = row if label == "rbgs" else base
                row["x_time"] = seconds / base["seconds"]
                base_digit = per_digit(base["seconds"], base["factor"])
                digit = per_digit(seconds, factor)
                row["x_digit"] = digit / base_digit if math.isfinite(base_digit) else math.nan
                rows.append(row)
                print("   " + format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    digit = row["x_digit"]
    digit = "-" if not math.isfinite(digit) else f"{digit:.2f}"
    return (
        f"{row['problem']:<11} {row['n']:>4}^2  {row['smoother']:<18} {row['factor']:>7.3f}  "
        f"{1e3 * row['seconds']:>9.1f}  {row['x_time']:>6.2f}  {digit:>11}"
    )


HEADER = (
    f"{'problem':<11} {'grid':>6}  {'smoother':<18} {'factor':>7}  {'ms/cycle':>9}  "
    f"{'x rbgs':>6}  {'digit x rbgs':>11}"
)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny training, 15^2 only")
    p.add_argument("--sizes", default=None, help="grids, e.g. 255,1023 (default)")
    p.add_argument("--problems", default=",".join(RECIPES), help=f"some of {', '.join(RECIPES)}")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    sizes = sizes or ([15] if args.quick else [255, 1023])
    problems = [s.strip() for s in args.problems.split(",") if s.strip()]
    unknown = [s for s in problems if s not in RECIPES]
    if unknown:
        p.error(f"--problems: {unknown} not in {', '.join(RECIPES)}")
    rows = run(args.quick, sizes, problems)
    print()
    print(HEADER)
    for row in rows:
        print(format_row(row))
    return rows


if __name__ == "__main__":
    main()
