"""Geometric multigrid and the multilevel drivers against independent references: the
checks that the mutation score of ``benchmarks/mutation_score.py`` showed missing
(argument checks of the drivers, the convergence test at its boundary, residual
histories in the caller's units, float32 scaling of tiny right-hand sides, the jump
coefficient, the order of the nonlinear red-black sweep)."""

import math

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from mgnet.core import Step
from mgnet.multigrid import (
    MultigridSolver,
    MultilevelSolver,
    SolverLevel,
    geometric_hierarchy,
    make_problem,
)
from mgnet.multigrid.smoothing import RedBlackGaussSeidel
from mgnet.stencils import NonlinearOperator, laplacian


def _poisson_1d(n: int = 7) -> MultigridSolver:
    return MultigridSolver(laplacian((n,)), device="cpu")


@pytest.mark.parametrize("tol", [-1.0, 0.0, math.nan, math.inf])
def test_a_tolerance_that_is_not_a_positive_number_is_refused(tol):
    solver = _poisson_1d()
    for accel in (None, "cg"):
        with pytest.raises(ValueError, match="tol: must be a positive number"):
            solver.solve(np.ones(7), tol=tol, accel=accel)
    with pytest.raises(ValueError, match="tol: must be a positive number"):
        solver.fmg(np.ones(7), tol=tol)


def test_fmg_needs_at_least_one_cycle_per_level():
    with pytest.raises(ValueError, match="cycles: must be >= 1, got 0"):
        _poisson_1d().fmg(np.ones(7), cycles=0)


def test_residual_exactly_at_the_tolerance_is_converged_in_both_drivers():
    # x0 = 0 makes ||b - A x0|| = ||b|| bit for bit, so tol = 1 puts the residual exactly
    # on the documented test ||b - A x|| <= tol ||b||: converged before any iteration
    solver = _poisson_1d()
    b = np.linspace(1.0, 2.0, 7)
    for accel in (None, "cg"):
        x = solver.solve(b, tol=1.0, accel=accel)
        assert solver.converged and solver.reason == "converged"
        assert solver.iterations == 0
        assert np.all(x == 0.0)
        assert solver.history == [float(np.linalg.norm(b))]


def test_a_cg_preconditioner_checks_nu_on_every_level_but_the_coarsest():
    # 15 -> 7 -> 3 -> 1: make level 1 (neither the finest nor the coarsest) unequal
    levels = geometric_hierarchy(laplacian((15,)), smoother="jacobi", nu=(1, 1))
    assert len(levels) == 4
    levels[1].postsmoother = levels[1].postsmoother * 2
    solver = MultilevelSolver(levels, device="cpu")
    with pytest.raises(ValueError, match=r"level 1 has \(1, 2\)"):
        solver.symmetric_cycle()
    # the coarsest level (a direct solve, no post-smoothing) is not checked
    ok = MultilevelSolver(geometric_hierarchy(laplacian((15,)), nu=(1, 1)), device="cpu")
    assert ok.levels[-1].nu == (1, 0)
    ok.symmetric_cycle()


@pytest.mark.parametrize("accel", [None, "cg"])
def test_residual_history_is_in_the_callers_units_for_a_huge_right_hand_side(accel):
    # 1e200 is outside [2^-400, 2^400]: the drivers solve b / s with s a power of two and
    # must report ||b - A x|| of the caller's problem, not of the scaled one
    n = 15
    solver = MultigridSolver(laplacian((n, n)), device="cpu")
    A = solver.levels[0].A.to_sparse().tocsr()
    b0 = np.random.default_rng(0).standard_normal(n * n) + 0.5
    scale = 1e200
    x = solver.solve(b0 * scale, tol=1e-6, accel=accel)
    assert solver.converged
    h = solver.history
    assert h[0] == pytest.approx(np.linalg.norm(b0) * scale, rel=1e-12)
    # the last entry is the true residual of the returned x (computed scaled, no overflow;
    # at 1e-6 of ||b|| it lies far above the rounding of b - A x)
    true = np.linalg.norm(b0 - A @ (x / scale)) * scale
    assert h[-1] == pytest.approx(true, rel=1e-4)
    assert 1e-9 * h[0] < h[-1] <= 1e-6 * h[0]
    np.testing.assert_allclose(x / scale, spla.spsolve(A.tocsc(), b0), rtol=1e-4)


def test_float32_solve_of_a_tiny_right_hand_side_is_scaled_into_range():
    # b ~ 2^-130 is a float32 subnormal (19 bits). Scaled by a power of two, the cycles run
    # on normal numbers and only the returned x is rounded to a subnormal once; unscaled,
    # every residual carries the subnormal rounding of x times ||A|| and the iteration
    # stagnates near 1e-3
    n = 31
    solver = MultigridSolver(laplacian((n, n)), precision="float32", device="cpu")
    A = solver.levels[0].A.to_sparse().tocsr()
    tiny = 2.0**-130
    f = 1 + 0.5 * np.sin(np.arange(n * n)).reshape(n, n)
    b = (f * tiny).astype(np.float32)
    x = solver.solve(b, tol=1e-4, maxiter=30)
    assert solver.converged and solver.iterations <= 8
    assert x.dtype == np.float32
    ref = spla.spsolve(A.tocsc(), b.astype(np.float64).ravel() / tiny).reshape(n, n)
    err = np.abs(x.astype(np.float64) / tiny - ref).max() / np.abs(ref).max()
    assert err < 2e-4


def test_jump_coefficient_is_100_on_the_middle_square_and_1_outside():
    # n = 7, h = 1/8: node (3, 3) is (0.5, 0.5), all four faces inside the square, so
    # its diagonal is 4 * 100 / h^2; node (0, 0) is (1/8, 1/8), all faces outside: 4 / h^2
    d = make_problem("jump", 2, 7).A.diagonal().reshape(7, 7)
    assert float(d[3, 3]) == pytest.approx(4 * 100 * 64)
    assert float(d[0, 0]) == pytest.approx(4 * 64)
    assert float(d[6, 6]) == pytest.approx(4 * 64)
    # 1D: node 3 (x = 1/2) inside, node 0 (x = 1/8) outside
    d1 = make_problem("jump", 1, 7).A.diagonal().reshape(7)
    assert float(d1[3]) == pytest.approx(2 * 100 * 64)
    # node 0 (x = 1/8): the face towards x = 1/4 (a side, inside) has the harmonic mean
    # 2 * 100 / 101 of a = 1 and a = 100
    assert float(d1[0]) == pytest.approx(64 * (1 + 200 / 101))


def test_nonlinear_red_black_sweep_updates_red_then_black():
    # -u'' + u^3 = 1 on 7 nodes (h = 1/8), u = 0: the Newton step on a node is
    # (f - A(u))_i / (2 / h^2 + 3 u_i^2) = 1 / 128. Red (even index) nodes go first.
    A = NonlinearOperator(laplacian((7,)), "cubic")
    red, black = RedBlackGaussSeidel()(A, 0)
    u = torch.zeros(1, 1, 7, dtype=torch.float64)
    f = torch.ones_like(u)
    with torch.no_grad():
        u1 = Step(A, red)(u, f, inplace=False)
        u2 = Step(A, black)(u1, f, inplace=False)
    expect = np.zeros(7)
    expect[0::2] = 1 / 128
    np.testing.assert_allclose(u1.flatten().numpy(), expect, rtol=1e-14)
    # black nodes then see the updated red neighbours: (1 + 64 (u_l + u_r)) / 128
    expect[1::2] = (1 + 64 * 2 / 128) / 128
    np.testing.assert_allclose(u2.flatten().numpy(), expect, rtol=1e-14)


def test_a_nonlinear_operator_refuses_galerkin_coarse_operators():
    A = NonlinearOperator(laplacian((7,)), "cubic")
    with pytest.raises(ValueError, match="coarse: a nonlinear operator is coarsened by"):
        MultigridSolver(A, coarse="galerkin", device="cpu")


@pytest.mark.parametrize("accel", [None, "cg"])
def test_a_zero_right_hand_side_gives_zero_at_once(accel):
    # ||b|| = 0: the norms take their scaled form, which must give 0 (not 0 / 0)
    solver = MultigridSolver(laplacian((7, 7)), device="cpu")
    x = solver.solve(np.zeros((7, 7)), accel=accel)
    assert solver.converged and solver.iterations == 0
    assert np.all(x == 0.0) and solver.history == [0.0]


def test_fmg_history_starts_with_the_largest_norm_of_a_batch():
    solver = MultigridSolver(laplacian((7, 7)), device="cpu")
    rng = np.random.default_rng(0)
    b = rng.standard_normal((2, 1, 7, 7))
    b[1] *= 10.0
    solver.fmg(b, maxiter=3, tol=1e-10)
    norms = np.linalg.norm(b.reshape(2, -1), axis=1)
    assert solver.history[0] == pytest.approx(norms.max(), rel=1e-14)


class _Dense(torch.nn.Module):
    """A dense symmetric matrix acting on (batch, 1, n)."""

    def __init__(self, M: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("M", torch.from_numpy(M))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u @ self.M.T


class _OneLevel(MultilevelSolver):
    def __init__(self, A: np.ndarray, B: np.ndarray) -> None:
        self.shape, self.n = (A.shape[0],), A.shape[0]
        super().__init__([SolverLevel(A=_Dense(A), presmoother=[_Dense(B)])], device="cpu")


def test_cg_stops_with_breakdown_when_p_a_p_is_not_positive():
    # one level whose "coarse solve" is M = I (positive definite) and an indefinite A:
    # for b = (1, 2), r^T M r = 5 > 0 but p^T A p = b^T A b = 1 - 4 = -3 <= 0, so CG must
    # stop at once with "breakdown" (its step would go uphill)
    A = np.diag([1.0, -1.0])
    solver = _OneLevel(A, np.eye(2))
    x = solver.solve(np.array([1.0, 2.0]), accel="cg", maxiter=5)
    assert solver.reason == "breakdown" and not solver.converged
    assert solver.iterations == 0 and np.all(x == 0.0)
    # and with M = -I (r^T M r < 0) and a positive definite A: breakdown as well
    solver = _OneLevel(np.eye(2), -np.eye(2))
    solver.solve(np.array([1.0, 2.0]), accel="cg", maxiter=5)
    assert solver.reason == "breakdown" and solver.iterations == 0


@pytest.mark.parametrize("A", [laplacian((15, 15)), NonlinearOperator(laplacian((15,)), "cubic")])
def test_geometric_hierarchy_defaults_are_the_solvers(A):
    # geometric_hierarchy documents "arguments as MultigridSolver": called with its own
    # defaults it must build the solver's default levels
    got = geometric_hierarchy(A)
    want = MultigridSolver(A, device="cpu").levels
    assert len(got) == len(want) >= 3
    for g, w in zip(got, want):
        assert (g.nu, g.shape, g.info, g.unknowns) == (w.nu, w.shape, w.info, w.unknowns)
        names = [type(B).__name__ for B in g.presmoother + g.postsmoother]
        assert names == [type(B).__name__ for B in w.presmoother + w.postsmoother]
    assert got[0].nu == (2, 2)  # one red-black sweep (two steps) before and after
