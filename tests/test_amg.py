"""Algebraic multigrid on the core cycle: the smoothed-aggregation set-up, PyAMG hierarchies
run on our cycle (same residual history as PyAMG's own), and the one-line input errors."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from mgnet.core import MgCycle
from mgnet.multigrid.aggregation import (
    aggregate,
    rigid_body_modes,
    strength,
    tentative_prolongator,
)
from mgnet.multigrid.algebraic import (
    AMG_SMOOTHERS,
    AlgebraicSolver,
    check_symmetric,
    from_pyamg,
    smoothed_aggregation_solver,
)

pyamg = pytest.importorskip("pyamg")


def poisson(n: int) -> sp.csr_matrix:
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n))
    return (sp.kron(sp.eye(n), T) + sp.kron(T, sp.eye(n))).tocsr()


def run_cycles(s: AlgebraicSolver, b: np.ndarray, cycles: int, shape: str = "V") -> list[float]:
    """||b - A x|| before and after each cycle, driving the core cycle directly."""
    A = s.hierarchy[0].A
    f, kind = s.to_cycle(b)
    x, history = None, [float(np.linalg.norm(b))]
    with torch.no_grad():
        for _ in range(cycles):
            x = s.cycle(f, x, shape=shape, inplace=True)
            history.append(float(np.linalg.norm(b - A @ s.from_cycle(x, kind))))
    return history


def test_strength_aggregation_and_tentative_prolongator():
    A = poisson(12)
    S = strength(A, 0.0)
    assert (S.diagonal() == 0).all() and (S != S.T).nnz == 0
    agg, count = aggregate(S)
    assert (agg >= 0).all() and count == agg.max() + 1
    # every aggregate is connected through strong couplings and has at least 2 nodes
    sizes = np.bincount(agg)
    assert sizes.min() >= 2 and 144 / count > 3
    for a in range(count):
        nodes = np.flatnonzero(agg == a)
        sub = S[nodes][:, nodes]
        assert sp.csgraph.connected_components(sub)[0] == 1
    B = np.c_[np.ones(144), np.arange(144.0)]
    T, Bc = tentative_prolongator(agg, count, B)
    np.testing.assert_allclose((T.T @ T).toarray(), np.eye(2 * count), atol=1e-12)
    np.testing.assert_allclose(T @ Bc, B, atol=1e-10)
    # a strong threshold drops the weak couplings of an anisotropic operator
    T1 = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(12, 12))
    aniso = (sp.kron(sp.eye(12), T1) + 0.01 * sp.kron(T1, sp.eye(12))).tocsr()
    assert strength(aniso, 0.25).nnz < strength(aniso, 0.0).nnz / 1.9


def test_rigid_body_modes_are_the_null_space_of_free_elasticity():
    skfem = pytest.importorskip("skfem")
    from mgnet.multigrid.matrices import elasticity_matrix

    K, coords = elasticity_matrix(refine=2, clamp=False)
    Bm = rigid_body_modes(coords)
    assert Bm.shape == (K.shape[0], 3)
    assert np.abs(K @ Bm).max() < 1e-10 * abs(K).max()
    del skfem


@pytest.mark.parametrize("shape", ["V", "W", "F"])
def test_from_pyamg_reproduces_pyamgs_residual_history(shape):
    A = poisson(24)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    jac = ("jacobi", {"omega": 2 / 3, "withrho": False, "iterations": 1})
    for ml in (
        pyamg.smoothed_aggregation_solver(A, presmoother=jac, postsmoother=jac, max_coarse=10),
        pyamg.ruge_stuben_solver(A, presmoother=jac, postsmoother=jac, max_coarse=10),
    ):
        ref: list[float] = []
        # W and F visit the coarsest level twice where PyAMG solves there once: the same
        # numbers up to rounding, so stop before the residual reaches rounding level
        its = 12 if shape == "V" else 8
        ml.solve(b, x0=np.zeros_like(b), tol=1e-14, maxiter=its, cycle=shape, residuals=ref)
        s = from_pyamg(ml, smoother="jacobi", omega=2 / 3, device="cpu")
        ours = run_cycles(s, b, len(ref) - 1, shape)
        np.testing.assert_allclose(ours, ref, rtol=1e-8)
        assert ours[-1] / ours[0] < 1e-3  # and it converges


def test_smoothed_aggregation_agrees_with_spsolve_on_every_smoother():
    A = poisson(20)
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    exact = spla.spsolve(A.tocsc(), b)
    for smoother in AMG_SMOOTHERS:
        s = smoothed_aggregation_solver(
            A, smoother=smoother, nu=(2, 2), device="cpu", max_coarse=10
        )
        assert isinstance(s.cycle, MgCycle) and len(s.levels) >= 3
        history = run_cycles(s, b, 40)
        factor = (history[-1] / history[0]) ** (1 / 40)
        assert factor < 0.7, (smoother, factor)
        x = s.from_cycle(_solve(s, b, 60), s.to_cycle(b)[1])
        assert np.linalg.norm(x - exact) <= 1e-8 * np.linalg.norm(exact), smoother


def _solve(s: AlgebraicSolver, b: np.ndarray, cycles: int) -> torch.Tensor:
    f, _ = s.to_cycle(b)
    x = None
    with torch.no_grad():
        for _ in range(cycles):
            x = s.cycle(f, x, inplace=True)
    return x


def test_batched_right_hand_sides_equal_one_at_a_time():
    A = poisson(16)
    s = smoothed_aggregation_solver(A, device="cpu")
    b = np.random.default_rng(2).standard_normal((A.shape[0], 4))
    together = _solve(s, b, 5).T.numpy()
    for j in range(4):
        alone = _solve(s, b[:, j], 5).T.numpy()[:, 0]
        np.testing.assert_allclose(together[:, j], alone, rtol=1e-12, atol=1e-12)


def test_float32_cycle_runs_in_float32():
    A = poisson(16)
    s = smoothed_aggregation_solver(A, device="cpu", dtype=torch.float32)
    f, kind = s.to_cycle(np.ones(A.shape[0], dtype=np.float32))
    with torch.no_grad():
        x = s.cycle(f, None, inplace=True)
    assert x.dtype == torch.float32
    assert s.from_cycle(x, kind).dtype == np.float32


def cycle_as_preconditioner(s: AlgebraicSolver) -> spla.LinearOperator:
    """M r = one V-cycle from zero, for SciPy's CG."""

    def matvec(r: np.ndarray) -> np.ndarray:
        f, kind = s.to_cycle(r)
        with torch.no_grad():
            return s.from_cycle(s.cycle(f, None, inplace=True), kind)

    return spla.LinearOperator((s.n, s.n), matvec=matvec)


def test_elasticity_with_rigid_body_modes_preconditions_cg():
    pytest.importorskip("skfem")
    from mgnet.multigrid.matrices import elasticity_matrix

    K, coords = elasticity_matrix(refine=3)
    Bm = rigid_body_modes(coords)
    s = smoothed_aggregation_solver(K, Bm, blocksize=2, device="cpu", max_coarse=20)
    assert s.hierarchy[1].B.shape[1] == 3 and s.hierarchy[1].A.shape[0] % 3 == 0
    its = []
    x, info = spla.cg(
        K,
        np.ones(K.shape[0]),
        rtol=1e-8,
        maxiter=60,
        M=cycle_as_preconditioner(s),
        callback=lambda xk: its.append(1),
    )
    assert info == 0 and len(its) <= 35  # measured 26 (PyAMG's own SA-PCG: 23)
    without = []
    spla.cg(K, np.ones(K.shape[0]), rtol=1e-8, maxiter=60, callback=lambda xk: without.append(1))
    assert len(without) == 60  # unpreconditioned CG is far from converged


def test_level_table_and_complexities():
    s = smoothed_aggregation_solver(poisson(20), device="cpu")
    text = repr(s)
    assert "mgnet.core.MgCycle" in text and "operator complexity" in text
    assert 1.0 < s.operator_complexity() < 2.0 and 1.0 < s.grid_complexity() < 1.5
    assert len(text.splitlines()) == len(s._header()) + 3 + len(s.levels)
    x = s.solve(np.ones(400), tol=1e-10, accel="cg")  # the base's solve, NumPy in and out
    assert isinstance(x, np.ndarray) and s.converged and s.iterations <= 20


# ---------------------------------------------------------------------- bad input
def test_bad_matrices_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^A: expected a square matrix, got shape \(3, 4\)$"):
        smoothed_aggregation_solver(sp.random(3, 4, 0.5, format="csr"))
    bad = poisson(4).tolil()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"^A: holds NaN or inf \(first in row 2\)$"):
        smoothed_aggregation_solver(bad.tocsr())
    bad[2, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        smoothed_aggregation_solver(bad.toarray())
    empty = poisson(4).tolil()
    empty[5, :] = 0
    with pytest.raises(ValueError, match=r"^A: row 5 is empty"):
        smoothed_aggregation_solver(empty.tocsr())
    with pytest.raises(TypeError, match="^A: expected a SciPy sparse matrix"):
        smoothed_aggregation_solver("matrix.mtx")


def test_pure_neumann_needs_its_null_space():
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(10, 10)).tolil()
    T[0, 0] = T[9, 9] = 1.0
    N = (sp.kron(sp.eye(10), T) + sp.kron(T, sp.eye(10))).tocsr()
    with pytest.raises(ValueError, match=r"^A: the matrix is singular .*pass its null space as B"):
        smoothed_aggregation_solver(N)
    s = smoothed_aggregation_solver(N, B=np.ones(100), device="cpu")
    b = np.random.default_rng(3).standard_normal(100)
    b -= b.mean()  # compatible right-hand side
    history = run_cycles(s, b, 30)
    assert history[-1] < 1e-8 * history[0]


def test_wrong_near_nullspace_is_refused():
    A = poisson(5)
    with pytest.raises(ValueError, match=r"^B: expected near-nullspace candidates of shape"):
        smoothed_aggregation_solver(A, B=np.ones((24, 1)))
    with pytest.raises(ValueError, match="^B: the 2 candidates are linearly dependent"):
        smoothed_aggregation_solver(A, B=np.ones((25, 2)))
    with pytest.raises(ValueError, match="^blocksize: must be a positive divisor"):
        smoothed_aggregation_solver(A, blocksize=2)


def test_non_symmetric_matrix_is_refused_for_cg():
    A = poisson(6).tolil()
    A[0, 1] = -2.0
    with pytest.raises(ValueError, match=r"^A: conjugate gradients \(accel='cg'\) needs a symm"):
        check_symmetric(A.tocsr())
    s = smoothed_aggregation_solver(A.tocsr(), device="cpu")
    with pytest.raises(ValueError, match=r"^A: conjugate gradients \(accel='cg'\) needs a symm"):
        s.solve(np.ones(36), accel="cg")
    check_symmetric(poisson(6))


def test_from_pyamg_refuses_what_is_not_a_hierarchy():
    with pytest.raises(TypeError, match="^ml: expected a pyamg MultilevelSolver"):
        from_pyamg(object())


def test_wrong_right_hand_side_is_refused():
    s = smoothed_aggregation_solver(poisson(5), device="cpu")
    with pytest.raises(ValueError, match=r"^b: expected shape \(25,\) or \(25, k\), got \(24,\)"):
        s.to_cycle(np.ones(24))
    with pytest.raises(TypeError, match="^b: expected a real tensor or array"):
        s.to_cycle(np.array(["a"] * 25))


# --------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_cycle_equals_cpu_cycle():
    A = poisson(32)
    b = np.random.default_rng(4).standard_normal((A.shape[0], 3))
    for smoother in ("gauss_seidel", "multicolour_gauss_seidel", "jacobi", "chebyshev"):
        cpu = smoothed_aggregation_solver(A, smoother=smoother, device="cpu")
        gpu = smoothed_aggregation_solver(A, smoother=smoother, device="cuda")
        x_cpu = _solve(cpu, b, 4).T.numpy()
        x_gpu = _solve(gpu, b, 4).T.cpu().numpy()
        np.testing.assert_allclose(x_gpu, x_cpu, rtol=1e-10, atol=1e-12)
