"""The algebraic instance's operators: sparse A, P, R and each smoother is the textbook
iteration, written here in a few lines of NumPy/SciPy."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from mgnet.core import Level, MgCycle, Step
from mgnet.multigrid.sparse import (
    CoarseSolve,
    SparseMatrix,
    chebyshev,
    colour_graph,
    jacobi,
    l1_jacobi,
    multicolour_gauss_seidel,
    spectral_radius,
)


def poisson(n: int) -> sp.csr_matrix:
    T = sp.diags([-1, 2, -1], [-1, 0, 1], shape=(n, n))
    return (sp.kron(sp.eye(n), T) + sp.kron(T, sp.eye(n))).tocsr()


def fem_like(n: int, seed: int = 0) -> sp.csr_matrix:
    """A symmetric positive definite matrix with variable coefficients."""
    rng = np.random.default_rng(seed)
    A = poisson(n)
    D = sp.diags(rng.uniform(0.5, 2.0, A.shape[0]))
    return (D @ A @ D).tocsr()


def cols(x: np.ndarray) -> torch.Tensor:
    """NumPy (n, k) -> the cycle's (k, n) node-major tensor."""
    return torch.from_numpy(np.ascontiguousarray(x.reshape(x.shape[0], -1))).T


def one_step(A: sp.csr_matrix, B, u0: np.ndarray, f: np.ndarray, inplace: bool) -> np.ndarray:
    Am = SparseMatrix(A)
    u = cols(u0.copy())
    with torch.no_grad():
        out = Step(Am, B)(u, cols(f), inplace=inplace)
    return out.T.numpy().reshape(u0.shape)


@pytest.mark.parametrize("k", [1, 3])
def test_sparse_matrix_fast_path_equals_torch_csr_path(k):
    A = fem_like(9)
    rng = np.random.default_rng(1)
    u, f = rng.standard_normal((81, k)), rng.standard_normal((81, k))
    M = SparseMatrix(A)
    fast = M(cols(u)).T.numpy()
    ut = cols(u).clone().requires_grad_()  # autograd: the torch sparse CSR path
    ref = M(ut).detach().T.numpy()
    np.testing.assert_allclose(fast, A @ u, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(ref, A @ u, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(M.residual(cols(u), cols(f)).T.numpy(), f - A @ u, atol=1e-13)
    x = cols(u.copy())
    M.add_to(x, cols(f))
    np.testing.assert_allclose(x.T.numpy(), u + A @ f, atol=1e-13)
    # gradients flow through the torch path: d/du sum(A u) = A^T 1
    M(ut).sum().backward()
    np.testing.assert_allclose(ut.grad.T.numpy(), A.T @ np.ones((81, k)), atol=1e-13)


def test_sparse_matrix_float32_and_bad_shape():
    A = poisson(5)
    M = SparseMatrix(A).float()
    u = torch.randn(2, 25)
    np.testing.assert_allclose(M(u).T.numpy(), A @ u.T.numpy(), rtol=1e-5, atol=1e-5)
    assert M(u).dtype == torch.float32
    with pytest.raises(ValueError, match=r"u: expected a \(batch, 25\) tensor"):
        M(torch.randn(2, 24))


@pytest.mark.parametrize("inplace", [False, True])
def test_damped_jacobi_is_the_textbook_step(inplace):
    A = fem_like(7)
    rng = np.random.default_rng(2)
    u0, f = rng.standard_normal((49, 2)), rng.standard_normal((49, 2))
    w = 0.7
    expected = u0 + w * (f - A @ u0) / A.diagonal()[:, None]
    np.testing.assert_allclose(one_step(A, jacobi(A, w), u0, f, inplace), expected, atol=1e-13)


@pytest.mark.parametrize("inplace", [False, True])
def test_l1_jacobi_is_the_textbook_step(inplace):
    A = fem_like(7)
    rng = np.random.default_rng(3)
    u0, f = rng.standard_normal((49, 1)), rng.standard_normal((49, 1))
    d_l1 = np.abs(A).sum(axis=1).A1  # a_ii + sum_j!=i |a_ij| for a positive diagonal
    expected = u0 + (f - A @ u0) / d_l1[:, None]
    np.testing.assert_allclose(one_step(A, l1_jacobi(A), u0, f, inplace), expected, atol=1e-13)


def test_chebyshev_steps_apply_the_chebyshev_polynomial_of_dinv_a():
    A = fem_like(8)
    n = A.shape[0]
    d = A.diagonal()
    rho = spectral_radius(A, 1 / d)
    lam = np.linalg.eigvalsh((A / np.sqrt(np.outer(d, d))).toarray())  # spectrum of D^-1 A
    assert lam.max() <= rho <= 1.02 * lam.max()
    degree, lower = 3, 1 / 30
    Bs = chebyshev(A, degree, lower, rho=rho)
    rng = np.random.default_rng(4)
    e0 = rng.standard_normal((n, 1))
    # error after the steps (f = 0): e = p(D^-1 A) e0, with p the scaled Chebyshev polynomial
    Am = SparseMatrix(A)
    cycle = MgCycle([Level(Am, [Step(Am, B) for B in Bs])], [])
    with torch.no_grad():
        e = cycle(cols(np.zeros((n, 1))), cols(e0.copy())).T.numpy()
    a, b = lower * rho, rho
    T = np.polynomial.chebyshev.Chebyshev.basis(degree)

    def p(t):
        return T((b + a - 2 * t) / (b - a)) / T((b + a) / (b - a))

    S = np.diag(d**-0.5)
    w, V = np.linalg.eigh(S @ A.toarray() @ S)  # D^-1 A = S V diag(w) V^T S^-1
    expected = S @ V @ np.diag(p(w)) @ V.T @ np.linalg.inv(S) @ e0
    np.testing.assert_allclose(e, expected, atol=1e-12)
    assert np.abs(p(w[w > a])).max() <= 1 / T((b + a) / (b - a)) + 1e-12


def test_colouring_is_proper():
    A = fem_like(12) + sp.random(144, 144, 0.02, random_state=0)  # irregular pattern
    colour = colour_graph(A)
    G = sp.coo_matrix(A)
    off = G.row != G.col
    assert (colour[G.row[off]] != colour[G.col[off]]).all()
    assert colour.min() == 0 and colour.max() < 12


@pytest.mark.parametrize("inplace", [False, True])
def test_multicolour_gauss_seidel_is_gauss_seidel_in_colour_order(inplace):
    A = fem_like(9)
    n = A.shape[0]
    rng = np.random.default_rng(5)
    u0, f = rng.standard_normal((n, 2)), rng.standard_normal((n, 2))
    colour = colour_graph(A)
    sweep = multicolour_gauss_seidel(A, colour)
    Am = SparseMatrix(A)
    u = cols(u0.copy())
    with torch.no_grad():
        for B in sweep:
            u = Step(Am, B)(u, cols(f), inplace=inplace)
    # textbook: one forward Gauss-Seidel sweep in the order "colour 0 first, ...":
    # u1 = u0 + (D + L)^-1 (f - A u0) with L the strictly lower part of the permuted A
    order = np.argsort(colour, kind="stable")
    Ap = A[order][:, order]
    DL = sp.tril(Ap, format="csr")
    up = u0[order] + spla.spsolve_triangular(DL, f[order] - Ap @ u0[order], lower=True)
    expected = np.empty_like(up)
    expected[order] = up
    np.testing.assert_allclose(u.T.numpy(), expected, atol=1e-12)


def test_coarse_solve_is_the_inverse_and_the_pseudo_inverse():
    A = fem_like(5)
    r = np.random.default_rng(6).standard_normal((25, 3))
    x = CoarseSolve(A)(cols(r)).T.numpy()
    np.testing.assert_allclose(A @ x, r, atol=1e-12)
    lu = CoarseSolve(A, dense_max=10)
    assert lu.kind == "sparse LU"
    np.testing.assert_allclose(lu(cols(r)).T.numpy(), x, atol=1e-12)
    # pure Neumann: singular, solves compatible right-hand sides
    T = sp.diags([-1, 2, -1], [-1, 0, 1], shape=(6, 6)).tolil()
    T[0, 0] = T[5, 5] = 1
    N = T.tocsr()
    c = CoarseSolve(N)
    assert c.kind == "dense pseudo-inverse"
    b = np.array([1.0, -2, 0, 3, -1, -1])[:, None]
    np.testing.assert_allclose(N @ c(cols(b)).T.numpy(), b, atol=1e-12)
