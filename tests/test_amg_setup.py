"""The compiled set-up of smoothed aggregation (strength, standard and parallel
aggregation, the tentative prolongator), the lexicographic Gauss-Seidel smoother, and the
SA-PCG iteration counts against PyAMG's on small instances."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from mgnet.multigrid.aggregation import (
    aggregate,
    improve_candidates,
    strength,
    tentative_prolongator,
)
from mgnet.multigrid.algebraic import default_smoother, smoothed_aggregation_solver
from mgnet.multigrid.matrices import darcy_matrix, rotated_anisotropy
from mgnet.multigrid.sparse import GaussSeidelSweep, SparseMatrix, gauss_seidel


def laplace1d(n: int) -> sp.csr_matrix:
    return sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")


def laplace2d(n: int) -> sp.csr_matrix:
    T = laplace1d(n)
    return (sp.kron(sp.eye(n), T) + sp.kron(T, sp.eye(n))).tocsr()


def cols(x: np.ndarray) -> torch.Tensor:
    """NumPy (n, k) -> the cycle's (k, n) node-major tensor."""
    return torch.from_numpy(np.ascontiguousarray(x.reshape(x.shape[0], -1))).T


def nonsymmetric(n: int, seed: int = 0) -> sp.csr_matrix:
    """A diagonally dominant non-symmetric matrix with a 2D Laplacian's pattern."""
    rng = np.random.default_rng(seed)
    A = laplace2d(n).tocoo()
    vals = np.where(A.row == A.col, 4.0 + rng.uniform(0, 1, A.nnz), -rng.uniform(0, 1, A.nnz))
    return sp.csr_matrix((vals, (A.row, A.col)), shape=A.shape)


# ------------------------------------------------------------------- strength
def test_strength_is_the_symmetric_test_made_symmetric():
    A = nonsymmetric(7)
    theta = 0.2
    D = A.toarray()
    d = np.abs(np.diag(D))
    strong = (np.abs(D) >= theta * np.sqrt(np.outer(d, d))) & (D != 0)
    np.fill_diagonal(strong, False)
    expected = strong | strong.T
    S = strength(A, theta)
    np.testing.assert_array_equal(S.toarray() != 0, expected)
    assert 0 < S.nnz < A.nnz - A.shape[0]  # the threshold dropped some couplings


# ----------------------------------------------------------------- aggregation
def test_standard_aggregation_by_hand():
    # 1D, nodes 0..7: node 0 takes {0, 1}; node 3 is the next whose neighbours are free,
    # {2, 3, 4}; then node 6, {5, 6, 7}
    agg, count = aggregate(strength(laplace1d(8)))
    assert count == 3 and agg.tolist() == [0, 0, 1, 1, 1, 2, 2, 2]
    # 3 x 3 grid, row-major: pass 1 gives {0, 1, 3} (node 0) and {2, 4, 5, 8} (node 5);
    # pass 2 attaches node 6 to the aggregate of node 3 and node 7 to that of node 4
    agg, count = aggregate(strength(laplace2d(3)))
    assert count == 2 and agg.tolist() == [0, 0, 1, 0, 1, 1, 0, 1, 1]
    # a node without a strong neighbour stays out of every aggregate
    A = sp.block_diag([laplace1d(4), sp.eye(1)], format="csr")
    agg, count = aggregate(strength(A))
    assert agg.tolist() == [0, 0, 1, 1, -1] and count == 2


@pytest.mark.parametrize("method", ["standard", "parallel"])
@pytest.mark.parametrize("case", ["poisson", "anisotropic", "nonsymmetric"])
def test_aggregates_cover_every_node_once_and_are_connected(method, case):
    if case == "poisson":
        S = strength(laplace2d(17))
    elif case == "anisotropic":
        S = strength(rotated_anisotropy(20).A, 0.25)
    else:
        S = strength(nonsymmetric(15, seed=3), 0.2)
    agg, count = aggregate(S, seed=1, method=method)
    has_neighbour = np.diff(S.indptr) > 0
    assert agg.shape == (S.shape[0],) and agg.dtype.kind == "i"
    # every node with a strong neighbour is in exactly one aggregate (agg is a function),
    # the labels are 0..count-1 and none is empty
    assert (agg[has_neighbour] >= 0).all() and (agg[~has_neighbour] == -1).all()
    assert np.array_equal(np.unique(agg[agg >= 0]), np.arange(count))
    assert S.shape[0] / count > 2.5  # it coarsens
    for a in range(count):
        nodes = np.flatnonzero(agg == a)
        sub = S[nodes][:, nodes]
        assert sp.csgraph.connected_components(sub, directed=False)[0] == 1, (a, nodes)


def test_standard_aggregation_is_pyamgs():
    pyamg = pytest.importorskip("pyamg")
    from pyamg.aggregation.aggregate import standard_aggregation
    from pyamg.strength import symmetric_strength_of_connection

    for A, theta in ((rotated_anisotropy(31).A, 0.25), (laplace2d(20), 0.0)):
        AggOp, _ = standard_aggregation(symmetric_strength_of_connection(A, theta))
        agg, count = aggregate(strength(A, theta))
        assert count == AggOp.shape[1]
        np.testing.assert_array_equal(agg, np.asarray(AggOp.argmax(axis=1)).ravel())
    del pyamg


def test_tentative_prolongator_blocks_and_candidates():
    # 2 unknowns per node, 3 candidates: T is orthonormal per aggregate and B = T B_c
    A = laplace2d(6)
    agg, count = aggregate(strength(A))
    rng = np.random.default_rng(0)
    B = rng.standard_normal((2 * A.shape[0], 3))
    T, Bc = tentative_prolongator(agg, count, B, blocksize=2)
    assert T.shape == (72, 3 * count) and Bc.shape == (3 * count, 3)
    np.testing.assert_allclose((T.T @ T).toarray(), np.eye(3 * count), atol=1e-12)
    np.testing.assert_allclose(T @ Bc, B, atol=1e-12)
    # rows of a node's two unknowns live only in its aggregate's three columns
    rows, cols_ = T.nonzero()
    assert (cols_ // 3 == agg[rows // 2]).all()


def test_improved_candidates_have_less_energy():
    A = laplace2d(15)
    ones = np.ones((A.shape[0], 1))
    B = improve_candidates(A, ones, sweeps=4)
    energy = lambda v: float(v[:, 0] @ (A @ v[:, 0]) / (v[:, 0] @ v[:, 0]))  # noqa: E731
    assert energy(B) < 0.5 * energy(ones)
    np.testing.assert_array_equal(improve_candidates(A, ones, sweeps=0), ones)


# ---------------------------------------------------------------- Gauss-Seidel
@pytest.mark.parametrize("k", [1, 3])
def test_gauss_seidel_sweeps_are_the_triangular_solves(k):
    A = nonsymmetric(6, seed=1)
    n = A.shape[0]
    rng = np.random.default_rng(2)
    r, u0, f = (rng.standard_normal((n, k)) for _ in range(3))
    L, U = sp.tril(A, format="csr"), sp.triu(A, format="csr")
    forward, backward = gauss_seidel(SparseMatrix(A))
    with torch.no_grad():
        # B r from zero: (D + L)^-1 r and (D + U)^-1 r
        np.testing.assert_allclose(
            forward(cols(r)).T.numpy(), spla.spsolve_triangular(L, r, lower=True), atol=1e-12
        )
        np.testing.assert_allclose(
            backward(cols(r)).T.numpy(), spla.spsolve_triangular(U, r, lower=False), atol=1e-12
        )
        # the in-place step is u + B (f - A u)
        for B, M, lower in ((forward, L, True), (backward, U, False)):
            u = cols(u0.copy())
            out = B.update_(B.A, u, cols(f))
            assert out is u
            expected = u0 + spla.spsolve_triangular(M, f - A @ u0, lower=lower)
            np.testing.assert_allclose(u.T.numpy(), expected, atol=1e-12)


def test_block_gauss_seidel_is_the_block_triangular_solve():
    A = nonsymmetric(6, seed=4)  # 36 unknowns as 18 nodes of 2
    D = A.toarray()
    node = np.arange(36) // 2
    lower = np.where(node[:, None] >= node[None, :], D, 0.0)  # D + L by blocks
    r = np.random.default_rng(5).standard_normal((36, 2))
    sweep = GaussSeidelSweep(SparseMatrix(A), blocksize=2)
    with torch.no_grad():
        np.testing.assert_allclose(sweep(cols(r)).T.numpy(), np.linalg.solve(lower, r), atol=1e-12)
    with pytest.raises(ValueError, match=r"^A: the 2 x 2 diagonal block of node 1 is singular"):
        bad = A.tolil()
        bad[2:4, 2:4] = np.ones((2, 2))
        GaussSeidelSweep(SparseMatrix(bad.tocsr()), blocksize=2)


def test_gauss_seidel_gradient_is_the_transposed_solve_and_float32_runs():
    A = nonsymmetric(5, seed=6)
    L = sp.tril(A, format="csr")
    rng = np.random.default_rng(7)
    r, w = rng.standard_normal((25, 2)), rng.standard_normal((25, 2))
    forward, _ = gauss_seidel(SparseMatrix(A))
    rt = cols(r).clone().requires_grad_()
    (forward(rt) * cols(w)).sum().backward()
    # d/dr sum(w * (D + L)^-1 r) = (D + L)^-T w
    expected = spla.spsolve_triangular(L.T.tocsr(), w, lower=False)
    np.testing.assert_allclose(rt.grad.T.numpy(), expected, atol=1e-12)
    forward.float()
    with torch.no_grad():
        x = forward(cols(r).float())
    assert x.dtype == torch.float32
    np.testing.assert_allclose(x.T.numpy(), spla.spsolve_triangular(L, r), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("smoother", ["gauss_seidel", "symmetric_gauss_seidel"])
def test_gauss_seidel_cycle_is_a_symmetric_preconditioner(smoother):
    # scalar and 2 x 2 block Gauss-Seidel (a 2-component operator with rigid modes)
    A1 = laplace2d(12)
    A2 = sp.kron(A1, np.array([[2.0, -1.0], [-1.0, 2.0]])).tocsr()
    B2 = np.kron(np.ones((A1.shape[0], 1)), np.eye(2))
    rng = np.random.default_rng(8)
    for A, B, bs in ((A1, None, 1), (A2, B2, 2)):
        s = smoothed_aggregation_solver(
            A, B, blocksize=bs, smoother=smoother, device="cpu", max_coarse=10
        )
        assert len(s.levels) >= 3 and s.symmetric_cycle() is s.cycle
        x, y = rng.standard_normal((2, A.shape[0]))
        with torch.no_grad():
            Mx = s.cycle(s.to_cycle(x)[0], None, inplace=True).T.numpy()[:, 0]
            My = s.cycle(s.to_cycle(y)[0], None, inplace=True).T.numpy()[:, 0]
        assert abs(y @ Mx - x @ My) <= 1e-12 * abs(y @ Mx)
        assert y @ My > 0 and x @ Mx > 0


def test_default_smoother_depends_on_the_device():
    s = smoothed_aggregation_solver(laplace2d(10), device="cpu")
    assert s.smoother == "gauss_seidel" and "Gauss-Seidel (lexicographic" in repr(s)
    assert default_smoother(torch.device("cuda")) == "multicolour_gauss_seidel"
    with pytest.raises(ValueError, match="^aggregation: 'lloyd' is not one of standard, par"):
        smoothed_aggregation_solver(laplace2d(10), aggregation="lloyd")


# ------------------------------------------------------------ iteration counts
def _pcg_its(solver, b) -> int:
    res: list[float] = []
    solver.solve(b, tol=1e-8, accel="cg", residuals=res, maxiter=200)
    assert solver.converged
    return len(res) - 1


def test_sa_pcg_iterations_against_pyamgs():
    """With PyAMG's smoother (symmetric Gauss-Seidel) and coarsest size (10), our SA-PCG
    takes at most PyAMG's count + 2; our CPU default (a forward sweep before, a backward
    one after: half the smoothing work) takes a few more."""
    pyamg = pytest.importorskip("pyamg")
    pytest.importorskip("skfem")
    from mgnet.multigrid.matrices import fem_elasticity, fem_poisson

    # (problem, theta, measured PyAMG / ours like PyAMG / ours default)
    cases = [
        (fem_poisson(4), 0.0),  # 10 / 10 / 11
        (rotated_anisotropy(31), 0.25),  # 17 / 17 / 20
        (fem_elasticity(2), 0.0),  # 20 / 20 / 21
    ]
    for prob, theta in cases:
        bs = prob.blocksize
        Ap = sp.bsr_matrix(prob.A, blocksize=(bs, bs)) if bs > 1 else prob.A
        ml = pyamg.smoothed_aggregation_solver(
            Ap, B=prob.B, strength=("symmetric", {"theta": theta})
        )
        res: list[float] = []
        ml.solve(prob.b, tol=1e-8, accel="cg", residuals=res, maxiter=200)
        theirs = len(res) - 1
        like = smoothed_aggregation_solver(
            prob.A,
            prob.B,
            blocksize=bs,
            theta=theta,
            smoother="symmetric_gauss_seidel",
            max_coarse=10,
            device="cpu",
        )
        ours = _pcg_its(like, prob.b)
        assert ours <= theirs + 2, (prob.name, ours, theirs)
        default = smoothed_aggregation_solver(
            prob.A, prob.B, blocksize=bs, theta=theta, device="cpu"
        )
        assert _pcg_its(default, prob.b) <= theirs + 4, prob.name


def test_darcy_with_large_contrast_converges_in_few_pcg_iterations():
    # measured 14 and 15 (theta = 0, PyAMG's default threshold: 33 and 50)
    for contrast in (1e4, 1e6):
        prob = darcy_matrix(255, contrast)
        s = smoothed_aggregation_solver(prob.A, device="cpu")
        assert _pcg_its(s, prob.b) <= 20, contrast
