"""The multigrid solver: it is the core cycle, it agrees with sparse direct solves and with
an independent textbook V-cycle, and it converges at the textbook rates."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from mgnet.core import Level, MgCycle, Step, Transfer
from mgnet.multigrid import MultigridSolver, make_problem
from mgnet.stencils import (
    DirectSolve,
    FullWeighting,
    Interpolation,
    Jacobi,
    anisotropic,
    diffusion,
    interpolation_matrix,
    laplacian,
    restriction_matrix,
)

torch.set_num_threads(1)


def _rel(a, b):
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b)))


def _ops():
    return [
        ("lap1d", laplacian(127, dim=1)),
        ("lap2d", laplacian(63, dim=2)),
        ("lap2d-9pt", laplacian(63, dim=2, points=9)),
        ("lap3d", laplacian(15, dim=3)),
        ("aniso2d", anisotropic((31, 31), eps=(1.0, 0.3))),
        ("aniso3d", anisotropic((15, 15, 15), eps=(1.0, 0.5, 0.7))),
        ("diff1d", diffusion(63, lambda x: 1 + x**2, dim=1)),
        ("diff2d", diffusion(31, lambda x, y: torch.exp(x + 2 * y), dim=2)),
        ("diff3d", diffusion(15, lambda x, y, z: 1 + x * y * z, dim=3)),
        ("helmholtz2d", laplacian(31, dim=2, c=torch.rand(31, 31, dtype=torch.float64) * 50)),
        ("periodic1d", laplacian(64, dim=1, bc="periodic", c=1.0)),
        ("periodic2d", laplacian(32, dim=2, bc="periodic", c=2.0)),
        ("periodic3d", laplacian(16, dim=3, bc="periodic", c=3.0)),
    ]


@pytest.mark.parametrize("name,op", _ops(), ids=[n for n, _ in _ops()])
@pytest.mark.parametrize("coarse", ["rediscretize", "galerkin"])
def test_agrees_with_spsolve(name, op, coarse):
    gen = torch.Generator().manual_seed(0)
    f = torch.randn(2, 1, *op.shape, generator=gen, dtype=torch.float64)
    ml = MultigridSolver(op, coarse=coarse, device="cpu")
    x = ml.solve(f, tol=1e-11, maxiter=200)
    assert ml.converged, (name, ml.history[-3:])
    M = op.to_sparse().tocsc()
    for b in range(2):
        ref = spla.spsolve(M, f[b].numpy().ravel())
        assert _rel(x[b].numpy(), ref) < 1e-8


def _hand_built_cycle(n: int, levels: int, omega: float) -> MgCycle:
    """The core cycle assembled directly from mgnet.core and mgnet.stencils modules."""
    ops = [laplacian(n, dim=2)]
    for _ in range(levels - 1):
        ops.append(laplacian((ops[-1].shape[0] - 1) // 2, dim=2))
    lv, tr = [], []
    for op in ops[:-1]:
        B = Jacobi(op, omega)
        lv.append(Level(op, [Step(op, B), Step(op, B)], [Step(op, B), Step(op, B)]))
        tr.append(Transfer(R=FullWeighting(op.shape), Pi=None, P=Interpolation(op.shape)))
    lv.append(Level(ops[-1], [Step(ops[-1], DirectSolve(ops[-1]))]))
    return MgCycle(lv, tr, shape="V")


def _numpy_vcycle(mats, f, u, omega, nu=2):
    """An independent textbook V-cycle with SciPy matrices (Jacobi, R, P, direct solve)."""
    A, R, P = mats[0]
    if R is None:
        return spla.spsolve(A.tocsc(), f)
    d = A.diagonal()
    for _ in range(nu):
        u = u + omega * (f - A @ u) / d
    rc = R @ (f - A @ u)
    ec = _numpy_vcycle(mats[1:], rc, np.zeros_like(rc), omega, nu)
    u = u + P @ ec
    for _ in range(nu):
        u = u + omega * (f - A @ u) / d
    return u


def test_solver_iterate_is_the_core_cycle_and_the_textbook_cycle():
    n, omega = 31, 0.8
    prob = make_problem("poisson", 2, n)
    ml = MultigridSolver(prob.A, smoother="jacobi", nu=(2, 2), omega=omega, device="cpu")
    assert isinstance(ml.cycle, MgCycle) and len(ml.levels) == 5
    x_solver = ml.solve(prob.f, tol=1e-30, maxiter=3)
    assert ml.iterations == 3
    core = _hand_built_cycle(n, 5, omega)
    u = None
    with torch.no_grad():
        for _ in range(3):
            u = core(prob.f, u)
    assert torch.allclose(x_solver, u, rtol=0, atol=1e-13 * float(u.abs().max()))
    # independent reference: SciPy matrices, rediscretized Laplacians, R = P^T / 4
    mats, m = [], n
    while m > 1:
        shape = (m, m)
        mats.append(
            (
                laplacian(m, dim=2).to_sparse(),
                restriction_matrix(shape),
                interpolation_matrix(shape),
            )
        )
        m = (m - 1) // 2
    mats.append((laplacian(1, dim=2).to_sparse(), None, None))
    ref = np.zeros(n * n)
    for _ in range(3):
        ref = _numpy_vcycle(mats, prob.f.numpy().ravel(), ref, omega)
    assert _rel(x_solver.numpy(), ref) < 1e-12
    # and the iterate is not trivially converged: it still differs from the solution
    exact = spla.spsolve(prob.A.to_sparse().tocsc(), prob.f.numpy().ravel())
    assert _rel(ref, exact) > 1e-6


def _asymptotic_factor(ml, n, cycles=12):
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(1, 1, n, n, generator=gen, dtype=torch.float64)
    res = []
    ml.solve(torch.zeros_like(x0), x0=x0, tol=1e-300, maxiter=cycles, residuals=res)
    tail = res[-4:]
    return (tail[-1] / tail[0]) ** (1 / (len(tail) - 1))


@pytest.mark.parametrize("smoother,nu,bound", [("jacobi", (2, 2), 0.20), ("rbgs", (1, 1), 0.13)])
def test_poisson_2d_factors(smoother, nu, bound):
    rho = {}
    for n in (63, 255):
        ml = MultigridSolver(laplacian(n, dim=2), smoother=smoother, nu=nu, device="cpu")
        rho[n] = _asymptotic_factor(ml, n)
        assert 0.05 < rho[n] <= bound, (n, rho[n])
    assert abs(rho[63] - rho[255]) <= 0.03


@pytest.mark.parametrize("smoother,nu,bound", [("jacobi", (2, 2), 0.20), ("rbgs", (1, 1), 0.13)])
def test_poisson_2d_factors_independent_of_h_up_to_1023(smoother, nu, bound):
    rho = {}
    for n in (63, 1023):
        ml = MultigridSolver(laplacian(n, dim=2), smoother=smoother, nu=nu, device="cpu")
        rho[n] = _asymptotic_factor(ml, n, cycles=10)
        assert rho[n] <= bound
    assert abs(rho[63] - rho[1023]) <= 0.03


def test_second_order_discretization_error():
    errors = []
    for n in (31, 63, 127):
        prob = make_problem("poisson", 2, n)
        ml = MultigridSolver(prob.A, device="cpu")
        errors.append(prob.error(ml.solve(prob.f, tol=1e-10)))
    for coarse, fine in zip(errors, errors[1:]):
        assert 3.6 < coarse / fine < 4.4


@pytest.mark.parametrize("n", [63, 255])
def test_fmg_reaches_discretization_error_in_one_pass(n):
    prob = make_problem("poisson", 2, n)
    ml = MultigridSolver(prob.A, smoother="rbgs", nu=(1, 1), device="cpu")
    uh = ml.solve(prob.f, tol=1e-12)
    disc = prob.error(uh)

    def algebraic(u):  # |u - u_h| over the discretization error |u_h - u*|
        return float((u - uh).abs().max()) / disc

    # the error against u* alone can hide an algebraic error of the opposite sign; both
    # are checked. Cubic FMG interpolation (the default): one V(1,1) per level leaves an
    # algebraic error of 0.82-0.83x the discretization error, linear P 2.4-2.5x
    one = ml.fmg(prob.f, cycles=1)
    assert algebraic(one) <= 0.9 and prob.error(one) <= disc
    assert algebraic(ml.fmg(prob.f, cycles=1, interpolation="cycle")) >= 2.0
    # two cycles per level: 0.055x with cubic, 0.17x with linear interpolation
    two = ml.fmg(prob.f, cycles=2)
    assert algebraic(two) <= 0.07 and prob.error(two) <= 1.5 * disc
    assert 0.1 <= algebraic(ml.fmg(prob.f, cycles=2, interpolation="cycle")) <= 0.2


@pytest.mark.parametrize("n", [255, 1023])
def test_pcg_converges_in_at_most_8_iterations(n):
    prob = make_problem("poisson", 2, n)
    ml = MultigridSolver(prob.A, device="cpu")
    x = ml.pcg(prob.f, tol=1e-8)
    assert ml.converged and ml.iterations <= 8
    r = prob.f - prob.A(x)
    assert float(r.norm() / prob.f.norm()) <= 1e-8


def test_scipy_adapters():
    prob = make_problem("poisson", 2, 63)
    ml = MultigridSolver(prob.A, device="cpu")
    A = ml.aslinearoperator()
    b = prob.f.numpy().ravel()
    assert np.allclose(A @ b, prob.A.to_sparse() @ b)
    its = []
    x, info = spla.cg(
        prob.A.to_sparse(), b, M=ml.aspreconditioner(), rtol=1e-8, callback=lambda xk: its.append(1)
    )
    assert info == 0 and len(its) <= 8
    assert np.linalg.norm(b - prob.A.to_sparse() @ x) <= 1e-8 * np.linalg.norm(b)


@pytest.mark.parametrize("dim,n", [(1, 255), (2, 127), (3, 31)])
def test_fas_nonlinear_converges_like_linear(dim, n):
    prob = make_problem("nonlinear", dim, n)
    ml = MultigridSolver(prob.A, smoother="rbgs", nu=(1, 1), device="cpu")
    assert ml.nonlinear and ml.cycle.transfers[0].Pi is not None
    u = ml.solve(prob.f, tol=1e-8)
    assert ml.converged
    r = prob.f - prob.A(u)
    assert float(r.norm() / prob.f.norm()) <= 1e-8
    lin = make_problem("poisson", dim, n)
    ml_lin = MultigridSolver(lin.A, smoother="rbgs", nu=(1, 1), device="cpu")
    ml_lin.solve(lin.f, tol=1e-8)
    assert ml.convergence_factor() <= ml_lin.convergence_factor() + 0.05
    assert prob.error(u) < 2 * lin.error(ml_lin.solve(lin.f, tol=1e-8)) + 1e-3


def test_float32_floor_and_mixed_precision():
    prob = make_problem("poisson", 2, 255)
    ml64 = MultigridSolver(prob.A, device="cpu")
    disc = prob.error(ml64.solve(prob.f, tol=1e-10))
    ml32 = MultigridSolver(prob.A, precision="float32", device="cpu")
    x32 = ml32.solve(prob.f, tol=1e-12, maxiter=60)
    assert x32.dtype == torch.float32 and bool(torch.isfinite(x32).all())
    assert not ml32.converged and ml32.iterations < 60  # stopped at its floor
    assert min(ml32.history) / ml32.history[0] < 1e-2
    assert prob.error(x32) <= 1.5 * disc  # float32 rounding stays below the discretization error
    mixed = MultigridSolver(prob.A, precision="mixed", device="cpu")
    x = mixed.solve(prob.f, tol=1e-8)
    assert mixed.converged and x.dtype == torch.float64
    assert float((prob.f - prob.A(x)).norm() / prob.f.norm()) <= 1e-8


def test_batched_rhs_and_cycle_shapes():
    op = laplacian(31, dim=2)
    f = torch.randn(3, 1, 31, 31, dtype=torch.float64)
    M = op.to_sparse().tocsc()
    for cycle in ("V", "W", "F"):
        ml = MultigridSolver(op, device="cpu")
        x = ml.solve(f, tol=1e-10, cycle=cycle)
        assert x.shape == f.shape
        for b in range(3):
            assert _rel(x[b].numpy(), spla.spsolve(M, f[b].numpy().ravel())) < 1e-8
    grid = MultigridSolver(op, device="cpu").solve(f[0, 0], tol=1e-10)
    assert grid.shape == (31, 31)


def test_chebyshev_smoother_converges():
    ml = MultigridSolver(laplacian(63, dim=2), smoother="chebyshev", nu=(2, 2), device="cpu")
    assert _asymptotic_factor(ml, 63) < 0.15


def test_other_sizes_coarsen_then_solve_directly_or_are_refused():
    op = laplacian(47, dim=2)  # 47 -> 23 -> 11 -> 5 -> 2 (even): direct solve on 2x2
    ml = MultigridSolver(op, device="cpu")
    assert ml.levels[-1].A.shape == (2, 2)
    f = torch.randn(1, 1, 47, 47, dtype=torch.float64)
    x = ml.solve(f, tol=1e-10)
    assert _rel(x.numpy(), spla.spsolve(op.to_sparse().tocsc(), f.numpy().ravel())) < 1e-8
    ml = MultigridSolver(laplacian(100, dim=2), device="cpu")  # not coarsenable: sparse LU
    assert len(ml.levels) == 1 and "sparse LU" in repr(ml)
    with pytest.raises(ValueError, match=r"shape: .*1023"):
        MultigridSolver(laplacian(1000, dim=2), device="cpu")


def test_repr_shows_the_hierarchy():
    text = repr(MultigridSolver(laplacian(63, dim=2), device="cpu"))
    for piece in (
        "MgCycle",
        "63x63",
        "31x31",
        "1x1",
        "red-black",
        "laplacian 5-point",
        "dense Cholesky",
        "levels:    6",
    ):
        assert piece in text


def test_bad_arguments_raise_clear_errors():
    op = laplacian(15, dim=2)
    with pytest.raises(ValueError, match="smoother"):
        MultigridSolver(op, smoother="sor")
    with pytest.raises(ValueError, match="nu"):
        MultigridSolver(op, nu=(0, 0))
    with pytest.raises(ValueError, match="precision"):
        MultigridSolver(op, precision="float16")
    ml = MultigridSolver(op, device="cpu")
    with pytest.raises(ValueError, match=r"b: expected shape \(15, 15\)"):
        ml.solve(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="cycle"):
        ml.solve(torch.zeros(15, 15), cycle="X")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            MultigridSolver(op, device="cuda")


def test_galerkin_hierarchy_matches_rap():
    op = diffusion(15, lambda x, y: 1 + 3 * x * y, dim=2)
    ml = MultigridSolver(op, coarse="galerkin", device="cpu")
    G = restriction_matrix((15, 15)) @ op.to_sparse() @ interpolation_matrix((15, 15))
    assert sp.linalg.norm(ml.levels[1].A.to_sparse() - G) < 1e-10 * sp.linalg.norm(G)
    assert math.prod(ml.levels[1].A.shape) == 49
