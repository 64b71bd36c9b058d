"""``mgnet demo`` (and ``make demo``): the project's main job on embedded data.

Part 1 trains MgNet and the pre-activation ResNet-18 baseline on scikit-learn's 8x8 digits
with one and the same recipe (the ``mgnet train`` defaults) and prints their test accuracy
(model chosen on the validation split) and parameter count side by side. Part 2 runs the
same cycle with sigma = identity and fixed stencils as a multigrid solver for 2D Poisson,
next to PyAMG's figures from the same run when PyAMG is installed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mgnet.multigrid import MultigridSolver, make_problem
from mgnet.train import TrainConfig, train

__all__ = ["run_demo", "classify_digits", "demo_poisson", "DEMO_MODELS"]

# The comparison of part 1: MgNet and the baseline of the requirement, trained alike.
DEMO_MODELS = ("mgnet_digits", "preact_resnet18")


def classify_digits(
    models: tuple[str, ...] = DEMO_MODELS, output_dir: str | Path = ".", **recipe: Any
) -> list[dict]:
    """Train each of ``models`` on the digits with the same ``recipe`` (TrainConfig fields;
    defaults: those of ``mgnet train``) and return one results dict per model."""
    rows = []
    for name in models:
        cfg = TrainConfig(
            model=name,
            data="digits",
            progress=False,
            output_dir=str(Path(output_dir) / name),
            **recipe,
        )
        rows.append(train(cfg))
    return rows


def _table(rows: list[dict]) -> str:
    lines = [
        f"{'model':<20}{'parameters':>12}{'test acc %':>12}{'val acc %':>11}"
        f"{'best epoch':>12}{'time s':>9}"
    ]
    for r in rows:
        lines.append(
            f"{r['model']:<20}{r['parameters']:>12,}{r['test_accuracy']:>12.2f}"
            f"{r['best_val_accuracy']:>11.2f}{r['best_epoch']:>12}"
            f"{r['wall_time_s']:>9.1f}"
        )
    return "\n".join(lines)


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


def run_demo(
    epochs: int | None = None,
    baseline: str = DEMO_MODELS[1],
    seed: int = 0,
    device: str = "auto",
    threads: int = 1,
    output_dir: str | Path | None = None,
    poisson_n: int = 1023,
) -> dict[str, Any]:
    """Run every part of the demo; returns ``{"classify": [results, ...], ...}``.

    ``output_dir``: where the runs are kept (``None``: a temporary folder, removed after).
    """
    t0 = time.perf_counter()
    recipe: dict[str, Any] = {"seed": seed, "device": device, "threads": threads}
    if epochs is not None:
        recipe["epochs"] = epochs
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mgnet-demo-") as tmp:
        root = Path(output_dir) if output_dir is not None else Path(tmp)

        # -- part 1: classification of the embedded 8x8 digits -------------------------
        cfg = TrainConfig(**recipe)
        print(
            f"== part 1: MgNet vs {baseline} on the 8x8 digits, same recipe: "
            f"{cfg.epochs} epochs, {cfg.optimizer} lr {cfg.lr} {cfg.lr_scheduler}, "
            f"batch {cfg.batch_size}, wd {cfg.weight_decay}, "
            f"label smoothing {cfg.label_smoothing}, seed {cfg.seed} ==",
            flush=True,
        )
        rows = classify_digits((DEMO_MODELS[0], baseline), root / "classify", **recipe)
        results["classify"] = rows
        print()
        print(_table(rows))
        print(
            "test accuracy: the model of the best validation epoch, on the 360 test images",
            flush=True,
        )

        # -- part 2: the same cycle, sigma = identity and fixed stencils, solves a PDE ----
        print("\n== part 2: the same MgNet cycle as a multigrid solver ==", flush=True)
        default_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            results["poisson"] = demo_poisson(n=poisson_n)
        finally:
            torch.set_num_threads(default_threads)

    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    return results
