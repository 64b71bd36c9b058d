"""Fixed operators: A against its sparse matrix, R/P against their matrices, Galerkin
coarse stencils, boundary lifting, and red-black smoothing against a plain Gauss-Seidel."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from mgnet.stencils import (
    FullWeighting,
    Injection,
    Interpolation,
    StencilOperator,
    anisotropic,
    chebyshev_weights,
    diffusion,
    dirichlet_lift,
    grid_points,
    interpolation_matrix,
    laplacian,
    red_black,
    restriction_matrix,
)

torch.set_num_threads(1)


def _operators():
    return [
        laplacian(9, dim=1),
        laplacian(7, dim=2),
        laplacian(7, dim=2, points=9),
        laplacian(5, dim=3),
        anisotropic((7, 5), eps=(1.0, 0.1)),
        diffusion(7, lambda x, y: 1 + x * y + y**2, dim=2),
        diffusion(5, lambda x, y, z: torch.exp(x - z), dim=3),
        laplacian(7, dim=2, c=torch.linspace(0, 1, 49).reshape(7, 7)),
        laplacian(8, dim=2, bc="periodic", c=1.0),
        laplacian(8, dim=3, bc="periodic", c=0.5),
    ]


@pytest.mark.parametrize("op", _operators(), ids=lambda o: f"{o.name}-{o.shape}-{o.bc}")
def test_stencil_matches_sparse_matrix(op):
    u = torch.randn(3, 1, *op.shape, dtype=torch.float64)
    f = torch.randn_like(u)
    M = op.to_sparse()
    ref = (M @ u.reshape(3, -1).numpy().T).T.reshape(u.shape)
    np.testing.assert_allclose(op(u).numpy(), ref, rtol=1e-13, atol=1e-10)
    np.testing.assert_allclose(op.residual(u, f).numpy(), f.numpy() - ref, rtol=1e-13, atol=1e-10)
    assert op.residual(None, f) is f
    back = StencilOperator.from_sparse(M, op.shape, op.h, op.bc)
    assert abs(back.to_sparse() - M).max() < 1e-12


def test_laplacian_values():
    op = laplacian(3, dim=2)
    M = op.to_sparse().toarray()
    assert M[4, 4] == pytest.approx(4 * 16) and M[4, 1] == pytest.approx(-16)
    nine = laplacian(3, dim=2, points=9).to_sparse().toarray()
    assert nine[4, 4] == pytest.approx(20 * 16 / 6) and nine[4, 0] == pytest.approx(-16 / 6)
    # symmetric positive definite
    assert np.allclose(M, M.T) and np.linalg.eigvalsh(M).min() > 0


@pytest.mark.parametrize(
    "shape,bc",
    [
        ((7,), "dirichlet"),
        ((7, 7), "dirichlet"),
        ((5, 3, 7), "dirichlet"),
        ((8, 8), "periodic"),
        ((8, 8, 8), "periodic"),
    ],
)
def test_transfers_match_matrices(shape, bc):
    P, R = interpolation_matrix(shape, bc), restriction_matrix(shape, bc)
    assert abs(R - P.T / 2 ** len(shape)).max() == 0
    coarse = P.shape[1]
    cshape = tuple((n - 1) // 2 if bc == "dirichlet" else n // 2 for n in shape)
    assert coarse == np.prod(cshape)
    xc = torch.randn(2, 1, *cshape, dtype=torch.float64)
    xf = torch.randn(2, 1, *shape, dtype=torch.float64)
    np.testing.assert_allclose(
        Interpolation(shape, bc)(xc).reshape(2, -1).numpy(),
        (P @ xc.reshape(2, -1).numpy().T).T,
        atol=1e-14,
    )
    np.testing.assert_allclose(
        FullWeighting(shape, bc)(xf).reshape(2, -1).numpy(),
        (R @ xf.reshape(2, -1).numpy().T).T,
        atol=1e-14,
    )
    # full weighting keeps constants, linear interpolation reproduces linear functions
    ones = torch.ones(1, 1, *shape, dtype=torch.float64)
    inner = (slice(None), slice(None)) + tuple(slice(1, -1) for _ in shape)
    assert torch.allclose(
        FullWeighting(shape, bc)(ones)[inner], torch.tensor(1.0, dtype=ones.dtype)
    )
    assert Injection(shape, bc)(xf).shape == (2, 1, *cshape)


def test_interpolation_exact_for_linear_functions():
    x, y = grid_points((7, 7))
    xc, yc = grid_points((3, 3))
    fine = Interpolation((7, 7))((2 * xc + yc).reshape(1, 1, 3, 3))[0, 0]
    # near the boundary the coarse function is extended by zero, so compare inside
    assert torch.allclose(fine[1:-1, 1:-1], (2 * x + y)[1:-1, 1:-1], atol=1e-14)


def test_galerkin_coarse_stencil_of_5_point_laplacian():
    A = laplacian(7, dim=2)
    G = restriction_matrix((7, 7)) @ A.to_sparse() @ interpolation_matrix((7, 7))
    Ac = StencilOperator.from_sparse(G, (3, 3), (0.25, 0.25))
    assert Ac.is_constant
    coef = {o: Ac.coefficient(k) for k, o in enumerate(Ac.offsets)}
    H2 = 1 / 0.25**2
    # R A P = (1/H^2) [[-1/4, -1/2, -1/4], [-1/2, 3, -1/2], [-1/4, -1/2, -1/4]]
    assert coef[(0, 0)] == pytest.approx(3 * H2)
    assert coef[(1, 0)] == pytest.approx(-0.5 * H2)
    assert coef[(1, 1)] == pytest.approx(-0.25 * H2)
    # in 1D Galerkin and rediscretization coincide
    A1 = laplacian(7, dim=1)
    G1 = restriction_matrix((7,)) @ A1.to_sparse() @ interpolation_matrix((7,))
    assert abs(G1 - laplacian(3, dim=1).to_sparse()).max() < 1e-10


@pytest.mark.parametrize(
    "op",
    [laplacian(9, dim=2), laplacian(9, dim=2, points=9), laplacian(5, dim=3), laplacian(9, dim=1)],
    ids=["5pt", "9pt", "7pt", "3pt"],
)
def test_inhomogeneous_dirichlet_reproduces_linear_solution(op):
    def g(*x):
        return 1 + sum((k + 1) * xi for k, xi in enumerate(x))

    u = spla.spsolve(op.to_sparse().tocsc(), dirichlet_lift(op, g).numpy().ravel())
    exact = g(*grid_points(op.shape)).numpy().ravel()
    np.testing.assert_allclose(u, exact, rtol=1e-11)


def test_red_black_steps_are_one_gauss_seidel_sweep():
    A = laplacian(6, dim=2)
    red, black = red_black(A)
    f = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    u = torch.randn_like(f)
    u1 = u + red(A.residual(u, f))
    u2 = u1 + black(A.residual(u1, f))
    # plain Gauss-Seidel in red-then-black order, point by point
    M = A.to_sparse().toarray()
    x = u.numpy().ravel().copy()
    b = f.numpy().ravel()
    order = [k for k in range(36) if sum(divmod(k, 6)) % 2 == 0]
    order += [k for k in range(36) if sum(divmod(k, 6)) % 2 == 1]
    for k in order:
        x[k] += (b[k] - M[k] @ x) / M[k, k]
    np.testing.assert_allclose(u2.numpy().ravel(), x, rtol=1e-12)


def test_chebyshev_weights_are_inverse_roots():
    w = chebyshev_weights(3, 2.0, lower=0.25)
    roots = sorted(1 / np.array(w))
    assert roots[0] > 0.5 and roots[-1] < 2.0
    # the polynomial prod (1 - w_i t) vanishes at the Chebyshev nodes and is small on [0.5, 2]
    t = np.linspace(0.5, 2.0, 201)
    poly = np.prod([1 - wi * t for wi in w], axis=0)
    assert np.abs(poly).max() < 0.1


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(ValueError, match="points"):
        laplacian(7, dim=2, points=7)
    with pytest.raises(ValueError, match="bc"):
        laplacian(7, dim=2, bc="neumann")
    with pytest.raises(ValueError, match="dim"):
        laplacian(7, dim=4)
    with pytest.raises(ValueError, match="a:"):
        diffusion(7, torch.ones(7, 7), dim=2)
    with pytest.raises(ValueError, match="eps"):
        anisotropic(7, eps=(1.0, -1.0))
    with pytest.raises(ValueError, match="fine_shape"):
        FullWeighting((6, 6))
