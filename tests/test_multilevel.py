"""The multilevel base: levels as a list, vectors as SciPy/PyAMG users pass them, levels that
are not grids (the contract an algebraic set-up relies on), and the smoother protocol."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import nn

from mgnet.core import MgCycle
from mgnet.multigrid import (
    MultigridSolver,
    MultilevelSolver,
    SolverLevel,
    geometric_hierarchy,
    make_problem,
)
from mgnet.stencils import Jacobi, laplacian

torch.set_num_threads(1)


# ------------------------------------------------------------------ levels are a list
def test_levels_are_a_list_of_level_objects_like_pyamg():
    ml = MultigridSolver(laplacian(63, dim=2), device="cpu")
    assert isinstance(ml.levels, list) and len(ml.levels) == 6
    assert [lv.A.shape for lv in ml.levels] == [
        (63, 63),
        (31, 31),
        (15, 15),
        (7, 7),
        (3, 3),
        (1, 1),
    ]
    for lv, core in zip(ml.levels, ml.cycle.levels):
        assert lv.A is core.A  # the level's A^l is the cycle's, not a copy
        assert [s.B for s in core.pre] == lv.presmoother
    assert all(lv.R is not None and lv.P is not None for lv in ml.levels[:-1])
    assert ml.levels[-1].R is None and ml.levels[-1].P is None
    assert ml.levels[0].nu == (2, 2)  # one red-black sweep = two steps, before and after
    # unknowns 3969 + 961 + 225 + 49 + 9 + 1, five stencil entries per unknown
    assert ml.grid_complexity() == pytest.approx(5214 / 3969)
    assert ml.operator_complexity() == pytest.approx(5214 / 3969)
    text = repr(ml)
    assert "grid complexity 1.314" in text and "      5  1x1" in text


def test_geometric_hierarchy_is_the_set_up_alone():
    A = laplacian(31, dim=2)
    levels = geometric_hierarchy(A, smoother="jacobi", nu=(2, 1))
    assert levels[0].A is A and len(levels) == 5
    assert [len(lv.presmoother) for lv in levels[:-1]] == [2] * 4
    assert [len(lv.postsmoother) for lv in levels[:-1]] == [1] * 4
    assert all(
        isinstance(B, Jacobi) and B.omega == pytest.approx(0.8) for B in levels[0].presmoother
    )


# ---------------------------------------------------------------- vectors in and out
def test_numpy_in_numpy_out_flat_and_grid_and_lists():
    prob = make_problem("poisson", 2, 31)
    ml = MultigridSolver(prob.A, device="cpu")
    ref = ml.solve(prob.f, tol=1e-10)
    assert isinstance(ref, torch.Tensor) and ref.shape == (1, 1, 31, 31)
    grid = prob.f[0, 0].numpy()
    x = ml.solve(grid, tol=1e-10)
    assert isinstance(x, np.ndarray) and x.shape == (31, 31) and x.dtype == np.float64
    flat = ml.solve(grid.ravel(), tol=1e-10)
    assert isinstance(flat, np.ndarray) and flat.shape == (961,)
    listed = ml.solve(grid.ravel().tolist(), tol=1e-10)
    assert isinstance(listed, np.ndarray) and listed.shape == (961,)
    for y in (x.ravel(), flat, listed):
        np.testing.assert_allclose(y, ref.numpy().ravel(), rtol=0, atol=1e-14)
    t = ml.solve(prob.f[0, 0].flatten(), tol=1e-10)
    assert isinstance(t, torch.Tensor) and t.shape == (961,)
    # an initial guess in another accepted form; integers are read as reals
    y = ml.solve(np.ones(961, dtype=np.int64), x0=np.zeros((31, 31)), tol=1e-10)
    assert y.shape == (961,)
    with pytest.raises(ValueError, match=r"b: expected shape \(31, 31\), \(961,\)"):
        ml.solve(np.ones(960))
    with pytest.raises(TypeError, match="b: expected a real"):
        ml.solve(np.ones(961, dtype=complex))
    with pytest.raises(ValueError, match="x0: has 1 right-hand side"):
        ml.solve(torch.ones(2, 1, 31, 31), x0=np.zeros(961))


def test_callback_and_residuals_follow_scipy_and_pyamg():
    prob = make_problem("poisson", 2, 31)
    ml = MultigridSolver(prob.A, device="cpu")
    seen, res = [], []
    x = ml.solve(prob.f[0, 0].numpy(), tol=1e-9, residuals=res, callback=seen.append)
    assert len(seen) == ml.iterations == len(res) - 1 >= 5
    assert all(isinstance(xk, np.ndarray) and xk.shape == (31, 31) for xk in seen)
    np.testing.assert_array_equal(seen[-1], x)
    A = prob.A.to_sparse()
    b = prob.f.numpy().ravel()
    for xk, r in zip(seen, res[1:]):  # the k-th callback sees the k-th iterate
        assert np.linalg.norm(b - A @ xk.ravel()) == pytest.approx(r, rel=1e-9)
    cg_seen: list = []
    ml.solve(prob.f, tol=1e-9, accel="cg", callback=cg_seen.append)
    assert len(cg_seen) == ml.iterations and isinstance(cg_seen[0], torch.Tensor)


def test_accel_cg_and_the_pcg_alias_agree():
    prob = make_problem("poisson", 2, 63)
    ml = MultigridSolver(prob.A, device="cpu")
    res_a, res_b = [], []
    a = ml.solve(prob.f, tol=1e-10, accel="cg", residuals=res_a)
    its = ml.iterations
    b = ml.pcg(prob.f, tol=1e-10, residuals=res_b)
    assert ml.iterations == its <= 9 and res_a == res_b
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="accel"):
        ml.solve(prob.f, accel="gmres")
    with pytest.raises(ValueError, match="cycle: an F-cycle is not symmetric"):
        ml.solve(prob.f, accel="cg", cycle="F")


# ------------------------------------------------------- levels that are not grids
class Matrix(nn.Module):
    """A dense matrix acting on (batch, 1, n) tensors: x -> M x."""

    def __init__(self, M: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("M", torch.as_tensor(np.asarray(M), dtype=torch.float64))

    def forward(self, x):
        return (x.flatten(1) @ self.M.T).unsqueeze(1)


class AlgebraicSolver(MultilevelSolver):
    """Two-grid-and-more hierarchy from matrices alone, as an algebraic set-up builds it."""

    def __init__(self, A: sp.csr_matrix, levels: int = 3) -> None:
        self.n = A.shape[0]
        self.shape = (self.n,)
        built, M = [], A
        for _ in range(levels - 1):
            n = M.shape[0]
            m = (n - 1) // 2
            P = sp.lil_matrix((n, m))
            for j in range(m):  # aggregation-free 1D interpolation, written as a matrix
                P[2 * j, j], P[2 * j + 1, j], P[2 * j + 2, j] = 0.5, 1.0, 0.5
            P = P.tocsr()
            R = P.T / 2
            w = 2 / 3 / M.diagonal()
            B = Matrix(np.diag(w))
            built.append(
                SolverLevel(
                    A=Matrix(M.toarray()),
                    presmoother=[B, B],
                    postsmoother=[B, B],
                    R=Matrix(R.toarray()),
                    P=Matrix(P.toarray()),
                    unknowns=n,
                    nnz=M.nnz,
                    info="dense matrix",
                )
            )
            M = (R @ M @ P).tocsr()
        coarse = Matrix(np.linalg.inv(M.toarray()))
        built.append(
            SolverLevel(A=Matrix(M.toarray()), presmoother=[coarse], unknowns=M.shape[0], nnz=M.nnz)
        )
        super().__init__(built, device="cpu")


def test_the_base_runs_levels_that_are_not_grids():
    n = 63
    A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr") * (n + 1) ** 2
    ml = AlgebraicSolver(A)
    assert isinstance(ml.cycle, MgCycle) and [lv.unknowns for lv in ml.levels] == [63, 31, 15]
    b = np.random.default_rng(0).standard_normal(n)
    res: list = []
    x = ml.solve(b, tol=1e-10, residuals=res)
    assert isinstance(x, np.ndarray) and x.shape == (n,) and ml.converged
    np.testing.assert_allclose(x, spla.spsolve(A.tocsc(), b), rtol=1e-8)
    assert ml.convergence_factor() < 0.2
    xt = ml.solve(torch.from_numpy(b), tol=1e-10, accel="cg")
    assert isinstance(xt, torch.Tensor) and ml.iterations <= 8
    np.testing.assert_allclose(xt.numpy(), x, rtol=1e-8)
    M = ml.aspreconditioner()
    y, info = spla.cg(A, b, M=M, rtol=1e-10)
    assert info == 0
    assert ml.operator_complexity() == pytest.approx((A.nnz + 91 + 43) / A.nnz)
    assert "dense matrix" in repr(ml) and "63" in repr(ml)


# ---------------------------------------------------------------- smoother protocol
class ConvJacobi:
    """A smoother given as a plain object: B = a 3x3 convolution whose centre is w / a_ii,
    the form a learned smoother takes."""

    name = "3x3 convolution"

    def __init__(self, omega: float) -> None:
        self.omega = omega
        self.calls: list[int] = []

    def __call__(self, A, level):
        self.calls.append(level)
        conv = nn.Conv2d(1, 1, 3, padding=1, bias=False).double().requires_grad_(False)
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = self.omega / float(A.diagonal())
        return [conv]


def test_a_smoother_object_plugs_in_without_touching_the_solver():
    prob = make_problem("poisson", 2, 31)
    plug = ConvJacobi(0.8)
    ml = MultigridSolver(prob.A, smoother=plug, nu=(2, 2), device="cpu")
    assert plug.calls == [0, 1, 2, 3]  # one sweep per level (not on the coarsest)
    steps = ml.cycle.levels[0].pre
    assert len(steps) == 2 and steps[0].B is steps[1].B  # the sweep repeated nu times
    ref = MultigridSolver(prob.A, smoother="jacobi", omega=0.8, nu=(2, 2), device="cpu")
    a, b = [], []
    ml.solve(prob.f, tol=1e-10, residuals=a)
    ref.solve(prob.f, tol=1e-10, residuals=b)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * a[0])  # up to rounding
    assert "3x3 convolution" in repr(ml)
    with pytest.raises(TypeError, match="smoother: must return a non-empty sequence of nn.Module"):
        MultigridSolver(prob.A, smoother=lambda A, l: ["not a module"], device="cpu")
    with pytest.raises(ValueError, match="smoother: 'sor' is not one of jacobi, rbgs, chebyshev"):
        MultigridSolver(prob.A, smoother="sor")


def test_symmetric_cycle_reverses_the_sweep():
    ml = MultigridSolver(laplacian(15, dim=2), smoother="rbgs", nu=(2, 2), device="cpu")
    sym = ml.symmetric_cycle()
    pre = [s.B.color for s in sym.levels[0].pre]
    post = [s.B.color for s in sym.levels[0].post]
    assert pre == ["red", "black", "red", "black"] and post == pre[::-1]
    assert [s.B.color for s in ml.cycle.levels[0].post] == pre  # the V-cycle repeats it
    lopsided = MultigridSolver(laplacian(15, dim=2), nu=(2, 1), device="cpu")
    with pytest.raises(ValueError, match=r"nu: a CG preconditioner needs nu_pre == nu_post"):
        lopsided.solve(torch.ones(15, 15), accel="cg")


def test_protocols_are_exported_from_the_core():
    from mgnet.core import FusedResidual, InPlaceProlongation, InPlaceSmoother, IterateDependent
    from mgnet.stencils import ColoredJacobi, Interpolation, NewtonJacobi, StencilOperator

    assert issubclass(StencilOperator, FusedResidual)
    assert issubclass(ColoredJacobi, InPlaceSmoother)
    assert issubclass(Interpolation, InPlaceProlongation)
    assert isinstance(NewtonJacobi(make_problem("nonlinear", 1, 7).A), IterateDependent)
    assert not issubclass(nn.Conv2d, InPlaceSmoother)
